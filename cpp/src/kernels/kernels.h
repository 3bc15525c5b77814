// Kernel signatures and the KernelTable (see README.md in this folder for the buffer rule).
// No intrinsics and no inline helpers here: this header is included by files built with and without
// -mavx2 -mfma.
#pragma once

#include <cstddef>

namespace gazecrop {
namespace kernels {

// Output tile: up to `kMR` output channels x 16 pixels (two 8-float vectors in the AVX2 kernels).
constexpr int kMR = 6;
constexpr int kNR = 16;

// "Flat" convolution microkernel over a padded plane layout (see ../tensor.h).
//   y[m * y_stride + n] = act(bias[m] + sum_{c < kc, t < taps} w[(c * taps + t) * mr + m] *
//                                               x[c * x_stride + offset(t) + n])
// for m < mr (1 .. kMR) and n < nc, where offset(t) = 0 for the 1x1 family and
// (t / 3 - 1) * row_stride + (t % 3 - 1) for the 3x3 family. `relu` != 0 applies max(0, .).
// Writes exactly mr x nc outputs; reads only the inputs named by the formula.
using ConvFn = void (*)(std::size_t mr, std::size_t nc, std::size_t kc, const float* x, std::size_t x_stride,
                        std::ptrdiff_t row_stride, const float* w, const float* bias, float* y,
                        std::size_t y_stride, int relu);

// In-place elementwise function over n floats (n arbitrary; 8 per step in the AVX2 kernels).
// softplus: x <- max(x, 0) + log1p(exp(-|x|)), relative error below 1e-6.
using UnaryFn = void (*)(std::size_t n, float* x);

// Stride-2 gather for im2col of stride-2 convolutions: dst[t] = src[2 t] for t < n. Reads only
// src[0 .. 2 (n - 1)].
using GatherS2Fn = void (*)(std::size_t n, const float* src, float* dst);

#define GAZECROP_CONV_KERNEL(name, isa) \
  void name(std::size_t mr, std::size_t nc, std::size_t kc, const float* x, std::size_t x_stride, \
            std::ptrdiff_t row_stride, const float* w, const float* bias, float* y, std::size_t y_stride, \
            int relu);
#define GAZECROP_UNARY_KERNEL(name, isa) void name(std::size_t n, float* x);
#define GAZECROP_GATHER_KERNEL(name, isa) void name(std::size_t n, const float* src, float* dst);
#include "kernels.def"
#undef GAZECROP_CONV_KERNEL
#undef GAZECROP_UNARY_KERNEL
#undef GAZECROP_GATHER_KERNEL

struct KernelTable {
  const char* name;    // "scalar" or "avx2"
  ConvFn conv1x1;      // taps = 1
  ConvFn conv3x3;      // taps = 9, stride 1, padding 1 in the padded-plane layout
  UnaryFn softplus;
  GatherS2Fn gather_s2;
  int mr;              // output channels per tile (the packer's tile)
  int nr;              // pixels per tile
};

struct CpuFeatures {
  bool avx2 = false;  // AVX2 + FMA3 and OS-enabled YMM state
};

// CPUID (+ XGETBV) read once.
const CpuFeatures& cpu_features();

// The table in use: chosen once from cpu_features() and GAZECROP_ISA, unless set_kernel_set() overrode it.
const KernelTable& active_kernels();

// Looks a table up by name ("scalar", "avx2"); nullptr when unknown or not supported by this CPU / build.
const KernelTable* find_kernels(const char* name);

// Forces a table for the whole process (tests). Returns false when `name` is unknown or unsupported.
bool set_kernel_set(const char* name);

}  // namespace kernels
}  // namespace gazecrop
