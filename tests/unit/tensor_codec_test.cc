#include <gtest/gtest.h>

#include <cstring>
#include <numeric>
#include <vector>

#include "orchard/core/error.h"
#include "orchard/core/tensor.h"
#include "orchard/proto/orchard.pb.h"

using namespace orchard::core;
using orchard::WireError;
namespace v1 = orchard::v1;

namespace {

template <class Fn>
WireError wire_error_of(Fn fn) {
  try {
    fn();
  } catch (const WireError& e) {
    return e;
  }
  ADD_FAILURE() << "expected a WireError";
  return WireError(0, "");
}

}  // namespace

TEST(TensorCodec, RoundTripsEveryDType) {
  const DType all[] = {DType::kFloat32, DType::kFloat64, DType::kFloat16, DType::kBFloat16, DType::kInt8,
                       DType::kInt16,   DType::kInt32,   DType::kInt64,   DType::kUInt8,    DType::kBool};
  for (DType dt : all) {
    Shape shape{3, 5, 2};
    std::vector<uint8_t> bytes(static_cast<size_t>(shape.num_elements()) * dtype_size(dt));
    std::iota(bytes.begin(), bytes.end(), 1);
    TensorView in{"col", dt, shape, bytes.data()};
    v1::TensorDesc desc;
    encode_desc(in, &desc);
    EXPECT_EQ(desc.byte_length(), bytes.size());
    TensorView out = decode_desc(desc, bytes.data(), bytes.size());
    EXPECT_EQ(out.name, "col");
    EXPECT_EQ(out.dtype, dt);
    EXPECT_EQ(out.shape, shape) << dtype_name(dt);
    EXPECT_EQ(out.data, bytes.data());  // zero-copy view
    std::vector<uint8_t> copy(bytes.size());
    copy_tensor(out, copy.data(), copy.size());
    EXPECT_EQ(copy, bytes);
  }
}

TEST(TensorCodec, ScalarsAndEmptyTensorsRoundTrip) {
  double x = 3.5;
  v1::TensorDesc desc;
  encode_desc(TensorView{"x", DType::kFloat64, Shape{}, &x}, &desc);
  auto v = decode_desc(desc, &x, sizeof(x));
  EXPECT_EQ(v.shape.rank(), 0u);
  EXPECT_EQ(*v.as<double>(), 3.5);
  encode_desc(TensorView{"e", DType::kFloat32, Shape{0, 4}, nullptr}, &desc);
  auto e = decode_desc(desc, nullptr, 0);
  EXPECT_EQ(e.nbytes(), 0u);
}

TEST(TensorCodec, RejectsByteLengthThatDoesNotMatchShape) {
  v1::TensorDesc desc;
  desc.set_name("obs");
  desc.set_dtype(v1::FLOAT32);
  desc.add_shape(4);
  desc.set_byte_length(15);
  std::vector<char> frame(15);
  auto e = wire_error_of([&] { decode_desc(desc, frame.data(), frame.size()); });
  EXPECT_EQ(e.code(), v1::MALFORMED);
  EXPECT_STREQ(e.what(), "tensor 'obs': byte_length 15 does not match float32[4] = 16 bytes");
}

TEST(TensorCodec, RejectsTruncatedFrame) {
  v1::TensorDesc desc;
  desc.set_name("obs");
  desc.set_dtype(v1::FLOAT64);
  desc.add_shape(2);
  desc.set_byte_length(16);
  std::vector<char> frame(12);
  auto e = wire_error_of([&] { decode_desc(desc, frame.data(), frame.size()); });
  EXPECT_STREQ(e.what(), "tensor 'obs': frame holds 12 bytes, descriptor says 16");
}

TEST(TensorCodec, RejectsUnknownDTypeNegativeDimsAndHugeRank) {
  v1::TensorDesc desc;
  desc.set_name("a");
  desc.set_dtype(static_cast<v1::DType>(42));
  EXPECT_NE(std::string(wire_error_of([&] { decode_desc(desc, nullptr, 0); }).what()).find("unknown dtype 42"),
            std::string::npos);
  desc.set_dtype(v1::INT32);
  desc.add_shape(-3);
  EXPECT_NE(std::string(wire_error_of([&] { decode_desc(desc, nullptr, 0); }).what()).find("negative dimension -3"),
            std::string::npos);
  desc.clear_shape();
  for (int i = 0; i < 9; ++i) desc.add_shape(1);
  EXPECT_NE(std::string(wire_error_of([&] { decode_desc(desc, nullptr, 0); }).what()).find("rank 9 exceeds"),
            std::string::npos);
}

