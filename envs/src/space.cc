#include "orchard/envs/space.h"

#include <cmath>
#include <cstring>
#include <sstream>
#include <stdexcept>

namespace orchard::envs {
namespace {

std::string num(double v) {
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  std::ostringstream os;
  os << v;
  return os.str();
}

std::string list(const std::vector<double>& v, size_t max_items = 6) {
  std::string s = "[";
  for (size_t i = 0; i < v.size() && i < max_items; ++i) s += (i ? ", " : "") + num(v[i]);
  if (v.size() > max_items) s += ", ...";
  return s + "]";
}

template <class T>
double element(const void* data, size_t i) {
  T v;
  std::memcpy(&v, static_cast<const char*>(data) + i * sizeof(T), sizeof(T));
  return static_cast<double>(v);
}

double read_element(core::DType dtype, const void* data, size_t i) {
  switch (dtype) {
    case core::DType::kFloat32: return element<float>(data, i);
    case core::DType::kFloat64: return element<double>(data, i);
    case core::DType::kInt8: return element<int8_t>(data, i);
    case core::DType::kInt16: return element<int16_t>(data, i);
    case core::DType::kInt32: return element<int32_t>(data, i);
    case core::DType::kInt64: return element<int64_t>(data, i);
    case core::DType::kUInt8: return element<uint8_t>(data, i);
    case core::DType::kBool: return element<uint8_t>(data, i);
    default: return std::nan("");
  }
}

}  // namespace

Space Space::box(std::vector<int64_t> shape, std::vector<double> low, std::vector<double> high, core::DType dtype) {
  Space s;
  s.kind = SpaceKind::kBox;
  s.dtype = dtype;
  s.shape = std::move(shape);
  if (low.size() != static_cast<size_t>(s.numel()) || high.size() != low.size()) {
    throw std::invalid_argument("Space::box: bounds must have one entry per element");
  }
  s.low = std::move(low);
  s.high = std::move(high);
  return s;
}

Space Space::box(std::vector<int64_t> shape, double low, double high, core::DType dtype) {
  Space s;
  s.kind = SpaceKind::kBox;
  s.dtype = dtype;
  s.shape = std::move(shape);
  s.low.assign(static_cast<size_t>(s.numel()), low);
  s.high.assign(static_cast<size_t>(s.numel()), high);
  return s;
}

Space Space::discrete(int64_t n) {
  Space s;
  s.kind = SpaceKind::kDiscrete;
  s.dtype = core::DType::kInt64;
  s.n = n;
  return s;
}

Space Space::multi_discrete(std::vector<int64_t> nvec) {
  Space s;
  s.kind = SpaceKind::kMultiDiscrete;
  s.dtype = core::DType::kInt64;
  s.shape = {static_cast<int64_t>(nvec.size())};
  s.nvec = std::move(nvec);
  return s;
}

int64_t Space::numel() const {
  if (kind == SpaceKind::kDiscrete) return 1;
  int64_t n_el = 1;
  for (auto d : shape) n_el *= d;
  return n_el;
}

size_t Space::nbytes() const { return static_cast<size_t>(numel()) * core::dtype_size(dtype); }

std::string Space::to_string() const {
  switch (kind) {
    case SpaceKind::kDiscrete: return "Discrete(" + std::to_string(n) + ")";
    case SpaceKind::kMultiDiscrete: {
      std::string s = "MultiDiscrete([";
      for (size_t i = 0; i < nvec.size(); ++i) s += (i ? ", " : "") + std::to_string(nvec[i]);
      return s + "])";
    }
    case SpaceKind::kBox: {
      std::string s = std::string("Box(") + core::dtype_name(dtype) + ", [";
      for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
      s += "]";
      bool uniform = true;
      for (size_t i = 1; i < low.size(); ++i) uniform &= low[i] == low[0] && high[i] == high[0];
      if (!low.empty() && uniform) {
        s += ", low=" + num(low[0]) + ", high=" + num(high[0]);
      } else {
        s += ", low=" + list(low) + ", high=" + list(high);
      }
      return s + ")";
    }
  }
  return "?";
}

std::string Space::violation(const void* sample) const {
  if (kind == SpaceKind::kDiscrete) {
    int64_t a;
    std::memcpy(&a, sample, sizeof(a));
    if (a < 0 || a >= n) {
      return "action " + std::to_string(a) + " is outside Discrete(" + std::to_string(n) + ") (allowed 0.." +
             std::to_string(n - 1) + ")";
    }
    return "";
  }
  if (kind == SpaceKind::kMultiDiscrete) {
    for (size_t i = 0; i < nvec.size(); ++i) {
      int64_t a;
      std::memcpy(&a, static_cast<const char*>(sample) + i * 8, sizeof(a));
      if (a < 0 || a >= nvec[i]) {
        return "element " + std::to_string(i) + " = " + std::to_string(a) + " is outside [0, " +
               std::to_string(nvec[i]) + ")";
      }
    }
    return "";
  }
  const size_t count = static_cast<size_t>(numel());
  for (size_t i = 0; i < count; ++i) {
    double v = read_element(dtype, sample, i);
    if (std::isnan(v)) return "element " + std::to_string(i) + " is NaN";
    double tol = 1e-6 * std::max(1.0, std::fabs(v));
    if (v < low[i] - tol || v > high[i] + tol) {
      return "element " + std::to_string(i) + " = " + num(v) + " is outside [" + num(low[i]) + ", " + num(high[i]) +
             "]";
    }
  }
  return "";
}

}  // namespace orchard::envs
