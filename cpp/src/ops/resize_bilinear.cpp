// Op 5 resize_bilinear: x resized to like's grid, half-pixel centres (PyTorch align_corners=False).
#include <cmath>

#include "op.h"

namespace gazecrop {
namespace detail {
namespace {

class ResizeBilinear final : public Op {
 public:
  Shape out_shape(const std::vector<Shape>& in) const override { return {in[0].c, in[1].h, in[1].w}; }

  OpCost cost(const std::vector<Shape>& in, const Shape& out) const override {
    OpCost c;  // reads input 0 (input 1 gives only the grid size); a + f (b - a) along each axis: 6 per output
    c.bytes = value_bytes(in[0]) + value_bytes(out);
    c.flops = 6.0 * out.c * double(out.h) * out.w;
    return c;
  }

  void run(const RunContext& ctx, const std::vector<Frame>& in, const Frame& out) const override {
    const Frame& x = in[0];
    const ResizeAxis ay = resize_axis(x.h, out.h), ax = resize_axis(x.w, out.w);
    std::vector<float> fy(ay.f.begin(), ay.f.end()), fx(ax.f.begin(), ax.f.end());
    ctx.ws.reserve_slots(std::size_t(ctx.pool.size()));
    ctx.pool.run(std::size_t(out.c), [&](std::size_t ch, int thread) {
      if (x.h <= out.h) {
        // Upsampling rows: resize each input row horizontally once (into the thread's workspace slot), then
        // blend row pairs (vectorisable).
        float* const rows = ctx.ws.slot(std::size_t(thread), std::size_t(x.h) * out.w);
        for (int r = 0; r < x.h; ++r) {
          const float* a = x.pixel(int(ch), r, 0);
          float* d = &rows[std::size_t(r) * out.w];
          for (int j = 0; j < out.w; ++j) {
            const float l = a[ax.i0[j]], rr = a[ax.i1[j]];
            d[j] = l + fx[j] * (rr - l);
          }
        }
        for (int i = 0; i < out.h; ++i) {
          const float* a = &rows[std::size_t(ay.i0[i]) * out.w];
          const float* b = &rows[std::size_t(ay.i1[i]) * out.w];
          const float wy = fy[i];
          float* y = out.pixel(int(ch), i, 0);
          for (int j = 0; j < out.w; ++j) y[j] = a[j] + wy * (b[j] - a[j]);
        }
        return;
      }
      float* const row = ctx.ws.slot(std::size_t(thread), std::size_t(x.w));
      for (int i = 0; i < out.h; ++i) {
        const float* a = x.pixel(int(ch), ay.i0[i], 0);
        const float* b = x.pixel(int(ch), ay.i1[i], 0);
        const float wy = fy[i];
        for (int q = 0; q < x.w; ++q) row[q] = a[q] + wy * (b[q] - a[q]);
        float* y = out.pixel(int(ch), i, 0);
        for (int j = 0; j < out.w; ++j) {
          const float l = row[ax.i0[j]], r = row[ax.i1[j]];
          y[j] = l + fx[j] * (r - l);
        }
      }
    });
  }
};

}  // namespace

ResizeAxis resize_axis(int n_in, int n_out) {
  ResizeAxis r;
  r.i0.resize(n_out);
  r.i1.resize(n_out);
  r.f.resize(n_out);
  for (int d = 0; d < n_out; ++d) {
    const double s = std::max((d + 0.5) * double(n_in) / double(n_out) - 0.5, 0.0);
    const int i0 = std::min(int(std::floor(s)), n_in - 1);
    r.i0[d] = i0;
    r.i1[d] = std::min(i0 + 1, n_in - 1);
    r.f[d] = s - i0;
  }
  return r;
}

std::unique_ptr<Op> make_resize_bilinear(const OpRecord&, const std::vector<TensorRecord>&) {
  return std::make_unique<ResizeBilinear>();
}

}  // namespace detail
}  // namespace gazecrop
