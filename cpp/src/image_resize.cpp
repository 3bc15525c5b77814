// Antialiased bilinear resize of interleaved uint8 images, bit for bit the rule of Pillow's
// Image.resize(size, Image.BILINEAR, reducing_gap=None) (the "convolution" resampling of libImaging): a
// triangle filter widened by the scale when shrinking, coefficients normalised per output pixel and rounded
// to 22-bit fixed point, a horizontal pass to uint8 (rounded, clamped) over the rows the vertical pass
// needs, then the vertical pass (or the vertical pass first, Pillow 13's order for images whose height
// shrinks much more than their width; see resize_bilinear_u8). Integer sums are exact, so the result does not depend on the order of the
// additions; only the coefficients come from floating point, computed with the same double expressions in
// the same order (this file is built with -ffp-contract=off, see CMakeLists.txt, so no FMA changes their
// rounding).
//
// Speed (the reason this exists): the horizontal pass, which does most of the work, runs on blocks of 8 rows
// transposed so that each tap is one 8-lane multiply-add (AVX2 where the CPU has it); the vertical pass runs
// along whole rows (vectorised by the compiler). Temporaries: one uint8 image between the passes and one transposed block.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define GAZECROP_RESIZE_AVX2 1
#else
#define GAZECROP_RESIZE_AVX2 0
#endif
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "gazecrop/gazecrop.h"
#include "kernels/kernels.h"  // cpu_features(): the core's one CPUID reading

namespace gazecrop {
namespace {

constexpr int kPrecision = 22;           // fixed-point bits of a coefficient (32 - 8 bits of pixel - 2 spare)
constexpr int kHalf = 1 << (kPrecision - 1);

// One axis: for each output index, the first input index and the tap count, and the taps' fixed-point
// coefficients (ksize slots per output, unused ones zero).
struct Axis {
  int ksize = 0;
  std::vector<int> first, count;
  std::vector<std::int32_t> coef;
};

double triangle(double x) {
  if (x < 0.0) x = -x;
  return x < 1.0 ? 1.0 - x : 0.0;
}

Axis axis_coefficients(int in_size, int out_size) {
  Axis a;
  const double scale = double(in_size) / out_size;
  const double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = 1.0 * filterscale;
  a.ksize = int(std::ceil(support)) * 2 + 1;
  a.first.resize(out_size);
  a.count.resize(out_size);
  a.coef.assign(std::size_t(out_size) * a.ksize, 0);
  std::vector<double> w(a.ksize);
  const double ss = 1.0 / filterscale;
  for (int o = 0; o < out_size; ++o) {
    const double center = 0.0 + (o + 0.5) * scale;
    int lo = int(center - support + 0.5);
    if (lo < 0) lo = 0;
    int hi = int(center + support + 0.5);
    if (hi > in_size) hi = in_size;
    const int n = hi - lo;
    double total = 0.0;
    for (int k = 0; k < n; ++k) {
      w[k] = triangle((k + lo - center + 0.5) * ss);
      total += w[k];
    }
    std::int32_t* c = &a.coef[std::size_t(o) * a.ksize];
    for (int k = 0; k < n; ++k) {
      const double v = total != 0.0 ? w[k] / total : w[k];
      c[k] = v < 0 ? std::int32_t(-0.5 + v * (1 << kPrecision)) : std::int32_t(0.5 + v * (1 << kPrecision));
    }
    a.first[o] = lo;
    a.count[o] = n;
  }
  return a;
}

inline std::uint8_t clamp8(std::int32_t s) {
  const std::int32_t v = s >> kPrecision;
  return std::uint8_t(v < 0 ? 0 : v > 255 ? 255 : v);
}

constexpr int kRows = 8;  // rows per block of the horizontal pass: the lanes of its accumulators

// dst[j * dst_stride + i] = src[i * src_stride + j] for an 8 x 8 block of bytes (SSE2 on x86-64: three rounds
// of interleaving; a plain loop elsewhere).
inline void transpose8x8(const std::uint8_t* src, std::size_t src_stride, std::uint8_t* dst, std::size_t dst_stride) {
#if defined(__SSE2__)
  __m128i a[8];
  for (int i = 0; i < 8; ++i) a[i] = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(src + i * src_stride));
  const __m128i t0 = _mm_unpacklo_epi8(a[0], a[1]), t1 = _mm_unpacklo_epi8(a[2], a[3]);
  const __m128i t2 = _mm_unpacklo_epi8(a[4], a[5]), t3 = _mm_unpacklo_epi8(a[6], a[7]);
  const __m128i u0 = _mm_unpacklo_epi16(t0, t1), u1 = _mm_unpackhi_epi16(t0, t1);
  const __m128i u2 = _mm_unpacklo_epi16(t2, t3), u3 = _mm_unpackhi_epi16(t2, t3);
  const __m128i v[4] = {_mm_unpacklo_epi32(u0, u2), _mm_unpackhi_epi32(u0, u2), _mm_unpacklo_epi32(u1, u3),
                        _mm_unpackhi_epi32(u1, u3)};
  for (int j = 0; j < 4; ++j) {
    _mm_storel_epi64(reinterpret_cast<__m128i*>(dst + (2 * j) * dst_stride), v[j]);
    _mm_storel_epi64(reinterpret_cast<__m128i*>(dst + (2 * j + 1) * dst_stride), _mm_unpackhi_epi64(v[j], v[j]));
  }
#else
  for (int i = 0; i < 8; ++i)
    for (int j = 0; j < 8; ++j) dst[j * dst_stride + i] = src[i * src_stride + j];
#endif
}

// One block of the horizontal pass: for every output byte q = o C + c, res[q kRows + r] = the rounded,
// clamped sum over output pixel o's taps k of col[((first[o] + k) C + c) kRows + r] x coef[o][k].
using MacFn = void (*)(const std::uint8_t* col, int C, const Axis& ax, int out_w, std::uint8_t* res);

void mac_generic(const std::uint8_t* col, int C, const Axis& ax, int out_w, std::uint8_t* res) {
  for (int o = 0; o < out_w; ++o) {
    const std::int32_t* w = &ax.coef[std::size_t(o) * ax.ksize];
    const int n = ax.count[o];
    for (int c = 0; c < C; ++c) {
      const std::uint8_t* v = &col[(std::size_t(ax.first[o]) * C + c) * kRows];
      std::int32_t acc[kRows];
      for (int r = 0; r < kRows; ++r) acc[r] = kHalf;
      for (int k = 0; k < n; ++k, v += C * kRows)
        for (int r = 0; r < kRows; ++r) acc[r] += std::int32_t(v[r]) * w[k];
      std::uint8_t* out = &res[(std::size_t(o) * C + c) * kRows];
      for (int r = 0; r < kRows; ++r) out[r] = clamp8(acc[r]);
    }
  }
}

#if GAZECROP_RESIZE_AVX2
// The same with AVX2: each tap is one zero-extension of 8 bytes, one 8-lane 32-bit multiply and one add.
__attribute__((target("avx2"))) void mac_avx2(const std::uint8_t* col, int C, const Axis& ax, int out_w,
                                              std::uint8_t* res) {
  const __m256i half = _mm256_set1_epi32(kHalf), zero = _mm256_setzero_si256(), top = _mm256_set1_epi32(255);
  for (int o = 0; o < out_w; ++o) {
    const std::int32_t* w = &ax.coef[std::size_t(o) * ax.ksize];
    const int n = ax.count[o];
    for (int c = 0; c < C; ++c) {
      const std::uint8_t* v = &col[(std::size_t(ax.first[o]) * C + c) * kRows];
      __m256i acc = half;
      for (int k = 0; k < n; ++k, v += C * kRows) {
        const __m256i x = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(v)));
        acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(x, _mm256_set1_epi32(w[k])));
      }
      acc = _mm256_min_epi32(_mm256_max_epi32(_mm256_srai_epi32(acc, kPrecision), zero), top);
      const __m128i words = _mm_packs_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
      _mm_storel_epi64(reinterpret_cast<__m128i*>(&res[(std::size_t(o) * C + c) * kRows]),
                       _mm_packus_epi16(words, words));
    }
  }
}
#endif

