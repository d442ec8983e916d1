#include "orchard/actors/weights.h"

#include <torch/torch.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>

#include "orchard/core/error.h"

namespace orchard::actors {

namespace v1 = orchard::v1;

WeightsSubscriber::WeightsSubscriber(const std::string& endpoint, std::string expected_model,
                                     const core::CurveKeyPair& client, const std::string& server_public_key)
    : expected_model_(std::move(expected_model)), ctx_(std::make_unique<zmq::context_t>(1)) {
  socket_ = std::make_unique<zmq::socket_t>(*ctx_, zmq::socket_type::sub);
  core::SocketOptions so;
  so.recv_hwm = 4;  // latest wins: a slow actor skips old weights
  core::apply_socket_options(*socket_, so);
  if (!server_public_key.empty()) core::make_curve_client(*socket_, client, server_public_key);
  socket_->set(zmq::sockopt::subscribe, "");
  socket_->connect(endpoint);
}

WeightsSubscriber::~WeightsSubscriber() = default;

bool WeightsSubscriber::poll(const Loader& load) {
  bool got = false;
  // recv_message clears its output on every call: receive into a scratch message and keep the
  // newest complete one.
  while (core::recv_message(*socket_, &incoming_, &err_, 0) == core::RecvStatus::kOk) {
    newest_ = std::move(incoming_);
    got = true;
  }
  if (!got) return false;
  try {
    DecodedWeights w = decode_weights(newest_, expected_model_);
    learner_finished_ = learner_finished_ || w.final;
    if (version_ != 0 && w.version <= version_) return false;  // stale
    load(w.tensors);  // checks every name and shape before copying
    version_ = w.version;
    return true;
  } catch (const std::exception& e) {
    ++refused_;  // another model or shape: keep acting with the current weights
    last_refusal_ = e.what();
    return false;
  }
}

bool WeightsSubscriber::wait_first(const Loader& load, int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (version_ == 0 && std::chrono::steady_clock::now() < deadline) {
    zmq::pollitem_t item{socket_->handle(), 0, ZMQ_POLLIN, 0};
    try {
      zmq::poll(&item, 1, std::chrono::milliseconds(50));
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;
      break;  // a signal: let the caller look at it
    }
    poll(load);
  }
  return version_ > 0;
}

core::DType to_wire_dtype(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat32: return core::DType::kFloat32;
    case torch::kFloat64: return core::DType::kFloat64;
    case torch::kFloat16: return core::DType::kFloat16;
    case torch::kBFloat16: return core::DType::kBFloat16;
    case torch::kInt8: return core::DType::kInt8;
    case torch::kInt16: return core::DType::kInt16;
    case torch::kInt32: return core::DType::kInt32;
    case torch::kInt64: return core::DType::kInt64;
    case torch::kUInt8: return core::DType::kUInt8;
    case torch::kBool: return core::DType::kBool;
    default: throw WireError(v1::INVALID_ARGUMENT, std::string("tensor dtype ") + c10::toString(t) + " has no wire dtype");
  }
}

torch::ScalarType to_torch_dtype(core::DType t) {
  switch (t) {
    case core::DType::kFloat32: return torch::kFloat32;
    case core::DType::kFloat64: return torch::kFloat64;
    case core::DType::kFloat16: return torch::kFloat16;
    case core::DType::kBFloat16: return torch::kBFloat16;
    case core::DType::kInt8: return torch::kInt8;
    case core::DType::kInt16: return torch::kInt16;
    case core::DType::kInt32: return torch::kInt32;
    case core::DType::kInt64: return torch::kInt64;
    case core::DType::kUInt8: return torch::kUInt8;
    case core::DType::kBool: return torch::kBool;
  }
  throw WireError(v1::MALFORMED, "invalid wire dtype");
}

core::MessageBuilder encode_weights(const NamedTensors& named, uint64_t version, uint64_t learner_updates,
                                    const std::string& model, bool final) {
  core::MessageBuilder m(v1::WEIGHTS);
  auto* w = m.envelope().mutable_weights();
  w->set_version(version);
  w->set_learner_updates(learner_updates);
  w->set_model(model);
  w->set_final(final);
  for (const auto& [name, tensor] : named) {
    // The message keeps the contiguous CPU copy alive until ZeroMQ has sent it.
    auto held = std::make_shared<torch::Tensor>(tensor.detach().to(torch::kCPU).contiguous().clone());
    std::vector<int64_t> dims(held->sizes().begin(), held->sizes().end());
    core::TensorView view{name, to_wire_dtype(held->scalar_type()), core::Shape::from(dims), held->data_ptr()};
    m.add_tensor_borrowed(view, std::shared_ptr<const void>(held, held->data_ptr()));
  }
  return m;
}

DecodedWeights decode_weights(const core::Message& message, const std::string& expected_model) {
  if (message.envelope.type() != v1::WEIGHTS) {
    throw WireError(v1::INVALID_ARGUMENT,
                    "expected a WEIGHTS message, got " + v1::MessageType_Name(message.envelope.type()));
  }
  const auto& w = message.envelope.weights();
  if (!expected_model.empty() && w.model() != expected_model) {
    throw WireError(v1::SIGNATURE_MISMATCH, "weights version " + std::to_string(w.version()) + " are for model '" +
                                                w.model() + "', this process runs '" + expected_model + "'");
  }
  DecodedWeights out;
  out.version = w.version();
  out.learner_updates = w.learner_updates();
  out.model = w.model();
  out.final = w.final();
  for (const auto& view : message.tensors) {
    std::vector<int64_t> dims(view.shape.data(), view.shape.data() + view.shape.rank());
    torch::Tensor t = torch::empty(dims, torch::TensorOptions().dtype(to_torch_dtype(view.dtype)));
    core::copy_tensor(view, t.data_ptr(), view.nbytes());  // frames may be unaligned: copy
    out.tensors.emplace_back(std::string(view.name), std::move(t));
  }
  return out;
}

}  // namespace orchard::actors
