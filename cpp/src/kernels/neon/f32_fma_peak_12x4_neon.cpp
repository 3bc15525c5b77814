// NEON FMA-throughput loop: 12 independent accumulators of 4 floats, `iters` times a <- a * m + c (one fmla
// per accumulator): 12 chains cover a 4-cycle FMA latency on 2 (Cortex-A72/A76, Neoverse N1/N2) or 3 pipes;
// the 4-pipe Neoverse V1/V2 would need 16. The kernel set's measured peak.
// Twins: ../scalar/f32_fma_peak_12x4_scalar.cpp, ../avx2/f32_fma_peak_12x8_avx2.cpp.
#include <arm_neon.h>

#include "../kernels.h"

namespace gazecrop {
namespace kernels {

double f32_fma_peak_12x4_neon(std::size_t iters, float* out) {
  const float32x4_t m = vdupq_n_f32(kPeakMul), c = vdupq_n_f32(kPeakAdd);
#define GZ_A(i) float32x4_t a##i = vdupq_n_f32(2.0f + i);
  GZ_A(0) GZ_A(1) GZ_A(2) GZ_A(3) GZ_A(4) GZ_A(5) GZ_A(6) GZ_A(7) GZ_A(8) GZ_A(9) GZ_A(10) GZ_A(11)
#undef GZ_A
  for (std::size_t k = 0; k < iters; ++k) {
#define GZ_F(i) a##i = vfmaq_f32(c, a##i, m);
    GZ_F(0) GZ_F(1) GZ_F(2) GZ_F(3) GZ_F(4) GZ_F(5) GZ_F(6) GZ_F(7) GZ_F(8) GZ_F(9) GZ_F(10) GZ_F(11)
#undef GZ_F
  }
#define GZ_O(i) out[i] = vgetq_lane_f32(a##i, 0);
  GZ_O(0) GZ_O(1) GZ_O(2) GZ_O(3) GZ_O(4) GZ_O(5) GZ_O(6) GZ_O(7) GZ_O(8) GZ_O(9) GZ_O(10) GZ_O(11)
#undef GZ_O
  return double(iters) * kPeakChains * 4 * 2;
}

}  // namespace kernels
}  // namespace gazecrop
