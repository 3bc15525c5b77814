// Kernel signatures and the KernelTable (see README.md in this folder for the buffer rule).
// No intrinsics and no inline helpers here: this header is included by files built with and without
// -mavx2 -mfma and -mavx512f (and, on AArch64, by the NEON kernels).
#pragma once

#include <cstddef>
#include <cstdint>

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

// The same convolution over `rows` whole rows of w pixels (w a multiple of 16), row r's pixels at
// r * row_stride + n (n < w) in both x and y (the padded plane layout: row_stride is the frame's row):
//   y[m * y_stride + r * row_stride + n] = act(bias[m] + sum_{c, t} w[(c * taps + t) * mr + m] *
//                                              x[c * x_stride + r * row_stride + offset(t) + n])
// Writes exactly those mr x rows x w outputs (never the columns between rows); reads only the named inputs.
// Each output element sees the same FMA sequence as under the set's ConvFn, so the two agree bit for bit.
// Only sets whose ConvFn tile is wider than a typical late-stage row have one (AVX-512: 64 pixels); the
// KernelTable entry is null elsewhere and the drivers run rows one ConvFn call each.
using ConvRowsFn = void (*)(std::size_t mr, std::size_t rows, std::size_t w, std::size_t kc, const float* x,
                            std::size_t x_stride, std::ptrdiff_t row_stride, const float* wt, const float* bias,
                            float* y, std::size_t y_stride, int act);

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

// The input step of a uint8 image: n interleaved RGB pixels (src[3 j + c]) to three float planes,
//   dst_c[j] = (float(src[3 j + c]) - mean[c]) / std[c]      (c = 0, 1, 2: r, g, b; j < n)
// one IEEE subtraction and division per value, so every set gives the same bits. Reads src[0 .. 3 n - 1],
// writes exactly n floats per plane.
using NormaliseRgbFn = void (*)(std::size_t n, const std::uint8_t* src, const float* mean, const float* std,
                                float* r, float* g, float* b);

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
#define GAZECROP_CONVROWS_KERNEL(name, isa)                                                                 \
  void name(std::size_t mr, std::size_t rows, std::size_t w, std::size_t kc, const float* x, std::size_t x_stride, \
            std::ptrdiff_t row_stride, const float* wt, const float* bias, float* y, std::size_t y_stride, int act);
#define GAZECROP_UNARY_KERNEL(name, isa) void name(std::size_t n, float* x);
#define GAZECROP_GATHER_KERNEL(name, isa) void name(std::size_t n, const float* src, float* dst);
#define GAZECROP_RGB_KERNEL(name, isa)                                                                    \
  void name(std::size_t n, const std::uint8_t* src, const float* mean, const float* std, float* r, float* g, \
            float* b);
#define GAZECROP_DWCONV_KERNEL(name, isa)                                                                    \
  void name(std::size_t h_out, std::size_t w_out, const float* x, std::size_t x_row, int stride, const float* w, \
            float bias, float* y, std::size_t y_row, int act);
#define GAZECROP_PEAK_KERNEL(name, isa) double name(std::size_t iters, float* out);
#include "kernels.def"
#undef GAZECROP_CONV_KERNEL
#undef GAZECROP_CONVROWS_KERNEL
#undef GAZECROP_UNARY_KERNEL
#undef GAZECROP_GATHER_KERNEL
#undef GAZECROP_RGB_KERNEL
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
  NormaliseRgbFn normalise_rgb;
  ConvRowsFn conv1x1_rows = nullptr;  // whole rows of a multiple of 16 pixels (null: ConvFn row by row)
  ConvRowsFn conv3x3_rows = nullptr;
};

// --- int8 (the int8 trunk, ../int8_trunk.cpp; the arithmetic is python/gazecrop/int8.py's) ---
// Values are channels-last: pixel p's channels at p * pixel_stride, stored as u = q + 128 (unsigned bytes: VPDPBUSD
// multiplies unsigned by signed bytes) with the zero point and clamp bounds in the same offset form (z + 128, in
// 0 .. 255). Integer arithmetic is exact, so every set computes the same bytes as the scalar kernels.
//
// requantize: (int64(acc) * mult + 2^(shift - 1)) >> shift (arithmetic shift: round half up), mult in
// [2^30, 2^31), shift in [1, 62] (gazecrop.int8.multiplier).
std::int32_t requantize(std::int32_t acc, std::int32_t mult, std::int32_t shift);

// GEMM of the convolutions, read in place from channels-last values: for n < nc, m < mc (any; blocks of 16
// output channels),
//   acc = bias[m] + sum_{k < kc} w[(m / 16) * (kc / 4) * 64 + (k / 4) * 64 + (m % 16) * 4 + k % 4]
//                                * x[n * x_stride + (k / seg) * seg_stride + k % seg]             (int32)
//   y[n * y_stride + m] = clamp(zp + requantize(acc, mult[m], shift[m]), lo, hi)
// kc and seg multiples of 4, seg dividing kc: K in kc / seg segments, segment s at x + s * seg_stride (a 1x1
// convolution: one segment, its pixels' channels; a k x k one: one segment per window row, k pixels' channels,
// the rows seg_stride bytes apart and the pixels x_stride = stride x the pixel's bytes). The last block's rows
// past mc are zero. The packer folds -(128 + the input's zero point) * sum_k w into bias. Writes exactly mc
// bytes per pixel; reads the named x bytes only. Every channel's shift is in [32, 62] (the convolution rule).
using S8GemmFn = void (*)(std::size_t mc, std::size_t nc, std::size_t kc, const std::uint8_t* x,
                          std::size_t x_stride, std::size_t seg, std::size_t seg_stride, const std::int8_t* w,
                          const std::int32_t* bias,
                          const std::int32_t* mult, const std::int32_t* shift, int zp, int lo, int hi,
                          std::uint8_t* y, std::size_t y_stride);
