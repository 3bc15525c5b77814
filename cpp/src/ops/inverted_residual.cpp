// The loader's fusion of an inverted residual (MobileNetV2 / EfficientNet-Lite block; Sandler et al. 2018):
//   [expand: 1x1 conv2d, act] -> depthwise_conv2d k x k, stride s, act -> project: 1x1 conv2d, act [-> add of
//   the block input, act]
// built from the file's own ops (no format change; Model::load fuses runs of them, RunOptions::fuse picks the
// fused or the op-by-op program). The expanded tensor (the widest of the block) and the depthwise output never
// exist whole: each thread walks its share of output rows in bands of R rows, and for each band
//   1. expands only the input rows the band's depthwise taps need into a per-thread band buffer E (rows of
//      W + 2 floats, like a frame; zero rows where the taps fall into the top / bottom padding); the last
//      k - s expanded rows of a band are the first ones of the next, so they are moved, not recomputed,
//   2. runs the depthwise kernel on E into a band buffer D (R rows of the output geometry),
//   3. runs the projection from D straight into the output frame's rows and adds the block input there,
// with R chosen so that E and D stay within kBandBytes (L2) - the ncnn / XNNPACK / TFLite way. All three steps
// call the same KernelTable kernels as the separate ops, and every output element sees the same arithmetic in
// the same order, so the fused result equals the op-by-op result bit for bit on each kernel set
// (tests/test_inverted_residual.py checks that).
//
// Padding: the depthwise kernel reads E directly. Columns -1 and W of a row are its own zero ring, and columns
// -2 and W + 1 fall on the neighbouring row's ring (or on E's zero lead / tail), so any per-side column padding
// up to 2 (5x5 "same", stride 1 or 2) is in memory without a copy; padding rows are zero rows of E.
#include <algorithm>
#include <cstring>

#include "conv_common.h"

namespace gazecrop {
namespace detail {
namespace {

// Budget of one thread's band buffers (E + D): below the L2 of current x86 cores (1-2 MiB), above L1.
constexpr std::size_t kBandBytes = 512 * 1024;
constexpr std::size_t kLead = 16;  // zero floats before row 0 of an E plane (column -2 of row 0 reads one)
constexpr std::size_t kTail = 32;  // zero floats after the last row: column W + 1 and the dw over-read (16)

// 1x1 `pc` (input planes x_stride apart, pixel (r, 0) of row r at x + r * row) over `rows` rows of `w` pixels
// into y (planes y_stride apart, same row geometry), act = kernel code. As in conv_flat: the set's rows kernel
// where it has one and w is a multiple of 16, else rows at least the kernel set's tile wide row by row (both
// interior only), narrower rows as one flat range, whose ring positions between rows are zeroed afterwards;
// all in chunks of about kChunk pixels, each chunk running every channel tile so that its input block stays
// in L1/L2 while one tile's weights stay in L1. The result is the same
// whatever the path or chunking (each output element sees the same FMA sequence).
constexpr std::size_t kChunk = 256;

void pointwise_rows(const kernels::KernelTable& kt, const PackedConv& pc, const float* x, std::size_t x_stride,
                    std::size_t row, std::size_t rows, std::size_t w, float* y, std::size_t y_stride, int act) {
  if (rows == 0) return;
  const std::size_t kc = std::size_t(pc.cin);
  auto tiles = [&](std::size_t a, std::size_t nc) {  // every channel tile over pixels [a, a + nc) of the range
    for (const PackedConv::Tile& t : pc.tiles)
      kt.conv1x1(std::size_t(t.mr), nc, kc, x + a, x_stride, std::ptrdiff_t(row), pc.w.data() + t.offset,
                 pc.bias.data() + t.m0, y + std::size_t(t.m0) * y_stride + a, y_stride, act);
  };
  const bool rows_kernel = kt.conv1x1_rows && w % 16 == 0;  // see conv_flat
  if (rows_kernel || w >= std::size_t(kt.nr)) {
    const std::size_t group = std::max<std::size_t>(1, kChunk / w);
    for (std::size_t r0 = 0; r0 < rows; r0 += group)
      for (const PackedConv::Tile& t : pc.tiles)
        if (rows_kernel)
          kt.conv1x1_rows(std::size_t(t.mr), std::min(rows, r0 + group) - r0, w, kc, x + r0 * row, x_stride,
                          std::ptrdiff_t(row), pc.w.data() + t.offset, pc.bias.data() + t.m0,
                          y + std::size_t(t.m0) * y_stride + r0 * row, y_stride, act);
        else
          for (std::size_t r = r0; r < std::min(rows, r0 + group); ++r)
            kt.conv1x1(std::size_t(t.mr), w, kc, x + r * row, x_stride, std::ptrdiff_t(row),
                       pc.w.data() + t.offset, pc.bias.data() + t.m0, y + std::size_t(t.m0) * y_stride + r * row,
                       y_stride, act);
    return;
  }
  const std::size_t n = (rows - 1) * row + w;
  for (std::size_t a = 0; a < n; a += kChunk) tiles(a, std::min(kChunk, n - a));
  for (int m = 0; m < pc.cout; ++m)
    for (std::size_t r = 0; r + 1 < rows; ++r) {
      float* q = y + std::size_t(m) * y_stride + r * row + w;  // right ring of row r, left ring of row r + 1
      q[0] = 0.0f;
      q[1] = 0.0f;
    }
}

float apply_act(float v, int act) {
  if (act != kernels::kActNone) v = std::max(v, 0.0f);
  if (act == kernels::kActRelu6) v = std::min(v, 6.0f);
  return v;
}

class InvertedResidual final : public Op {
 public:
  InvertedResidual(const Op* expand, const Op& dw, const Op& project, const Op* add)
      : expand_(expand), dw_(dw), project_(project), add_(add) {
    if (expand) ex_ = expand->fusion_view();
    dv_ = dw.fusion_view();
    pv_ = project.fusion_view();
    if (add) av_ = add->fusion_view();
  }

