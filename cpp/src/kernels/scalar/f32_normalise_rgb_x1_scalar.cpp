// Scalar twin of f32_normalise_rgb_x8_avx2 / f32_normalise_rgb_x16_avx512: interleaved uint8 RGB pixels to
// three normalised float planes, one IEEE division per value (so every set gives the same bits).
#include "../kernels.h"

namespace gazecrop {
namespace kernels {

void f32_normalise_rgb_x1_scalar(std::size_t n, const std::uint8_t* src, const float* mean, const float* std,
                                 float* r, float* g, float* b) {
  float* const dst[3] = {r, g, b};
  for (int c = 0; c < 3; ++c)
    for (std::size_t j = 0; j < n; ++j) dst[c][j] = (float(src[3 * j + std::size_t(c)]) - mean[c]) / std[c];
}

}  // namespace kernels
}  // namespace gazecrop
