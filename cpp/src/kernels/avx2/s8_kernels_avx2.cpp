// AVX2 int8 kernels (kernels.h, "int8"), exact twins of ../scalar/s8_kernels_scalar.cpp (same bytes):
// - GEMM, 2 pixels x 16 output channels per step: activations (unsigned) widened with vpmovzxbw, weights with
//   vpmovsxbw, products summed in pairs by vpmaddwd (|2 * 255 * 127| fits int32; the saturating vpmaddubsw is not
//   used), the pair sums of a channel added once per tile (vphaddd);
// - depthwise, 8 channels of one pixel per vector (int32 lanes, vpmulld);
// - add, 8 elements per step.
// Requantisation: the 64-bit products of even and odd lanes (vpmuldq) plus the rounding term; the conv rule's
// shift >= 32 lets the high dwords finish with a 32-bit arithmetic shift (vpsravd); the add's shift >= 10 goes
// through a logical 64-bit shift of the product offset by 2^62 (no vpsravq in AVX2).
#include <immintrin.h>

#include <algorithm>
#include <cassert>
#include <cstring>

#include "../kernels.h"

namespace gazecrop {
namespace kernels {
namespace {

// Channel sums of 8 channels from two accumulators of (channel, pair) lanes: a = channels c..c+3, b = c+4..c+7.
inline __m256i channel_sums(__m256i a, __m256i b) {
  const __m256i h = _mm256_hadd_epi32(a, b);  // [c0 c1 c4 c5 | c2 c3 c6 c7]
  return _mm256_permute4x64_epi64(h, 0xD8);   // [c0 .. c7]
}

// requantize() on 8 lanes for shift in [32, 62]: (p >> 32) is the high dword of p = acc * mult + 2^(shift - 1),
// then an arithmetic shift by shift - 32 (floor(floor(p / 2^32) / 2^k) = floor(p / 2^(32 + k))).
inline __m256i requantize8(__m256i v, __m256i mult, __m256i shift) {
  const __m256i lo32 = _mm256_set1_epi64x(0xFFFFFFFF), one = _mm256_set1_epi64x(1);
  const __m256i s_even = _mm256_and_si256(shift, lo32), s_odd = _mm256_srli_epi64(shift, 32);
  __m256i pe = _mm256_mul_epi32(v, mult);
  __m256i po = _mm256_mul_epi32(_mm256_srli_epi64(v, 32), _mm256_srli_epi64(mult, 32));
  pe = _mm256_add_epi64(pe, _mm256_sllv_epi64(one, _mm256_sub_epi64(s_even, one)));
  po = _mm256_add_epi64(po, _mm256_sllv_epi64(one, _mm256_sub_epi64(s_odd, one)));
  const __m256i hi = _mm256_blend_epi32(_mm256_srli_epi64(pe, 32), po, 0xAA);
  return _mm256_srav_epi32(hi, _mm256_sub_epi32(shift, _mm256_set1_epi32(32)));
}

// zp + requantize8, clamped to [lo, hi], as 8 int8 in the low 8 bytes.
inline __m128i finish8(__m256i acc, __m256i mult, __m256i shift, __m256i vzp, __m256i vlo, __m256i vhi) {
  const __m256i v = _mm256_min_epi32(_mm256_max_epi32(_mm256_add_epi32(vzp, requantize8(acc, mult, shift)), vlo), vhi);
  const __m128i p = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  return _mm_packus_epi16(p, p);  // values in 0 .. 255
}

inline void store_bytes(std::uint8_t* y, std::size_t n, __m128i bytes) {
  if (n == 16) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y), bytes);
  } else if (n == 8) {
    _mm_storel_epi64(reinterpret_cast<__m128i*>(y), bytes);
  } else {
    alignas(16) std::uint8_t tmp[16];
    _mm_store_si128(reinterpret_cast<__m128i*>(tmp), bytes);
    for (std::size_t i = 0; i < n; ++i) y[i] = tmp[i];
  }
}

// n <= 8 bytes into the low lanes of an xmm (the rest zero), reading only those bytes.
inline __m128i load_bytes(const std::uint8_t* p, std::size_t n) {
  if (n == 8) return _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  std::uint64_t raw = 0;
  for (std::size_t i = 0; i < n; ++i) raw |= std::uint64_t(p[i]) << (8 * i);
  return _mm_cvtsi64_si128(std::int64_t(raw));
}

