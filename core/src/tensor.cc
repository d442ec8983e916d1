#include "orchard/core/tensor.h"

#include <cstring>
#include <stdexcept>

#include "orchard/core/error.h"
#include "orchard/proto/orchard.pb.h"

namespace orchard::core {
namespace {

[[noreturn]] void malformed(std::string_view name, const std::string& what) {
  throw WireError(v1::MALFORMED, "tensor '" + std::string(name) + "': " + what);
}

}  // namespace

bool dtype_valid(int raw) { return raw >= 1 && raw <= 10; }

Shape::Shape(std::initializer_list<int64_t> dims) {
  if (dims.size() > static_cast<size_t>(kMaxRank)) throw std::invalid_argument("shape rank exceeds kMaxRank");
  for (int64_t d : dims) {
    if (d < 0) throw std::invalid_argument("negative dimension in shape");
    dims_[rank_++] = d;
  }
}

Shape Shape::from(const int64_t* dims, size_t rank) {
  if (rank > static_cast<size_t>(kMaxRank)) throw std::invalid_argument("shape rank exceeds kMaxRank");
  Shape s;
  for (size_t i = 0; i < rank; ++i) {
    if (dims[i] < 0) throw std::invalid_argument("negative dimension in shape");
    s.dims_[i] = dims[i];
  }
  s.rank_ = static_cast<uint8_t>(rank);
  return s;
}

int64_t Shape::num_elements() const {
  int64_t n = 1;
  for (size_t i = 0; i < rank_; ++i) n *= dims_[i];
  return n;
}

std::string Shape::to_string() const {
  std::string s = "[";
  for (size_t i = 0; i < rank_; ++i) {
    if (i) s += ", ";
    s += std::to_string(dims_[i]);
  }
  return s + "]";
}

bool Shape::operator==(const Shape& o) const {
  if (rank_ != o.rank_) return false;
  for (size_t i = 0; i < rank_; ++i)
    if (dims_[i] != o.dims_[i]) return false;
  return true;
}

std::string TensorSpec::to_string() const {
  std::string s = name + " " + dtype_name(dtype) + "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

void encode_desc(const TensorView& view, v1::TensorDesc* desc) {
  desc->set_name(view.name.data(), view.name.size());
  desc->set_dtype(static_cast<v1::DType>(view.dtype));
  desc->clear_shape();
  for (size_t i = 0; i < view.shape.rank(); ++i) desc->add_shape(view.shape[i]);
  desc->set_byte_length(view.nbytes());
}

TensorView decode_desc(const v1::TensorDesc& desc, const void* data, size_t frame_size,
                       const CodecLimits& limits) {
  std::string_view name = desc.name();
  if (name.size() > limits.max_name_length) {
    throw WireError(v1::MALFORMED, "tensor name of " + std::to_string(name.size()) +
                                       " bytes exceeds the limit of " + std::to_string(limits.max_name_length));
  }
  if (!dtype_valid(desc.dtype())) malformed(name, "unknown dtype " + std::to_string(desc.dtype()));
  if (desc.shape_size() > kMaxRank) {
    malformed(name, "rank " + std::to_string(desc.shape_size()) + " exceeds the maximum " + std::to_string(kMaxRank));
  }
  TensorView view;
  view.name = name;
  view.dtype = static_cast<DType>(desc.dtype());
  uint64_t elements = 1;
  for (int i = 0; i < desc.shape_size(); ++i) {
    int64_t d = desc.shape(i);
    if (d < 0) malformed(name, "negative dimension " + std::to_string(d) + " at axis " + std::to_string(i));
    if (__builtin_mul_overflow(elements, static_cast<uint64_t>(d), &elements)) {
      malformed(name, "shape overflows 64 bits");
    }
  }
  uint64_t expected = 0;
  if (__builtin_mul_overflow(elements, static_cast<uint64_t>(dtype_size(view.dtype)), &expected)) {
    malformed(name, "byte size overflows 64 bits");
  }
  // Rank and dimensions are known sane now.
  view.shape = Shape::from(desc.shape().data(), static_cast<size_t>(desc.shape_size()));
  if (expected > limits.max_tensor_bytes) {
    throw WireError(v1::TOO_LARGE, "tensor '" + std::string(name) + "': " + std::to_string(expected) +
                                       " bytes exceeds the limit of " + std::to_string(limits.max_tensor_bytes));
  }
  if (desc.byte_length() != expected) {
    malformed(name, "byte_length " + std::to_string(desc.byte_length()) + " does not match " +
                        dtype_name(view.dtype) + view.shape.to_string() + " = " + std::to_string(expected) + " bytes");
  }
  if (frame_size != expected) {
    malformed(name, "frame holds " + std::to_string(frame_size) + " bytes, descriptor says " +
                        std::to_string(expected));
  }
  view.data = data;
  return view;
}

void check_tensor(const TensorView& view, const TensorSpec& spec, int64_t leading) {
  auto mismatch = [&](const std::string& what) {
    throw WireError(v1::SIGNATURE_MISMATCH, "tensor '" + spec.name + "': " + what);
  };
  if (view.name != spec.name) mismatch("got a tensor named '" + std::string(view.name) + "' instead");
  if (view.dtype != spec.dtype) {
    mismatch(std::string("dtype ") + dtype_name(view.dtype) + " does not match the signature's " +
             dtype_name(spec.dtype));
  }
  size_t offset = leading >= 0 ? 1 : 0;
  std::string expected = spec.to_string();
  if (view.shape.rank() != spec.shape.size() + offset) {
    mismatch("shape " + view.shape.to_string() + " does not match the signature " +
             (leading >= 0 ? "[" + std::to_string(leading) + "] + " : std::string()) + expected);
  }
  if (leading >= 0 && view.shape[0] != leading) {
    mismatch("leading dimension " + std::to_string(view.shape[0]) + " does not match the item count " +
             std::to_string(leading));
  }
  for (size_t i = 0; i < spec.shape.size(); ++i) {
    if (spec.shape[i] >= 0 && view.shape[i + offset] != spec.shape[i]) {
      mismatch("shape " + view.shape.to_string() + " does not match the signature " + expected);
    }
  }
}

void copy_tensor(const TensorView& view, void* dst, size_t dst_bytes) {
  size_t n = view.nbytes();
  if (n != dst_bytes) {
    throw std::invalid_argument("copy_tensor: tensor '" + std::string(view.name) + "' has " + std::to_string(n) +
                                " bytes, destination has " + std::to_string(dst_bytes));
  }
  if (n) std::memcpy(dst, view.data, n);
}

}  // namespace orchard::core
