// Op 2 dense_block: layer l reads the first c_l channels of the block's output buffer and writes its g_l new
// feature maps straight into channels [c_l, c_l + g_l) of the same buffer (no concatenation copies).
#include <cstring>

#include "conv_common.h"

namespace gazecrop {
namespace detail {
namespace {

class DenseBlock final : public Op {
 public:
  DenseBlock(const OpRecord& rec, const std::vector<TensorRecord>& t) : c0_(rec.iparams[0]), cout_(rec.iparams[2]) {
    int cl = c0_;
    for (int l = 0; l < rec.iparams[1]; ++l) {
      const TensorRecord* w = &t[rec.first_tensor + 4 * std::size_t(l)];
      const int b = int(w[0].shape[0]), g = int(w[2].shape[0]);
      Layer L;
      L.cin = cl;
      L.conv1 = pack_conv(w[0].values.data(), w[1].values.data(), b, cl, 1);
      L.conv2 = pack_conv(w[2].values.data(), w[3].values.data(), g, b, 3);
      max_b_ = std::max(max_b_, b);
      layers_.push_back(std::move(L));
      cl += g;
    }
  }

  Shape out_shape(const std::vector<Shape>& in) const override { return {cout_, in[0].h, in[0].w}; }

  OpCost cost(const std::vector<Shape>& in, const Shape& out) const override {
    OpCost c;
    c.bytes = value_bytes(in[0]) + value_bytes(out);
    for (const Layer& L : layers_) {
      c.flops += conv_flops(L.conv1, out.h, out.w) + conv_flops(L.conv2, out.h, out.w);
      c.bytes += conv_weight_bytes(L.conv1) + conv_weight_bytes(L.conv2);
    }
    c.what = std::to_string(layers_.size()) + " x (1x1, 3x3 p1)";
    return c;
  }

  void run(const RunContext& ctx, const std::vector<Frame>& in, const Frame& out) const override {
    std::memcpy(out.data, in[0].data, std::size_t(c0_) * out.plane * sizeof(float));
    // The layers' 1x1 output, from the workspace (given back at the end, also when a layer throws); each layer
    // writes it all (conv + zero_ring).
    WorkspaceBuffers temp(ctx.ws, 1);
    float* const tbuf = temp.take(0, std::size_t(max_b_) * out.plane);
    for (const Layer& L : layers_) {
      const Frame t = Frame::make(tbuf, L.conv1.cout, out.h, out.w);
      conv_flat(ctx, L.conv1, false, out.data, out.plane, t, 0, 1);
      zero_ring(t, 0, t.c);
      conv_flat(ctx, L.conv2, true, t.data, t.plane, out, L.cin, 1);
      zero_ring(out, L.cin, L.conv2.cout);
    }
  }

 private:
  struct Layer {
    int cin = 0;
    PackedConv conv1, conv2;
  };
  int c0_, cout_, max_b_ = 1;
  std::vector<Layer> layers_;
};

}  // namespace

std::unique_ptr<Op> make_dense_block(const OpRecord& rec, const std::vector<TensorRecord>& t) {
  return std::make_unique<DenseBlock>(rec, t);
}

}  // namespace detail
}  // namespace gazecrop
