// Weight packing and the flat-convolution driver shared by conv2d and dense_block.
#pragma once

#include <functional>
#include <vector>

#include "op.h"

namespace gazecrop {
namespace detail {

// Weights of one convolution repacked into output-channel tiles of at most kMR rows, tile sizes balanced
// (13 -> 5, 4, 4; 27 -> 6, 6, 5, 5, 5). Tile layout: [c][tap][m] (m fastest), taps = k * k.
struct PackedConv {
  struct Tile {
    int m0, mr;
    std::size_t offset;  // into w
  };
  int cout = 0, cin = 0, taps = 0;
  AlignedBuffer w;
  std::vector<float> bias;
  std::vector<Tile> tiles;
};

// FLOPs of `pc` over an h x w output grid (2 per multiply-add) and its weight + bias bytes.
double conv_flops(const PackedConv& pc, int h, int w);
double conv_weight_bytes(const PackedConv& pc);

PackedConv pack_conv(const float* weight, const float* bias, int cout, int cin, int kernel);

// Fills im2col columns for the output flat positions [a, a + nc): row r at dst + r * dst_stride.
using GatherFn = std::function<void(std::size_t a, std::size_t nc, float* dst, std::size_t dst_stride)>;

// out planes [c0, c0 + cout) over the flat interior range of `out` =
//   act(bias + conv(x)), where x points at plane 0 of an input in the same frame geometry as `out`,
// `x_stride` floats between its planes; taps9 selects the 3x3 stride-1 padding-1 kernel. act (file codes): 0 none,
// 1 ReLU (fused), 2 softplus, 3 ReLU6 (fused). With `gather` (1x1 kernel only), x is ignored and each pixel chunk's columns
// are gathered into a small per-chunk buffer first. The ring columns of the written planes hold garbage
// until zero_ring().
void conv_flat(const RunContext& ctx, const PackedConv& pc, bool taps9, const float* x, std::size_t x_stride,
               const Frame& out, int c0, int act, const GatherFn* gather = nullptr);

}  // namespace detail
}  // namespace gazecrop
