// AVX-512F FMA-throughput loop: 12 independent accumulators of 16 floats, `iters` times a <- a * m + c (one
// vfmadd per accumulator), so the time per iteration is bounded by the CPU's 512-bit FMA throughput, not by
// the FMA latency (12 >= ports x latency on every x86 CPU known: 2 x 4). This is how gazecrop measures the
// kernel set's peak (CPUID cannot tell how many 512-bit FMA ports there are; AMD Zen 4 double-pumps them).
// Twins: ../avx2/f32_fma_peak_12x8_avx2.cpp, ../scalar/f32_fma_peak_12x4_scalar.cpp.
#include <immintrin.h>

#include "../kernels.h"

namespace gazecrop {
namespace kernels {

double f32_fma_peak_12x16_avx512(std::size_t iters, float* out) {
  const __m512 m = _mm512_set1_ps(kPeakMul), c = _mm512_set1_ps(kPeakAdd);
#define GZ_A(i) __m512 a##i = _mm512_set1_ps(2.0f + i);
  GZ_A(0) GZ_A(1) GZ_A(2) GZ_A(3) GZ_A(4) GZ_A(5) GZ_A(6) GZ_A(7) GZ_A(8) GZ_A(9) GZ_A(10) GZ_A(11)
#undef GZ_A
  for (std::size_t k = 0; k < iters; ++k) {
#define GZ_F(i) a##i = _mm512_fmadd_ps(a##i, m, c);
    GZ_F(0) GZ_F(1) GZ_F(2) GZ_F(3) GZ_F(4) GZ_F(5) GZ_F(6) GZ_F(7) GZ_F(8) GZ_F(9) GZ_F(10) GZ_F(11)
#undef GZ_F
  }
#define GZ_O(i) out[i] = _mm512_cvtss_f32(a##i);
  GZ_O(0) GZ_O(1) GZ_O(2) GZ_O(3) GZ_O(4) GZ_O(5) GZ_O(6) GZ_O(7) GZ_O(8) GZ_O(9) GZ_O(10) GZ_O(11)
#undef GZ_O
  return double(iters) * kPeakChains * 16 * 2;
}

}  // namespace kernels
}  // namespace gazecrop
