// AVX-512 VNNI int8 kernels (kernels.h, "int8"), exact twins of ../scalar/s8_kernels_scalar.cpp (same bytes):
// - GEMM, 8 pixels x 32 output channels per step (two blocks of 16), one VPDPBUSD (u8 x s8, four products per
//   int32 lane, no saturation) per pixel, block and group of four input channels: the pixel's four (unsigned)
//   activations broadcast against the 16 channels' packed weights;
// - depthwise, 16 channels per vector (masked byte loads, int32 lanes), 4 pixels per step sharing their loads,
//   two window rows per VPDPWSSD (int16 pairs);
// - add, 16 elements per step.
// Requantisation: 64-bit products of even / odd lanes (vpmuldq), rounding term, the high halves, vpsravd.
// Stores under a mask (vpmovusdb). Built with -mavx512f -mavx512bw -mavx512vl -mavx512vnni
// (GAZECROP_AVX512VNNI_SOURCES in CMakeLists.txt); called only when cpu_features().avx512vnni.
#include <immintrin.h>

#include <algorithm>
#include <cassert>
#include <cstring>

#include "../kernels.h"

// GCC 12's _mm512_undefined_epi32() (the pass-through of unmasked intrinsics) trips -Wuninitialized once inlined
// (GCC bug 105593); nothing here is uninitialised.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace gazecrop {
namespace kernels {
namespace {

// requantize() on 16 lanes for shifts in [32, 62] (every convolution's, kernels.h), with the per-lane constants
// prepared once: the 64-bit (acc * mult + 2^(shift - 1)) of the even and odd lanes (vpmuldq), their high
// halves (= floor(. / 2^32), two's complement) put together in one vector, then an arithmetic shift by
// shift - 32 per 32-bit lane: floor(floor(x / 2^32) / 2^(s - 32)) = floor(x / 2^s). Eight operations per 16
// outputs (a 64-bit shift per half and the re-interleave took nine).
struct Rq16 {
  __m512i mult, mult_odd, s_hi, r_even, r_odd;
  Rq16() = default;
  Rq16(__m512i mult_, __m512i shift) {
    const __m512i lo32 = _mm512_set1_epi64(0xFFFFFFFF), one = _mm512_set1_epi64(1);
    mult = mult_;
    mult_odd = _mm512_srli_epi64(mult_, 32);
    s_hi = _mm512_sub_epi32(shift, _mm512_set1_epi32(32));
    const __m512i s_even = _mm512_and_si512(shift, lo32), s_odd = _mm512_srli_epi64(shift, 32);
    r_even = _mm512_sllv_epi64(one, _mm512_sub_epi64(s_even, one));
    r_odd = _mm512_sllv_epi64(one, _mm512_sub_epi64(s_odd, one));
  }
  __m512i operator()(__m512i v) const {
    const __m512i pe = _mm512_add_epi64(_mm512_mul_epi32(v, mult), r_even);
    const __m512i po = _mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64(v, 32), mult_odd), r_odd);
    return _mm512_srav_epi32(_mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(pe, 32), po), s_hi);
  }
};

inline void finish_store(std::uint8_t* y, __mmask16 km, __m512i acc, const Rq16& rq, __m512i vzp, __m512i vlo,
                         __m512i vhi) {
  __m512i v = _mm512_add_epi32(vzp, rq(acc));
  v = _mm512_min_epi32(_mm512_max_epi32(v, vlo), vhi);
  _mm512_mask_cvtusepi32_storeu_epi8(y, km, v);  // values in 0 .. 255
}

inline __mmask16 lanes(std::size_t n) {
  return static_cast<__mmask16>(n >= 16 ? 0xFFFFu : (1u << n) - 1u);
}

