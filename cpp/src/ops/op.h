// The op interface: each op (one file each in this folder) owns its shape rule and run(), and reaches the
// SIMD kernels only through the KernelTable in RunContext.
#pragma once

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "../kernels/kernels.h"
#include "../tensor.h"
#include "../thread_pool.h"
#include "../weights_loader.h"

namespace gazecrop {
namespace detail {

struct RunContext {
  const kernels::KernelTable& kernels;
  ThreadPool& pool;
  Workspace& ws;  // the run's reusable memory (scratch slots for an op's parallel tasks; see tensor.h)
};

// What one run of an op costs at given shapes (GAZECROP_PROFILE prints it beside the time): FLOPs (a multiply
// and an add count 2, a compare, exp or log 1) and the bytes it must move at least: each input read once, the
// output written once, the weights read once, 4 bytes per float (the padding ring and cache re-reads are not
// counted, so GB/s is a lower bound of the traffic). `what` names the path taken, e.g. "1x1", "im2col 3x3 s2".
struct OpCost {
  double flops = 0, bytes = 0;
  std::string what;
};

inline double value_bytes(const Shape& s) { return 4.0 * double(s.c) * double(s.h) * double(s.w); }

// Zero padding of conv2d / depthwise_conv2d (docs/weights-format.md "Padding"): iparams 4 and 6 .. 10,
// resolved against the input size (TensorFlow "same" depends on it).
struct Pads {
  int top = 0, bottom = 0, left = 0, right = 0;
};
struct PadRule {
  int kernel = 1, stride = 1, mode = 0;
  Pads fixed;  // modes 0 and 1
  static PadRule from_record(const OpRecord& rec);
  Pads at(int height, int width) const;
};
struct PackedConv;  // conv_common.h

// What the loader's fusion (inverted_residual.cpp) may read of an op; kind kOther (the default) for every op
// it cannot fuse. Pointers stay valid as long as the op.
struct FusionView {
  enum Kind { kOther, kPointwise, kDepthwise, kAdd } kind = kOther;
  int act = 0;                       // kernels::kAct* code; ops with other activations (softplus) are kOther
  const PackedConv* conv = nullptr;  // kPointwise: a 1x1 stride-1 unpadded conv2d, packed
  int c = 0, k = 0, stride = 1;      // kDepthwise: channels, kernel (3 or 5), stride
  const PadRule* pad = nullptr;      // kDepthwise
  const float* w = nullptr;          // kDepthwise: (c, k, k)
  const float* b = nullptr;          // kDepthwise: (c,)
};

class Op {
 public:
  virtual ~Op() = default;
  // Output shape for the given input shapes; throws std::invalid_argument (e.g. output below 1x1).
  virtual Shape out_shape(const std::vector<Shape>& in) const = 0;
  // Writes the interior of every output plane (the runner zeroes the ring afterwards).
  virtual void run(const RunContext& ctx, const std::vector<Frame>& in, const Frame& out) const = 0;
  // Cost at these shapes (see OpCost); the default is a pure data movement: inputs read, output written.
  virtual OpCost cost(const std::vector<Shape>& in, const Shape& out) const {
    OpCost c;
    for (const Shape& s : in) c.bytes += value_bytes(s);
    c.bytes += value_bytes(out);
    return c;
  }
  virtual FusionView fusion_view() const { return {}; }

  std::vector<int> inputs;  // value ids
  std::string label;        // "op 3 (conv2d)" for error messages
};

// Factories; `rec` and its tensors were validated by parse_weights().
std::unique_ptr<Op> make_conv2d(const OpRecord& rec, const std::vector<TensorRecord>& t);
std::unique_ptr<Op> make_dense_block(const OpRecord& rec, const std::vector<TensorRecord>& t);
std::unique_ptr<Op> make_pool(const OpRecord& rec, const std::vector<TensorRecord>& t);
std::unique_ptr<Op> make_resize_bilinear(const OpRecord& rec, const std::vector<TensorRecord>& t);
std::unique_ptr<Op> make_concat(const OpRecord& rec, const std::vector<TensorRecord>& t);
std::unique_ptr<Op> make_gaussian_blur(const OpRecord& rec, const std::vector<TensorRecord>& t);
std::unique_ptr<Op> make_centre_bias(const OpRecord& rec, const std::vector<TensorRecord>& t);
std::unique_ptr<Op> make_log_softmax(const OpRecord& rec, const std::vector<TensorRecord>& t);
std::unique_ptr<Op> make_depthwise_conv2d(const OpRecord& rec, const std::vector<TensorRecord>& t);
std::unique_ptr<Op> make_add(const OpRecord& rec, const std::vector<TensorRecord>& t);
// The loader's fusion (inverted_residual.cpp): one op running [expand ->] depthwise -> project [-> add] of an
// inverted residual in row bands, reusing the parts' packed weights (the parts must outlive it). `expand` and
// `add` may be null; nullptr when the parts' fusion views do not fit together.
std::unique_ptr<Op> make_inverted_residual(const Op* expand, const Op& dw, const Op& project, const Op* add);

// Output size (H', W') of a window op with per-side padding; throws std::invalid_argument naming `label`.
Shape padded_out(const std::string& label, int c, int h, int w, int kernel, int stride, const Pads& p);

// File activation code (0 none, 1 ReLU, 3 ReLU6; 2 softplus is not a kernel code) -> kernels::kAct*.
int kernel_act(int file_act);

// Window output length (floor rule); throws std::invalid_argument naming `label` when below 1.
int window_out(const std::string& label, const char* axis, int n, int kernel, int stride, int padding);

// Bilinear source indices/weights along one axis (half-pixel centres, docs/weights-format.md op 5).
struct ResizeAxis {
  std::vector<int> i0, i1;
  std::vector<double> f;
};
ResizeAxis resize_axis(int n_in, int n_out);

}  // namespace detail
}  // namespace gazecrop
