// Kernel signatures and the KernelTable (see README.md in this folder for the buffer rule).
// No intrinsics and no inline helpers here: this header is included by files built with and without
// -mavx2 -mfma and -mavx512f (and, on AArch64, by the NEON kernels).
#pragma once

#include <cstddef>

namespace gazecrop {
namespace kernels {

// Output tile: up to `kMR` output channels (the packer's tile, shared by every kernel set) x `nr` pixels per
// inner-loop step of the kernel set (KernelTable::nr: 16 in the scalar, AVX2 and NEON sets, two 8-float
// vectors in AVX2, four 4-float vectors in NEON; 64 in AVX-512, four 16-float vectors).
constexpr int kMR = 6;
constexpr int kNR = 16;

// The kernel sets, best last (KernelTable::name; GAZECROP_ISA values). A CPU supports at most the x86 sets
// or "neon" (AArch64), so "best last" holds on each architecture.
constexpr const char* kKernelSets[] = {"scalar", "avx2", "avx512", "neon"};

// "Flat" convolution microkernel over a padded plane layout (see ../tensor.h).
//   y[m * y_stride + n] = act(bias[m] + sum_{c < kc, t < taps} w[(c * taps + t) * mr + m] *
//                                               x[c * x_stride + offset(t) + n])
// for m < mr (1 .. kMR) and n < nc, where offset(t) = 0 for the 1x1 family and
// (t / 3 - 1) * row_stride + (t % 3 - 1) for the 3x3 family. `act` is a kernel activation code (below).
// Writes exactly mr x nc outputs; reads only the inputs named by the formula.
using ConvFn = void (*)(std::size_t mr, std::size_t nc, std::size_t kc, const float* x, std::size_t x_stride,
                        std::ptrdiff_t row_stride, const float* w, const float* bias, float* y,
                        std::size_t y_stride, int act);

// Kernel activation codes (the `act` argument of ConvFn and DwConvFn). Not the file's codes: ops map
// docs/weights-format.md activations onto these (softplus runs as a separate UnaryFn pass).
constexpr int kActNone = 0;   // y = v
constexpr int kActRelu = 1;   // y = max(v, 0)
constexpr int kActRelu6 = 2;  // y = min(max(v, 0), 6)

// Depthwise convolution of one channel plane, K x K taps (K = 3 for the dwconv3x3 family, 5 for dwconv5x5),
// stride s (1 or 2), over an input whose padding is already in memory (zeros):
//   y[i * y_row + j] = act(bias + sum_{u < K, v < K} w[u * K + v] * x[(s i + u) * x_row + s j + v])
// for i < h_out, j < w_out, summed in the order bias, then u, then v (same order in every ISA and tile).
// Reads rows r < s (h_out - 1) + K; in each row the formula's columns c < s (w_out - 1) + K plus up to
// kDwOverRead floats past the last of them (values ignored: callers keep that much readable memory after
// every row, e.g. the padded plane's ring and tail, or a scratch row's slack). Writes exactly w_out floats
// per output row, never past them. Tile "x8" / "x16": pixels of one output row per vector (8 in AVX2, 16 in
// AVX-512, whose kernels read only the named columns: masked row ends).
constexpr std::size_t kDwOverRead = 16;
using DwConvFn = void (*)(std::size_t h_out, std::size_t w_out, const float* x, std::size_t x_row, int stride,
                          const float* w, float bias, float* y, std::size_t y_row, int act);

// In-place elementwise function over n floats (n arbitrary; 8 per step in AVX2, 16 in AVX-512).
// softplus: x <- max(x, 0) + log1p(exp(-|x|)), relative error below 1e-6.
using UnaryFn = void (*)(std::size_t n, float* x);

// Stride-2 gather for im2col of stride-2 convolutions: dst[t] = src[2 t] for t < n. Reads only
// src[0 .. 2 (n - 1)].
using GatherS2Fn = void (*)(std::size_t n, const float* src, float* dst);

// FMA-throughput loop (the kernel set's peak): kPeakChains independent accumulators of one vector each,
// chain i starting at 2 + i in every lane, `iters` times a <- a * kPeakMul + kPeakAdd (one FMA, or a
// multiply and an add in the scalar set, per chain and step). Writes lane 0 of chain i to out[i]
// (i < kPeakChains) and returns the FLOPs done (iters * kPeakChains * lanes * 2).
constexpr int kPeakChains = 12;
constexpr float kPeakMul = 0.99990f, kPeakAdd = 1.5e-4f;
using PeakFn = double (*)(std::size_t iters, float* out);

#define GAZECROP_CONV_KERNEL(name, isa) \
  void name(std::size_t mr, std::size_t nc, std::size_t kc, const float* x, std::size_t x_stride, \
            std::ptrdiff_t row_stride, const float* w, const float* bias, float* y, std::size_t y_stride, \
            int act);
#define GAZECROP_UNARY_KERNEL(name, isa) void name(std::size_t n, float* x);
#define GAZECROP_GATHER_KERNEL(name, isa) void name(std::size_t n, const float* src, float* dst);
#define GAZECROP_DWCONV_KERNEL(name, isa)                                                                    \
  void name(std::size_t h_out, std::size_t w_out, const float* x, std::size_t x_row, int stride, const float* w, \
            float bias, float* y, std::size_t y_row, int act);
#define GAZECROP_PEAK_KERNEL(name, isa) double name(std::size_t iters, float* out);
#include "kernels.def"
#undef GAZECROP_CONV_KERNEL
#undef GAZECROP_UNARY_KERNEL
#undef GAZECROP_GATHER_KERNEL
#undef GAZECROP_DWCONV_KERNEL
#undef GAZECROP_PEAK_KERNEL

struct KernelTable {
  const char* name;    // one of kKernelSets
  ConvFn conv1x1;      // taps = 1
  ConvFn conv3x3;      // taps = 9, stride 1, padding 1 in the padded-plane layout
  UnaryFn softplus;
  GatherS2Fn gather_s2;
  DwConvFn dwconv3x3;  // depthwise K = 3, stride 1 or 2
  DwConvFn dwconv5x5;  // depthwise K = 5, stride 1 or 2
  PeakFn fma_peak;     // measures the set's peak (peak_gflops); no op calls it
  int mr;              // output channels per tile (the packer's tile)
  int nr;              // pixels per tile
};

struct CpuFeatures {
  bool avx2 = false;     // AVX2 + FMA3 and OS-enabled YMM state
  bool avx512f = false;  // AVX-512F (+ everything avx2 needs) and OS-enabled opmask, ZMM_Hi256, Hi16_ZMM state
  bool neon = false;     // AArch64 Advanced SIMD (HWCAP_ASIMD; baseline on every 64-bit ARM CPU)
};

// CPUID (+ XGETBV) on x86, getauxval(AT_HWCAP) on AArch64 Linux, read once.
const CpuFeatures& cpu_features();

// The table in use: chosen once from cpu_features() and GAZECROP_ISA, unless set_kernel_set() overrode it.
const KernelTable& active_kernels();

// Looks a table up by name (one of kKernelSets); nullptr when unknown or not supported by this CPU / build.
const KernelTable* find_kernels(const char* name);

// Forces a table for the whole process (tests). Returns false when `name` is unknown or unsupported.
bool set_kernel_set(const char* name);

// Single-thread peak of table `t` in GFLOP/s, measured once per table and process with its fma_peak loop
// (best of 40 runs of ~1 ms after a warm-up, ~50 ms in all; thread-safe).
double peak_gflops(const KernelTable& t);

}  // namespace kernels
}  // namespace gazecrop