// NR pixels x NB blocks of 16 output channels: each pixel's four activations are broadcast once for all blocks.
// Accumulators are named variables, not an array (as in the float kernels, conv_flat_avx2.inc): with
// acc[NR][NB], GCC 12 copied every accumulator between registers around each VPDPBUSD (perf annotate: the
// copies took more samples than the VPDPBUSDs).
#define GZ_S8_ACC(n) __m512i a##n##0 = vb[0], a##n##1 = NB > 1 ? vb[NB > 1 ? 1 : 0] : vb[0];
#define GZ_S8_DOT(n)                                                                            \
  if constexpr (NR > n) {                                                                       \
    std::int32_t raw;                                                                           \
    std::memcpy(&raw, xb + std::size_t(n) * xs + k, 4);                                         \
    const __m512i xv = _mm512_set1_epi32(raw);                                                  \
    a##n##0 = _mm512_dpbusd_epi32(a##n##0, xv, w0);                                             \
    if constexpr (NB > 1) a##n##1 = _mm512_dpbusd_epi32(a##n##1, xv, w1);                       \
  }
#define GZ_S8_OUT(n)                                                                            \
  if constexpr (NR > n) {                                                                       \
    finish_store(y + std::size_t(n) * ys, km[0], a##n##0, rq[0], vzp, vlo, vhi);                \
    if constexpr (NB > 1) finish_store(y + std::size_t(n) * ys + 16, km[NB > 1 ? 1 : 0], a##n##1, \
                                       rq[NB > 1 ? 1 : 0], vzp, vlo, vhi);                      \
  }
template <int NR, int NB>
void gemm_tile(const __mmask16* km, std::size_t kc, const std::uint8_t* x, std::size_t xs, std::size_t seg,
               std::size_t seg_stride, const std::int8_t* w, std::size_t w_block, const __m512i* vb, const Rq16* rq,
               __m512i vzp, __m512i vlo, __m512i vhi, std::uint8_t* y, std::size_t ys) {
  static_assert(NR >= 1 && NR <= 8 && (NB == 1 || NB == 2), "tile: 1..8 pixels, 1 or 2 blocks");
  GZ_S8_ACC(0) GZ_S8_ACC(1) GZ_S8_ACC(2) GZ_S8_ACC(3) GZ_S8_ACC(4) GZ_S8_ACC(5) GZ_S8_ACC(6) GZ_S8_ACC(7)
  const std::uint8_t* xb = x;  // segment s's bytes at xb + k: xb advances by seg_stride - seg per segment
  for (std::size_t k = 0; k < kc; xb += seg_stride - seg) {
    for (const std::size_t end = k + seg; k < end; k += 4) {
      const __m512i w0 = _mm512_loadu_si512(w + (k / 4) * 64);
      const __m512i w1 = NB > 1 ? _mm512_loadu_si512(w + w_block + (k / 4) * 64) : w0;
      GZ_S8_DOT(0) GZ_S8_DOT(1) GZ_S8_DOT(2) GZ_S8_DOT(3) GZ_S8_DOT(4) GZ_S8_DOT(5) GZ_S8_DOT(6) GZ_S8_DOT(7)
    }
  }
  GZ_S8_OUT(0) GZ_S8_OUT(1) GZ_S8_OUT(2) GZ_S8_OUT(3) GZ_S8_OUT(4) GZ_S8_OUT(5) GZ_S8_OUT(6) GZ_S8_OUT(7)
}
#undef GZ_S8_ACC
#undef GZ_S8_DOT
#undef GZ_S8_OUT

template <int NB>
void gemm_blocks(std::size_t mc, std::size_t nc, std::size_t kc, const std::uint8_t* x, std::size_t xs,
                 std::size_t seg, std::size_t seg_stride, const std::int8_t* w, const std::int32_t* bias, const std::int32_t* mult, const std::int32_t* shift,
                 int zp, int lo, int hi, std::uint8_t* y, std::size_t ys) {
  // Channels past mc: bias 0, multiplier 2^30, shift 32 (a valid rule; never stored).
  __mmask16 km[NB];
  __m512i vb[NB];
  const Rq16 unused(_mm512_set1_epi32(1 << 30), _mm512_set1_epi32(32));
  Rq16 rq[NB] = {unused};
  for (int b = 0; b < NB; ++b) {
    const std::size_t m0 = 16 * std::size_t(b);
    km[b] = lanes(mc > m0 ? mc - m0 : 0);
    vb[b] = _mm512_maskz_loadu_epi32(km[b], bias + m0);
    rq[b] = Rq16(_mm512_mask_loadu_epi32(_mm512_set1_epi32(1 << 30), km[b], mult + m0),
                 _mm512_mask_loadu_epi32(_mm512_set1_epi32(32), km[b], shift + m0));
  }
  const std::size_t w_block = (kc / 4) * 64;
  const __m512i vzp = _mm512_set1_epi32(zp), vlo = _mm512_set1_epi32(lo), vhi = _mm512_set1_epi32(hi);
  std::size_t n = 0;
  for (; n + 8 <= nc; n += 8)
    gemm_tile<8, NB>(km, kc, x + n * xs, xs, seg, seg_stride, w, w_block, vb, rq, vzp, vlo, vhi, y + n * ys, ys);
  const std::uint8_t* xn = x + n * xs;
  std::uint8_t* yn = y + n * ys;
  switch (nc - n) {
    case 7: gemm_tile<7, NB>(km, kc, xn, xs, seg, seg_stride, w, w_block, vb, rq, vzp, vlo, vhi, yn, ys); break;
    case 6: gemm_tile<6, NB>(km, kc, xn, xs, seg, seg_stride, w, w_block, vb, rq, vzp, vlo, vhi, yn, ys); break;
    case 5: gemm_tile<5, NB>(km, kc, xn, xs, seg, seg_stride, w, w_block, vb, rq, vzp, vlo, vhi, yn, ys); break;
    case 4: gemm_tile<4, NB>(km, kc, xn, xs, seg, seg_stride, w, w_block, vb, rq, vzp, vlo, vhi, yn, ys); break;
    case 3: gemm_tile<3, NB>(km, kc, xn, xs, seg, seg_stride, w, w_block, vb, rq, vzp, vlo, vhi, yn, ys); break;
    case 2: gemm_tile<2, NB>(km, kc, xn, xs, seg, seg_stride, w, w_block, vb, rq, vzp, vlo, vhi, yn, ys); break;
    case 1: gemm_tile<1, NB>(km, kc, xn, xs, seg, seg_stride, w, w_block, vb, rq, vzp, vlo, vhi, yn, ys); break;
    default: break;
  }
}

}  // namespace