  // The views fit: pointwise / depthwise / pointwise / add kinds, chained channel counts, padding within the
  // two columns the band layout provides (checked again per input size in run()).
  bool valid() const {
    if (expand_ && (ex_.kind != FusionView::kPointwise || ex_.conv->cout != dv_.c)) return false;
    if (dv_.kind != FusionView::kDepthwise || (dv_.k != 3 && dv_.k != 5) || (dv_.stride != 1 && dv_.stride != 2))
      return false;
    if (pv_.kind != FusionView::kPointwise || pv_.conv->cin != dv_.c) return false;
    if (add_ && (av_.kind != FusionView::kAdd || dv_.stride != 1 || pv_.conv->cout != cin())) return false;
    if (dv_.pad->mode != 2) {
      const Pads& p = dv_.pad->fixed;
      if (std::max({p.top, p.bottom, p.left, p.right}) > 2) return false;
    }
    return true;
  }

  int cin() const { return expand_ ? ex_.conv->cin : dv_.c; }

  Shape out_shape(const std::vector<Shape>& in) const override {
    const Shape e = {dv_.c, in[0].h, in[0].w};
    const Shape d = dw_.out_shape({e});
    return project_.out_shape({d});
  }

  OpCost cost(const std::vector<Shape>& in, const Shape& out) const override {
    const Shape e = {dv_.c, in[0].h, in[0].w};
    const Shape d = dw_.out_shape({e});
    OpCost c;
    if (expand_) c.flops += expand_->cost(in, e).flops;
    c.flops += dw_.cost({e}, d).flops + project_.cost({d}, out).flops;
    if (add_) c.flops += add_->cost({out, in[0]}, out).flops;
    c.bytes = value_bytes(in[0]) + value_bytes(out) + (expand_ ? conv_weight_bytes(*ex_.conv) : 0.0) +
              4.0 * dv_.c * (double(dv_.k) * dv_.k + 1.0) + conv_weight_bytes(*pv_.conv);
    c.what = std::string("ir ") + (expand_ ? "e" : "") + "dw" + std::to_string(dv_.k) + "s" +
             std::to_string(dv_.stride) + (add_ ? "+" : "");
    return c;
  }

