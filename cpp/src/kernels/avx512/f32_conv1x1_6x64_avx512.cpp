// AVX-512F 1x1 convolution (GEMM) tile: up to 6 output channels x 64 pixels (24 zmm accumulators), FMA
// broadcast. Odd pixel counts end in the narrowest tile of 16, 32, 48 or 64 pixels that covers them, its last
// vector masked; odd channel counts take a smaller compile-time MR (1 .. 6).
// Twins: ../avx2/f32_conv1x1_6x16_avx2.cpp, ../scalar/f32_conv1x1_6x16_scalar.cpp (same signature; the tile
// only sets how many pixels one call of the inner loop covers, the packer's 6-row tiles are shared).
#include "../kernels.h"
#include "conv_flat_avx512.inc"

namespace gazecrop {
namespace kernels {

void f32_conv1x1_6x64_avx512(std::size_t mr, std::size_t nc, std::size_t kc, const float* x, std::size_t x_stride,
                             std::ptrdiff_t row_stride, const float* w, const float* bias, float* y,
                             std::size_t y_stride, int act) {
  conv_flat_avx512<1>(mr, nc, kc, x, x_stride, row_stride, w, bias, y, y_stride, act);
}

// The same family over whole rows (ConvRowsFn: w a multiple of 16), four 16-pixel vectors per tile across rows.
void f32_conv1x1_rows_6x64_avx512(std::size_t mr, std::size_t rows, std::size_t w, std::size_t kc, const float* x,
                                  std::size_t x_stride, std::ptrdiff_t row_stride, const float* wt,
                                  const float* bias, float* y, std::size_t y_stride, int act) {
  conv_rows_avx512<1>(mr, rows, w, kc, x, x_stride, row_stride, wt, bias, y, y_stride, act);
}

}  // namespace kernels
}  // namespace gazecrop
