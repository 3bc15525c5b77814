// NEON depthwise 3x3 convolution of one channel plane, stride 1 or 2, padding already in memory
// (kernels.h, DwConvFn): 4 pixels of one output row per vector, up to four vectors per step.
// Scalar twin: ../scalar/f32_dwconv3x3_x8_scalar.cpp; x86 twin: ../avx2/f32_dwconv3x3_x8_avx2.cpp.
#include "../kernels.h"
#include "dwconv_neon.inc"

namespace gazecrop {
namespace kernels {

void f32_dwconv3x3_x4_neon(std::size_t h_out, std::size_t w_out, const float* x, std::size_t x_row, int stride,
                           const float* w, float bias, float* y, std::size_t y_row, int act) {
  dwconv_neon<3>(h_out, w_out, x, x_row, stride, w, bias, y, y_row, act);
}

}  // namespace kernels
}  // namespace gazecrop
