// gazecrop::Model: load (map + validate + build the op list + repack weights once) and the const run().
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <mutex>
#include <string>

#include "gazecrop/gazecrop.h"
#include "int8_trunk.h"
#include "kernels/kernels.h"
#include "ops/op.h"
#include "weights_loader.h"

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#define GAZECROP_HAVE_MMAP 1
#endif

#ifndef GAZECROP_VERSION
#define GAZECROP_VERSION "0.0.0"
#endif

namespace gazecrop {

using detail::Frame;
using detail::Shape;

namespace {

// One line of the GAZECROP_PROFILE table (stderr): label, path, output shape, ms, MFLOP, MB, GFLOP/s, share of
// the peak, GB/s (columns fixed; benchmarks/kernel_sets.py parses them).
void print_profile_line(const char* label, const char* what, const Shape& s, double ms, double flops, double bytes,
                        double peak) {
  const double sec = ms * 1e-3;
  char rate[64] = "        - GFLOP/s    - peak";
  if (flops > 0 && sec > 0)
    std::snprintf(rate, sizeof rate, "%9.1f GFLOP/s %3.0f%% peak", flops / sec * 1e-9, 100.0 * flops / sec * 1e-9 / peak);
  std::fprintf(stderr, "gazecrop: %-22s %-18s %4dx%4dx%4d %9.3f ms %10.3f MFLOP %9.3f MB %s %8.2f GB/s\n", label,
               what, s.c, s.h, s.w, ms, flops * 1e-6, bytes * 1e-6, rate, sec > 0 ? bytes / sec * 1e-9 : 0.0);
}

}  // namespace

// What run() executes: steps in file order, each an op reading values `inputs` and writing value `out`
// (value v = the output of file op v - 1; value 0 the input image).
struct Step {
  const detail::Op* op;
  std::vector<int> inputs;
  int out;
  std::string label;
  int first_op;  // the first file op the step runs (a fused step runs several)
};
struct Program {
  std::vector<Step> steps;
  std::vector<int> last_use;  // per value: index of the last step reading it (-1: none)
  std::vector<int> from_int8;  // int8 programs: the trunk values (0 .. int8 ops) the steps read, dequantised
};

struct Model::Impl {
  ModelInfo info{};
  std::vector<std::unique_ptr<detail::Op>> ops;    // one per file op; op i writes value i + 1
  std::vector<std::unique_ptr<detail::Op>> fused;  // fused inverted residuals, built on ops' packed weights
  Program plain, fused_program;                     // op by op; with the fusions (RunOptions::fuse)
  // The same without the steps only the head map needs (run when the caller does not ask for the head map).
  Program plain_main, fused_main;
  // Format version 3 with an int8 trunk: the trunk, and the four programs above without the trunk's ops (run
  // after it, on its dequantised values).
  std::unique_ptr<detail::Int8Trunk> int8;
  Program int8_plain, int8_fused, int8_plain_main, int8_fused_main;
  int file_precision = 0;     // the file's default precision (0 float32, 1 int8)
  int env_precision = -1;     // GAZECROP_PRECISION=fp32|int8 (-1: not set)
  // One thread pool per model, kept between calls (threads > 1). A call that finds it taken by another
  // thread's run gets a pool of its own for that call, so concurrent runs never wait for each other.
  mutable std::mutex pool_mu;
  mutable std::unique_ptr<detail::ThreadPool> pool;
  // Workspaces of finished runs (tensor.h), handed to the next ones. A finished run's workspace is kept when it
  // holds at most kKeepWorkspace bytes (a huge input's activations are not held after its run), fewer than
  // kKeepCount are kept and all kept ones stay within kKeepTotal bytes; otherwise it is freed (a burst of many
  // concurrent runs does not leave a workspace per run behind).
  static constexpr std::size_t kKeepWorkspace = std::size_t(64) << 20, kKeepTotal = std::size_t(256) << 20;
  static constexpr std::size_t kKeepCount = 8;
  mutable std::mutex ws_mu;
  mutable std::vector<std::unique_ptr<detail::Workspace>> workspaces;

