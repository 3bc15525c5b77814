// Ops 3 avg_pool (no padding) and 4 max_pool (padding counts as -inf).
#include <algorithm>
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

  void run(const RunContext& ctx, const std::vector<Frame>& in, const Frame& out) const override {
    const Frame& x = in[0];
    ctx.pool.run(std::size_t(out.c), [&](std::size_t ch) {
      for (int i = 0; i < out.h; ++i) {
        const int r0 = std::max(0, i * s_ - p_), r1 = std::min(x.h, i * s_ - p_ + k_);
        float* y = out.pixel(int(ch), i, 0);
        for (int j = 0; j < out.w; ++j) {
          const int q0 = std::max(0, j * s_ - p_), q1 = std::min(x.w, j * s_ - p_ + k_);
          if (max_) {
            float m = -std::numeric_limits<float>::infinity();
            for (int r = r0; r < r1; ++r) {
              const float* row = x.pixel(int(ch), r, 0);
              for (int q = q0; q < q1; ++q) m = std::max(m, row[q]);
            }
            y[j] = m;
          } else {
            double sum = 0.0;
            for (int r = r0; r < r1; ++r) {
              const float* row = x.pixel(int(ch), r, 0);
              for (int q = q0; q < q1; ++q) sum += row[q];
            }
            y[j] = float(sum / double(k_ * k_));
          }
        }
      }
    });
  }

 private:
  bool max_;
  int k_, s_, p_;
};

}  // namespace

std::unique_ptr<Op> make_pool(const OpRecord& rec, const std::vector<TensorRecord>&) {
  return std::make_unique<Pool>(rec);
}

}  // namespace detail
}  // namespace gazecrop
