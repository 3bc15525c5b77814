// gazecrop native core: public C++ API (no Python). Loads a `.gzw` saliency network
// (docs/weights-format.md) and runs it on an image, returning the log-density over the output grid.
//
//   auto model = gazecrop::Model::load("gazecrop-fast.gzw");      // throws gazecrop::FormatError
//   gazecrop::LogDensity d = model.run(gazecrop::ImageU8{rgb, h, w});  // h x w x 3 RGB bytes
//   // d.data[i * d.width + j] = log p(i, j); sum of exp == 1
//
// A Model's weights are immutable after load; run() is const and thread-safe: each call takes a workspace of its
// own (activations and scratch) from the model's pool of finished calls' workspaces, or a new one, and gives it
// back at the end, so repeated calls at sizes seen before allocate nothing; the model keeps at most 8 of them,
// 256 MiB in all, and frees a call's workspace above 64 MiB. The model's thread pool serves one call at a
// time, concurrent calls get their own.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace gazecrop {

// The weights file violates docs/weights-format.md; the message names the field, op or tensor and numbers.
class FormatError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The weights file cannot be opened or read (errno_value is the OS error number).
class IoError : public std::runtime_error {
 public:
  IoError(const std::string& what, int errno_value) : std::runtime_error(what), errno_value(errno_value) {}
  int errno_value;
};

// RGB pixels, row-major (height, width, 3), values 0..255, rows `width * 3` bytes apart.
struct ImageU8 {
  const std::uint8_t* data;
  int height;
  int width;
};

// Planar float pixels (3, height, width), C order, values in 0..255 (before the model's mean/std).
struct ImageF32 {
  const float* data;
  int height;
  int width;
};

// `count` images of the same size, contiguous: (count, height, width, 3) RGB bytes / (count, 3, height, width)
// floats in 0..255, C order.
struct ImageBatchU8 {
  const std::uint8_t* data;
  int count;
  int height;
  int width;
};
struct ImageBatchF32 {
  const float* data;
  int count;
  int height;
  int width;
};

struct RunOptions {
  int threads = 1;  // intra-op threads, 1 .. 256 (1 = run on the calling thread only); the model keeps
                    // one pool of this size between calls
  bool fuse = true;  // run inverted residuals fused (row bands, L2-resident expansion); false runs the file's
                     // ops one by one. Same result bit for bit on each kernel set (benchmarks and tests compare)
  int precision = -1;  // -1: the default: GAZECROP_PRECISION=fp32|int8 when set, else the file's (format
                       // version 3), whose int8 applies where the int8 kernels beat float32 (AVX-512 VNNI; on
                       // other CPUs float32 runs); 0: float32; 1: the int8 trunk on any kernel set (uint8
                       // images only; std::invalid_argument for a file without one or a float image). A float
                       // image runs float32 by default.
};

// float32 (height, width) log-density, row-major.
struct LogDensity {
  int height = 0;
  int width = 0;
  std::vector<float> data;
};

// Preprocessing, input-size and provenance fields of the model info record.
struct ModelInfo {
  float mean[3];
  float std[3];
  int input_long_side;
  int size_multiple;
  int format_version;         // 1, 2 or 3 (the file's `version`)
  int head_output = 0;        // version 3: value id of the head map (a second output), 0 = none
  int int8_ops = 0;           // version 3: ops 0 .. int8_ops - 1 form an int8 trunk (0 = none; this release
                              // validates it and runs float32: the int8 kernels are issue 22's next step)
  int default_precision = 0;  // version 3: the precision the file asks for by default, 0 float32, 1 int8
  int int8_verdict = 0;       // version 3: 0 not evaluated, 1 the int8 path met the quality bar, 2 it did not
  std::string name;           // model_name (version 2; empty in version-1 files)
  std::string model_version;  // model_version (version 2; empty in version-1 files)
};

class Model {
 public:
  // Memory-maps (or reads) the file, validates every field in the spec, repacks the weights.
  // Throws IoError (cannot read) or FormatError (invalid file).
  static Model load(const std::string& path);
  // Same from bytes already in memory (copied from as needed; `data` may be freed after the call).
  static Model from_memory(const void* data, std::size_t size);

