// NEON (AArch64 Advanced SIMD) 1x1 convolution (GEMM) tile: up to 6 output channels x 16 pixels (four 4-float vectors), FMA broadcast.
// Row ends run 8-, 4- and lane-by-lane 1..3-pixel tiles; odd channel counts a smaller compile-time MR (1 .. 6).
// Scalar twin: ../scalar/f32_conv1x1_6x16_scalar.cpp; x86 twin: ../avx2/f32_conv1x1_6x16_avx2.cpp.
#include "../kernels.h"
#include "conv_flat_neon.inc"

namespace gazecrop {
namespace kernels {

void f32_conv1x1_6x16_neon(std::size_t mr, std::size_t nc, std::size_t kc, const float* x, std::size_t x_stride,
                           std::ptrdiff_t row_stride, const float* w, const float* bias, float* y,
                           std::size_t y_stride, int act) {
  conv_flat_neon<1>(mr, nc, kc, x, x_stride, row_stride, w, bias, y, y_stride, act);
}

}  // namespace kernels
}  // namespace gazecrop
