// AVX2+FMA FMA-throughput loop: 12 independent accumulators of 8 floats, `iters` times a <- a * m + c (one
// vfmadd per accumulator), bounded by the FMA throughput, not its latency. The kernel set's measured peak.
// Twins: ../avx512/f32_fma_peak_12x16_avx512.cpp, ../scalar/f32_fma_peak_12x4_scalar.cpp.
#include <immintrin.h>

#include "../kernels.h"

namespace gazecrop {
namespace kernels {

double f32_fma_peak_12x8_avx2(std::size_t iters, float* out) {
  const __m256 m = _mm256_set1_ps(kPeakMul), c = _mm256_set1_ps(kPeakAdd);
#define GZ_A(i) __m256 a##i = _mm256_set1_ps(2.0f + i);
  GZ_A(0) GZ_A(1) GZ_A(2) GZ_A(3) GZ_A(4) GZ_A(5) GZ_A(6) GZ_A(7) GZ_A(8) GZ_A(9) GZ_A(10) GZ_A(11)
#undef GZ_A
  for (std::size_t k = 0; k < iters; ++k) {
#define GZ_F(i) a##i = _mm256_fmadd_ps(a##i, m, c);
    GZ_F(0) GZ_F(1) GZ_F(2) GZ_F(3) GZ_F(4) GZ_F(5) GZ_F(6) GZ_F(7) GZ_F(8) GZ_F(9) GZ_F(10) GZ_F(11)
#undef GZ_F
  }
#define GZ_O(i) out[i] = _mm256_cvtss_f32(a##i);
  GZ_O(0) GZ_O(1) GZ_O(2) GZ_O(3) GZ_O(4) GZ_O(5) GZ_O(6) GZ_O(7) GZ_O(8) GZ_O(9) GZ_O(10) GZ_O(11)
#undef GZ_O
  return double(iters) * kPeakChains * 8 * 2;
}

}  // namespace kernels
}  // namespace gazecrop