  void run(const RunContext& ctx, const std::vector<Frame>& in, const Frame& out) const override {
    const Frame& x = in[0];
    const kernels::KernelTable& kt = ctx.kernels;
    const Pads p = dv_.pad->at(x.h, x.w);
    if (std::max({p.top, p.bottom, p.left, p.right}) > 2)  // "same" never gets here with k <= 5
      throw std::invalid_argument(label + ": depthwise padding above 2 cannot run fused");
    const int k = dv_.k, s = dv_.stride, ce = dv_.c;
    const std::size_t W = std::size_t(x.w), row = x.row;
    const std::size_t ho = std::size_t(out.h), wo = std::size_t(out.w), orow = out.row;
    const kernels::DwConvFn dwfn = k == 3 ? kt.dwconv3x3 : kt.dwconv5x5;
    // Without an expansion and with padding <= 1 the depthwise kernel reads the input frame itself (its ring
    // is the padding, as in depthwise_conv2d); otherwise E holds the band's (expanded) rows.
    const bool direct = !expand_ && std::max({p.top, p.bottom, p.left, p.right}) <= 1;
    // Band height R: E (s (R - 1) + k rows) and D (R rows) per expanded channel within kBandBytes, but at least
    // kChunk output pixels, so each band's 1x1 calls amortise reading their weights (a block small enough
    // for that to exceed the budget fits in L2 whole, fused or not).
    const std::size_t per_band_row = std::size_t(ce) * ((direct ? 0 : std::size_t(s) * row) + orow) * sizeof(float);
    const std::size_t fixed = direct ? 0 : std::size_t(ce) * (std::size_t(k - s) * row + kLead + kTail) * sizeof(float);
    std::size_t R = kBandBytes > fixed ? (kBandBytes - fixed) / per_band_row : 1;
    R = std::min(std::max({R, std::size_t(1), (kChunk + wo - 1) / wo}), ho);
    // With several threads, at least one band per thread (small late-stage grids would otherwise run on one).
    const std::size_t nthreads = std::size_t(ctx.pool.size());
    if (nthreads > 1) R = std::min(R, (ho + nthreads - 1) / nthreads);
    const std::size_t erows = std::size_t(s) * (R - 1) + std::size_t(k);
    const std::size_t eplane = direct ? 0 : (kLead + erows * row + kTail + 15) / 16 * 16;
    const std::size_t dplane = (R * orow + 15) / 16 * 16;
    // Segments of whole output rows, one per thread (each walks its bands in order to reuse the carried rows).
    const std::size_t nseg = std::min(nthreads, (ho + R - 1) / R);
    ctx.ws.reserve_slots(2 * std::size_t(ctx.pool.size()));  // thread t: E in slot 2 t, D in slot 2 t + 1
    ctx.pool.run(nseg, [&](std::size_t seg, int thread) {
      const std::size_t i_begin = seg * ho / nseg, i_end = (seg + 1) * ho / nseg;
      // Not zeroed whole: only what no step writes and the kernels read (leads, tails, the rings of every row);
      // every band writes all of its E rows (carried, expanded or zero) and D rows before reading them.
      const std::size_t t = std::size_t(thread);
      float* E = direct ? nullptr : ctx.ws.slot(2 * t, std::size_t(ce) * eplane);
      float* D = ctx.ws.slot(2 * t + 1, std::size_t(ce) * dplane);
      for (int c = 0; c < ce; ++c) {
        if (!direct) {
          float* pe = E + std::size_t(c) * eplane;
          std::memset(pe, 0, kLead * sizeof(float));
          for (std::size_t r = 0; r < erows; ++r) pe[kLead + r * row] = pe[kLead + r * row + W + 1] = 0.0f;
          std::memset(pe + kLead + erows * row, 0, (eplane - kLead - erows * row) * sizeof(float));
        }
        float* pd = D + std::size_t(c) * dplane;
        for (std::size_t r = 0; r < R; ++r) pd[r * orow] = pd[r * orow + wo + 1] = 0.0f;
        std::memset(pd + R * orow, 0, (dplane - R * orow) * sizeof(float));
      }
      std::ptrdiff_t have_lo = 0, have_hi = 0;  // expanded rows [have_lo, have_hi) are at E rows 0, 1, ...
      for (std::size_t i0 = i_begin; i0 < i_end; i0 += R) {
        const std::size_t r_out = std::min(R, i_end - i0);
        const std::ptrdiff_t e0 = std::ptrdiff_t(s * i0) - p.top;  // expanded row of the band's first tap row
        const std::ptrdiff_t e1 = e0 + std::ptrdiff_t(s * (r_out - 1) + k);
        if (!direct) fill_band(kt, x, E, eplane, e0, e1, have_lo, have_hi);
        // Depthwise: the first tap of output row i0 sits at expanded row e0 (E row 0), column -left.
        for (int c = 0; c < ce; ++c) {
          const float* src = direct ? x.pixel(c, int(e0), -p.left) : E + std::size_t(c) * eplane + kLead + 1 - std::size_t(p.left);
          dwfn(r_out, wo, src, row, s, dv_.w + std::size_t(c) * std::size_t(k * k), dv_.b[c],
               D + std::size_t(c) * dplane + 1, orow, dv_.act);
        }
        // Projection into the output rows, then the skip.
        pointwise_rows(kt, *pv_.conv, D + 1, dplane, orow, r_out, wo, out.pixel(0, int(i0), 0), out.plane, pv_.act);
        if (add_) {
          for (int c = 0; c < out.c; ++c)
            for (std::size_t r = 0; r < r_out; ++r) {
              float* y = out.pixel(c, int(i0 + r), 0);
              const float* xr = x.pixel(c, int(i0 + r), 0);
              if (av_.act == kernels::kActNone)
                for (std::size_t j = 0; j < wo; ++j) y[j] = y[j] + xr[j];
              else
                for (std::size_t j = 0; j < wo; ++j) y[j] = apply_act(y[j] + xr[j], av_.act);
            }
        }
      }
    });
  }

