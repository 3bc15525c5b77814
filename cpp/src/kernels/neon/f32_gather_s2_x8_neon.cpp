// NEON stride-2 gather, 8 outputs per step: dst[t] = src[2 t] (im2col of stride-2 convolutions). Two `ld2`
// deinterleaving loads (the even elements of 16 floats), no shuffles; the tail (and the last step, which
// would read src[2 n - 1]) is scalar, so nothing past src[2 (n - 1)] is read.
// Scalar twin: ../scalar/f32_gather_s2_x8_scalar.cpp; x86 twin: ../avx2/f32_gather_s2_x8_avx2.cpp.
#include <arm_neon.h>

#include "../kernels.h"

namespace gazecrop {
namespace kernels {

void f32_gather_s2_x8_neon(std::size_t n, const float* src, float* dst) {
  std::size_t t = 0;
  for (; t + 9 <= n; t += 8) {
    vst1q_f32(dst + t, vld2q_f32(src + 2 * t).val[0]);
    vst1q_f32(dst + t + 4, vld2q_f32(src + 2 * t + 8).val[0]);
  }
  for (; t < n; ++t) dst[t] = src[2 * t];
}

}  // namespace kernels
}  // namespace gazecrop
