// AVX-512F stride-2 gather, 16 outputs per step: dst[t] = src[2 t] (im2col of stride-2 convolutions). Two
// loads and one two-source permute (vpermt2ps) of the even elements per 16 outputs; the last step (1 .. 16
// outputs) loads and stores under masks, so nothing past src[2 (n - 1)] is read and nothing past dst[n - 1]
// written. Twins: ../avx2/f32_gather_s2_x8_avx2.cpp, ../scalar/f32_gather_s2_x8_scalar.cpp.
#include <immintrin.h>

#include "../kernels.h"

namespace gazecrop {
namespace kernels {

void f32_gather_s2_x16_avx512(std::size_t n, const float* src, float* dst) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  std::size_t t = 0;
  for (; t + 16 < n; t += 16) {  // reads src[2 t .. 2 t + 31], all <= 2 (n - 1)
    const __m512 a = _mm512_loadu_ps(src + 2 * t), b = _mm512_loadu_ps(src + 2 * t + 16);
    _mm512_storeu_ps(dst + t, _mm512_permutex2var_ps(a, even, b));
  }
  if (t == n) return;
  const unsigned m = unsigned(n - t), need = 2 * m - 1;  // outputs 1 .. 16, source floats 1 .. 31
  const __mmask16 ka = static_cast<__mmask16>(need >= 16 ? 0xFFFFu : (1u << need) - 1u);
  const __mmask16 kb = static_cast<__mmask16>(need <= 16 ? 0u : (1u << (need - 16)) - 1u);
  const __mmask16 ko = static_cast<__mmask16>(m >= 16 ? 0xFFFFu : (1u << m) - 1u);
  const __m512 a = _mm512_maskz_loadu_ps(ka, src + 2 * t), b = _mm512_maskz_loadu_ps(kb, src + 2 * t + 16);
  _mm512_mask_storeu_ps(dst + t, ko, _mm512_permutex2var_ps(a, even, b));
}

}  // namespace kernels
}  // namespace gazecrop
