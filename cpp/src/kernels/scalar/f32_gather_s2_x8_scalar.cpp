// Scalar twin of f32_gather_s2_x8_avx2: dst[t] = src[2 t] for t < n (im2col of stride-2 convolutions).
#include "../kernels.h"

namespace gazecrop {
namespace kernels {

void f32_gather_s2_x8_scalar(std::size_t n, const float* src, float* dst) {
  for (std::size_t t = 0; t < n; ++t) dst[t] = src[2 * t];
}

}  // namespace kernels
}  // namespace gazecrop
