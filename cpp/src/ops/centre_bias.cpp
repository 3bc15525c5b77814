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

  void run(const RunContext& ctx, const std::vector<Frame>& in, const Frame& out) const override {
    const Frame& x = in[0];
    const ResizeAxis ay = resize_axis(h0_, x.h), ax = resize_axis(w0_, x.w);
    // the resized map (h x w doubles) and one row of the stored map, in workspace slots 0 and 1
    const std::size_t n = std::size_t(x.h) * x.w;
    ctx.ws.reserve_slots(2);
    double* const m = reinterpret_cast<double*>(ctx.ws.slot(0, 2 * n));
    double* const row = reinterpret_cast<double*>(ctx.ws.slot(1, 2 * std::size_t(w0_)));
    for (int i = 0; i < x.h; ++i) {
      const double* a = &map_[std::size_t(ay.i0[i]) * w0_];
      const double* b = &map_[std::size_t(ay.i1[i]) * w0_];
      for (int q = 0; q < w0_; ++q) row[q] = a[q] * (1.0 - ay.f[i]) + b[q] * ay.f[i];
      for (int j = 0; j < x.w; ++j)
        m[std::size_t(i) * x.w + j] = row[ax.i0[j]] * (1.0 - ax.f[j]) + row[ax.i1[j]] * ax.f[j];
    }
    const double mx = *std::max_element(m, m + n);
    double s = 0.0;
    for (std::size_t k = 0; k < n; ++k) s += std::exp(m[k] - mx);
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