  // Holds one run's workspace: a finished run's (or a new one) on construction, given back (or dropped) at the
  // end of the scope.
  struct WorkspaceLease {
    explicit WorkspaceLease(const Impl& m) : impl(m) {
      std::lock_guard<std::mutex> g(impl.ws_mu);
      if (impl.workspaces.empty()) {
        ws = std::make_unique<detail::Workspace>();
      } else {
        ws = std::move(impl.workspaces.back());
        impl.workspaces.pop_back();
      }
    }
    WorkspaceLease(const WorkspaceLease&) = delete;
    WorkspaceLease& operator=(const WorkspaceLease&) = delete;
    ~WorkspaceLease() {
      const std::size_t bytes = ws->bytes();
      if (bytes > kKeepWorkspace) return;
      std::lock_guard<std::mutex> g(impl.ws_mu);
      std::size_t kept = bytes;
      for (const auto& w : impl.workspaces) kept += w->bytes();
      if (impl.workspaces.size() >= kKeepCount || kept > kKeepTotal) return;
      try {
        impl.workspaces.push_back(std::move(ws));
      } catch (...) {  // cannot grow the list (out of memory): free the workspace instead
      }
    }
    const Impl& impl;
    std::unique_ptr<detail::Workspace> ws;
  };

  // Shapes of values 0 .. upto (default: all); throws std::invalid_argument for an unsupported size or an op
  // whose output would be below 1x1.
  std::vector<Shape> plan(int height, int width, std::size_t upto = std::size_t(-1)) const {
    if (height < 1 || width < 1 || height > 32768 || width > 32768 ||
        std::int64_t(height) * width > (std::int64_t(1) << 26))
      throw std::invalid_argument("image size " + std::to_string(height) + "x" + std::to_string(width) +
                                  " not supported (each side 1 .. 32768, at most 2^26 pixels)");
    std::vector<Shape> shapes{{3, height, width}};
    std::vector<Shape> in;
    for (const auto& op : ops) {
      if (shapes.size() > upto) break;
      in.clear();
      for (int v : op->inputs) in.push_back(shapes[std::size_t(v)]);
      shapes.push_back(op->out_shape(in));
    }
    // Upper bound of the workspace (every value alive at once): refuse absurd inputs before allocating.
    double floats = 0;
    for (const Shape& sh : shapes) floats += double(sh.c) * double(detail::frame_plane(sh.h, sh.w));
    if (floats > double(std::uint64_t(1) << 32))
      throw std::invalid_argument("image size " + std::to_string(height) + "x" + std::to_string(width) +
                                  " needs more than 16 GiB of activations for this network");
    return shapes;
  }

  // Whether a run with `opt` takes the int8 trunk (`u8`: the images are uint8).
  bool use_int8(const RunOptions& opt, bool u8) const {
    if (opt.precision < -1 || opt.precision > 1)
      throw std::invalid_argument("precision must be -1 (the file's default), 0 (float32) or 1 (int8), got " +
                                  std::to_string(opt.precision));
    if (opt.precision == 1) {
      if (!int8)
        throw std::invalid_argument("this model has no int8 trunk (format version 3, gazecrop.train.calibrate)");
      if (!u8) throw std::invalid_argument("the int8 trunk runs on uint8 images, not float32 ones");
      return true;
    }
    if (opt.precision == 0 || !int8 || !u8) return false;
    // The default: GAZECROP_PRECISION when set; else the file's, int8 only where the int8 kernels beat float32
    // (AVX-512 VNNI), so that a file calibrated for int8 never runs slower on another CPU.
    if (env_precision != -1) return env_precision == 1;
    return file_precision == 1 && kernels::int8_kernels(kernels::active_kernels()).faster_than_fp32;
  }

