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
};

class Op {
 public:
  virtual ~Op() = default;
  // Output shape for the given input shapes; throws std::invalid_argument (e.g. output below 1x1).
  virtual Shape out_shape(const std::vector<Shape>& in) const = 0;
  // Writes the interior of every output plane (the runner zeroes the ring afterwards).
  virtual void run(const RunContext& ctx, const std::vector<Frame>& in, const Frame& out) const = 0;

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
