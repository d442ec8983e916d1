// ZeroMQ framing of Orchard messages: an orchard.v1.Envelope in frame 0, raw tensor bytes in
// frames 1..N (see docs/protocol.md), plus socket options and CURVE security.
//
// Receiving validates everything a peer controls before anyone uses it: protocol version,
// message type, that the body matches the type, frame count, and every tensor descriptor
// against its frame. A bad message never throws out of recv_message(): it comes back as
// RecvStatus::kInvalid with the reason and the sender's routing frames, so a server can send an
// error reply and keep serving.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <zmq.hpp>

#include "orchard/core/tensor.h"
#include "orchard/proto/orchard.pb.h"

namespace orchard::core {

// ---------------------------------------------------------------------------------------------
// Messages

// A received, validated message. Not copyable; moving it keeps the views valid (the frames'
// storage is not relocated). Views point into `frames` and into `envelope`'s descriptors, and
// may be unaligned for tensors of 32 bytes or fewer (ZeroMQ stores those inline): copy them
// out with copy_tensor() rather than dereferencing as<T>() when alignment matters.
struct Message {
  Message() = default;
  Message(Message&&) = default;
  Message& operator=(Message&&) = default;
  Message(const Message&) = delete;
  Message& operator=(const Message&) = delete;

  v1::Envelope envelope;
  std::vector<zmq::message_t> routing;  // ROUTER identity frames; empty for other socket types
  std::vector<zmq::message_t> frames;   // frames[k] carries envelope.tensors(k)
  std::vector<TensorView> tensors;      // decoded views of frames, same order

  // The tensor with this name, or nullptr.
  const TensorView* find(std::string_view name) const;
};

// Assembles an outgoing message: envelope fields plus tensor frames.
class MessageBuilder {
 public:
  explicit MessageBuilder(v1::MessageType type, uint64_t request_id = 0);

  v1::Envelope& envelope() { return envelope_; }
  const v1::Envelope& envelope() const { return envelope_; }

  // Copies the tensor's bytes into a new frame (one allocation + memcpy).
  void add_tensor_copy(const TensorView& view);
  // Sends the tensor's bytes without copying. `keepalive` owns the memory and is released when
  // ZeroMQ has sent the frame (possibly on its I/O thread); the bytes must not change until then.
  void add_tensor_borrowed(const TensorView& view, std::shared_ptr<const void> keepalive);
  // Convenience: copies a contiguous vector as a tensor of the given shape.
  template <class T>
  void add_tensor(std::string_view name, const std::vector<T>& values, Shape shape) {
    TensorView v{name, dtype_of<T>(), shape, values.data()};
    add_tensor_copy(v);
  }

  size_t num_frames() const { return frames_.size(); }
  // Moves the frames out (used by send_message).
  std::vector<zmq::message_t>& frames() { return frames_; }

 private:
  v1::Envelope envelope_;
  std::vector<zmq::message_t> frames_;
};

// Limits applied to everything received.
struct RecvLimits {
  size_t max_frames = 1024;               // tensor frames per message
  size_t max_envelope_bytes = 16u << 20;  // frame 0
  CodecLimits codec;
};

enum class RecvStatus {
  kOk,       // `out` holds a validated message
  kTimeout,  // nothing arrived before the timeout (or the socket was interrupted)
  kInvalid,  // a message arrived and was rejected; `error` says why, out->routing is set
};

struct RecvError {
  v1::ErrorCode code = v1::OK;
  std::string message;
  uint64_t request_id = 0;  // of the rejected message, when its envelope could be parsed
};

// Receives one multipart message. `routed`: the socket is a ROUTER, so identity frames come
// first (up to the empty delimiter or the first non-identity frame). timeout_ms < 0 waits for
// ever. `out` is cleared on every call, kTimeout included: to keep the last message, receive
// into a scratch Message and move it. A signal interrupting the wait (EINTR) returns kTimeout, so loops can check their
// shutdown flag. On kInvalid the rest of the multipart message has been drained, so the socket
// stays in sync. Throws zmq::error_t only for socket-level failures (closed context).
RecvStatus recv_message(zmq::socket_t& socket, Message* out, RecvError* error, int timeout_ms,
                        bool routed = false, const RecvLimits& limits = {});

// Sends envelope + frames (the builder's frames are consumed). Stamps the protocol version and
// send time. `routing` (ROUTER sockets) is sent first. Returns false when the socket would block
// past its send timeout (ZMQ_SNDTIMEO) or a signal interrupted it before anything was sent —
// nothing was sent then.
bool send_message(zmq::socket_t& socket, MessageBuilder& message,
                  const std::vector<zmq::message_t>* routing = nullptr);

// Replies to a rejected or failed request with an ERROR envelope.
bool send_error(zmq::socket_t& socket, const std::vector<zmq::message_t>* routing, uint64_t request_id,
                v1::ErrorCode code, const std::string& message, const std::string& sender = "");

// Validates an envelope's header fields: version, type, body matching the type. Throws
// WireError (VERSION_MISMATCH or MALFORMED).
void validate_envelope(const v1::Envelope& envelope);

// The body case an envelope of `type` must carry (kBodyNotSet for ERROR).
v1::Envelope::BodyCase expected_body(v1::MessageType type);

// ---------------------------------------------------------------------------------------------
// Sockets

struct SocketOptions {
  int linger_ms = 0;                         // pending messages are dropped at close after this
  int send_hwm = 1000;                       // messages queued per peer before send blocks
  int recv_hwm = 1000;
  int64_t max_message_bytes = 256ll << 20;   // ZMQ_MAXMSGSIZE: larger frames drop the connection
  int send_timeout_ms = -1;                  // -1: block; send_message() returns false on timeout
  bool tcp_keepalive = true;
  bool immediate = false;                    // ZMQ_IMMEDIATE: queue only to completed connections
  int reconnect_interval_ms = 100;
  int reconnect_interval_max_ms = 5000;
  std::string routing_id;                    // DEALER/ROUTER identity; empty: ZeroMQ picks one
};

void apply_socket_options(zmq::socket_t& socket, const SocketOptions& options);

// ---------------------------------------------------------------------------------------------
// CURVE (encryption + authentication)

// Keys in Z85 text form (40 characters each).
struct CurveKeyPair {
  std::string public_key;
  std::string secret_key;  // empty in a public-only key file
};

bool curve_available();
CurveKeyPair generate_curve_keypair();
// Writes "public = <z85>" and (when set) "secret = <z85>" lines; the file is created mode 0600.
void save_curve_keys(const std::string& path, const CurveKeyPair& keys);
// Reads a key file written by save_curve_keys (`orchard keys`). Throws orchard::ConfigError
// naming the file and the problem (missing, unreadable, bad key length or characters).
CurveKeyPair load_curve_keys(const std::string& path, bool require_secret);
// Server side: encrypts and requires clients to know the server's public key.
void make_curve_server(zmq::socket_t& socket, const CurveKeyPair& server);
// Client side: the client's own pair and the server's public key.
void make_curve_client(zmq::socket_t& socket, const CurveKeyPair& client, const std::string& server_public);

// ZeroMQ library version "4.3.4".
std::string zmq_version_string();

}  // namespace orchard::core
