// The int8 trunk of a version-3 file (docs/weights-format.md "int8 trunk"): ops 0 .. n - 1 run on int8 values
// with int32 accumulators, exactly as python/gazecrop/int8.py's run_trunk (every kernel set gives the same bytes);
// the values the float ops after it read are dequantised into the float runner's frames.
//
// Layout of an int8 value (C, H, W): channels-last, each q stored as the byte q + 128 (the kernels' unsigned
// form, kernels.h), pixel stride cs = C rounded up to 4, a ring of kRing pixels around the image holding the
// value's zero point (the real 0: the padding of the next convolution), rows of (W + 2 kRing) pixels, 64 bytes
// of slack at the end.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "kernels/kernels.h"
#include "tensor.h"
#include "thread_pool.h"
#include "weights_loader.h"

namespace gazecrop {
namespace detail {

class Int8Trunk {
 public:
  // From a validated file with an int8 trunk (pw.int8.ops > 0); packs the weights once.
  explicit Int8Trunk(const ParsedWeights& pw);
  ~Int8Trunk();
  Int8Trunk(const Int8Trunk&) = delete;
  Int8Trunk& operator=(const Int8Trunk&) = delete;

  int ops() const { return n_; }

  // Runs the trunk on one uint8 (H, W, 3) RGB image (row-major, `shapes` from the model's plan for H x W).
  // For each value v in `dequantise` (ids 0 .. ops()), writes its float32 planes x = s (q - z) into
  // out_frame(v) (interior; ring and tails zeroed). With `int8_out`, also hands every trunk value's int8
  // (C, H, W) bytes to it (tests compare them with the Python reference). The values' buffers come from `ws`
  // and go back to it.
  void run(const kernels::Int8KernelTable& k, ThreadPool& pool, Workspace& ws, const std::uint8_t* image,
           const std::vector<Shape>& shapes, const std::vector<int>& dequantise,
           const std::function<Frame(int)>& out_frame,
           const std::function<void(int, const std::vector<std::int8_t>&)>& int8_out = nullptr) const;

  struct Step;

 private:
  int n_ = 0;
  float in_scale_ = 1;
  int in_zp_ = 0;
  std::uint8_t lut_[3][256];             // the input's quantisation (q + 128), per channel and pixel value
  std::vector<float> scale_;             // per value 0 .. n
  std::vector<int> zp_;                  // per value 0 .. n
  std::vector<int> last_use_;            // per value: the last trunk op reading it (-1: none)
  std::vector<std::unique_ptr<Step>> steps_;
};

}  // namespace detail
}  // namespace gazecrop
