// Scalar-set multiply-add throughput loop: 12 independent accumulators of 4 floats, `iters` times
// a <- a * m + c. With GCC/Clang the accumulators are 4-float vector extensions, like the scalar set's conv
// tiles (SSE2 mulps + addps on x86-64, NEON on AArch64), so this is the peak of the code the scalar set runs.
// Twins: ../avx2/f32_fma_peak_12x8_avx2.cpp, ../avx512/f32_fma_peak_12x16_avx512.cpp.
#include "../kernels.h"

namespace gazecrop {
namespace kernels {

#if defined(__GNUC__) || defined(__clang__)
double f32_fma_peak_12x4_scalar(std::size_t iters, float* out) {
  typedef float v4 __attribute__((vector_size(16)));
  const v4 m = {kPeakMul, kPeakMul, kPeakMul, kPeakMul}, c = {kPeakAdd, kPeakAdd, kPeakAdd, kPeakAdd};
#define GZ_A(i) v4 a##i = {2.0f + i, 2.0f + i, 2.0f + i, 2.0f + i};
  GZ_A(0) GZ_A(1) GZ_A(2) GZ_A(3) GZ_A(4) GZ_A(5) GZ_A(6) GZ_A(7) GZ_A(8) GZ_A(9) GZ_A(10) GZ_A(11)
#undef GZ_A
  for (std::size_t k = 0; k < iters; ++k) {
#define GZ_F(i) a##i = a##i * m + c;
    GZ_F(0) GZ_F(1) GZ_F(2) GZ_F(3) GZ_F(4) GZ_F(5) GZ_F(6) GZ_F(7) GZ_F(8) GZ_F(9) GZ_F(10) GZ_F(11)
#undef GZ_F
  }
#define GZ_O(i) out[i] = a##i[0];
  GZ_O(0) GZ_O(1) GZ_O(2) GZ_O(3) GZ_O(4) GZ_O(5) GZ_O(6) GZ_O(7) GZ_O(8) GZ_O(9) GZ_O(10) GZ_O(11)
#undef GZ_O
  return double(iters) * kPeakChains * 4 * 2;
}
#else
double f32_fma_peak_12x4_scalar(std::size_t iters, float* out) {
  float a[kPeakChains][4];
  for (int i = 0; i < kPeakChains; ++i)
    for (int l = 0; l < 4; ++l) a[i][l] = 2.0f + float(i);
  for (std::size_t k = 0; k < iters; ++k)
    for (int i = 0; i < kPeakChains; ++i)
      for (int l = 0; l < 4; ++l) a[i][l] = a[i][l] * kPeakMul + kPeakAdd;
  for (int i = 0; i < kPeakChains; ++i) out[i] = a[i][0];
  return double(iters) * kPeakChains * 4 * 2;
}
#endif

}  // namespace kernels
}  // namespace gazecrop