template <int NR>
void gemm_tile(std::size_t mc, std::size_t kc, const std::uint8_t* x, std::size_t xs, std::size_t seg,
               std::size_t seg_stride, const std::int8_t* w, const std::int32_t* bias16, const std::int32_t* mult16,
               const std::int32_t* shift16, int zp, int lo, int hi, std::uint8_t* y, std::size_t ys) {
  __m256i acc[NR][4];
  for (int n = 0; n < NR; ++n)
    for (int q = 0; q < 4; ++q) acc[n][q] = _mm256_setzero_si256();
  const std::uint8_t* xb = x;  // segment s's bytes at xb + k: xb advances by seg_stride - seg per segment
  for (std::size_t k = 0; k < kc; xb += seg_stride - seg) {
    for (const std::size_t end = k + seg; k < end; k += 4) {
      const std::int8_t* wk = w + (k / 4) * 64;
      __m256i wq[4];
      for (int q = 0; q < 4; ++q)
        wq[q] = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wk + 16 * q)));
      for (int n = 0; n < NR; ++n) {
        std::int32_t raw;
        std::memcpy(&raw, xb + std::size_t(n) * xs + k, 4);
        const __m128i u = _mm_cvtepu8_epi16(_mm_cvtsi32_si128(raw));  // 4 x int16
        const __m256i xv = _mm256_broadcastq_epi64(u);
        for (int q = 0; q < 4; ++q) acc[n][q] = _mm256_add_epi32(acc[n][q], _mm256_madd_epi16(wq[q], xv));
      }
    }
  }
  const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bias16));
  const __m256i b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bias16 + 8));
  const __m256i m0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(mult16));
  const __m256i m1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(mult16 + 8));
  const __m256i s0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(shift16));
  const __m256i s1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(shift16 + 8));
  const __m256i vzp = _mm256_set1_epi32(zp), vlo = _mm256_set1_epi32(lo), vhi = _mm256_set1_epi32(hi);
  for (int n = 0; n < NR; ++n) {
    const __m128i a = finish8(_mm256_add_epi32(b0, channel_sums(acc[n][0], acc[n][1])), m0, s0, vzp, vlo, vhi);
    const __m128i b = finish8(_mm256_add_epi32(b1, channel_sums(acc[n][2], acc[n][3])), m1, s1, vzp, vlo, vhi);
    store_bytes(y + std::size_t(n) * ys, mc, _mm_unpacklo_epi64(a, b));
  }
}

}  // namespace

void s8_gemm_2x16c4_avx2(std::size_t mc, std::size_t nc, std::size_t kc, const std::uint8_t* x, std::size_t x_stride,
                         std::size_t seg, std::size_t seg_stride, const std::int8_t* w, const std::int32_t* bias,
                         const std::int32_t* mult, const std::int32_t* shift, int zp, int lo, int hi, std::uint8_t* y,
                         std::size_t y_stride) {
  assert(mc >= 1 && kc % 4 == 0 && seg % 4 == 0 && seg >= 4 && kc % seg == 0);
  if (mc > 16) {  // block by block
    for (std::size_t m0 = 0; m0 < mc; m0 += 16)
      s8_gemm_2x16c4_avx2(std::min<std::size_t>(16, mc - m0), nc, kc, x, x_stride, seg, seg_stride,
                          w + (m0 / 16) * (kc / 4) * 64, bias + m0, mult + m0, shift + m0, zp, lo, hi, y + m0,
                          y_stride);
    return;
  }
  // Per-channel parameters padded to 16 lanes (channels >= mc: bias 0, a valid rule; never stored).
  alignas(32) std::int32_t b16[16] = {}, m16[16], s16[16];
  for (int m = 0; m < 16; ++m) {
    const bool in = std::size_t(m) < mc;
    b16[m] = in ? bias[m] : 0;
    m16[m] = in ? mult[m] : (1 << 30);
    s16[m] = in ? shift[m] : 32;
  }
  std::size_t n = 0;
  for (; n + 2 <= nc; n += 2)
    gemm_tile<2>(mc, kc, x + n * x_stride, x_stride, seg, seg_stride, w, b16, m16, s16, zp, lo, hi,
                 y + n * y_stride, y_stride);
  if (n < nc)
    gemm_tile<1>(mc, kc, x + n * x_stride, x_stride, seg, seg_stride, w, b16, m16, s16, zp, lo, hi,
                 y + n * y_stride, y_stride);
}