  // Runs `count` images of height x width; fill_input(n, frame) writes image n's preprocessed pixels, or, when
  // the int8 trunk runs (use_int8; `u8`: the uint8 (H, W, 3) images, `u8_stride` bytes apart), the trunk reads
  // them. Image n's log-density goes to out + n * h * w and, when head_out is not null, its head map (version 3)
  // to head_out + n * hh * hw.
  template <typename Fill>
  void run(std::size_t count, int height, int width, Fill fill_input, const std::uint8_t* u8, std::size_t u8_stride,
           float* out, std::size_t out_len, float* head_out, std::size_t head_len, const RunOptions& opt) const {
    const bool q8 = use_int8(opt, u8 != nullptr);
    if (opt.threads < 1 || opt.threads > 256)
      throw std::invalid_argument("threads must be in 1..256, got " + std::to_string(opt.threads));
    if (count < 1) throw std::invalid_argument("a batch needs at least one image");
    const std::vector<Shape> shapes = plan(height, width);
    const Shape& last = shapes.back();
    const std::size_t per = std::size_t(last.h) * std::size_t(last.w);
    if (out_len / count != per || out_len % count != 0)
      throw std::invalid_argument("output buffer holds " + std::to_string(out_len) + " floats, expected " +
                                  std::to_string(count) + " x " + std::to_string(last.h) + "x" +
                                  std::to_string(last.w));
    std::size_t head_per = 0;
    if (head_out) {
      if (info.head_output == 0) throw std::invalid_argument("this model has no head map (format version 3)");
      const Shape& hs = shapes[std::size_t(info.head_output)];
      head_per = std::size_t(hs.h) * std::size_t(hs.w);
      if (head_len / count != head_per || head_len % count != 0)
        throw std::invalid_argument("head map buffer holds " + std::to_string(head_len) + " floats, expected " +
                                    std::to_string(count) + " x " + std::to_string(hs.h) + "x" + std::to_string(hs.w));
    }
    std::unique_lock<std::mutex> lock(pool_mu, std::defer_lock);
    std::unique_ptr<detail::ThreadPool> own;
    detail::ThreadPool* pp = nullptr;
    if (opt.threads > 1 && lock.try_lock()) {
      if (!pool || pool->size() != opt.threads) pool = std::make_unique<detail::ThreadPool>(opt.threads);
      pp = pool.get();
    } else {
      own = std::make_unique<detail::ThreadPool>(opt.threads);  // threads == 1: no workers are started
      pp = own.get();
    }
    const Program& prog =
        q8 ? (opt.fuse ? (head_out ? int8_fused : int8_fused_main) : (head_out ? int8_plain : int8_plain_main))
           : (opt.fuse ? (head_out ? fused_program : fused_main) : (head_out ? plain : plain_main));
    const WorkspaceLease ws(*this);
    for (std::size_t n = 0; n < count; ++n)
      run_one(prog, shapes, [&](const Frame& f) { fill_input(n, f); }, q8 ? u8 + n * u8_stride : nullptr,
              out + n * per, head_out ? head_out + n * head_per : nullptr, *pp, *ws.ws);
  }

