// Scalar int8 kernels (kernels.h, "int8"): the GEMM of 1x1 / im2col convolutions (4 pixels x 16 output channels
// per step), the depthwise convolution of one output row (one channel at a time) and the int8 add, plus the one
// requantisation rule. The reference the AVX2 and AVX-512 VNNI twins (s8_kernels_avx2.cpp,
// s8_kernels_avx512vnni.cpp) reproduce byte for byte; the set for "scalar" and "neon" (no NEON int8 kernels yet).
#include <algorithm>
#include <cassert>

#include "../kernels.h"

namespace gazecrop {
namespace kernels {

std::int32_t requantize(std::int32_t acc, std::int32_t mult, std::int32_t shift) {
  assert(mult >= 0 && shift >= 1 && shift <= 62);
  const std::int64_t p = std::int64_t(acc) * mult + (std::int64_t(1) << (shift - 1));
  return std::int32_t(p >> shift);  // arithmetic shift (defined in C++20; GCC, Clang and MSVC do it in C++17)
}

void s8_gemm_4x16c4_scalar(std::size_t mc, std::size_t nc, std::size_t kc, const std::uint8_t* x, std::size_t x_stride,
                           std::size_t seg, std::size_t seg_stride, const std::int8_t* w, const std::int32_t* bias,
                           const std::int32_t* mult, const std::int32_t* shift, int zp, int lo, int hi, std::uint8_t* y,
                           std::size_t y_stride) {
  assert(mc >= 1 && kc % 4 == 0 && seg % 4 == 0 && seg >= 4 && kc % seg == 0);
  if (mc > 16) {  // block by block
    for (std::size_t m0 = 0; m0 < mc; m0 += 16)
      s8_gemm_4x16c4_scalar(std::min<std::size_t>(16, mc - m0), nc, kc, x, x_stride, seg, seg_stride,
                            w + (m0 / 16) * (kc / 4) * 64, bias + m0, mult + m0, shift + m0, zp, lo, hi, y + m0,
                            y_stride);
    return;
  }
  for (std::size_t n0 = 0; n0 < nc; n0 += 4) {
    const std::size_t nr = std::min<std::size_t>(4, nc - n0);
    std::int32_t acc[4][16];
    for (std::size_t n = 0; n < nr; ++n)
      for (std::size_t m = 0; m < 16; ++m) acc[n][m] = m < mc ? bias[m] : 0;
    for (std::size_t k = 0; k < kc; k += 4) {
      const std::int8_t* wk = w + (k / 4) * 64;
      for (std::size_t n = 0; n < nr; ++n) {
        const std::uint8_t* xn = x + (n0 + n) * x_stride + (k / seg) * seg_stride + k % seg;
        for (std::size_t m = 0; m < mc; ++m)
          for (std::size_t j = 0; j < 4; ++j) acc[n][m] += std::int32_t(wk[m * 4 + j]) * std::int32_t(xn[j]);
      }
    }
    for (std::size_t n = 0; n < nr; ++n)
      for (std::size_t m = 0; m < mc; ++m) {
        const std::int32_t v = zp + requantize(acc[n][m], mult[m], shift[m]);
        y[(n0 + n) * y_stride + m] = std::uint8_t(std::min(std::max(v, lo), hi));
      }
  }
}

void s8_dwconv_c1_scalar(std::size_t w_out, std::size_t ch, int k, int stride, const std::uint8_t* x,
                         std::size_t x_pixel, std::size_t x_row, const std::int32_t* w, std::size_t w_stride,
                         const std::int32_t* bias, const std::int32_t* mult, const std::int32_t* shift, int zp, int lo,
                         int hi, std::uint8_t* y, std::size_t y_pixel) {
  assert((k == 3 || k == 5) && (stride == 1 || stride == 2));
  for (std::size_t j = 0; j < w_out; ++j) {
    const std::uint8_t* xj = x + std::size_t(stride) * j * x_pixel;
    for (std::size_t c = 0; c < ch; ++c) {
      std::int32_t acc = bias[c];
      for (int u = 0; u < k; ++u)
        for (int v = 0; v < k; ++v)
          acc += w[std::size_t(u * k + v) * w_stride + c] *
                 std::int32_t(xj[std::size_t(u) * x_row + std::size_t(v) * x_pixel + c]);
      const std::int32_t r = zp + requantize(acc, mult[c], shift[c]);
      y[j * y_pixel + c] = std::uint8_t(std::min(std::max(r, lo), hi));
    }
  }
}

void s8_add_x1_scalar(std::size_t n, const std::uint8_t* a, int za, std::int32_t ma, const std::uint8_t* b, int zb,
                      std::int32_t mb, int shift, int zp, int lo, int hi, std::uint8_t* y) {
  assert(shift >= 1 && shift <= 62);
  const std::int64_t round = std::int64_t(1) << (shift - 1);
  for (std::size_t i = 0; i < n; ++i) {
    const std::int64_t t = std::int64_t(a[i] - za) * ma + std::int64_t(b[i] - zb) * mb + round;
    const std::int64_t r = zp + (t >> shift);
    y[i] = std::uint8_t(std::min<std::int64_t>(std::max<std::int64_t>(r, lo), hi));
  }
}

}  // namespace kernels
}  // namespace gazecrop