void s8_gemm_8x16c4_avx512vnni(std::size_t mc, std::size_t nc, std::size_t kc, const std::uint8_t* x,
                               std::size_t x_stride, std::size_t seg, std::size_t seg_stride, const std::int8_t* w,
                               const std::int32_t* bias, const std::int32_t* mult, const std::int32_t* shift, int zp,
                               int lo, int hi, std::uint8_t* y, std::size_t y_stride) {
  assert(mc >= 1 && kc % 4 == 0 && seg % 4 == 0 && seg >= 4 && kc % seg == 0);
  const std::size_t w_block = (kc / 4) * 64;
  std::size_t m = 0;
  for (; m + 16 < mc; m += 32)  // pairs of blocks (the last pair may be partial)
    gemm_blocks<2>(std::min<std::size_t>(32, mc - m), nc, kc, x, x_stride, seg, seg_stride, w + (m / 16) * w_block,
                   bias + m, mult + m, shift + m, zp, lo, hi, y + m, y_stride);
  if (m < mc)
    gemm_blocks<1>(mc - m, nc, kc, x, x_stride, seg, seg_stride, w + (m / 16) * w_block, bias + m, mult + m,
                   shift + m, zp, lo, hi, y + m, y_stride);
}

namespace {

// K x K depthwise of one output row, 16 channels per vector, P = 4 pixels of stride S per step: each window row's
// S (P - 1) + K input pixels are loaded and widened once and shared by the four outputs' taps.
// P output pixels (stride S) of one 16-channel block: window rows in pairs (u, u + 1), each column of the pair
// loaded once, its two rows' bytes interleaved and widened to int16 pairs (one int32 lane per channel: row u
// low, row u + 1 high), then one VPDPWSSD per tap column and pixel multiplies both rows by the paired weights
// `wp` (row u's weight low, row u + 1's high; an odd K's last row pairs with zero). The products (0..255 by
// -128..127) and their sums are exact in int32, as in the scalar twin.
template <int K, int S, int P>
inline void dw_pixels(const std::uint8_t* p, std::size_t x_pixel, std::size_t x_row, __mmask16 km, const __m512i* wp,
                      __m512i vb, const Rq16& rq, __m512i vzp, __m512i vlo, __m512i vhi, std::uint8_t* y,
                      std::size_t y_pixel) {
  constexpr int COLS = S * (P - 1) + K;
  __m512i acc[P];
  for (int i = 0; i < P; ++i) acc[i] = vb;
  for (int u = 0; u < K; u += 2) {
    __m512i col[COLS];
    for (int q = 0; q < COLS; ++q) {
      const std::uint8_t* pq = p + std::size_t(u) * x_row + std::size_t(q) * x_pixel;
      const __m128i a = _mm_maskz_loadu_epi8(km, pq);
      const __m128i b = u + 1 < K ? _mm_maskz_loadu_epi8(km, pq + x_row) : _mm_setzero_si128();
      const __m256i ab = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_unpacklo_epi8(a, b)),
                                                 _mm_unpackhi_epi8(a, b), 1);
      col[q] = _mm512_cvtepu8_epi16(ab);
    }
    for (int v = 0; v < K; ++v) {
      const __m512i w = wp[(u / 2) * K + v];
      for (int i = 0; i < P; ++i) acc[i] = _mm512_dpwssd_epi32(acc[i], col[S * i + v], w);
    }
  }
  for (int i = 0; i < P; ++i) finish_store(y + std::size_t(i) * y_pixel, km, acc[i], rq, vzp, vlo, vhi);
}

