// Op 11 add: y = act(a + b) of two values of the same shape (the inverted-residual skip), fused ReLU / ReLU6,
// or softplus (the kernel pass, on the channel just written).
// Both inputs share the output's frame geometry, so each channel is one pass over its flat interior range.
#include <algorithm>

#include "op.h"

namespace gazecrop {
namespace detail {
namespace {

class Add final : public Op {
 public:
  explicit Add(const OpRecord& rec) : act_(rec.iparams[0]) {}

  Shape out_shape(const std::vector<Shape>& in) const override {
    if (in[0].h != in[1].h || in[0].w != in[1].w)
      throw std::invalid_argument(label + ": inputs have different grids " + std::to_string(in[0].h) + "x" +
                                  std::to_string(in[0].w) + " and " + std::to_string(in[1].h) + "x" +
                                  std::to_string(in[1].w));
    return in[0];
  }

  OpCost cost(const std::vector<Shape>& in, const Shape& out) const override {
    OpCost c = Op::cost(in, out);
    c.flops = double(out.c) * out.h * double(out.w) * (act_ ? 2.0 : 1.0);  // the sum (+ the clamp)
    return c;
  }

  FusionView fusion_view() const override {
    FusionView v;
    if (act_ != 2) {
      v.kind = FusionView::kAdd;
      v.act = kernel_act(act_);
    }
    return v;
  }

  void run(const RunContext& ctx, const std::vector<Frame>& in, const Frame& out) const override {
    const std::size_t q0 = out.flat_begin(), q1 = out.flat_end();
    const int act = act_;
    ctx.pool.run(std::size_t(out.c), [&](std::size_t c) {
      const float* a = in[0].plane_ptr(int(c));
      const float* b = in[1].plane_ptr(int(c));
      float* y = out.plane_ptr(int(c));
      if (act == 0) {
        for (std::size_t q = q0; q < q1; ++q) y[q] = a[q] + b[q];
      } else if (act == 2) {
        for (std::size_t q = q0; q < q1; ++q) y[q] = a[q] + b[q];
        ctx.kernels.softplus(q1 - q0, y + q0);
      } else if (act == 1) {
        for (std::size_t q = q0; q < q1; ++q) y[q] = std::max(a[q] + b[q], 0.0f);
      } else {
        for (std::size_t q = q0; q < q1; ++q) y[q] = std::min(std::max(a[q] + b[q], 0.0f), 6.0f);
      }
    });
  }

 private:
  int act_;
};

}  // namespace

std::unique_ptr<Op> make_add(const OpRecord& rec, const std::vector<TensorRecord>&) {
  return std::make_unique<Add>(rec);
}

}  // namespace detail
}  // namespace gazecrop