void s8_dwconv_c8_avx2(std::size_t w_out, std::size_t ch, int k, int stride, const std::uint8_t* x,
                       std::size_t x_pixel, std::size_t x_row, const std::int32_t* w, std::size_t w_stride,
                       const std::int32_t* bias, const std::int32_t* mult, const std::int32_t* shift, int zp, int lo,
                       int hi, std::uint8_t* y, std::size_t y_pixel) {
  assert((k == 3 || k == 5) && (stride == 1 || stride == 2));
  const __m256i vzp = _mm256_set1_epi32(zp), vlo = _mm256_set1_epi32(lo), vhi = _mm256_set1_epi32(hi);
  const int taps = k * k;
  std::size_t off[25];
  for (int t = 0; t < taps; ++t) off[t] = std::size_t(t / k) * x_row + std::size_t(t % k) * x_pixel;
  for (std::size_t c = 0; c < ch; c += 8) {
    const std::size_t nc = std::min<std::size_t>(8, ch - c);
    alignas(32) std::int32_t b8[8] = {}, m8[8], s8[8];
    for (std::size_t l = 0; l < 8; ++l) {
      b8[l] = l < nc ? bias[c + l] : 0;
      m8[l] = l < nc ? mult[c + l] : (1 << 30);
      s8[l] = l < nc ? shift[c + l] : 32;
    }
    const __m256i vb = _mm256_load_si256(reinterpret_cast<const __m256i*>(b8));
    const __m256i vm = _mm256_load_si256(reinterpret_cast<const __m256i*>(m8));
    const __m256i vs = _mm256_load_si256(reinterpret_cast<const __m256i*>(s8));
    for (std::size_t j = 0; j < w_out; ++j) {
      const std::uint8_t* xj = x + std::size_t(stride) * j * x_pixel + c;
      __m256i acc = vb;
      for (int t = 0; t < taps; ++t) {
        const std::uint8_t* p = xj + off[t];
        const __m256i xv = _mm256_cvtepu8_epi32(load_bytes(p, nc));  // only the channels asked for
        const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + std::size_t(t) * w_stride + c));
        acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(xv, wv));
      }
      store_bytes(y + j * y_pixel + c, nc, finish8(acc, vm, vs, vzp, vlo, vhi));
    }
  }
}

void s8_add_x8_avx2(std::size_t n, const std::uint8_t* a, int za, std::int32_t ma, const std::uint8_t* b, int zb,
                    std::int32_t mb, int shift, int zp, int lo, int hi, std::uint8_t* y) {
  assert(shift >= 10 && shift <= 62);
  // t = (a - za) ma + (b - zb) mb + 2^(shift - 1) + 2^62 >= 0 (|products| < 2^40); a logical shift of t then
  // minus 2^(62 - shift) is the arithmetic shift of t - 2^62.
  const __m256i vza = _mm256_set1_epi32(za), vzb = _mm256_set1_epi32(zb);
  const __m256i vma = _mm256_set1_epi64x(ma), vmb = _mm256_set1_epi64x(mb);
  const __m256i off = _mm256_set1_epi64x((std::int64_t(1) << 62) + (std::int64_t(1) << (shift - 1)));
  const __m256i back = _mm256_set1_epi64x(std::int64_t(1) << (62 - shift));
  const __m128i cnt = _mm_cvtsi32_si128(shift);
  const __m256i vzp = _mm256_set1_epi32(zp), vlo = _mm256_set1_epi32(lo), vhi = _mm256_set1_epi32(hi);
  std::size_t i = 0;
  for (; i < n; i += 8) {
    const std::size_t nc = std::min<std::size_t>(8, n - i);
    const __m256i da = _mm256_sub_epi32(_mm256_cvtepu8_epi32(load_bytes(a + i, nc)), vza);
    const __m256i db = _mm256_sub_epi32(_mm256_cvtepu8_epi32(load_bytes(b + i, nc)), vzb);
    __m256i te = _mm256_add_epi64(_mm256_add_epi64(_mm256_mul_epi32(da, vma), _mm256_mul_epi32(db, vmb)), off);
    __m256i to = _mm256_add_epi64(_mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64(da, 32), vma),
                                                   _mm256_mul_epi32(_mm256_srli_epi64(db, 32), vmb)), off);
    te = _mm256_sub_epi64(_mm256_srl_epi64(te, cnt), back);
    to = _mm256_sub_epi64(_mm256_srl_epi64(to, cnt), back);
    __m256i v = _mm256_blend_epi32(te, _mm256_slli_epi64(to, 32), 0xAA);  // |result| < 2^30: low dwords suffice
    v = _mm256_min_epi32(_mm256_max_epi32(_mm256_add_epi32(vzp, v), vlo), vhi);
    const __m128i p = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    store_bytes(y + i, nc, _mm_packus_epi16(p, p));
  }
}

}  // namespace kernels
}  // namespace gazecrop
