// Op 1 conv2d: kernel 1 or 3, stride 1 or 2, zero padding, bias, fused activation.
// 1x1/stride 1 and 3x3/stride 1/padding 1 run the flat kernels straight on the input planes; every other
// case gathers im2col columns in the output's padded layout and runs the 1x1 (GEMM) kernel on them.
#include <algorithm>

#include "conv_common.h"

namespace gazecrop {
namespace detail {
namespace {

class Conv2d final : public Op {
 public:
  Conv2d(const OpRecord& rec, const std::vector<TensorRecord>& t)
      : k_(rec.iparams[2]), s_(rec.iparams[3]), p_(rec.iparams[4]), act_(rec.iparams[5]) {
    const TensorRecord& w = t[rec.first_tensor];
    const TensorRecord& b = t[rec.first_tensor + 1];
    pc_ = pack_conv(w.values.data(), b.values.data(), rec.iparams[1], rec.iparams[0], k_);
  }

  Shape out_shape(const std::vector<Shape>& in) const override {
    return {pc_.cout, window_out(label, "height", in[0].h, k_, s_, p_), window_out(label, "width", in[0].w, k_, s_, p_)};
  }

  void run(const RunContext& ctx, const std::vector<Frame>& in, const Frame& out) const override {
    const Frame& x = in[0];
    if (k_ == 1 && s_ == 1) return conv_flat(ctx, pc_, false, x.data, x.plane, out, 0, act_);
    if (k_ == 3 && s_ == 1 && p_ == 1) return conv_flat(ctx, pc_, true, x.data, x.plane, out, 0, act_);
    // im2col into the output's layout: row (c, u, v) holds x[c, s i + u - p, s j + v - p] at pixel (i, j).
    // Input rows -1 and H (and columns) are the zero ring, so padding <= 1 needs no bounds checks.
    const int kk = k_ * k_;
    const std::size_t rows = std::size_t(x.c) * kk;
    AlignedBuffer cols(rows * out.plane);
    ctx.pool.run(rows, [&](std::size_t r) {
      const int c = int(r / kk), u = int(r % kk) / k_, v = int(r % kk) % k_;
      float* dst = cols.data() + r * out.plane;
      for (int i = 0; i < out.h; ++i) {
        const float* src = x.pixel(c, s_ * i + u - p_, v - p_);
        float* d = dst + (std::size_t(i) + 1) * out.row + 1;
        for (int j = 0; j < out.w; ++j) d[j] = src[std::size_t(s_) * j];
      }
    });
    conv_flat(ctx, pc_, false, cols.data(), out.plane, out, 0, act_);
  }

 private:
  int k_, s_, p_, act_;
  PackedConv pc_;
};

}  // namespace

std::unique_ptr<Op> make_conv2d(const OpRecord& rec, const std::vector<TensorRecord>& t) {
  return std::make_unique<Conv2d>(rec, t);
}

int window_out(const std::string& label, const char* axis, int n, int kernel, int stride, int padding) {
  const int m = (n + 2 * padding - kernel) / stride + 1;
  if (n + 2 * padding - kernel < 0 || m < 1)
    throw std::invalid_argument(label + ": input " + axis + " " + std::to_string(n) + " too small for kernel " +
                                std::to_string(kernel) + ", stride " + std::to_string(stride) + ", padding " +
                                std::to_string(padding));
  return m;
}

}  // namespace detail
}  // namespace gazecrop