  // One image: the float program `prog` after the input (fill_input), or, with `u8`, after the int8 trunk on
  // the uint8 image (prog is then an int8 program: it reads the trunk's dequantised values).
  template <typename Fill>
  void run_one(const Program& prog, const std::vector<Shape>& shapes, Fill fill_input, const std::uint8_t* u8,
               float* out, float* head_out, detail::ThreadPool& pool, detail::Workspace& ws) const {
    // GAZECROP_PROFILE: per-op time, FLOPs, bytes, GFLOP/s against the kernel set's measured peak, GB/s.
    static const bool profile = std::getenv("GAZECROP_PROFILE") != nullptr;
    const detail::RunContext ctx{kernels::active_kernels(), pool, ws};
    const double peak = profile ? kernels::peak_gflops(ctx.kernels) * pool.size() : 0.0;
    double total_ms = 0, total_flops = 0, total_bytes = 0;
    if (profile)
      std::fprintf(stderr, "gazecrop: profile %dx%d, kernel set %s, %d thread(s), peak %.1f GFLOP/s (FMA loop)\n",
                   shapes[0].h, shapes[0].w, ctx.kernels.name, pool.size(), peak);
    detail::WorkspaceBuffers bufs(ws, shapes.size());  // all back to the workspace at the end, also on a throw
    std::vector<Frame> frames(shapes.size());
    auto alloc = [&](std::size_t v) {
      const Shape& s = shapes[v];
      // Not zeroed: every op writes all interior pixels and the runner zeroes ring and tails (zero_ring).
      frames[v] = Frame::make(bufs.take(v, std::size_t(s.c) * detail::frame_plane(s.h, s.w)), s.c, s.h, s.w);
    };
    if (u8) {
      int8->run(kernels::int8_kernels(ctx.kernels), pool, ws, u8, shapes, prog.from_int8, [&](int v) {
        alloc(std::size_t(v));
        return frames[std::size_t(v)];
      });
    } else {
      alloc(0);
      fill_input(frames[0]);
      detail::zero_ring(frames[0], 0, 3);
    }
    std::vector<Frame> in;
    for (std::size_t i = 0; i < prog.steps.size(); ++i) {
      const Step& st = prog.steps[i];
      const std::size_t o = std::size_t(st.out);
      in.clear();
      for (int v : st.inputs) in.push_back(frames[std::size_t(v)]);
      alloc(o);
      const auto t0 = profile ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point();
      st.op->run(ctx, in, frames[o]);
      if (profile) {
        const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        std::vector<Shape> in_shapes;
        for (int v : st.inputs) in_shapes.push_back(shapes[std::size_t(v)]);
        const detail::OpCost c = st.op->cost(in_shapes, shapes[o]);
        print_profile_line(st.label.c_str(), c.what.c_str(), shapes[o], ms, c.flops, c.bytes, peak);
        total_ms += ms;
        total_flops += c.flops;
        total_bytes += c.bytes;
      }
      detail::zero_ring(frames[o], 0, frames[o].c);
      for (int v : st.inputs)
        if (prog.last_use[std::size_t(v)] == int(i)) bufs.give(std::size_t(v));
    }
    if (profile) print_profile_line("total", "", shapes.back(), total_ms, total_flops, total_bytes, peak);
    auto copy_out = [](const Frame& y, float* dst) {
      for (int i = 0; i < y.h; ++i)
        std::memcpy(dst + std::size_t(i) * y.w, y.pixel(0, i, 0), std::size_t(y.w) * sizeof(float));
    };
    copy_out(frames.back(), out);
    if (head_out) copy_out(frames[std::size_t(info.head_output)], head_out);  // a leaf: never released
  }
};

namespace {

// last_use; for an int8 program (int8_ops > 0), from_int8: the trunk values its steps read.
void finish_program(Program& p, std::size_t num_values, int int8_ops = 0) {
  p.last_use.assign(num_values, -1);
  p.from_int8.clear();
  std::vector<char> read(num_values, 0);
  for (std::size_t i = 0; i < p.steps.size(); ++i)
    for (int v : p.steps[i].inputs) {
      p.last_use[std::size_t(v)] = int(i);
      read[std::size_t(v)] = 1;
    }
  for (int v = 0; v <= int8_ops && int8_ops > 0; ++v)
    if (read[std::size_t(v)]) p.from_int8.push_back(v);
}

// The steps of `p` after an int8 trunk of `n` ops: steps wholly inside it are dropped; a fused step reaching
// into it is replaced by `plain`'s steps of its ops from n on (they read the trunk's dequantised values).
Program after_trunk(const Program& p, const Program& plain, int n, std::size_t num_values) {
  Program t;
  for (const Step& st : p.steps) {
    if (st.out <= n) continue;
    if (st.first_op >= n) {
      t.steps.push_back(st);
      continue;
    }
    for (int j = n; j < st.out; ++j) t.steps.push_back(plain.steps[std::size_t(j)]);
  }
  finish_program(t, num_values, n);
  return t;
}

// `p` without the steps whose outputs the log-density (the last value) does not depend on: the head map's own
// ops (format version 3), skipped when the caller does not ask for the head map.
Program main_only(const Program& p, std::size_t num_values, int int8_ops = 0) {
  std::vector<char> needed(num_values, 0);
  needed[num_values - 1] = 1;
  std::vector<char> keep(p.steps.size(), 0);
  for (std::size_t i = p.steps.size(); i-- > 0;) {
    if (!needed[std::size_t(p.steps[i].out)]) continue;
    keep[i] = 1;
    for (int v : p.steps[i].inputs) needed[std::size_t(v)] = 1;
  }
  Program out;
  for (std::size_t i = 0; i < p.steps.size(); ++i)
    if (keep[i]) out.steps.push_back(p.steps[i]);
  finish_program(out, num_values, int8_ops);
  return out;
}

// The fused program: runs of file ops forming an inverted residual ([1x1 expand ->] depthwise -> 1x1 project
// [-> add of the block input]), consecutive in the file and with each intermediate value read only by the next
// op, become one fused step (ops/inverted_residual.cpp); every other op is a step of its own.
void fuse(Model::Impl& m) {
  const auto& ops = m.ops;
  const std::size_t n = ops.size();
  std::vector<int> readers(n + 1, 0);
  for (const auto& op : ops)
    for (int v : op->inputs) ++readers[std::size_t(v)];
  // Op j reads value i + 1 (op i's output), and nothing else does.
  auto only_reader = [&](std::size_t i, std::size_t j) {
    return j < n && ops[j]->inputs.size() == 1 && ops[j]->inputs[0] == int(i + 1) && readers[i + 1] == 1;
  };
  using Kind = detail::FusionView::Kind;
  auto kind = [&](std::size_t i) { return ops[i]->fusion_view().kind; };
  for (std::size_t i = 0; i < n;) {
    const detail::Op* expand = nullptr;
    std::size_t d = i;
    if (kind(i) == Kind::kPointwise && i + 1 < n && kind(i + 1) == Kind::kDepthwise && only_reader(i, i + 1)) {
      expand = ops[i].get();
      d = i + 1;
    }
    std::unique_ptr<detail::Op> f;
    std::size_t last = d + 1;  // the project
    if (kind(d) == Kind::kDepthwise && last < n && kind(last) == Kind::kPointwise && only_reader(d, last)) {
      const int block_in = (expand ? ops[i] : ops[d])->inputs[0];
      const detail::Op* add = nullptr;
      if (last + 1 < n && kind(last + 1) == Kind::kAdd && readers[last + 1] == 1) {
        const std::vector<int>& ai = ops[last + 1]->inputs;
        if ((ai[0] == int(last + 1) && ai[1] == block_in) || (ai[1] == int(last + 1) && ai[0] == block_in))
          add = ops[last + 1].get();
      }
      f = detail::make_inverted_residual(expand, *ops[d], *ops[last], add);
      if (!f && add) f = detail::make_inverted_residual(expand, *ops[d], *ops[last], nullptr), add = nullptr;
      if (f) {
        if (add) ++last;
        f->label = "ops " + std::to_string(i) + "-" + std::to_string(last) + " (inverted_residual)";
        m.fused_program.steps.push_back({f.get(), {block_in}, int(last + 1), f->label, int(i)});
        m.fused.push_back(std::move(f));
        i = last + 1;
        continue;
      }
    }
    m.fused_program.steps.push_back(m.plain.steps[i]);
    ++i;
  }
  finish_program(m.fused_program, n + 1);
}

std::shared_ptr<const Model::Impl> build(const std::uint8_t* data, std::size_t size) {
  detail::ParsedWeights pw = detail::parse_weights(data, size);
  auto impl = std::make_shared<Model::Impl>();
  impl->info = pw.info;
  for (std::size_t i = 0; i < pw.ops.size(); ++i) {
    const detail::OpRecord& rec = pw.ops[i];
    std::unique_ptr<detail::Op> op;
    switch (rec.op_type) {
      case detail::kConv2d: op = detail::make_conv2d(rec, pw.tensors); break;
      case detail::kDenseBlock: op = detail::make_dense_block(rec, pw.tensors); break;
      case detail::kAvgPool:
      case detail::kMaxPool: op = detail::make_pool(rec, pw.tensors); break;
      case detail::kResizeBilinear: op = detail::make_resize_bilinear(rec, pw.tensors); break;
      case detail::kConcat: op = detail::make_concat(rec, pw.tensors); break;
      case detail::kGaussianBlur: op = detail::make_gaussian_blur(rec, pw.tensors); break;
      case detail::kCentreBias: op = detail::make_centre_bias(rec, pw.tensors); break;
      case detail::kLogSoftmax: op = detail::make_log_softmax(rec, pw.tensors); break;
      case detail::kDepthwiseConv2d: op = detail::make_depthwise_conv2d(rec, pw.tensors); break;
      case detail::kAdd: op = detail::make_add(rec, pw.tensors); break;
      default: throw FormatError("op " + std::to_string(i) + ": unknown op code " + std::to_string(rec.op_type));
    }
    op->label = "op " + std::to_string(i) + " (" + detail::op_name(rec.op_type) + ")";
    for (std::uint32_t k = 0; k < rec.num_inputs; ++k) op->inputs.push_back(int(rec.inputs[k]));
    impl->plain.steps.push_back({op.get(), op->inputs, int(i + 1), op->label, int(i)});
    impl->ops.push_back(std::move(op));
  }
  finish_program(impl->plain, pw.ops.size() + 1);
  fuse(*impl);
  const std::size_t nv = pw.ops.size() + 1;
  impl->plain_main = main_only(impl->plain, nv);
  impl->fused_main = main_only(impl->fused_program, nv);
  if (pw.int8.ops > 0) {
    const int n = int(pw.int8.ops);
    impl->int8 = std::make_unique<detail::Int8Trunk>(pw);
    impl->int8_plain = after_trunk(impl->plain, impl->plain, n, nv);
    impl->int8_fused = after_trunk(impl->fused_program, impl->plain, n, nv);
    impl->int8_plain_main = main_only(impl->int8_plain, nv, n);
    impl->int8_fused_main = main_only(impl->int8_fused, nv, n);
    impl->file_precision = int(pw.int8.precision);
    if (const char* env = std::getenv("GAZECROP_PRECISION")) {  // overrides the file's default
      if (std::strcmp(env, "fp32") == 0) impl->env_precision = 0;
      if (std::strcmp(env, "int8") == 0) impl->env_precision = 1;
    }
  }
  return impl;
}

}  // namespace

Model::Model(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}

Model Model::from_memory(const void* data, std::size_t size) {
  return Model(build(static_cast<const std::uint8_t*>(data), size));
}

Model Model::load(const std::string& path) {
#if defined(GAZECROP_HAVE_MMAP)
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int e = errno;
    throw IoError("cannot open " + path + ": " + std::strerror(e), e);
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    const int e = errno ? errno : EINVAL;
    ::close(fd);
    throw IoError("cannot read " + path + ": not a regular file", e);
  }
  const std::size_t size = std::size_t(st.st_size);
  if (size == 0) {
    ::close(fd);
    return from_memory(nullptr, 0);
  }
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int e = errno;
  ::close(fd);
  if (p == MAP_FAILED) throw IoError("cannot map " + path + ": " + std::strerror(e), e);
  struct Unmap {
    void* p;
    std::size_t n;
    ~Unmap() { ::munmap(p, n); }
  } guard{p, size};
  return from_memory(p, size);
#else
  std::ifstream f(path, std::ios::binary);
  if (!f) throw IoError("cannot open " + path, ENOENT);
  std::vector<char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  return from_memory(bytes.data(), bytes.size());
#endif
}

