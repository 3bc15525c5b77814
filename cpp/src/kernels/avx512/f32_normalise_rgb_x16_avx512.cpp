// AVX-512F normalisation of interleaved uint8 RGB pixels into three float planes, 16 pixels per step: the 48
// bytes zero-extended to three vectors of 16 int32 (vpmovzxbd), each channel's 16 values gathered from them by
// one two-source permute (values 0-31, vpermt2d) and one masked permute (values 32-47), converted, and
// (v - mean) / std with one division (vdivps: the scalar twin's bits). The last n mod 16 pixels run the scalar
// formula (nothing past src[3 n - 1] read, nothing past n written).
// Scalar twin: ../scalar/f32_normalise_rgb_x1_scalar.cpp.
#include <immintrin.h>

#include "../kernels.h"

// GCC 12's _mm512_undefined_*() (the pass-through of unmasked intrinsics such as _mm512_cvtepu8_epi32) trips
// -Wmaybe-uninitialized once inlined (GCC bug 105593); nothing here is uninitialised.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace gazecrop {
namespace kernels {

void f32_normalise_rgb_x16_avx512(std::size_t n, const std::uint8_t* src, const float* mean, const float* std,
                                  float* r, float* g, float* b) {
  float* const dst[3] = {r, g, b};
  // Channel c of pixel t is value k = 3 t + c of the 48: from the first two vectors when k < 32 (index k of
  // the pair), else lane k - 32 of the third.
  __m512i lo[3], hi[3];
  __mmask16 from_hi[3];
  __m512 vm[3], vs[3];
  for (int c = 0; c < 3; ++c) {
    alignas(64) std::int32_t a[16], z[16];
    unsigned m = 0;
    for (int t = 0; t < 16; ++t) {
      const int k = 3 * t + c;
      a[t] = k < 32 ? k : 0;
      z[t] = k < 32 ? 0 : k - 32;
      if (k >= 32) m |= 1u << t;
    }
    lo[c] = _mm512_load_si512(a);
    hi[c] = _mm512_load_si512(z);
    from_hi[c] = static_cast<__mmask16>(m);
    vm[c] = _mm512_set1_ps(mean[c]);
    vs[c] = _mm512_set1_ps(std[c]);
  }
  std::size_t j = 0;
  for (; j + 16 <= n; j += 16) {
    const std::uint8_t* p = src + 3 * j;
    const __m512i v0 = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    const __m512i v1 = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16)));
    const __m512i v2 = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 32)));
    for (int c = 0; c < 3; ++c) {
      const __m512i q = _mm512_mask_permutexvar_epi32(_mm512_permutex2var_epi32(v0, lo[c], v1), from_hi[c], hi[c], v2);
      _mm512_storeu_ps(dst[c] + j, _mm512_div_ps(_mm512_sub_ps(_mm512_cvtepi32_ps(q), vm[c]), vs[c]));
    }
  }
  for (; j < n; ++j)
    for (int c = 0; c < 3; ++c) dst[c][j] = (float(src[3 * j + std::size_t(c)]) - mean[c]) / std[c];
}

}  // namespace kernels
}  // namespace gazecrop
