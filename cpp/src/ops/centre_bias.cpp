// Op 8 centre_bias: y = x + weight * m, m = the log_map resized (resize_bilinear rule) to x's grid and
// renormalised to logsumexp 0 (float64).
#include <algorithm>
#include <cmath>

#include "op.h"

namespace gazecrop {
namespace detail {
namespace {

class CentreBias final : public Op {
 public:
  CentreBias(const OpRecord& rec, const std::vector<TensorRecord>& t) : weight_(rec.fparams[0]) {
    const TensorRecord& m = t[rec.first_tensor];
    h0_ = int(m.shape[0]);
    w0_ = int(m.shape[1]);
    map_.assign(m.values.begin(), m.values.end());
  }

  Shape out_shape(const std::vector<Shape>& in) const override { return in[0]; }

  OpCost cost(const std::vector<Shape>& in, const Shape& out) const override {
    OpCost c = Op::cost(in, out);
    c.bytes += 8.0 * h0_ * double(w0_);  // the float64 map
    c.flops = 2.0 * out.h * double(out.w);  // x + weight * log centre bias (the map's resize not counted)
    return c;
  }

  void run(const RunContext&, const std::vector<Frame>& in, const Frame& out) const override {
    const Frame& x = in[0];
    const ResizeAxis ay = resize_axis(h0_, x.h), ax = resize_axis(w0_, x.w);
    std::vector<double> m(std::size_t(x.h) * x.w);
    std::vector<double> row(static_cast<std::size_t>(w0_));
    for (int i = 0; i < x.h; ++i) {
      const double* a = &map_[std::size_t(ay.i0[i]) * w0_];
      const double* b = &map_[std::size_t(ay.i1[i]) * w0_];
      for (int q = 0; q < w0_; ++q) row[q] = a[q] * (1.0 - ay.f[i]) + b[q] * ay.f[i];
      for (int j = 0; j < x.w; ++j)
        m[std::size_t(i) * x.w + j] = row[ax.i0[j]] * (1.0 - ax.f[j]) + row[ax.i1[j]] * ax.f[j];
    }
    const double mx = *std::max_element(m.begin(), m.end());
    double s = 0.0;
    for (double v : m) s += std::exp(v - mx);
    const double lse = mx + std::log(s);
    for (int i = 0; i < x.h; ++i) {
      const float* src = x.pixel(0, i, 0);
      float* y = out.pixel(0, i, 0);
      for (int j = 0; j < x.w; ++j) y[j] = float(double(src[j]) + weight_ * (m[std::size_t(i) * x.w + j] - lse));
    }
  }

 private:
  double weight_;
  int h0_ = 0, w0_ = 0;
  std::vector<double> map_;
};

}  // namespace

std::unique_ptr<Op> make_centre_bias(const OpRecord& rec, const std::vector<TensorRecord>& t) {
  return std::make_unique<CentreBias>(rec, t);
}

}  // namespace detail
}  // namespace gazecrop
