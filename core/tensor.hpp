// Host tensor: fp32 values in row-major order with an int64 shape, plus the dtype the values
// came from (a bf16 checkpoint is held exactly in fp32). The reference maps these into Eigen.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.hpp"

namespace jb {

struct Tensor {
  std::vector<int64_t> shape;
  std::vector<float> data;
  Dtype source_dtype = Dtype::F32;

  Tensor() = default;
  explicit Tensor(std::vector<int64_t> shape_, float fill = 0.0f);

  int64_t numel() const { return static_cast<int64_t>(data.size()); }
  int64_t dim(int i) const { return shape.at(static_cast<size_t>(i < 0 ? i + rank() : i)); }
  int rank() const { return static_cast<int>(shape.size()); }
  float* ptr() { return data.data(); }
  const float* ptr() const { return data.data(); }
};

// Product of a shape with overflow checking (throws Error{Shape} on overflow or negative dims).
int64_t shape_numel(const std::vector<int64_t>& shape);
std::string shape_str(const std::vector<int64_t>& shape);

}  // namespace jb
