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
    // im2col per pixel chunk: row (c, u, v) holds x[c, s i + u - p, s j + v - p] for output pixel (i, j).
    // Input rows/columns -1 and H/W are the zero ring, so padding <= 1 needs no bounds checks; the ring
    // positions of the output range get zero columns.
    const int cin = x.c;
    const GatherFn gather = [&](std::size_t a, std::size_t nc, float* dst, std::size_t ds) {
      for (int c = 0; c < cin; ++c)
        for (int u = 0; u < k_; ++u)
          for (int v = 0; v < k_; ++v) {
            float* d = dst + std::size_t((c * k_ + u) * k_ + v) * ds;
            std::size_t q = a;
            while (q < a + nc) {
              const std::size_t i1 = q / out.row, j1 = q % out.row;  // padded coordinates
              const std::size_t run = std::min(a + nc - q, out.row - j1);
              float* dq = d + (q - a);
              const std::size_t lo = std::max<std::size_t>(j1, 1), hi = std::min(j1 + run, std::size_t(out.w) + 1);
              if (i1 >= 1 && i1 <= std::size_t(out.h) && lo < hi) {
                const float* src = x.pixel(c, s_ * (int(i1) - 1) + u - p_, v - p_);
                for (std::size_t jj = j1; jj < lo; ++jj) dq[jj - j1] = 0.0f;
                if (s_ == 1)
                  for (std::size_t jj = lo; jj < hi; ++jj) dq[jj - j1] = src[jj - 1];
                else
                  ctx.kernels.gather_s2(hi - lo, src + 2 * (lo - 1), dq + (lo - j1));
                for (std::size_t jj = hi; jj < j1 + run; ++jj) dq[jj - j1] = 0.0f;
              } else {
                for (std::size_t t = 0; t < run; ++t) dq[t] = 0.0f;
              }
              q += run;
            }
          }
    };
    conv_flat(ctx, pc_, false, nullptr, 0, out, 0, act_, &gather);
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
