// Kernel micro-benchmark: every conv kernel of kernels.def whose kernel set this CPU supports, at the layer
// shapes of the student network (gazecrop._testing.student_like at a 192x256 input), one thread, median of
// repeated runs. Reports GFLOP/s of useful work (interior pixels only) and the share of the kernel set's
// peak, measured with its FMA-throughput loop (kernels::peak_gflops; CPUID cannot tell the FMA port count).
// Times only; checks nothing (tests/test_ops.py checks results).
//
//   bench_kernels
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <utility>
#include <vector>

#include "kernels/kernels.h"
#include "tensor.h"

using namespace gazecrop;

namespace {

// Median over 31 rounds of the mean of 5 calls, after one warm-up call, in seconds.
template <class F>
double median_seconds(F&& once) {
  once();
  std::vector<double> times;
  for (int r = 0; r < 31; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int k = 0; k < 5; ++k) once();
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / 5);
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

struct Shape {
  const char* name;
  int cin, cout, taps, h, w;
};

double bench(kernels::ConvFn fn, const Shape& s) {
  const std::size_t plane = detail::frame_plane(s.h, s.w), row = detail::frame_row(s.w);
  const std::size_t kc = s.taps == 9 ? s.cin : std::size_t(s.cin) * s.taps;  // im2col rows for taps 1 + k*k
  detail::AlignedBuffer x(kc * plane), y(std::size_t(s.cout) * plane), w(kc * (s.taps == 9 ? 9 : 1) * s.cout);
  std::vector<float> bias(std::size_t(s.cout), 0.1f);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1, 1);
  for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = u(rng);
  for (std::size_t i = 0; i < w.size(); ++i) w.data()[i] = u(rng);
  const std::size_t q0 = row + 1, q1 = std::size_t(s.h) * row + std::size_t(s.w) + 1;
  const int ntiles = (s.cout + 5) / 6;
  static const std::size_t chunk = std::getenv("CHUNK") ? std::strtoul(std::getenv("CHUNK"), nullptr, 10) : 256;
  auto once = [&] {
    for (std::size_t a = q0; a < q1; a += chunk) {
      const std::size_t nc = std::min<std::size_t>(chunk, q1 - a);
      int m0 = 0;
      for (int t = 0; t < ntiles; ++t) {
        const int mr = s.cout / ntiles + (t < s.cout % ntiles ? 1 : 0);
        fn(std::size_t(mr), nc, kc, x.data() + a, plane, std::ptrdiff_t(row), w.data(), bias.data() + m0,
           y.data() + std::size_t(m0) * plane + a, plane, 1);
        m0 += mr;
      }
    }
  };
  const double t = median_seconds(once);
  const double flops = 2.0 * s.cin * s.cout * (s.taps == 9 ? 9 : s.taps) * s.h * s.w;
  return flops / t / 1e9;
}

// Depthwise K x K, stride s, c channels of an h x w input (padding (K - 1) / 2 in memory, rows padded to a
// multiple of 16 floats with the kernels' over-read slack). Returns (GFLOP/s, GB/s of input + output).
struct DwShape {
  const char* name;
  int c, k, s, h, w;
};

std::pair<double, double> bench_dw(kernels::DwConvFn fn, const DwShape& d) {
  const int p = (d.k - 1) / 2;
  const std::size_t ho = std::size_t((d.h + 2 * p - d.k) / d.s + 1), wo = std::size_t((d.w + 2 * p - d.k) / d.s + 1);
  const std::size_t xr = (std::size_t(d.w) + 2 * p + kernels::kDwOverRead + 15) / 16 * 16;
  const std::size_t xp = (std::size_t(d.h) + 2 * p) * xr, yr = (wo + 15) / 16 * 16, yp = ho * yr;
  detail::AlignedBuffer x(std::size_t(d.c) * xp), y(std::size_t(d.c) * yp);
  std::vector<float> w(std::size_t(d.c) * d.k * d.k, 0.05f);
  std::mt19937 rng(2);
  std::uniform_real_distribution<float> u(-1, 1);
  for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = u(rng);
  auto once = [&] {
    for (int c = 0; c < d.c; ++c)
      fn(ho, wo, x.data() + std::size_t(c) * xp, xr, d.s, w.data() + std::size_t(c) * d.k * d.k, 0.1f,
         y.data() + std::size_t(c) * yp, yr, 2);
  };
  const double t = median_seconds(once);
  const double flops = 2.0 * d.c * d.k * d.k * double(ho) * double(wo);
  const double bytes = 4.0 * d.c * (double(d.h) * d.w + double(ho) * double(wo));
  return {flops / t / 1e9, bytes / t / 1e9};
}

struct Kernel {
  const char* name;
  const char* isa;
  kernels::ConvFn fn;
  bool taps9;
};