// Depthwise K x K (3 or 5) convolution of one output row, stride s (1 or 2), padding already in memory (the
// input's zero point): for j < w_out, c < ch,
//   acc = bias[c] + sum_{u, v < K} w[(u * K + v) * w_stride + c] * x[u * x_row + (s j + v) * x_pixel + c]
//   y[j * y_pixel + c] = clamp(zp + requantize(acc, mult[c], shift[c]), lo, hi)
// (int32; the packer folds -(128 + the input's zero point) * sum_t w into bias). `w` int32, w_stride >= ch a
// multiple of 16 with zero weights past ch. Reads only the named bytes; writes exactly ch bytes per pixel.
using S8DwConvFn = void (*)(std::size_t w_out, std::size_t ch, int k, int stride, const std::uint8_t* x,
                            std::size_t x_pixel, std::size_t x_row, const std::int32_t* w, std::size_t w_stride,
                            const std::int32_t* bias, const std::int32_t* mult, const std::int32_t* shift, int zp,
                            int lo, int hi, std::uint8_t* y, std::size_t y_pixel);
// Sum of two int8 values (the skip of an inverted residual): for i < n,
//   y[i] = clamp(zp + ((int64(a[i] - za) * ma + int64(b[i] - zb) * mb + 2^(shift - 1)) >> shift), lo, hi)
// ma, mb in [0, 2^31), shift in [10, 62] (gazecrop.int8.add_multipliers; the result then fits 31 bits).
using S8AddFn = void (*)(std::size_t n, const std::uint8_t* a, int za, std::int32_t ma, const std::uint8_t* b, int zb,
                         std::int32_t mb, int shift, int zp, int lo, int hi, std::uint8_t* y);

struct Int8KernelTable {
  const char* name;  // "scalar", "avx2" or "avx512vnni" (AVX-512 F + BW + VL + VNNI)
  S8GemmFn gemm;
  S8DwConvFn dwconv;
  S8AddFn add;
  bool faster_than_fp32;  // measured on the Lite0 student (docs/int8-plan.md): a file's int8 default applies
};

// The int8 kernels of each set (same signatures as S8GemmFn, S8DwConvFn, S8AddFn).
#define GAZECROP_S8_KERNELS(gemm, dwconv, add)                                                                  \
  void gemm(std::size_t mc, std::size_t nc, std::size_t kc, const std::uint8_t* x, std::size_t x_stride,        \
            std::size_t seg, std::size_t seg_stride, const std::int8_t* w, const std::int32_t* bias,             \
            const std::int32_t* mult, const std::int32_t* shift,                                                 \
            int zp, int lo, int hi, std::uint8_t* y, std::size_t y_stride);                                     \
  void dwconv(std::size_t w_out, std::size_t ch, int k, int stride, const std::uint8_t* x, std::size_t x_pixel, \
              std::size_t x_row, const std::int32_t* w, std::size_t w_stride, const std::int32_t* bias,         \
              const std::int32_t* mult, const std::int32_t* shift, int zp, int lo, int hi, std::uint8_t* y,     \
              std::size_t y_pixel);                                                                             \
  void add(std::size_t n, const std::uint8_t* a, int za, std::int32_t ma, const std::uint8_t* b, int zb,         \
           std::int32_t mb, int shift, int zp, int lo, int hi, std::uint8_t* y);
GAZECROP_S8_KERNELS(s8_gemm_4x16c4_scalar, s8_dwconv_c1_scalar, s8_add_x1_scalar)
GAZECROP_S8_KERNELS(s8_gemm_2x16c4_avx2, s8_dwconv_c8_avx2, s8_add_x8_avx2)
GAZECROP_S8_KERNELS(s8_gemm_8x16c4_avx512vnni, s8_dwconv_c16_avx512vnni, s8_add_x16_avx512vnni)
#undef GAZECROP_S8_KERNELS

// The int8 kernels that go with fp32 table `t`: scalar for "scalar" and "neon", AVX2 for "avx2", and for "avx512"
// the AVX-512 VNNI ones when the CPU has AVX-512 BW + VL + VNNI, else the AVX2 ones. Always exact (same bytes).
const Int8KernelTable& int8_kernels(const KernelTable& t);

struct CpuFeatures {
  bool avx2 = false;     // AVX2 + FMA3 and OS-enabled YMM state
  bool avx512f = false;  // AVX-512F (+ everything avx2 needs) and OS-enabled opmask, ZMM_Hi256, Hi16_ZMM state
  bool avx512vnni = false;  // AVX-512 BW, VL (CPUID.7.0:EBX bits 30, 31) + VNNI (ECX bit 11) on top of avx512f
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
