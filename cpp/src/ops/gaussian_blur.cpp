// Op 7 gaussian_blur: separable, horizontal then vertical, borders zeros / nearest / reflect (float64 sums).
#include <cmath>

#include "op.h"

namespace gazecrop {
namespace detail {
namespace {

class GaussianBlur final : public Op {
 public:
  explicit GaussianBlur(const OpRecord& rec) : border_(rec.iparams[0]) {
    const double sigma = rec.fparams[0], truncate = rec.fparams[1];
    r_ = int(std::ceil(truncate * sigma));
    taps_.resize(2 * std::size_t(r_) + 1);
    double sum = 0.0;
    for (int t = -r_; t <= r_; ++t) sum += taps_[t + r_] = std::exp(-double(t) * t / (2.0 * sigma * sigma));
    for (double& k : taps_) k /= sum;
  }

  Shape out_shape(const std::vector<Shape>& in) const override {
    if (border_ == 2 && (r_ >= in[0].h || r_ >= in[0].w))
      throw std::invalid_argument(label + ": radius " + std::to_string(r_) + " must be smaller than the " +
                                  std::to_string(in[0].h) + "x" + std::to_string(in[0].w) + " grid for reflect border");
    return in[0];
  }

  OpCost cost(const std::vector<Shape>& in, const Shape& out) const override {
    OpCost c = Op::cost(in, out);
    c.flops = 2.0 * 2.0 * double(taps_.size()) * out.c * double(out.h) * out.w;  // two passes of 2r + 1 taps
    return c;
  }

  void run(const RunContext& ctx, const std::vector<Frame>& in, const Frame& out) const override {
    const Frame& x = in[0];
    const int h = x.h, w = x.w;
    ctx.ws.reserve_slots(std::size_t(ctx.pool.size()));
    ctx.pool.run(std::size_t(x.c), [&](std::size_t ch, int thread) {
      // h x w doubles in the thread's workspace slot
      double* const tmp = reinterpret_cast<double*>(ctx.ws.slot(std::size_t(thread), 2 * std::size_t(h) * w));
      for (int i = 0; i < h; ++i) {
        const float* row = x.pixel(int(ch), i, 0);
        for (int j = 0; j < w; ++j) {
          double s = 0.0;
          for (int t = -r_; t <= r_; ++t) {
            const int q = index(j + t, w);
            if (q >= 0) s += taps_[t + r_] * row[q];
          }
          tmp[std::size_t(i) * w + j] = s;
        }
      }
      for (int i = 0; i < h; ++i) {
        float* y = out.pixel(int(ch), i, 0);
        for (int j = 0; j < w; ++j) {
          double s = 0.0;
          for (int t = -r_; t <= r_; ++t) {
            const int q = index(i + t, h);
            if (q >= 0) s += taps_[t + r_] * tmp[std::size_t(q) * w + j];
          }
          y[j] = float(s);
        }
      }
    });
  }

 private:
  // Source index for position p on an axis of n samples, -1 for a zero (border 0) sample.
  int index(int p, int n) const {
    if (p >= 0 && p < n) return p;
    if (border_ == 0) return -1;
    if (border_ == 1) return p < 0 ? 0 : n - 1;
    return p < 0 ? -p : 2 * (n - 1) - p;  // reflect, r < n checked in out_shape
  }
  int border_, r_;
  std::vector<double> taps_;
};

}  // namespace

std::unique_ptr<Op> make_gaussian_blur(const OpRecord& rec, const std::vector<TensorRecord>&) {
  return std::make_unique<GaussianBlur>(rec);
}

}  // namespace detail
}  // namespace gazecrop
