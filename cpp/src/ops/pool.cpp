// Ops 3 avg_pool (no padding) and 4 max_pool (padding counts as -inf).
#include <algorithm>
#include <cstring>
#include <limits>

#include "op.h"

namespace gazecrop {
namespace detail {
namespace {

class Pool final : public Op {
 public:
  explicit Pool(const OpRecord& rec)
      : max_(rec.op_type == kMaxPool), k_(rec.iparams[0]), s_(rec.iparams[1]), p_(max_ ? rec.iparams[2] : 0) {}

  Shape out_shape(const std::vector<Shape>& in) const override {
    return {in[0].c, window_out(label, "height", in[0].h, k_, s_, p_), window_out(label, "width", in[0].w, k_, s_, p_)};
  }

  OpCost cost(const std::vector<Shape>& in, const Shape& out) const override {
    OpCost c = Op::cost(in, out);
    c.flops = double(k_) * k_ * double(out.c) * out.h * out.w;  // one compare or add per window element
    c.what = std::string(max_ ? "max " : "avg ") + std::to_string(k_) + "x" + std::to_string(k_) + " s" + std::to_string(s_);
    return c;
  }

  // Separable: a vectorisable vertical max/sum over the window's rows into one row, then the horizontal
  // window on that row. Windows are clipped to the image (max: padding is -inf; avg has no padding).
  void run(const RunContext& ctx, const std::vector<Frame>& in, const Frame& out) const override {
    const Frame& x = in[0];
    const float inv = 1.0f / float(k_ * k_);
    ctx.ws.reserve_slots(std::size_t(ctx.pool.size()));
    ctx.pool.run(std::size_t(out.c), [&](std::size_t ch, int thread) {
      float* const t = ctx.ws.slot(std::size_t(thread), std::size_t(x.w));  // the window rows' max / sum
      for (int i = 0; i < out.h; ++i) {
        const int r0 = std::max(0, i * s_ - p_), r1 = std::min(x.h, i * s_ - p_ + k_);
        std::memcpy(t, x.pixel(int(ch), r0, 0), std::size_t(x.w) * sizeof(float));
        for (int r = r0 + 1; r < r1; ++r) {
          const float* row = x.pixel(int(ch), r, 0);
          if (max_)
            for (int q = 0; q < x.w; ++q) t[q] = std::max(t[q], row[q]);
          else
            for (int q = 0; q < x.w; ++q) t[q] += row[q];
        }
        float* y = out.pixel(int(ch), i, 0);
        // Windows fully inside the row take the unclipped loop (k known at compile time for 2 and 3, and the
        // stride for 2).
        const int j_lo = std::min(out.w, (p_ + s_ - 1) / s_), j_hi = std::max(j_lo, std::min(out.w, (x.w + p_ - k_) / s_ + 1));
        auto edge = [&](int j) {
          const int q0 = std::max(0, j * s_ - p_), q1 = std::min(x.w, j * s_ - p_ + k_);
          float m = t[q0];
          for (int q = q0 + 1; q < q1; ++q) m = max_ ? std::max(m, t[q]) : m + t[q];
          y[j] = max_ ? m : m * inv;
        };
        for (int j = 0; j < j_lo; ++j) edge(j);
        if (k_ == 2 && s_ == 2) inner<2, 2>(t, y, j_lo, j_hi, inv);
        else if (k_ == 3 && s_ == 2) inner<3, 2>(t, y, j_lo, j_hi, inv);
        else if (k_ == 2) inner<2>(t, y, j_lo, j_hi, inv);
        else if (k_ == 3) inner<3>(t, y, j_lo, j_hi, inv);
        else for (int j = j_lo; j < j_hi; ++j) edge(j);
        for (int j = j_hi; j < out.w; ++j) edge(j);
      }
    });
  }

 private:
  // S = 0: the op's stride at run time; S = 2 (the pools of the DenseNet students) known at compile time, so
  // that the compiler vectorises the strided window loads.
  template <int K, int S = 0>
  void inner(const float* t, float* y, int j0, int j1, float inv) const {
    const int s = S ? S : s_;
    for (int j = j0; j < j1; ++j) {
      const float* w = t + (j * s - p_);
      float m = w[0];
      for (int q = 1; q < K; ++q) m = max_ ? std::max(m, w[q]) : m + w[q];
      y[j] = max_ ? m : m * inv;
    }
  }

  bool max_;
  int k_, s_, p_;
};

}  // namespace

std::unique_ptr<Op> make_pool(const OpRecord& rec, const std::vector<TensorRecord>&) {
  return std::make_unique<Pool>(rec);
}

}  // namespace detail
}  // namespace gazecrop
