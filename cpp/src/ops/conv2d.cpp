// Op 1 conv2d: kernel 1 or 3, stride 1 or 2, zero padding per side (or TensorFlow "same"), bias, fused
// activation. 1x1/stride 1 and 3x3/stride 1/padding 1 run the flat kernels straight on the input planes;
// every other case gathers im2col columns in the output's padded layout and runs the 1x1 (GEMM) kernel on
// them. Also the shared padding rule (PadRule) of conv2d and depthwise_conv2d.
#include <algorithm>

#include "conv_common.h"

namespace gazecrop {
namespace detail {
namespace {

class Conv2d final : public Op {
 public:
  Conv2d(const OpRecord& rec, const std::vector<TensorRecord>& t)
      : k_(rec.iparams[2]), s_(rec.iparams[3]), act_(rec.iparams[5]), pad_(PadRule::from_record(rec)) {
    const TensorRecord& w = t[rec.first_tensor];
    const TensorRecord& b = t[rec.first_tensor + 1];
    pc_ = pack_conv(w.values.data(), b.values.data(), rec.iparams[1], rec.iparams[0], k_);
  }

  Shape out_shape(const std::vector<Shape>& in) const override {
    return padded_out(label, pc_.cout, in[0].h, in[0].w, k_, s_, pad_.at(in[0].h, in[0].w));
  }

  OpCost cost(const std::vector<Shape>& in, const Shape& out) const override {
    OpCost c;
    c.flops = conv_flops(pc_, out.h, out.w);
    c.bytes = value_bytes(in[0]) + value_bytes(out) + conv_weight_bytes(pc_);
    const Pads p = pad_.at(in[0].h, in[0].w);
    const bool pad1 = p.top == 1 && p.bottom == 1 && p.left == 1 && p.right == 1;
    if (k_ == 1 && s_ == 1) c.what = "1x1";
    else if (k_ == 3 && s_ == 1 && pad1) c.what = "3x3 p1";
    else c.what = "im2col " + std::to_string(k_) + "x" + std::to_string(k_) + " s" + std::to_string(s_);
    return c;
  }

  FusionView fusion_view() const override {
    FusionView v;
    const bool unpadded = pad_.mode == 2 || (pad_.fixed.top == 0 && pad_.fixed.bottom == 0 && pad_.fixed.left == 0 &&
                                             pad_.fixed.right == 0);  // "same" at 1x1 stride 1 pads nothing
    if (k_ == 1 && s_ == 1 && unpadded && act_ != 2) {
      v.kind = FusionView::kPointwise;
      v.conv = &pc_;
      v.act = kernel_act(act_);
    }
    return v;
  }

