// Activation storage: the padded plane layout every op reads and writes (see kernels/README.md).
//
// A value of shape (C, H, W) is C planes. Each plane is an (H + 2) x (W + 2) frame with a one-pixel ring of
// zeros around the image; pixel (i, j) sits at flat index (i + 1) * row + (j + 1), row = W + 2. Planes are
// `plane` floats apart, a multiple of 16 (64 bytes), and the buffer is 64-byte aligned. After every op the
// ring and the tail of each plane past the frame are zero, so a 3x3 stride-1 padding-1 convolution is nine
// shifted 1x1 products over the flat range [row + 1, H * row + W + 1) with no edge cases (the ring columns
// it also computes are zeroed afterwards).
#pragma once

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>
#include <vector>

namespace gazecrop {
namespace detail {

constexpr std::size_t kBufferAlign = 64;

class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(std::size_t count, bool zero = true) { reset(count, zero); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  AlignedBuffer(AlignedBuffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept {
    if (this != &o) {
      release();
      p_ = std::exchange(o.p_, nullptr);
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }
  ~AlignedBuffer() { release(); }

  // (Re)allocates `count` floats plus one vector (16 floats) of padding, zeroed unless `zero` is false.
  void reset(std::size_t count, bool zero = true) {
    release();
    const std::size_t bytes = ((count + 16) * sizeof(float) + kBufferAlign - 1) / kBufferAlign * kBufferAlign;
    p_ = static_cast<float*>(std::aligned_alloc(kBufferAlign, bytes));
    if (!p_) throw std::bad_alloc();
    if (zero) std::memset(p_, 0, bytes);
    n_ = count;
  }
  void release() {
    std::free(p_);
    p_ = nullptr;
    n_ = 0;
  }
  float* data() const { return p_; }
  std::size_t size() const { return n_; }

 private:
  float* p_ = nullptr;
  std::size_t n_ = 0;
};

// The memory of a run, kept between runs (Model::Impl keeps a pool of them, one per concurrent run), so that a
// run at a size seen before makes no large allocation and touches no fresh page: the values' buffers come from
// a free list (the smallest that fits; a new one only when none does) and go back to it when their last reader
// is done; scratch slots belong to the threads of the run's pool (ThreadPool::run passes a task its thread's
// index; an op reserves the slots before its parallel region, and its tasks use their thread's slot(s) only),
// so one op's scratch is the next op's. Without it, every run allocated its values and band buffers afresh:
// glibc serves megabyte blocks with mmap or trims them back to the kernel, so a run could spend 10-15% of its
// time in page faults (perf on the Lite0 backbone at 192x256, AMD EPYC, 2026-12-07), depending on the
// allocator's state.
class Workspace {
 public:
  // A buffer of at least `count` floats (contents unspecified).
  AlignedBuffer take(std::size_t count) {
    std::size_t best = free_.size();
    for (std::size_t i = 0; i < free_.size(); ++i)
      if (free_[i].size() >= count && (best == free_.size() || free_[i].size() < free_[best].size())) best = i;
    if (best == free_.size()) return AlignedBuffer(count, false);
    AlignedBuffer b = std::move(free_[best]);
    free_[best] = std::move(free_.back());
    free_.pop_back();
    return b;
  }
  // Back to the free list. Never throws (it runs in destructors, also while an exception unwinds): when the
  // list cannot grow, the buffer is freed instead.
  void give(AlignedBuffer&& b) noexcept {
    if (!b.data()) return;
    try {
      free_.push_back(std::move(b));
    } catch (...) {
      b.release();
    }
  }
  // Makes slots [0, n) exist; call before the parallel region whose tasks use them.
  void reserve_slots(std::size_t n) {
    if (slots_.size() < n) slots_.resize(n);
  }
  // Slot i, at least `count` floats (contents unspecified; zeroed when `zero`).
  float* slot(std::size_t i, std::size_t count, bool zero = false) {
    AlignedBuffer& b = slots_[i];
    if (b.size() < count) b.reset(count, false);
    if (zero) std::memset(b.data(), 0, count * sizeof(float));
    return b.data();
  }
  std::size_t bytes() const {
    std::size_t n = 0;
    for (const AlignedBuffer& b : free_) n += b.size() * sizeof(float);
    for (const AlignedBuffer& b : slots_) n += b.size() * sizeof(float);
    return n;
  }

 private:
  std::vector<AlignedBuffer> free_, slots_;
};

// Buffers taken from a workspace by index, each given back when its user is done (give) and all the rest when
// this goes out of scope, also while an exception unwinds (a run's values, an op's temporary).
class WorkspaceBuffers {
 public:
  WorkspaceBuffers(Workspace& ws, std::size_t n) : ws_(ws), bufs_(n) {}
  WorkspaceBuffers(const WorkspaceBuffers&) = delete;
  WorkspaceBuffers& operator=(const WorkspaceBuffers&) = delete;
  ~WorkspaceBuffers() {
    for (AlignedBuffer& b : bufs_) ws_.give(std::move(b));
  }
  // Buffer i := at least `count` floats from the workspace (contents unspecified).
  float* take(std::size_t i, std::size_t count) {
    bufs_[i] = ws_.take(count);
    return bufs_[i].data();
  }
  void give(std::size_t i) { ws_.give(std::move(bufs_[i])); }

 private:
  Workspace& ws_;
  std::vector<AlignedBuffer> bufs_;
};

struct Shape {
  int c = 0, h = 0, w = 0;
};

inline std::size_t frame_row(int w) { return std::size_t(w) + 2; }
inline std::size_t frame_plane(int h, int w) {
  return ((std::size_t(h) + 2) * frame_row(w) + 15) / 16 * 16;
}

// A view of C planes in the padded layout (non-owning).
struct Frame {
  float* data = nullptr;
  int c = 0, h = 0, w = 0;
  std::size_t row = 0;    // W + 2
  std::size_t plane = 0;  // floats between planes

  static Frame make(float* data, int c, int h, int w) {
    return Frame{data, c, h, w, frame_row(w), frame_plane(h, w)};
  }
  float* plane_ptr(int ch) const { return data + std::size_t(ch) * plane; }
  // First interior pixel (0, 0) of channel ch.
  float* pixel(int ch, int i, int j) const { return plane_ptr(ch) + (std::size_t(i) + 1) * row + std::size_t(j) + 1; }
  std::size_t flat_begin() const { return row + 1; }
  std::size_t flat_end() const { return std::size_t(h) * row + std::size_t(w) + 1; }
  Frame channels(int c0, int n) const {
    Frame f = *this;
    f.data = plane_ptr(c0);
    f.c = n;
    return f;
  }
};

// Zeroes the ring and the tail of planes [c0, c0 + n) of f.
inline void zero_ring(const Frame& f, int c0, int n) {
  for (int ch = c0; ch < c0 + n; ++ch) {
    float* p = f.plane_ptr(ch);
    std::memset(p, 0, (f.row + 1) * sizeof(float));
    for (int i = 0; i + 1 < f.h; ++i) {  // right border of row i and left border of row i + 1
      float* q = p + (std::size_t(i) + 1) * f.row + std::size_t(f.w) + 1;
      q[0] = 0.0f;
      q[1] = 0.0f;
    }
    const std::size_t end = f.flat_end();
    std::memset(p + end, 0, (f.plane - end) * sizeof(float));
  }
}

}  // namespace detail
}  // namespace gazecrop
