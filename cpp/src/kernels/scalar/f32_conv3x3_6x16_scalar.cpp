// Scalar twin of f32_conv3x3_6x16_avx2: 3x3 stride-1 convolution over the padded plane layout.
#include "../kernels.h"
#include "conv_flat_scalar.inc"

namespace gazecrop {
namespace kernels {

void f32_conv3x3_6x16_scalar(std::size_t mr, std::size_t nc, std::size_t kc, const float* x, std::size_t x_stride,
                             std::ptrdiff_t row_stride, const float* w, const float* bias, float* y,
                             std::size_t y_stride, int act) {
  conv_flat_scalar<9>(mr, nc, kc, x, x_stride, row_stride, w, bias, y, y_stride, act);
}

}  // namespace kernels
}  // namespace gazecrop