// AVX2 when the CPU has it and the core's kernel set is not forced to "scalar" (GAZECROP_ISA, set_kernel_set).
MacFn mac_function() {
#if GAZECROP_RESIZE_AVX2
  if (kernels::cpu_features().avx2 && std::strcmp(kernel_set(), "scalar") != 0) return mac_avx2;
#endif
  return mac_generic;
}

// Horizontal pass of `rows` rows starting at src row `row0`: dst is rows x out_w x C. Blocks of kRows rows
// are transposed into `col` (byte p of the row, then the kRows rows), so that every tap multiplies kRows
// pixels by one coefficient and sums stay in their lanes (no reduction across lanes); the results, kRows
// bytes per output byte in `res`, are transposed back into the rows.
template <int C>
void horizontal_rows(const std::uint8_t* src, int in_w, int row0, int rows, const Axis& ax, int out_w,
                     std::uint8_t* dst) {
  const MacFn mac = mac_function();
  const std::size_t line = std::size_t(in_w) * C, out_line = std::size_t(out_w) * C;
  std::vector<std::uint8_t> col(line * kRows), res(out_line * kRows);
  for (int r0 = 0; r0 < rows; r0 += kRows) {
    const int nr = std::min(kRows, rows - r0);
    const std::uint8_t* block = src + std::size_t(row0 + r0) * line;
    std::size_t p = 0;
    if (nr == kRows)
      for (; p + 8 <= line; p += 8) transpose8x8(block + p, line, &col[p * kRows], kRows);
    for (int r = 0; r < kRows; ++r) {  // the tail; a short last block repeats its last row (dropped below)
      const std::uint8_t* s = block + std::size_t(std::min(r, nr - 1)) * line;
      for (std::size_t q = p; q < line; ++q) col[q * kRows + r] = s[q];
    }
    mac(col.data(), C, ax, out_w, res.data());
    std::uint8_t* drow = dst + std::size_t(r0) * out_line;
    std::size_t q = 0;
    if (nr == kRows)
      for (; q + 8 <= out_line; q += 8) transpose8x8(&res[q * kRows], kRows, drow + q, out_line);
    for (int r = 0; r < nr; ++r)
      for (std::size_t j = q; j < out_line; ++j) drow[std::size_t(r) * out_line + j] = res[j * kRows + r];
  }
}

