// AVX-512F softplus, 16 floats per step: x <- max(x, 0) + log1p(exp(-|x|)) in place. The same Cephes
// single-precision exp/log polynomials and the same operation order as the AVX2 kernel (so the same results),
// with compare masks instead of blends; the tail (1 .. 15 floats) runs the same code under a load/store mask.
// Twins: ../avx2/f32_softplus_x8_avx2.cpp, ../scalar/f32_softplus_x8_scalar.cpp. AVX-512F only: the
// float and/or/and-not of AVX512DQ are done on the integer view.
#include <immintrin.h>

#include "../kernels.h"

// GCC 12's _mm512_undefined_ps() (the pass-through of unmasked intrinsics) trips -Wmaybe-uninitialized once
// inlined (GCC bug 105593); nothing here is uninitialised.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace gazecrop {
namespace kernels {
namespace {

inline __m512i bits(__m512 v) { return _mm512_castps_si512(v); }
inline __m512 flt(__m512i v) { return _mm512_castsi512_ps(v); }

// exp(x) for x <= 0 (here x = -|v|), result in (0, 1].
inline __m512 exp_neg(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
  const __m512 fx = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(0.693359375f), x);
  x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(-2.12194440e-4f), x);
  __m512 y = _mm512_set1_ps(1.9875691500e-4f);
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.3981999507e-3f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(8.3334519073e-3f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(4.1665795894e-2f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.6666665459e-1f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(5.0000001201e-1f));
  y = _mm512_fmadd_ps(y, _mm512_mul_ps(x, x), _mm512_add_ps(x, _mm512_set1_ps(1.0f)));
  const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(fx), _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(y, flt(e));
}

// log(u) for u in [1, 2].
inline __m512 log_1_2(__m512 u) {
  const __m512i b = bits(u);
  __m512 e = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_srli_epi32(b, 23), _mm512_set1_epi32(126)));
  // mantissa in [0.5, 1)
  __m512 m = flt(_mm512_or_si512(_mm512_and_si512(b, _mm512_set1_epi32(0x007FFFFF)), _mm512_set1_epi32(0x3F000000)));
  const __mmask16 small = _mm512_cmp_ps_mask(m, _mm512_set1_ps(0.707106781186547524f), _CMP_LT_OQ);
  e = _mm512_mask_sub_ps(e, small, e, _mm512_set1_ps(1.0f));
  m = _mm512_sub_ps(_mm512_mask_add_ps(m, small, m, m), _mm512_set1_ps(1.0f));
  const __m512 z = _mm512_mul_ps(m, m);
  __m512 y = _mm512_set1_ps(7.0376836292e-2f);
  y = _mm512_fmadd_ps(y, m, _mm512_set1_ps(-1.1514610310e-1f));
  y = _mm512_fmadd_ps(y, m, _mm512_set1_ps(1.1676998740e-1f));
  y = _mm512_fmadd_ps(y, m, _mm512_set1_ps(-1.2420140846e-1f));
  y = _mm512_fmadd_ps(y, m, _mm512_set1_ps(1.4249322787e-1f));
  y = _mm512_fmadd_ps(y, m, _mm512_set1_ps(-1.6668057665e-1f));
  y = _mm512_fmadd_ps(y, m, _mm512_set1_ps(2.0000714765e-1f));
  y = _mm512_fmadd_ps(y, m, _mm512_set1_ps(-2.4999993993e-1f));
  y = _mm512_fmadd_ps(y, m, _mm512_set1_ps(3.3333331174e-1f));
  y = _mm512_mul_ps(_mm512_mul_ps(y, m), z);
  y = _mm512_fmadd_ps(e, _mm512_set1_ps(-2.12194440e-4f), y);
  y = _mm512_fnmadd_ps(z, _mm512_set1_ps(0.5f), y);
  return _mm512_fmadd_ps(e, _mm512_set1_ps(0.693359375f), _mm512_add_ps(m, y));
}

inline __m512 softplus16(__m512 v) {
  const __m512 one = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps();
  const __m512 z = exp_neg(flt(_mm512_or_si512(bits(v), _mm512_set1_epi32(int(0x80000000u)))));  // exp(-|v|)
  const __m512 u = _mm512_add_ps(one, z);
  const __m512 d = _mm512_sub_ps(u, one);
  // log1p(z) = log(u) * z / d when d != 0, else z
  const __mmask16 d0 = _mm512_cmp_ps_mask(d, zero, _CMP_EQ_OQ);
  const __m512 l = _mm512_mul_ps(log_1_2(u), _mm512_div_ps(z, _mm512_mask_blend_ps(d0, d, one)));
  const __m512 lp = _mm512_mask_blend_ps(d0, l, z);
  return _mm512_add_ps(_mm512_max_ps(v, zero), lp);
}

}  // namespace

void f32_softplus_x16_avx512(std::size_t n, float* x) {
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, softplus16(_mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 k = static_cast<__mmask16>((1u << (n - i)) - 1u);
    _mm512_mask_storeu_ps(x + i, k, softplus16(_mm512_maskz_loadu_ps(k, x + i)));
  }
}

}  // namespace kernels
}  // namespace gazecrop