const Kernel kKernels[] = {
#define GAZECROP_CONV_KERNEL(name, isa) {#name, #isa, kernels::name, std::strstr(#name, "3x3") != nullptr},
#define GAZECROP_CONVROWS_KERNEL(name, isa)  // timed through the models (benchmarks/kernel_sets.py)
#define GAZECROP_RGB_KERNEL(name, isa)
#define GAZECROP_UNARY_KERNEL(name, isa)
#define GAZECROP_GATHER_KERNEL(name, isa)
#define GAZECROP_DWCONV_KERNEL(name, isa)
#define GAZECROP_PEAK_KERNEL(name, isa)
#include "kernels/kernels.def"
#undef GAZECROP_CONV_KERNEL
#undef GAZECROP_DWCONV_KERNEL
};

struct DwKernel {
  const char* name;
  const char* isa;
  kernels::DwConvFn fn;
  int k;
};

const DwKernel kDwKernels[] = {
#define GAZECROP_CONV_KERNEL(name, isa)
#define GAZECROP_DWCONV_KERNEL(name, isa) {#name, #isa, kernels::name, std::strstr(#name, "5x5") ? 5 : 3},
#include "kernels/kernels.def"
#undef GAZECROP_CONV_KERNEL
#undef GAZECROP_CONVROWS_KERNEL
#undef GAZECROP_RGB_KERNEL
#undef GAZECROP_UNARY_KERNEL
#undef GAZECROP_GATHER_KERNEL
#undef GAZECROP_DWCONV_KERNEL
#undef GAZECROP_PEAK_KERNEL
};

}  // namespace

int main() {
  std::printf("Measured single-thread peaks (FMA-throughput loop):");
  for (const char* isa : kernels::kKernelSets)
    if (const kernels::KernelTable* t = kernels::find_kernels(isa)) std::printf(" %s %.1f GFLOP/s;", isa, kernels::peak_gflops(*t));
  std::printf("\n\n| shape | kernel | GFLOP/s | share of the set's peak |\n|---|---|---|---|\n");
  const Shape shapes[] = {
      {"stem 3x3/2 3->24 (im2col K=27) 96x128", 27, 24, 1, 96, 128},
      {"block0 1x1 48->24 48x64", 48, 24, 1, 48, 64},
      {"block0 3x3 24->12 48x64", 24, 12, 9, 48, 64},
      {"trans1 1x1 72->36 48x64", 72, 36, 1, 48, 64},
      {"block1 1x1 84->32 24x32", 84, 32, 1, 24, 32},
      {"block1 3x3 32->16 24x32", 32, 16, 9, 24, 32},
      {"trans2 1x1 132->66 24x32", 132, 66, 1, 24, 32},
      {"block2 1x1 126->40 12x16", 126, 40, 1, 12, 16},
      {"block2 3x3 40->20 12x16", 40, 20, 9, 12, 16},
      {"readout 1x1 318->16 24x32", 318, 16, 1, 24, 32},
      {"odd 1x1 27->13 48x64", 27, 13, 1, 48, 64},
      {"odd 3x3 13->27 48x64", 13, 27, 9, 48, 64},
      {"expand 1x1 40->240 24x32", 40, 240, 1, 24, 32},
      {"project 1x1 240->80 12x16", 240, 80, 1, 12, 16},
  };
  for (const Shape& s : shapes)
    for (const Kernel& k : kKernels) {
      const kernels::KernelTable* t = kernels::find_kernels(k.isa);
      if (!t || k.taps9 != (s.taps == 9)) continue;
      const double g = bench(k.fn, s);
      std::printf("| %s | %s | %.1f | %.0f%% |\n", s.name, k.name, g, 100.0 * g / kernels::peak_gflops(*t));
      std::fflush(stdout);
    }
  // Depthwise layers of EfficientNet-Lite0 at a 192x256 input (input grid of each).
  const DwShape dw[] = {
      {"stage1 dw3x3/1 32ch 96x128", 32, 3, 1, 96, 128},   {"stage2 dw3x3/2 96ch 96x128", 96, 3, 2, 96, 128},
      {"stage2 dw3x3/1 144ch 48x64", 144, 3, 1, 48, 64},   {"stage3 dw5x5/2 144ch 48x64", 144, 5, 2, 48, 64},
      {"stage3 dw5x5/1 240ch 24x32", 240, 5, 1, 24, 32},   {"stage4 dw3x3/2 240ch 24x32", 240, 3, 2, 24, 32},
      {"stage4 dw3x3/1 480ch 12x16", 480, 3, 1, 12, 16},   {"stage5 dw5x5/1 672ch 12x16", 672, 5, 1, 12, 16},
  };
  std::printf("\n| depthwise shape | kernel | GFLOP/s | GB/s (input + output once) |\n|---|---|---|---|\n");
  for (const DwShape& d : dw)
    for (const DwKernel& k : kDwKernels) {
      if (!kernels::find_kernels(k.isa) || k.k != d.k) continue;
      const std::pair<double, double> r = bench_dw(k.fn, d);
      std::printf("| %s | %s | %.1f | %.1f |\n", d.name, k.name, r.first, r.second);
      std::fflush(stdout);
    }
  return 0;
}
