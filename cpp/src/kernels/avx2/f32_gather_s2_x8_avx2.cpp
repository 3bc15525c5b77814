// AVX2 stride-2 gather, 8 outputs per step: dst[t] = src[2 t] (im2col of stride-2 convolutions). Two loads,
// one in-lane shuffle of the even elements and one cross-lane permute per 8 outputs; the tail (and the last
// step, which would read src[2 n - 1]) is scalar, so nothing past src[2 (n - 1)] is read.
// Scalar twin: ../scalar/f32_gather_s2_x8_scalar.cpp.
#include <immintrin.h>

#include "../kernels.h"

namespace gazecrop {
namespace kernels {

void f32_gather_s2_x8_avx2(std::size_t n, const float* src, float* dst) {
  std::size_t t = 0;
  for (; t + 9 <= n; t += 8) {
    const __m256 a = _mm256_loadu_ps(src + 2 * t), b = _mm256_loadu_ps(src + 2 * t + 8);
    // per 128-bit lane: a0 a2 b0 b2 | a4 a6 b4 b6 -> 64-bit chunks (0, 2, 1, 3): a0 a2 a4 a6 b0 b2 b4 b6
    const __m256 e = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
    _mm256_storeu_ps(dst + t, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), _MM_SHUFFLE(3, 1, 2, 0))));
  }
  for (; t < n; ++t) dst[t] = src[2 * t];
}

}  // namespace kernels
}  // namespace gazecrop
