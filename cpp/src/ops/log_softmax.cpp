// Op 9 log_softmax: y = x - logsumexp(x) over all pixels of the single channel (float64, serial, so the
// result does not depend on the thread count).
#include <algorithm>
#include <cmath>
#include <limits>

#include "op.h"

namespace gazecrop {
namespace detail {
namespace {

class LogSoftmax final : public Op {
 public:
  Shape out_shape(const std::vector<Shape>& in) const override { return in[0]; }

  OpCost cost(const std::vector<Shape>& in, const Shape& out) const override {
    OpCost c = Op::cost(in, out);
    c.flops = 5.0 * out.h * double(out.w);  // max, subtract, exp, sum; then subtract the log-sum-exp
    return c;
  }

  void run(const RunContext&, const std::vector<Frame>& in, const Frame& out) const override {
    const Frame& x = in[0];
    double mx = -std::numeric_limits<double>::infinity();
    for (int i = 0; i < x.h; ++i) {
      const float* r = x.pixel(0, i, 0);
      for (int j = 0; j < x.w; ++j) mx = std::max(mx, double(r[j]));
    }
    double s = 0.0;
    for (int i = 0; i < x.h; ++i) {
      const float* r = x.pixel(0, i, 0);
      for (int j = 0; j < x.w; ++j) s += std::exp(double(r[j]) - mx);
    }
    const double lse = mx + std::log(s);
    for (int i = 0; i < x.h; ++i) {
      const float* r = x.pixel(0, i, 0);
      float* y = out.pixel(0, i, 0);
      for (int j = 0; j < x.w; ++j) y[j] = float(double(r[j]) - lse);
    }
  }
};

}  // namespace

std::unique_ptr<Op> make_log_softmax(const OpRecord&, const std::vector<TensorRecord>&) {
  return std::make_unique<LogSoftmax>();
}

}  // namespace detail
}  // namespace gazecrop
