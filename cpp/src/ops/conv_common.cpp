#include "conv_common.h"

#include <algorithm>
#include <cmath>

namespace gazecrop {
namespace detail {

PackedConv pack_conv(const float* weight, const float* bias, int cout, int cin, int kernel) {
  PackedConv pc;
  pc.cout = cout;
  pc.cin = cin;
  pc.taps = kernel * kernel;
  pc.bias.assign(bias, bias + cout);
  const int ntiles = (cout + kernels::kMR - 1) / kernels::kMR;
  const int base = cout / ntiles, extra = cout % ntiles;
  const std::size_t per_row = std::size_t(cin) * pc.taps;
  pc.w.reset(per_row * std::size_t(cout));
  std::size_t off = 0;
  int m0 = 0;
  for (int t = 0; t < ntiles; ++t) {
    const int mr = base + (t < extra ? 1 : 0);
    pc.tiles.push_back({m0, mr, off});
    float* dst = pc.w.data() + off;
    for (int c = 0; c < cin; ++c)
      for (int k = 0; k < pc.taps; ++k)
        for (int m = 0; m < mr; ++m)
          *dst++ = weight[(std::size_t(m0 + m) * cin + c) * pc.taps + k];
    off += per_row * mr;
    m0 += mr;
  }
  return pc;
}

double conv_flops(const PackedConv& pc, int h, int w) {
  return 2.0 * pc.cout * double(pc.cin) * pc.taps * double(h) * double(w);
}

double conv_weight_bytes(const PackedConv& pc) { return 4.0 * pc.cout * (double(pc.cin) * pc.taps + 1.0); }

void conv_flat(const RunContext& ctx, const PackedConv& pc, bool taps9, const float* x, std::size_t x_stride,
               const Frame& out, int c0, int act, const GatherFn* gather) {
  const kernels::ConvFn fn = taps9 ? ctx.kernels.conv3x3 : ctx.kernels.conv1x1;
  const int kact = kernel_act(act);
  const std::size_t nthreads = std::size_t(ctx.pool.size());
  // Whole rows, interior only, where the set has a rows kernel and the width is a multiple of its 16-pixel
  // vector (AVX-512: a tile's four vectors may come from different rows, so neither the ring columns nor short
  // rows cost lanes), else for 1x1 rows at least the set's tile wide (nr; one ConvFn call per row). Rows
  // shorter than nr without a rows kernel would run only narrow masked tiles (6 x 16 = 6 accumulators): they
  // take the flat range below, whose 64-pixel tiles outweigh the ring columns (Lite0-s5 backbone, AMD EPYC:
  // 1x1 convolutions 74% of the AVX-512 peak that way against 58-66% row by row).
  const kernels::ConvRowsFn rows_fn = taps9 ? ctx.kernels.conv3x3_rows : ctx.kernels.conv1x1_rows;
  const bool rows_kernel = !gather && rows_fn && out.w % 16 == 0;
  if (rows_kernel || (!taps9 && !gather && std::size_t(out.w) >= std::size_t(ctx.kernels.nr))) {
    // Chunks of whole rows, about 256 pixels (a few per thread); each chunk runs every channel tile, rows
    // innermost so a tile's weights stay in L1.
    const std::size_t w = std::size_t(out.w), h = std::size_t(out.h);
    const std::size_t kc = std::size_t(pc.cin);
    std::size_t rows = std::max<std::size_t>(1, 256 / w);
    if (nthreads > 1) rows = std::min(rows, std::max<std::size_t>(1, h / (4 * nthreads)));
    const std::size_t nchunks = (h + rows - 1) / rows;
    ctx.pool.run(nchunks, [&](std::size_t ci) {
      const std::size_t r0 = ci * rows, r1 = std::min(h, r0 + rows);
      const std::size_t a0 = (r0 + 1) * out.row + 1;  // pixel (r0, 0)
      for (const PackedConv::Tile& t : pc.tiles) {
        float* yt = out.plane_ptr(c0 + t.m0);
        if (rows_kernel) {
          rows_fn(std::size_t(t.mr), r1 - r0, w, kc, x + a0, x_stride, std::ptrdiff_t(out.row), pc.w.data() + t.offset,
                  pc.bias.data() + t.m0, yt + a0, out.plane, kact);
          continue;
        }
        for (std::size_t r = r0; r < r1; ++r) {
          const std::size_t a = a0 + (r - r0) * out.row;
          fn(std::size_t(t.mr), w, kc, x + a, x_stride, std::ptrdiff_t(out.row), pc.w.data() + t.offset,
             pc.bias.data() + t.m0, yt + a, out.plane, kact);
        }
      }
      if (act == 2)
        for (int m = 0; m < pc.cout; ++m)
          for (std::size_t r = r0; r < r1; ++r) ctx.kernels.softplus(w, out.pixel(c0 + m, int(r), 0));
    });
    return;
  }
  const std::size_t q0 = out.flat_begin(), q1 = out.flat_end(), n = q1 - q0;
  // Pixel chunks: a few per thread, a multiple of the kernel set's tile width (nr: 16 or 64, both divide 64);
  // each chunk runs every channel tile so its input block stays in L2 while one tile's weights stay in L1.
  // im2col chunks are 512 pixels (the stems' 27 columns: 55 KB, in L2): the gather's per-chunk cost (a call per
  // column row) made 128-pixel chunks 15-20% slower on the 3x3 stride-2 stems (AMD EPYC, per-op minima of the
  // Lite0 backbone and the DenseNet student at 192x256; 1024 gained nothing more).
  const std::size_t nr = std::size_t(ctx.kernels.nr);
  std::size_t chunk = gather ? 512 : 256;
  if (nthreads > 1) chunk = std::min<std::size_t>(chunk, std::max<std::size_t>(64, (n / (4 * nthreads) + nr - 1) / nr * nr));
  const std::size_t nchunks = (n + chunk - 1) / chunk;
  // 3x3: the kernel walks the 9 taps itself; im2col columns: one tap per row of x.
  const std::size_t kc = taps9 ? std::size_t(pc.cin) : std::size_t(pc.cin) * std::size_t(pc.taps);
  if (gather) ctx.ws.reserve_slots(std::size_t(ctx.pool.size()));
  ctx.pool.run(nchunks, [&](std::size_t ci, int thread) {
    const std::size_t a = q0 + ci * chunk, nc = std::min(chunk, q1 - a);
    const float* xa = gather ? nullptr : x + a;  // x is null when a gather supplies the columns
    std::size_t xs = x_stride;
    if (gather) {  // columns for this chunk only: kc rows of nc floats, L1/L2-resident, in the thread's slot
      xs = (nc + 15) / 16 * 16;
      float* const cols = ctx.ws.slot(std::size_t(thread), kc * ((chunk + 15) / 16 * 16));
      (*gather)(a, nc, cols, xs);  // writes every column
      xa = cols;
    }
    for (const PackedConv::Tile& t : pc.tiles) {
      fn(std::size_t(t.mr), nc, kc, xa, xs, std::ptrdiff_t(out.row), pc.w.data() + t.offset,
         pc.bias.data() + t.m0, out.plane_ptr(c0 + t.m0) + a, out.plane, kact);
    }
    if (act == 2) {
      for (int m = 0; m < pc.cout; ++m) ctx.kernels.softplus(nc, out.plane_ptr(c0 + m) + a);
    }
  });
}

}  // namespace detail
}  // namespace gazecrop