// K x K depthwise of one output row, 16 channels per vector, 4 pixels per step (dw_pixels), then one at a time.
template <int K, int S>
void dw_row(std::size_t w_out, std::size_t ch, const std::uint8_t* x, std::size_t x_pixel, std::size_t x_row,
            const std::int32_t* w, std::size_t w_stride, const std::int32_t* bias, const std::int32_t* mult,
            const std::int32_t* shift, int zp, int lo, int hi, std::uint8_t* y, std::size_t y_pixel) {
  constexpr int P = 4;
  const __m512i vzp = _mm512_set1_epi32(zp), vlo = _mm512_set1_epi32(lo), vhi = _mm512_set1_epi32(hi);
  const __m512i low16 = _mm512_set1_epi32(0xFFFF);
  const std::size_t step = std::size_t(S) * x_pixel;
  for (std::size_t c = 0; c < ch; c += 16) {
    const __mmask16 km = lanes(ch - c);
    const __m512i vb = _mm512_maskz_loadu_epi32(km, bias + c);
    const Rq16 rq(_mm512_mask_loadu_epi32(_mm512_set1_epi32(1 << 30), km, mult + c),
                  _mm512_mask_loadu_epi32(_mm512_set1_epi32(32), km, shift + c));
    // The weights of rows u and u + 1 as int16 pairs (the int8 weights fit int16).
    __m512i wp[((K + 1) / 2) * K];
    for (int u = 0; u < K; u += 2)
      for (int v = 0; v < K; ++v) {
        const __m512i w0 = _mm512_loadu_si512(w + c + std::size_t(u * K + v) * w_stride);
        const __m512i w1 = u + 1 < K ? _mm512_loadu_si512(w + c + std::size_t((u + 1) * K + v) * w_stride)
                                     : _mm512_setzero_si512();
        wp[(u / 2) * K + v] = _mm512_or_si512(_mm512_and_si512(w0, low16), _mm512_slli_epi32(w1, 16));
      }
    const std::uint8_t* xc = x + c;
    std::size_t j = 0;
    for (; j + P <= w_out; j += P)
      dw_pixels<K, S, P>(xc + j * step, x_pixel, x_row, km, wp, vb, rq, vzp, vlo, vhi, y + j * y_pixel + c, y_pixel);
    for (; j < w_out; ++j)
      dw_pixels<K, S, 1>(xc + j * step, x_pixel, x_row, km, wp, vb, rq, vzp, vlo, vhi, y + j * y_pixel + c, y_pixel);
  }
}

}  // namespace