const ModelInfo& Model::info() const { return impl_->info; }
int Model::num_ops() const { return int(impl_->ops.size()); }

std::vector<std::string> Model::steps(bool fuse) const {
  std::vector<std::string> out;
  for (const Step& st : (fuse ? impl_->fused_program : impl_->plain).steps) out.push_back(st.label);
  return out;
}

void Model::output_size(int height, int width, int* out_height, int* out_width) const {
  const std::vector<Shape> s = impl_->plan(height, width);
  *out_height = s.back().h;
  *out_width = s.back().w;
}

void Model::run(const ImageU8& image, float* out, std::size_t out_len, const RunOptions& options) const {
  run(ImageBatchU8{image.data, 1, image.height, image.width}, out, out_len, options);
}

void Model::run(const ImageF32& image, float* out, std::size_t out_len, const RunOptions& options) const {
  run(ImageBatchF32{image.data, 1, image.height, image.width}, out, out_len, options);
}

void Model::run(const ImageBatchU8& batch, float* out, std::size_t out_len, const RunOptions& options) const {
  run(batch, out, out_len, nullptr, 0, options);
}

void Model::run(const ImageBatchF32& batch, float* out, std::size_t out_len, const RunOptions& options) const {
  run(batch, out, out_len, nullptr, 0, options);
}