  void run(const RunContext& ctx, const std::vector<Frame>& in, const Frame& out) const override {
    const Frame& x = in[0];
    const Pads p = pad_.at(x.h, x.w);
    const bool pad1 = p.top == 1 && p.bottom == 1 && p.left == 1 && p.right == 1;
    if (k_ == 1 && s_ == 1) return conv_flat(ctx, pc_, false, x.data, x.plane, out, 0, act_);
    if (k_ == 3 && s_ == 1 && pad1) return conv_flat(ctx, pc_, true, x.data, x.plane, out, 0, act_);
    // im2col per pixel chunk: row (c, u, v) holds x[c, s i + u - pt, s j + v - pl] for output pixel (i, j).
    // Input rows/columns -1 and H/W are the zero ring, so padding <= 1 per side (kernel <= 3) needs no
    // bounds checks; the ring positions of the output range get zero columns.
    const int pt = p.top, pl = p.left;
    const int cin = x.c;
    const GatherFn gather = [&](std::size_t a, std::size_t nc, float* dst, std::size_t ds) {
      for (int c = 0; c < cin; ++c)
        for (int u = 0; u < k_; ++u)
          for (int v = 0; v < k_; ++v) {
            float* d = dst + std::size_t((c * k_ + u) * k_ + v) * ds;
            std::size_t q = a;
            while (q < a + nc) {
              const std::size_t i1 = q / out.row, j1 = q % out.row;  // padded coordinates
              const std::size_t run = std::min(a + nc - q, out.row - j1);
              float* dq = d + (q - a);
              const std::size_t lo = std::max<std::size_t>(j1, 1), hi = std::min(j1 + run, std::size_t(out.w) + 1);
              if (i1 >= 1 && i1 <= std::size_t(out.h) && lo < hi) {
                const float* src = x.pixel(c, s_ * (int(i1) - 1) + u - pt, v - pl);
                for (std::size_t jj = j1; jj < lo; ++jj) dq[jj - j1] = 0.0f;
                if (s_ == 1)
                  for (std::size_t jj = lo; jj < hi; ++jj) dq[jj - j1] = src[jj - 1];
                else
                  ctx.kernels.gather_s2(hi - lo, src + 2 * (lo - 1), dq + (lo - j1));
                for (std::size_t jj = hi; jj < j1 + run; ++jj) dq[jj - j1] = 0.0f;
              } else {
                for (std::size_t t = 0; t < run; ++t) dq[t] = 0.0f;
              }
              q += run;
            }
          }
    };
    conv_flat(ctx, pc_, false, nullptr, 0, out, 0, act_, &gather);
  }

 private:
  int k_, s_, act_;
  PadRule pad_;
  PackedConv pc_;
};

}  // namespace

std::unique_ptr<Op> make_conv2d(const OpRecord& rec, const std::vector<TensorRecord>& t) {
  return std::make_unique<Conv2d>(rec, t);
}

PadRule PadRule::from_record(const OpRecord& rec) {
  PadRule r;
  const std::int32_t* ip = rec.iparams;
  r.kernel = ip[2];
  r.stride = ip[3];
  r.mode = ip[6];
  if (r.mode == 0) r.fixed = {ip[4], ip[4], ip[4], ip[4]};
  if (r.mode == 1) r.fixed = {ip[7], ip[8], ip[9], ip[10]};
  return r;
}

Pads PadRule::at(int height, int width) const {
  if (mode != 2) return fixed;
  auto same = [&](int n, int* before, int* after) {  // TensorFlow SAME
    const int out = (n + stride - 1) / stride;
    const int total = std::max((out - 1) * stride + kernel - n, 0);
    *before = total / 2;
    *after = total - total / 2;
  };
  Pads p;
  same(height, &p.top, &p.bottom);
  same(width, &p.left, &p.right);
  return p;
}

Shape padded_out(const std::string& label, int c, int h, int w, int kernel, int stride, const Pads& p) {
  auto axis = [&](const char* name, int n, int before, int after) {
    const int span = n + before + after - kernel;
    if (span < 0)
      throw std::invalid_argument(label + ": input " + name + " " + std::to_string(n) + " too small for kernel " +
                                  std::to_string(kernel) + ", stride " + std::to_string(stride) + ", padding (" +
                                  std::to_string(before) + ", " + std::to_string(after) + ")");
    return span / stride + 1;
  };
  return {c, axis("height", h, p.top, p.bottom), axis("width", w, p.left, p.right)};
}

int kernel_act(int file_act) {
  return file_act == 1 ? kernels::kActRelu : file_act == 3 ? kernels::kActRelu6 : kernels::kActNone;
}

int window_out(const std::string& label, const char* axis, int n, int kernel, int stride, int padding) {
  const int m = (n + 2 * padding - kernel) / stride + 1;
  if (n + 2 * padding - kernel < 0 || m < 1)
    throw std::invalid_argument(label + ": input " + axis + " " + std::to_string(n) + " too small for kernel " +
                                std::to_string(kernel) + ", stride " + std::to_string(stride) + ", padding " +
                                std::to_string(padding));
  return m;
}

}  // namespace detail
}  // namespace gazecrop