 private:
  // E rows 0 .. e1 - e0 - 1 := expanded rows [e0, e1): the ones already held (rows [have_lo, have_hi), the
  // previous band's last k - s) moved to the top, the rest expanded from x (or copied: no expansion), zero
  // outside the image (padding rows). Updates [have_lo, have_hi).
  void fill_band(const kernels::KernelTable& kt, const Frame& x, float* E, std::size_t eplane, std::ptrdiff_t e0, std::ptrdiff_t e1,
                 std::ptrdiff_t& have_lo, std::ptrdiff_t& have_hi) const {
    const std::size_t row = x.row;
    const int ce = dv_.c;
    std::ptrdiff_t from = e0;
    if (have_hi > e0 && have_lo <= e0) {
      const std::size_t keep = std::size_t(have_hi - e0), src = std::size_t(e0 - have_lo);
      for (int c = 0; c < ce; ++c) {
        float* pl = E + std::size_t(c) * eplane + kLead;
        std::memmove(pl, pl + src * row, keep * row * sizeof(float));
      }
      from = have_hi;
    }
    const std::ptrdiff_t lo = std::max<std::ptrdiff_t>(from, 0), hi = std::min<std::ptrdiff_t>(e1, x.h);
    for (std::ptrdiff_t e = from; e < e1; ++e)
      if (e < lo || e >= hi)
        for (int c = 0; c < ce; ++c)
          std::memset(E + std::size_t(c) * eplane + kLead + std::size_t(e - e0) * row, 0, row * sizeof(float));
    if (lo < hi) {
      float* dst = E + kLead + std::size_t(lo - e0) * row + 1;  // pixel (lo, 0) of channel 0
      const float* src = x.pixel(0, int(lo), 0);
      if (expand_) {
        pointwise_rows(kt, *ex_.conv, src, x.plane, row, std::size_t(hi - lo), std::size_t(x.w), dst,
                       eplane, ex_.act);
      } else {
        for (int c = 0; c < ce; ++c)  // whole rows with their (zero) rings
          std::memcpy(dst - 1 + std::size_t(c) * eplane, src - 1 + std::size_t(c) * x.plane,
                      std::size_t(hi - lo) * row * sizeof(float));
      }
    }
    have_lo = e0;
    have_hi = e1;
  }

  const Op* expand_;
  const Op& dw_;
  const Op& project_;
  const Op* add_;
  FusionView ex_, dv_, pv_, av_;
};

}  // namespace

std::unique_ptr<Op> make_inverted_residual(const Op* expand, const Op& dw, const Op& project, const Op* add) {
  auto op = std::make_unique<InvertedResidual>(expand, dw, project, add);
  if (!op->valid()) return nullptr;
  return op;
}

}  // namespace detail
}  // namespace gazecrop