  const ModelInfo& info() const;
  int num_ops() const;
  // Labels of the steps run() executes with RunOptions::fuse = `fuse`, in order: one per file op ("op 7
  // (conv2d)"), or one per fused inverted residual ("ops 3-6 (inverted_residual)").
  std::vector<std::string> steps(bool fuse = true) const;

  // Output grid (h, w) for an input of height x width; throws std::invalid_argument when an op's output
  // would be smaller than 1x1 (or other run-time shape errors, e.g. concat inputs on different grids).
  void output_size(int height, int width, int* out_height, int* out_width) const;

  // Runs the network. `out` must hold output_size() floats (out_len). Throws std::invalid_argument on bad
  // sizes or options.
  void run(const ImageU8& image, float* out, std::size_t out_len, const RunOptions& options = {}) const;
  void run(const ImageF32& image, float* out, std::size_t out_len, const RunOptions& options = {}) const;
  LogDensity run(const ImageU8& image, const RunOptions& options = {}) const;
  LogDensity run(const ImageF32& image, const RunOptions& options = {}) const;
  // A batch in one call (e.g. an image and its mirror for flip-averaging): `out` holds count x
  // output_size() floats, image n's log-density at out + n * h * w.
  void run(const ImageBatchU8& batch, float* out, std::size_t out_len, const RunOptions& options = {}) const;
  void run(const ImageBatchF32& batch, float* out, std::size_t out_len, const RunOptions& options = {}) const;

  // The head map (format version 3, docs/weights-format.md): a second output, float32 (hh, hw) logits that a
  // cell lies in a head, on a grid that covers the whole image like the log-density's. has_head_map() is
  // false for files without one; head_map_size() then throws std::invalid_argument.
  bool has_head_map() const;
  void head_map_size(int height, int width, int* out_height, int* out_width) const;
  // The int8 trunk's values (format version 3) for one uint8 image, on the given kernel set's int8 kernels:
  // value v's int8 (C, H, W) bytes for v = 0 .. info().int8_ops (python/gazecrop/int8.py's run_trunk gives the
  // same bytes; the tests compare). Throws std::invalid_argument without a trunk or on bad sizes.
  std::vector<std::vector<std::int8_t>> int8_values(const ImageU8& image) const;
  // Whether a run of uint8 images with `options` takes the int8 trunk here (RunOptions::precision's rule, with
  // this process's GAZECROP_PRECISION and kernel set). Throws std::invalid_argument as run() would for
  // precision 1 without a trunk or an unknown precision.
  bool runs_int8(const RunOptions& options = {}) const;
  // Both outputs in one run: log-densities as above, head maps at head_out + n * hh * hw (head_len floats in
  // all). Throws std::invalid_argument on bad sizes, or when the model has no head map.
  void run(const ImageBatchU8& batch, float* out, std::size_t out_len, float* head_out, std::size_t head_len,
           const RunOptions& options = {}) const;
  void run(const ImageBatchF32& batch, float* out, std::size_t out_len, float* head_out, std::size_t head_len,
           const RunOptions& options = {}) const;

  struct Impl;

 private:
  explicit Model(std::shared_ptr<const Impl> impl);
  std::shared_ptr<const Impl> impl_;
};

// Name of the kernel set in use: "avx512", "avx2", "neon" (AArch64) or "scalar" (the best the CPU and OS
// support; GAZECROP_ISA=scalar|avx2|avx512|neon forces one at startup).
const char* kernel_set();
// The int8 kernels that go with the kernel set in use: "avx512vnni" (the only ones a file's int8 default runs on:
// faster than float32), "avx2" or "scalar" (exact, slower than float32: int8 only when asked for).
const char* int8_kernel_set();
// Switches the process-wide kernel set (for tests); false when unknown or not supported by this CPU.
bool set_kernel_set(const std::string& name);
// Kernel sets this build and CPU can run, best last (e.g. {"scalar", "avx2", "avx512"}; {"scalar", "neon"} on
// AArch64).
std::vector<std::string> supported_kernel_sets();
// The core's version, e.g. "0.1.0".
const char* version();

