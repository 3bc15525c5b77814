// AVX2 normalisation of interleaved uint8 RGB pixels into three float planes, 8 pixels per step: the 24 bytes
// zero-extended to three vectors of 8 int32 (vpmovzxbd), each channel's 8 values gathered from them by three
// permutes and two blends, converted, and (v - mean) / std with one division (vdivps: the scalar twin's bits).
// The last n mod 8 pixels run the scalar formula (nothing past src[3 n - 1] read, nothing past n written).
// Scalar twin: ../scalar/f32_normalise_rgb_x1_scalar.cpp.
#include <immintrin.h>

#include "../kernels.h"

namespace gazecrop {
namespace kernels {

void f32_normalise_rgb_x8_avx2(std::size_t n, const std::uint8_t* src, const float* mean, const float* std,
                               float* r, float* g, float* b) {
  float* const dst[3] = {r, g, b};
  // Channel c of pixel t is value 3 t + c of the 24: vector (3 t + c) / 8, lane (3 t + c) % 8.
  __m256 vm[3], vs[3];
  for (int c = 0; c < 3; ++c) {
    vm[c] = _mm256_set1_ps(mean[c]);
    vs[c] = _mm256_set1_ps(std[c]);
  }
  std::size_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const std::uint8_t* p = src + 3 * j;
    const __m256i v0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    const __m256i v1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 8)));
    const __m256i v2 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 16)));
    // R: values 0 3 6 | 9 12 15 | 18 21 -> v0 lanes 0 3 6, v1 lanes 1 4 7, v2 lanes 2 5
    const __m256i rr = _mm256_blend_epi32(
        _mm256_blend_epi32(_mm256_permutevar8x32_epi32(v0, _mm256_setr_epi32(0, 3, 6, 0, 0, 0, 0, 0)),
                           _mm256_permutevar8x32_epi32(v1, _mm256_setr_epi32(0, 0, 0, 1, 4, 7, 0, 0)), 0x38),
        _mm256_permutevar8x32_epi32(v2, _mm256_setr_epi32(0, 0, 0, 0, 0, 0, 2, 5)), 0xC0);
    // G: values 1 4 7 | 10 13 | 16 19 22 -> v0 lanes 1 4 7, v1 lanes 2 5, v2 lanes 0 3 6
    const __m256i gg = _mm256_blend_epi32(
        _mm256_blend_epi32(_mm256_permutevar8x32_epi32(v0, _mm256_setr_epi32(1, 4, 7, 0, 0, 0, 0, 0)),
                           _mm256_permutevar8x32_epi32(v1, _mm256_setr_epi32(0, 0, 0, 2, 5, 0, 0, 0)), 0x18),
        _mm256_permutevar8x32_epi32(v2, _mm256_setr_epi32(0, 0, 0, 0, 0, 0, 3, 6)), 0xE0);
    // B: values 2 5 | 8 11 14 | 17 20 23 -> v0 lanes 2 5, v1 lanes 0 3 6, v2 lanes 1 4 7
    const __m256i bb = _mm256_blend_epi32(
        _mm256_blend_epi32(_mm256_permutevar8x32_epi32(v0, _mm256_setr_epi32(2, 5, 0, 0, 0, 0, 0, 0)),
                           _mm256_permutevar8x32_epi32(v1, _mm256_setr_epi32(0, 0, 0, 3, 6, 0, 0, 0)), 0x1C),
        _mm256_permutevar8x32_epi32(v2, _mm256_setr_epi32(0, 0, 0, 0, 0, 1, 4, 7)), 0xE0);
    const __m256i ch[3] = {rr, gg, bb};
    for (int c = 0; c < 3; ++c)
      _mm256_storeu_ps(dst[c] + j, _mm256_div_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(ch[c]), vm[c]), vs[c]));
  }
  for (; j < n; ++j)
    for (int c = 0; c < 3; ++c) dst[c][j] = (float(src[3 * j + std::size_t(c)]) - mean[c]) / std[c];
}

}  // namespace kernels
}  // namespace gazecrop