void Model::run(const ImageBatchU8& batch, float* out, std::size_t out_len, float* head_out, std::size_t head_len,
                const RunOptions& options) const {
  if (!batch.data) throw std::invalid_argument("image data is null");
  if (batch.count < 1) throw std::invalid_argument("a batch needs at least one image");
  const ModelInfo& mi = impl_->info;
  const std::size_t image_bytes = std::size_t(batch.height) * std::size_t(batch.width) * 3;
  const kernels::NormaliseRgbFn normalise = kernels::active_kernels().normalise_rgb;
  impl_->run(std::size_t(batch.count), batch.height, batch.width, [&](std::size_t n, const Frame& f) {
    const std::uint8_t* base = batch.data + n * image_bytes;
    for (int i = 0; i < f.h; ++i)
      normalise(std::size_t(f.w), base + std::size_t(i) * std::size_t(f.w) * 3, mi.mean, mi.std, f.pixel(0, i, 0),
                f.pixel(1, i, 0), f.pixel(2, i, 0));
  }, batch.data, image_bytes, out, out_len, head_out, head_len, options);
}

void Model::run(const ImageBatchF32& batch, float* out, std::size_t out_len, float* head_out, std::size_t head_len,
                const RunOptions& options) const {
  if (!batch.data) throw std::invalid_argument("image data is null");
  if (batch.count < 1) throw std::invalid_argument("a batch needs at least one image");
  const ModelInfo& mi = impl_->info;
  const std::size_t image_floats = std::size_t(batch.height) * std::size_t(batch.width) * 3;
  impl_->run(std::size_t(batch.count), batch.height, batch.width, [&](std::size_t n, const Frame& f) {
    const float* base = batch.data + n * image_floats;
    for (int c = 0; c < 3; ++c)
      for (int i = 0; i < f.h; ++i) {
        const float* src = base + (std::size_t(c) * f.h + i) * f.w;
        float* dst = f.pixel(c, i, 0);
        for (int j = 0; j < f.w; ++j) dst[j] = (src[j] - mi.mean[c]) / mi.std[c];
      }
  }, nullptr, 0, out, out_len, head_out, head_len, options);
}

