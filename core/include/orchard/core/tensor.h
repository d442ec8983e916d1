// Tensor codec: contiguous row-major buffers <-> (TensorDesc, raw frame) pairs on the wire.
//
// A tensor travels as a descriptor (name, dtype, shape, byte length) inside the protobuf
// envelope and its bytes, little-endian, as one separate ZeroMQ frame. Decoding validates the
// descriptor against the frame and returns a view into the frame: no copy, no allocation.
// Nothing here knows ZeroMQ; wire.h pairs these with frames.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace orchard::v1 {
class TensorDesc;
}

namespace orchard::core {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "Orchard's wire format is little-endian; big-endian hosts are not supported");

// Values equal orchard.v1.DType.
enum class DType : uint8_t {
  kFloat32 = 1,
  kFloat64 = 2,
  kFloat16 = 3,
  kBFloat16 = 4,
  kInt8 = 5,
  kInt16 = 6,
  kInt32 = 7,
  kInt64 = 8,
  kUInt8 = 9,
  kBool = 10,
};

// Bytes per element; 0 for an invalid value.
inline size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::kFloat64: case DType::kInt64: return 8;
    case DType::kFloat32: case DType::kInt32: return 4;
    case DType::kFloat16: case DType::kBFloat16: case DType::kInt16: return 2;
    case DType::kInt8: case DType::kUInt8: case DType::kBool: return 1;
  }
  return 0;
}
// "float32", ...; "invalid" for an invalid value.
inline const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return "float32";
    case DType::kFloat64: return "float64";
    case DType::kFloat16: return "float16";
    case DType::kBFloat16: return "bfloat16";
    case DType::kInt8: return "int8";
    case DType::kInt16: return "int16";
    case DType::kInt32: return "int32";
    case DType::kInt64: return "int64";
    case DType::kUInt8: return "uint8";
    case DType::kBool: return "bool";
  }
  return "invalid";
}
// Parses "float32" (also "f32", "float", "double", "int64", "i64", "bool", ...). Returns false if
// unknown.
inline bool parse_dtype(std::string_view name, DType* out) {
  struct Alias {
    const char* name;
    DType dtype;
  };
  static constexpr Alias kNames[] = {
      {"float32", DType::kFloat32}, {"f32", DType::kFloat32},   {"float", DType::kFloat32},
      {"float64", DType::kFloat64}, {"f64", DType::kFloat64},   {"double", DType::kFloat64},
      {"float16", DType::kFloat16}, {"f16", DType::kFloat16},   {"half", DType::kFloat16},
      {"bfloat16", DType::kBFloat16}, {"bf16", DType::kBFloat16}, {"int8", DType::kInt8},
      {"i8", DType::kInt8},         {"int16", DType::kInt16},   {"i16", DType::kInt16},
      {"int32", DType::kInt32},     {"i32", DType::kInt32},     {"int", DType::kInt32},
      {"int64", DType::kInt64},     {"i64", DType::kInt64},     {"long", DType::kInt64},
      {"uint8", DType::kUInt8},     {"u8", DType::kUInt8},      {"byte", DType::kUInt8},
      {"bool", DType::kBool}};
  for (const auto& a : kNames) {
    if (name == a.name) {
      *out = a.dtype;
      return true;
    }
  }
  return false;
}
// True when `raw` is one of the DType values above.
bool dtype_valid(int raw);

template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::kFloat32; }
template <> constexpr DType dtype_of<double>() { return DType::kFloat64; }
template <> constexpr DType dtype_of<int8_t>() { return DType::kInt8; }
template <> constexpr DType dtype_of<int16_t>() { return DType::kInt16; }
template <> constexpr DType dtype_of<int32_t>() { return DType::kInt32; }
template <> constexpr DType dtype_of<int64_t>() { return DType::kInt64; }
template <> constexpr DType dtype_of<uint8_t>() { return DType::kUInt8; }
template <> constexpr DType dtype_of<bool>() { return DType::kBool; }

constexpr int kMaxRank = 8;

// A tensor shape held inline (no allocation). Dimensions are >= 0.
class Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims);
  // Throws std::invalid_argument for rank > kMaxRank or negative dims.
  static Shape from(const int64_t* dims, size_t rank);
  static Shape from(const std::vector<int64_t>& dims) { return from(dims.data(), dims.size()); }

  size_t rank() const { return rank_; }
  int64_t operator[](size_t i) const { return dims_[i]; }
  int64_t& operator[](size_t i) { return dims_[i]; }
  const int64_t* data() const { return dims_.data(); }
  // Product of the dimensions (1 for a scalar). Caller guarantees no overflow (validated shapes).
  int64_t num_elements() const;
  std::vector<int64_t> to_vector() const { return {dims_.begin(), dims_.begin() + rank_}; }
  std::string to_string() const;  // "[256, 4]"
  bool operator==(const Shape& o) const;
  bool operator!=(const Shape& o) const { return !(*this == o); }

 private:
  std::array<int64_t, kMaxRank> dims_{};
  uint8_t rank_ = 0;
};

// A non-owning view of a contiguous row-major tensor. `name` and `data` must outlive the view.
struct TensorView {
  std::string_view name;
  DType dtype = DType::kFloat32;
  Shape shape;
  const void* data = nullptr;

  size_t nbytes() const { return static_cast<size_t>(shape.num_elements()) * dtype_size(dtype); }
  template <class T> const T* as() const { return static_cast<const T*>(data); }
};

// What a column or parameter must look like. -1 in `shape` matches any size.
struct TensorSpec {
  std::string name;
  DType dtype = DType::kFloat32;
  std::vector<int64_t> shape;

  std::string to_string() const;  // "obs float32[-1, 4]"
};

// Limits applied while decoding peer input.
struct CodecLimits {
  uint64_t max_tensor_bytes = 1ull << 30;  // any one tensor
  size_t max_name_length = 256;
};

// Fills `desc` from `view` (name, dtype, shape, byte length).
void encode_desc(const TensorView& view, v1::TensorDesc* desc);

// Validates `desc` against the frame that carried it and returns a view into `data`.
// Throws orchard::WireError (MALFORMED or TOO_LARGE) naming the tensor and the mismatch:
// unknown dtype, rank over kMaxRank, negative or overflowing dims, byte_length that does not
// equal product(shape) * sizeof(dtype), or a frame of another size.
TensorView decode_desc(const v1::TensorDesc& desc, const void* data, size_t frame_size,
                       const CodecLimits& limits = {});

// Checks a decoded view against a spec with an optional leading dimension (the item count:
// spec.shape describes one item and the view must be [leading, *spec.shape]; leading < 0
// means "no leading dimension"). Throws WireError(SIGNATURE_MISMATCH) naming the tensor and
// what differs.
void check_tensor(const TensorView& view, const TensorSpec& spec, int64_t leading = -1);

// Copies a view's bytes into `dst` (dst_bytes must equal view.nbytes()).
void copy_tensor(const TensorView& view, void* dst, size_t dst_bytes);

}  // namespace orchard::core