void horizontal(const std::uint8_t* src, int in_w, int C, int row0, int rows, const Axis& ax, int out_w,
                std::uint8_t* dst) {
  switch (C) {
    case 1: return horizontal_rows<1>(src, in_w, row0, rows, ax, out_w, dst);
    case 2: return horizontal_rows<2>(src, in_w, row0, rows, ax, out_w, dst);
    case 3: return horizontal_rows<3>(src, in_w, row0, rows, ax, out_w, dst);
    default: return horizontal_rows<4>(src, in_w, row0, rows, ax, out_w, dst);
  }
}

// Vertical pass: src is (rows) x width bytes per row (width = out_w x C), dst out_h x width.
void vertical(const std::uint8_t* src, std::size_t width, const Axis& ax, int out_h, int shift, std::uint8_t* dst) {
  std::vector<std::int32_t> acc(width);
  for (int o = 0; o < out_h; ++o) {
    std::fill(acc.begin(), acc.end(), kHalf);
    const std::int32_t* c = &ax.coef[std::size_t(o) * ax.ksize];
    for (int k = 0; k < ax.count[o]; ++k) {
      const std::uint8_t* p = src + std::size_t(ax.first[o] - shift + k) * width;
      const std::int32_t w = c[k];
      for (std::size_t j = 0; j < width; ++j) acc[j] += std::int32_t(p[j]) * w;
    }
    std::uint8_t* out = dst + std::size_t(o) * width;
    for (std::size_t j = 0; j < width; ++j) out[j] = clamp8(acc[j]);
  }
}

}  // namespace

void resize_bilinear_u8(const std::uint8_t* src, int in_h, int in_w, int channels, std::uint8_t* dst, int out_h,
                        int out_w) {
  if (in_h < 1 || in_w < 1 || out_h < 1 || out_w < 1)
    throw std::invalid_argument("resize: sizes must be at least 1x1, got " + std::to_string(in_h) + "x" +
                                std::to_string(in_w) + " -> " + std::to_string(out_h) + "x" + std::to_string(out_w));
  if (channels < 1 || channels > 4) throw std::invalid_argument("resize: 1 to 4 channels, got " + std::to_string(channels));
  constexpr int kMax = 1 << 16;  // keeps every index and product count far inside int
  if (in_h > kMax || in_w > kMax || out_h > kMax || out_w > kMax)
    throw std::invalid_argument("resize: sides above 65536 pixels are not supported");
  const std::size_t width = std::size_t(out_w) * channels;
  if (out_w == in_w && out_h == in_h) {
    std::memcpy(dst, src, std::size_t(in_h) * width);
    return;
  }
  const Axis ay = axis_coefficients(in_h, out_h);
  if (out_w == in_w) {  // no horizontal pass (Pillow skips it too)
    vertical(src, width, ay, out_h, 0, dst);
    return;
  }
  const Axis ax = axis_coefficients(in_w, out_w);
  if (out_h == in_h) {
    horizontal(src, in_w, channels, 0, in_h, ax, out_w, dst);
    return;
  }
  if (out_h < in_h && long(in_h) - out_h > 2 * (long(in_w) - out_w)) {
    // Pillow 13's order (python-pillow/Pillow#9549): the vertical pass first when the height loses more than
    // twice the pixels the width loses (measured on Pillow 13.0: the boundary is exact, ties stay horizontal
    // first). Pillow 12 and earlier always ran the horizontal pass first; the two orders differ by at most 1
    // in a few pixels, and only for such sizes.
    std::vector<std::uint8_t> mid(std::size_t(out_h) * in_w * channels);
    vertical(src, std::size_t(in_w) * channels, ay, out_h, 0, mid.data());
    horizontal(mid.data(), in_w, channels, 0, out_h, ax, out_w, dst);
    return;
  }
  const int row0 = ay.first[0];
  const int rows = ay.first[out_h - 1] + ay.count[out_h - 1] - row0;  // the rows the vertical pass reads
  std::vector<std::uint8_t> mid(std::size_t(rows) * width);
  horizontal(src, in_w, channels, row0, rows, ax, out_w, mid.data());
  vertical(mid.data(), width, ay, out_h, row0, dst);
}

}  // namespace gazecrop