bool Model::has_head_map() const { return impl_->info.head_output != 0; }

bool Model::runs_int8(const RunOptions& options) const { return impl_->use_int8(options, true); }

std::vector<std::vector<std::int8_t>> Model::int8_values(const ImageU8& image) const {
  if (!impl_->int8)
    throw std::invalid_argument("this model has no int8 trunk (format version 3, gazecrop.train.calibrate)");
  if (!image.data) throw std::invalid_argument("image data is null");
  const std::vector<Shape> shapes = impl_->plan(image.height, image.width, std::size_t(impl_->int8->ops()));
  std::vector<std::vector<std::int8_t>> out(std::size_t(impl_->int8->ops()) + 1);
  detail::ThreadPool pool(1);
  detail::Workspace ws;
  impl_->int8->run(kernels::int8_kernels(kernels::active_kernels()), pool, ws, image.data, shapes, {},
                   [](int) { return Frame(); },
                   [&](int v, const std::vector<std::int8_t>& q) { out[std::size_t(v)] = q; });
  return out;
}

void Model::head_map_size(int height, int width, int* out_height, int* out_width) const {
  if (!has_head_map()) throw std::invalid_argument("this model has no head map (format version 3)");
  const std::vector<Shape> s = impl_->plan(height, width);
  *out_height = s[std::size_t(impl_->info.head_output)].h;
  *out_width = s[std::size_t(impl_->info.head_output)].w;
}

LogDensity Model::run(const ImageU8& image, const RunOptions& options) const {
  LogDensity d;
  output_size(image.height, image.width, &d.height, &d.width);
  d.data.resize(std::size_t(d.height) * d.width);
  run(image, d.data.data(), d.data.size(), options);
  return d;
}

LogDensity Model::run(const ImageF32& image, const RunOptions& options) const {
  LogDensity d;
  output_size(image.height, image.width, &d.height, &d.width);
  d.data.resize(std::size_t(d.height) * d.width);
  run(image, d.data.data(), d.data.size(), options);
  return d;
}

const char* kernel_set() { return kernels::active_kernels().name; }
const char* int8_kernel_set() { return kernels::int8_kernels(kernels::active_kernels()).name; }
bool set_kernel_set(const std::string& name) { return kernels::set_kernel_set(name.c_str()); }
std::vector<std::string> supported_kernel_sets() {
  std::vector<std::string> out;
  for (const char* n : kernels::kKernelSets)
    if (kernels::find_kernels(n)) out.emplace_back(n);
  return out;
}
const char* version() { return GAZECROP_VERSION; }

}  // namespace gazecrop
