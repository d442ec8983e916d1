#include "orchard/core/wire.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cstring>
#include <fstream>
#include <sstream>

#include "orchard/core/clock.h"
#include "orchard/core/error.h"
#include "orchard/core/version.h"

namespace orchard::core {
namespace {

using Body = v1::Envelope::BodyCase;

void free_keepalive(void* /*data*/, void* hint) { delete static_cast<std::shared_ptr<const void>*>(hint); }

// Receives the rest of a multipart message and throws it away.
void drain(zmq::socket_t& socket) {
  while (socket.get(zmq::sockopt::rcvmore)) {
    zmq::message_t junk;
    (void)socket.recv(junk, zmq::recv_flags::none);
  }
}

bool more(zmq::socket_t& socket) { return socket.get(zmq::sockopt::rcvmore) != 0; }

}  // namespace

const TensorView* Message::find(std::string_view name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

MessageBuilder::MessageBuilder(v1::MessageType type, uint64_t request_id) {
  envelope_.set_type(type);
  envelope_.set_request_id(request_id);
}

void MessageBuilder::add_tensor_copy(const TensorView& view) {
  encode_desc(view, envelope_.add_tensors());
  size_t n = view.nbytes();
  zmq::message_t frame(n);
  if (n) std::memcpy(frame.data(), view.data, n);
  frames_.push_back(std::move(frame));
}

void MessageBuilder::add_tensor_borrowed(const TensorView& view, std::shared_ptr<const void> keepalive) {
  encode_desc(view, envelope_.add_tensors());
  size_t n = view.nbytes();
  if (n == 0) {
    frames_.emplace_back();
    return;
  }
  auto* hint = new std::shared_ptr<const void>(std::move(keepalive));
  frames_.emplace_back(const_cast<void*>(view.data), n, &free_keepalive, hint);
}

Body expected_body(v1::MessageType type) {
  switch (type) {
    case v1::INSERT: return Body::kInsert;
    case v1::INSERT_ACK: return Body::kInsertAck;
    case v1::SAMPLE: return Body::kSample;
    case v1::SAMPLE_REPLY: return Body::kSampleReply;
    case v1::UPDATE_PRIORITIES: return Body::kUpdatePriorities;
    case v1::UPDATE_PRIORITIES_ACK: return Body::kUpdatePrioritiesAck;
    case v1::TABLE_INFO: return Body::kTableInfo;
    case v1::TABLE_INFO_REPLY: return Body::kTableInfoReply;
    case v1::CHECKPOINT: return Body::kCheckpoint;
    case v1::CHECKPOINT_REPLY: return Body::kCheckpointReply;
    case v1::WEIGHTS: return Body::kWeights;
    case v1::HEARTBEAT: return Body::kHeartbeat;
    case v1::CONTROL: return Body::kControl;
    case v1::CONTROL_REPLY: return Body::kControlReply;
    default: return Body::BODY_NOT_SET;
  }
}

void validate_envelope(const v1::Envelope& env) {
  if (env.protocol_version() != kProtocolVersion) {
    throw WireError(v1::VERSION_MISMATCH, "protocol version " + std::to_string(env.protocol_version()) +
                                              " is not supported (this build speaks version " +
                                              std::to_string(kProtocolVersion) + ")");
  }
  if (!v1::MessageType_IsValid(env.type()) || env.type() == v1::MESSAGE_TYPE_UNSPECIFIED) {
    throw WireError(v1::MALFORMED, "unknown message type " + std::to_string(env.type()));
  }
  Body want = expected_body(env.type());
  if (env.body_case() != want) {
    throw WireError(v1::MALFORMED, "message type " + v1::MessageType_Name(env.type()) +
                                       (want == Body::BODY_NOT_SET ? " must not carry a body"
                                                                   : " is missing its body or carries another"));
  }
}

RecvStatus recv_message(zmq::socket_t& socket, Message* out, RecvError* error, int timeout_ms, bool routed,
                        const RecvLimits& limits) {
  out->routing.clear();
  out->frames.clear();
  out->tensors.clear();
  out->envelope.Clear();
  *error = RecvError{};

  // A signal (e.g. SIGINT asking for shutdown) interrupts the wait with EINTR: report a timeout
  // so the caller's loop can look at its shutdown flag.
  zmq::message_t first;
  try {
    if (timeout_ms != 0) {
      zmq::pollitem_t item{static_cast<void*>(socket), 0, ZMQ_POLLIN, 0};
      int rc = zmq::poll(&item, 1, std::chrono::milliseconds(timeout_ms));
      if (rc == 0 || !(item.revents & ZMQ_POLLIN)) return RecvStatus::kTimeout;
    }
    auto got = socket.recv(first, timeout_ms == 0 ? zmq::recv_flags::dontwait : zmq::recv_flags::none);
    if (!got) return RecvStatus::kTimeout;
  } catch (const zmq::error_t& e) {
    if (e.num() == EINTR) return RecvStatus::kTimeout;
    throw;
  }

  auto reject = [&](v1::ErrorCode code, std::string message) {
    drain(socket);
    error->code = code;
    error->message = std::move(message);
    return RecvStatus::kInvalid;
  };

  zmq::message_t envelope_frame;
  if (routed) {
    // Identity frame(s), then an optional empty delimiter (REQ peers), then the envelope.
    out->routing.push_back(std::move(first));
    if (!more(socket)) return reject(v1::MALFORMED, "message has a routing frame but no envelope");
    zmq::message_t next;
    (void)socket.recv(next, zmq::recv_flags::none);
    if (next.size() == 0) {
      out->routing.push_back(std::move(next));
      if (!more(socket)) return reject(v1::MALFORMED, "message has no envelope after the delimiter");
      (void)socket.recv(envelope_frame, zmq::recv_flags::none);
    } else {
      envelope_frame = std::move(next);
    }
  } else {
    envelope_frame = std::move(first);
  }

  if (envelope_frame.size() > limits.max_envelope_bytes) {
    return reject(v1::TOO_LARGE, "envelope of " + std::to_string(envelope_frame.size()) +
                                     " bytes exceeds the limit of " + std::to_string(limits.max_envelope_bytes));
  }
  if (!out->envelope.ParseFromArray(envelope_frame.data(), static_cast<int>(envelope_frame.size()))) {
    return reject(v1::MALFORMED, "frame 0 is not a valid orchard.v1.Envelope (" +
                                     std::to_string(envelope_frame.size()) + " bytes)");
  }
  error->request_id = out->envelope.request_id();
  try {
    validate_envelope(out->envelope);
  } catch (const WireError& e) {
    return reject(static_cast<v1::ErrorCode>(e.code()), e.what());
  }

  const size_t described = static_cast<size_t>(out->envelope.tensors_size());
  if (described > limits.max_frames) {
    return reject(v1::TOO_LARGE, "envelope describes " + std::to_string(described) +
                                     " tensors, more than the limit of " + std::to_string(limits.max_frames));
  }
  out->frames.reserve(described);  // no reallocation after this: views stay valid
  while (more(socket)) {
    if (out->frames.size() == described) {
      return reject(v1::MALFORMED, "envelope describes " + std::to_string(described) +
                                       " tensors but more frames followed");
    }
    out->frames.emplace_back();
    (void)socket.recv(out->frames.back(), zmq::recv_flags::none);
  }
  if (out->frames.size() != described) {
    return reject(v1::MALFORMED, "envelope describes " + std::to_string(described) + " tensors but " +
                                     std::to_string(out->frames.size()) + " frames followed");
  }
  out->tensors.reserve(described);
  try {
    for (size_t k = 0; k < described; ++k) {
      out->tensors.push_back(decode_desc(out->envelope.tensors(static_cast<int>(k)), out->frames[k].data(),
                                         out->frames[k].size(), limits.codec));
    }
  } catch (const WireError& e) {
    out->tensors.clear();
    error->code = static_cast<v1::ErrorCode>(e.code());
    error->message = e.what();
    return RecvStatus::kInvalid;
  }
  return RecvStatus::kOk;
}

bool send_message(zmq::socket_t& socket, MessageBuilder& message, const std::vector<zmq::message_t>* routing) {
  v1::Envelope& env = message.envelope();
  env.set_protocol_version(kProtocolVersion);
  env.set_sent_unix_ns(unix_ns());
  zmq::message_t head(env.ByteSizeLong());
  env.SerializeWithCachedSizesToArray(static_cast<uint8_t*>(head.data()));

  auto& frames = message.frames();
  bool first = true;
  auto send_part = [&](zmq::message_t& part, bool last) {
    auto flags = last ? zmq::send_flags::none : zmq::send_flags::sndmore;
    for (;;) {
      try {
        auto sent = socket.send(part, flags);
        if (!sent && first) return false;  // would block before anything went out
        first = false;
        return true;
      } catch (const zmq::error_t& e) {
        // Interrupted by a signal: before the first part nothing was sent, so report it like a
        // timeout; later parts must follow the ones already queued, so retry.
        if (e.num() != EINTR) throw;
        if (first) return false;
      }
    }
  };
  if (routing) {
    for (const auto& r : *routing) {
      zmq::message_t copy(r.data(), r.size());
      if (!send_part(copy, false)) return false;
    }
  }
  if (!send_part(head, frames.empty())) return false;
  for (size_t i = 0; i < frames.size(); ++i) {
    send_part(frames[i], i + 1 == frames.size());
  }
  frames.clear();
  return true;
}

bool send_error(zmq::socket_t& socket, const std::vector<zmq::message_t>* routing, uint64_t request_id,
                v1::ErrorCode code, const std::string& message, const std::string& sender) {
  MessageBuilder reply(v1::ERROR, request_id);
  reply.envelope().set_sender(sender);
  reply.envelope().mutable_error()->set_code(code);
  reply.envelope().mutable_error()->set_message(message);
  return send_message(socket, reply, routing);
}

void apply_socket_options(zmq::socket_t& socket, const SocketOptions& o) {
  socket.set(zmq::sockopt::linger, o.linger_ms);
  socket.set(zmq::sockopt::sndhwm, o.send_hwm);
  socket.set(zmq::sockopt::rcvhwm, o.recv_hwm);
  socket.set(zmq::sockopt::maxmsgsize, o.max_message_bytes);
  socket.set(zmq::sockopt::sndtimeo, o.send_timeout_ms);
  socket.set(zmq::sockopt::tcp_keepalive, o.tcp_keepalive ? 1 : 0);
  socket.set(zmq::sockopt::immediate, o.immediate);
  socket.set(zmq::sockopt::reconnect_ivl, o.reconnect_interval_ms);
  socket.set(zmq::sockopt::reconnect_ivl_max, o.reconnect_interval_max_ms);
  if (!o.routing_id.empty()) socket.set(zmq::sockopt::routing_id, o.routing_id);
}

bool curve_available() { return zmq_has("curve") != 0; }

CurveKeyPair generate_curve_keypair() {
  char pub[41], sec[41];
  if (zmq_curve_keypair(pub, sec) != 0) {
    throw Error(std::string("cannot generate a CURVE key pair: ") + zmq_strerror(zmq_errno()) +
                " (is libzmq built with libsodium/CURVE?)");
  }
  return {pub, sec};
}

namespace {

void check_z85_key(const std::string& key, const std::string& what, const std::string& path) {
  uint8_t raw[32];
  if (key.size() != 40 || zmq_z85_decode(raw, key.c_str()) == nullptr) {
    throw ConfigError(path + ": " + what + " is not a 40-character Z85 CURVE key");
  }
}

}  // namespace

void save_curve_keys(const std::string& path, const CurveKeyPair& keys) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw Error(path + ": cannot write key file: " + std::strerror(errno));
  std::string text = "# Orchard CURVE key file (orchard keys). Keep the secret key private.\n";
  text += "public = " + keys.public_key + "\n";
  if (!keys.secret_key.empty()) text += "secret = " + keys.secret_key + "\n";
  ssize_t n = ::write(fd, text.data(), text.size());
  ::close(fd);
  if (n != static_cast<ssize_t>(text.size())) throw Error(path + ": short write of key file");
}

CurveKeyPair load_curve_keys(const std::string& path, bool require_secret) {
  std::ifstream in(path);
  if (!in) throw ConfigError(path + ": cannot open CURVE key file");
  CurveKeyPair keys;
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    // Z85 keys may contain '#' and '=': only whole lines starting with '#' are comments, and
    // the name ends at the first '='. Z85 has no '"', so surrounding quotes can be trimmed.
    auto trim = [](std::string s) {
      size_t b = s.find_first_not_of(" \t\r\"");
      size_t e = s.find_last_not_of(" \t\r\"");
      return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
    };
    std::string trimmed = trim(line);
    if (trimmed.empty() || trimmed[0] == '#') continue;
    auto eq = line.find('=');
    if (eq == std::string::npos) {
      throw ConfigError(path + ":" + std::to_string(line_no) + ": expected 'public = KEY' or 'secret = KEY'");
    }
    std::string name = trim(line.substr(0, eq));
    std::string value = trim(line.substr(eq + 1));
    if (name == "public") {
      keys.public_key = value;
    } else if (name == "secret") {
      keys.secret_key = value;
    } else {
      throw ConfigError(path + ":" + std::to_string(line_no) + ": unknown field '" + name +
                        "' (allowed: public, secret)");
    }
  }
  if (keys.public_key.empty()) throw ConfigError(path + ": no 'public' key");
  check_z85_key(keys.public_key, "public key", path);
  if (require_secret && keys.secret_key.empty()) throw ConfigError(path + ": no 'secret' key");
  if (!keys.secret_key.empty()) check_z85_key(keys.secret_key, "secret key", path);
  return keys;
}

void make_curve_server(zmq::socket_t& socket, const CurveKeyPair& server) {
  socket.set(zmq::sockopt::curve_server, 1);
  socket.set(zmq::sockopt::curve_secretkey, server.secret_key);
  socket.set(zmq::sockopt::curve_publickey, server.public_key);
}

void make_curve_client(zmq::socket_t& socket, const CurveKeyPair& client, const std::string& server_public) {
  socket.set(zmq::sockopt::curve_serverkey, server_public);
  socket.set(zmq::sockopt::curve_publickey, client.public_key);
  socket.set(zmq::sockopt::curve_secretkey, client.secret_key);
}

std::string zmq_version_string() {
  int major, minor, patch;
  zmq_version(&major, &minor, &patch);
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
}

}  // namespace orchard::core