TEST(TensorCodec, RejectsShapesThatOverflowOrExceedTheLimit) {
  v1::TensorDesc desc;
  desc.set_name("big");
  desc.set_dtype(v1::FLOAT64);
  desc.add_shape(int64_t(1) << 40);
  desc.add_shape(int64_t(1) << 40);
  auto e = wire_error_of([&] { decode_desc(desc, nullptr, 0); });
  EXPECT_EQ(e.code(), v1::MALFORMED);
  EXPECT_NE(std::string(e.what()).find("overflows"), std::string::npos);
  desc.clear_shape();
  desc.add_shape(1 << 20);
  desc.set_byte_length(8u << 20);
  CodecLimits limits;
  limits.max_tensor_bytes = 1 << 20;
  e = wire_error_of([&] { decode_desc(desc, nullptr, 8u << 20, limits); });
  EXPECT_EQ(e.code(), v1::TOO_LARGE);
}

TEST(TensorCodec, CheckTensorEnforcesTheSignature) {
  std::vector<float> obs(32 * 4);
  TensorView v{"obs", DType::kFloat32, Shape{32, 4}, obs.data()};
  check_tensor(v, TensorSpec{"obs", DType::kFloat32, {4}}, 32);
  check_tensor(v, TensorSpec{"obs", DType::kFloat32, {-1}}, 32);  // wildcard
  check_tensor(v, TensorSpec{"obs", DType::kFloat32, {32, 4}});   // no leading dimension
  auto e = wire_error_of([&] { check_tensor(v, TensorSpec{"obs", DType::kFloat64, {4}}, 32); });
  EXPECT_EQ(e.code(), v1::SIGNATURE_MISMATCH);
  EXPECT_STREQ(e.what(), "tensor 'obs': dtype float32 does not match the signature's float64");
  e = wire_error_of([&] { check_tensor(v, TensorSpec{"obs", DType::kFloat32, {3}}, 32); });
  EXPECT_STREQ(e.what(), "tensor 'obs': shape [32, 4] does not match the signature obs float32[3]");
  e = wire_error_of([&] { check_tensor(v, TensorSpec{"obs", DType::kFloat32, {4}}, 16); });
  EXPECT_NE(std::string(e.what()).find("leading dimension 32 does not match the item count 16"), std::string::npos);
  e = wire_error_of([&] { check_tensor(v, TensorSpec{"obs", DType::kFloat32, {4, 1}}, 32); });
  EXPECT_NE(std::string(e.what()).find("does not match the signature [32] + obs float32[4, 1]"), std::string::npos);
}

TEST(TensorCodec, ParsesDTypeNamesAndAliases) {
  DType d;
  ASSERT_TRUE(parse_dtype("float32", &d));
  EXPECT_EQ(d, DType::kFloat32);
  ASSERT_TRUE(parse_dtype("i64", &d));
  EXPECT_EQ(d, DType::kInt64);
  EXPECT_FALSE(parse_dtype("complex64", &d));
  for (int raw = 1; raw <= 10; ++raw) {
    ASSERT_TRUE(parse_dtype(dtype_name(static_cast<DType>(raw)), &d));
    EXPECT_EQ(static_cast<int>(d), raw);
    EXPECT_EQ(static_cast<int>(d), static_cast<int>(static_cast<v1::DType>(raw)));
  }
  EXPECT_EQ(v1::DType_Name(v1::BFLOAT16), "BFLOAT16");
  EXPECT_EQ(dtype_size(DType::kBFloat16), 2u);
}

TEST(TensorCodec, ShapeRejectsNegativeAndOverRank) {
  EXPECT_THROW((Shape{1, -1}), std::invalid_argument);
  std::vector<int64_t> nine(9, 1);
  EXPECT_THROW(Shape::from(nine), std::invalid_argument);
  EXPECT_EQ((Shape{2, 3}).to_string(), "[2, 3]");
}