void s8_dwconv_c16_avx512vnni(std::size_t w_out, std::size_t ch, int k, int stride, const std::uint8_t* x,
                              std::size_t x_pixel, std::size_t x_row, const std::int32_t* w, std::size_t w_stride,
                              const std::int32_t* bias, const std::int32_t* mult, const std::int32_t* shift, int zp,
                              int lo, int hi, std::uint8_t* y, std::size_t y_pixel) {
  assert((k == 3 || k == 5) && (stride == 1 || stride == 2));
  const auto fn = k == 3 ? (stride == 1 ? dw_row<3, 1> : dw_row<3, 2>) : (stride == 1 ? dw_row<5, 1> : dw_row<5, 2>);
  fn(w_out, ch, x, x_pixel, x_row, w, w_stride, bias, mult, shift, zp, lo, hi, y, y_pixel);
}

void s8_add_x16_avx512vnni(std::size_t n, const std::uint8_t* a, int za, std::int32_t ma, const std::uint8_t* b,
                           int zb, std::int32_t mb, int shift, int zp, int lo, int hi, std::uint8_t* y) {
  assert(shift >= 10 && shift <= 62);
  const __m512i vza = _mm512_set1_epi32(za), vzb = _mm512_set1_epi32(zb);
  const __m512i vma = _mm512_set1_epi64(ma), vmb = _mm512_set1_epi64(mb);
  const __m512i rnd = _mm512_set1_epi64(std::int64_t(1) << (shift - 1));
  const __m512i cnt = _mm512_set1_epi64(shift);
  const __m512i vzp = _mm512_set1_epi32(zp), vlo = _mm512_set1_epi32(lo), vhi = _mm512_set1_epi32(hi);
  for (std::size_t i = 0; i < n; i += 16) {
    const __mmask16 km = lanes(n - i);
    const __m512i da = _mm512_sub_epi32(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(km, a + i)), vza);
    const __m512i db = _mm512_sub_epi32(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(km, b + i)), vzb);
    __m512i te = _mm512_add_epi64(_mm512_add_epi64(_mm512_mul_epi32(da, vma), _mm512_mul_epi32(db, vmb)), rnd);
    __m512i to = _mm512_add_epi64(_mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64(da, 32), vma),
                                                   _mm512_mul_epi32(_mm512_srli_epi64(db, 32), vmb)), rnd);
    te = _mm512_srav_epi64(te, cnt);
    to = _mm512_srav_epi64(to, cnt);
    __m512i v = _mm512_mask_blend_epi32(0xAAAA, te, _mm512_slli_epi64(to, 32));  // |result| < 2^30
    v = _mm512_min_epi32(_mm512_max_epi32(_mm512_add_epi32(vzp, v), vlo), vhi);
    _mm512_mask_cvtusepi32_storeu_epi8(y + i, km, v);
  }
}

}  // namespace kernels
}  // namespace gazecrop
