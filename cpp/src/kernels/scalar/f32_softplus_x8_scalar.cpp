// Scalar twin of f32_softplus_x8_avx2: x <- max(x, 0) + log1p(exp(-|x|)) in place.
#include <algorithm>
#include <cmath>

#include "../kernels.h"

namespace gazecrop {
namespace kernels {

void f32_softplus_x8_scalar(std::size_t n, float* x) {
  for (std::size_t i = 0; i < n; ++i) x[i] = std::max(x[i], 0.0f) + std::log1p(std::exp(-std::fabs(x[i])));
}

}  // namespace kernels
}  // namespace gazecrop
