// Op 10 depthwise_conv2d: one K x K filter (K 3 or 5) per channel, stride 1 or 2, zero padding per side (or
// TensorFlow "same"), bias, fused ReLU / ReLU6. Each channel plane is one DwConvFn call (kernels.h). With at
// most one pixel of padding on every side the kernel reads the input frame directly (its zero ring is the
// padding); otherwise the plane is first copied into a zero-padded scratch plane (kernels/README.md).
#include <algorithm>
#include <cstring>

#include "op.h"

namespace gazecrop {
namespace detail {
namespace {

class DepthwiseConv2d final : public Op {
 public:
  DepthwiseConv2d(const OpRecord& rec, const std::vector<TensorRecord>& t)
      : c_(rec.iparams[0]), k_(rec.iparams[2]), s_(rec.iparams[3]), act_(kernel_act(rec.iparams[5])),
        pad_(PadRule::from_record(rec)), w_(t[rec.first_tensor].values), b_(t[rec.first_tensor + 1].values) {}

  Shape out_shape(const std::vector<Shape>& in) const override {
    return padded_out(label, c_, in[0].h, in[0].w, k_, s_, pad_.at(in[0].h, in[0].w));
  }

  OpCost cost(const std::vector<Shape>& in, const Shape& out) const override {
    OpCost c;
    c.flops = 2.0 * c_ * double(k_) * k_ * double(out.h) * out.w;
    c.bytes = value_bytes(in[0]) + value_bytes(out) + 4.0 * c_ * (double(k_) * k_ + 1.0);
    const Pads p = pad_.at(in[0].h, in[0].w);
    const bool direct = p.top <= 1 && p.bottom <= 1 && p.left <= 1 && p.right <= 1;
    c.what = "dw " + std::to_string(k_) + "x" + std::to_string(k_) + " s" + std::to_string(s_) +
             (direct ? "" : " scratch");
    return c;
  }

  FusionView fusion_view() const override {
    FusionView v;
    v.kind = FusionView::kDepthwise;
    v.act = act_;
    v.c = c_;
    v.k = k_;
    v.stride = s_;
    v.pad = &pad_;
    v.w = w_.data();
    v.b = b_.data();
    return v;
  }

  void run(const RunContext& ctx, const std::vector<Frame>& in, const Frame& out) const override {
    const Frame& x = in[0];
    const Pads p = pad_.at(x.h, x.w);
    const kernels::DwConvFn fn = k_ == 3 ? ctx.kernels.dwconv3x3 : ctx.kernels.dwconv5x5;
    const std::size_t ho = std::size_t(out.h), wo = std::size_t(out.w);
    const bool direct = p.top <= 1 && p.bottom <= 1 && p.left <= 1 && p.right <= 1;
    // Scratch plane: the rows and columns the kernel names, plus kDwOverRead floats of slack per row.
    const std::size_t rows = std::size_t(s_) * (ho - 1) + std::size_t(k_);
    const std::size_t cols = std::size_t(s_) * (wo - 1) + std::size_t(k_);
    const std::size_t srow = (cols + kernels::kDwOverRead + 15) / 16 * 16;
    const std::size_t kk = std::size_t(k_) * std::size_t(k_);
    const std::size_t nblocks = std::min<std::size_t>(std::size_t(c_), std::size_t(ctx.pool.size()) * 4);
    ctx.ws.reserve_slots(std::size_t(ctx.pool.size()));
    ctx.pool.run(nblocks, [&](std::size_t bi, int thread) {
      const std::size_t c0 = bi * std::size_t(c_) / nblocks, c1 = (bi + 1) * std::size_t(c_) / nblocks;
      // the thread's scratch plane, zeroed: padding rows / columns stay zero
      float* const scratch = direct ? nullptr : ctx.ws.slot(std::size_t(thread), rows * srow, true);
      for (std::size_t c = c0; c < c1; ++c) {
        const float* src;
        std::size_t xrow;
        if (direct) {
          src = x.pixel(int(c), -p.top, -p.left);  // inside the zero ring
          xrow = x.row;
        } else {
          // Scratch row r is input row r - top; columns [left, left + W) hold the input row.
          for (std::size_t r = 0; r < rows; ++r) {
            const int i = int(r) - p.top;
            if (i < 0 || i >= x.h) continue;
            const std::size_t j0 = std::size_t(p.left);
            const std::size_t n = std::min<std::size_t>(std::size_t(x.w), cols > j0 ? cols - j0 : 0);
            std::memcpy(scratch + r * srow + j0, x.pixel(int(c), i, 0), n * sizeof(float));
          }
          src = scratch;
          xrow = srow;
        }
        fn(ho, wo, src, xrow, s_, w_.data() + c * kk, b_[c], out.pixel(int(c), 0, 0), out.row, act_);
      }
    });
  }

 private:
  int c_, k_, s_, act_;
  PadRule pad_;
  std::vector<float> w_, b_;
};

}  // namespace

std::unique_ptr<Op> make_depthwise_conv2d(const OpRecord& rec, const std::vector<TensorRecord>& t) {
  return std::make_unique<DepthwiseConv2d>(rec, t);
}

}  // namespace detail
}  // namespace gazecrop
