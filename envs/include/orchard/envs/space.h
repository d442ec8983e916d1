// Observation and action spaces (Gymnasium's Box, Discrete, MultiDiscrete).
//
// Buffers: a Box is `dtype` elements of `shape`; a Discrete action is one int64; a
// MultiDiscrete action is `nvec.size()` int64s. Observations are always Boxes (float32, or
// uint8 for grids and images).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "orchard/core/tensor.h"

namespace orchard::envs {

enum class SpaceKind { kBox, kDiscrete, kMultiDiscrete };

struct Space {
  SpaceKind kind = SpaceKind::kBox;
  core::DType dtype = core::DType::kFloat32;  // kInt64 for (Multi)Discrete
  std::vector<int64_t> shape;                 // Box shape; {} for Discrete; {n} for MultiDiscrete
  std::vector<double> low, high;              // Box bounds, one per element (may be +-inf)
  int64_t n = 0;                              // Discrete: actions are 0..n-1
  std::vector<int64_t> nvec;                  // MultiDiscrete: element i in 0..nvec[i]-1

  static Space box(std::vector<int64_t> shape, std::vector<double> low, std::vector<double> high,
                   core::DType dtype = core::DType::kFloat32);
  // Same bounds for every element.
  static Space box(std::vector<int64_t> shape, double low, double high,
                   core::DType dtype = core::DType::kFloat32);
  static Space discrete(int64_t n);
  static Space multi_discrete(std::vector<int64_t> nvec);

  int64_t numel() const;  // elements in one sample (1 for Discrete)
  size_t nbytes() const;  // bytes in one sample's buffer
  // "Box(float32, [4], low=[-4.8, -inf, ...], high=[...])", "Discrete(2)", "MultiDiscrete([3, 3])"
  std::string to_string() const;
  // Empty when `sample` (nbytes() bytes) lies in the space, else why not ("element 2 = 7 is
  // outside [0, 3)", "element 0 is NaN"). Box bounds are checked with a small tolerance.
  std::string violation(const void* sample) const;
};

}  // namespace orchard::envs