// Resizes an interleaved uint8 image (in_h x in_w x channels, 1 to 4 channels, rows contiguous) to out_h x
// out_w x channels at dst: antialiased bilinear, bit for bit Pillow 13's Image.resize(size, Image.BILINEAR,
// reducing_gap=None) for 1 and 3 channels (a triangle filter widened by the scale when shrinking; libImaging's
// Resample.c rule and Pillow 13's pass order); every channel is filtered on its own (no alpha premultiplying).
// Copies when the sizes are equal. Throws std::invalid_argument for sizes under 1 or sides over 65536.
void resize_bilinear_u8(const std::uint8_t* src, int in_h, int in_w, int channels, std::uint8_t* dst, int out_h,
                        int out_w);

// ---- Crop placement (python/gazecrop/crop.py's "mass" rule for the largest box of each aspect ratio) ----
//
// The box of each size keeping the most saliency mass of the bilinear upsampling of the grid density to the
// width x height image (mirror-averaged, so a mirrored map gets the mirrored box), under the object rule (no
// edge through the most salient object, hold it whole unless a box without it keeps more than
// 1 + object_yield times the mass) and the head rule (no edge through a head a box can hold while that keeps
// >= 0.98 of the mass), ties to the box centre nearest the object's then the image's centre; then up to
// `candidates - 1` distinct runners-up (non-maximum suppression). Bit for bit the numbers of crop.py's rule
// (the same double expressions in the same order; placement.cpp is built without FMA contraction).

struct PlacementOptions {
  bool object_rule = true;    // false: python's object_yield=None (pure mass; may cut through the object)
  double object_yield = 0.1;  // >= 0; +inf never yields
  int candidates = 1;         // >= 1: boxes returned per size (at least 2 are ranked, for the close flag)
  // Heads as pixel rectangles {left, top, right, bottom} (exclusive right / bottom) inside the image.
  std::vector<std::array<int, 4>> heads;
};

struct PlacedBox {
  int left, top;
  double score;  // mirror-averaged share of the saliency mass inside the box, in [0, 1] up to rounding
};

struct SalientPeak {
  int x, y;         // pixel
  double strength;  // density relative to the maximum, in (0, 1]
};

struct BoxPlacement {
  std::vector<PlacedBox> ranked;  // the chosen box first, then distinct runners-up (max(2, candidates) at most)
  double cut;                     // highest density on the chosen box's inner edges relative to the maximum
};

struct Placement {
  int point_x, point_y;              // the salient point (pixel of the grid maximum)
  std::vector<SalientPeak> peaks;    // up to 5 distinct local maxima, strongest first (the first: the point)
  std::vector<BoxPlacement> boxes;   // one per requested box size, in order
};

// {width, height} of the largest box of aspect ratio `aspect` (width / height, > 0 and finite) in a width x
// height image: one side the image's, the other rounded to the nearest pixel (halves to even) and at least 1
// (python's gazecrop.crop.largest_box_size). Throws std::invalid_argument for a bad size or aspect.
std::array<int, 2> largest_box_size(int width, int height, double aspect);

// `density`: grid_h x grid_w doubles, row-major, >= 0 and finite with maximum exactly 1 (exp(log_density -
// max)); box_sizes: {width, height} pairs, each the largest box of its aspect ratio (width == image width or
// height == image height). Throws std::invalid_argument for anything else (sizes over 1 << 20 pixels a side,
// grids over 1 << 22 cells, and width x grid_h + height x grid_w over 1 << 32, the interpolations the
// profiles cost, included). Cost: about 1 ns per such interpolation plus O(width + height) per box size.
Placement place_crops(const double* density, int grid_h, int grid_w, int width, int height,
                      const std::vector<std::array<int, 2>>& box_sizes, const PlacementOptions& options = {});

// As above from a float log-density grid (any normalisation, natural log; NaN and +inf refused, -inf is no
// mass): the density is exp(log_density - max) computed with std::exp (crop.py uses numpy's exp, which may
// differ in the last bit).
Placement place_crops_log(const float* log_density, int grid_h, int grid_w, int width, int height,
                          const std::vector<std::array<int, 2>>& box_sizes, const PlacementOptions& options = {});

}  // namespace gazecrop
