// CPU feature detection (once), the KernelTable choice (once; GAZECROP_ISA=scalar|avx2|avx512|neon forces a set)
// and each table's measured peak.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "kernels.h"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#define GAZECROP_X86_GNU 1
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>  // getauxval(AT_HWCAP): HWCAP_ASIMD
#endif

namespace gazecrop {
namespace kernels {
namespace {

CpuFeatures detect() {
  CpuFeatures f;
#if defined(GAZECROP_X86_GNU)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
  if (!(fma && osxsave && avx)) return f;
  unsigned xcr0_lo = 0, xcr0_hi = 0;
  __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  if ((xcr0_lo & 0x6) != 0x6) return f;  // OS saves XMM and YMM state
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid_count(7, 0, a, b, c, d);
  f.avx2 = (b >> 5) & 1;
  // AVX-512F (CPUID.7.0:EBX bit 16), and the OS saves the opmask (XCR0 bit 5), ZMM_Hi256 (bit 6) and Hi16_ZMM
  // (bit 7) state: without those a kernel's zmm/k registers would be corrupted at a context switch.
  f.avx512f = f.avx2 && ((b >> 16) & 1) && (xcr0_lo & 0xE0) == 0xE0;
  // AVX-512 BW (EBX bit 30), VL (EBX bit 31) and VNNI (ECX bit 11): the int8 kernels' VPDPBUSD and byte masks.
  f.avx512vnni = f.avx512f && ((b >> 30) & 1) && ((b >> 31) & 1) && ((c >> 11) & 1);
#endif
#if defined(__aarch64__)
#if defined(__linux__)
  f.neon = (getauxval(AT_HWCAP) & (1UL << 1)) != 0;  // HWCAP_ASIMD (asm/hwcap.h), set on every AArch64 Linux CPU
#else
  f.neon = true;  // Advanced SIMD is mandatory in AArch64
#endif
#endif
  return f;
}

const KernelTable kScalar = {"scalar", f32_conv1x1_6x16_scalar, f32_conv3x3_6x16_scalar, f32_softplus_x8_scalar,
                             f32_gather_s2_x8_scalar, f32_dwconv3x3_x8_scalar, f32_dwconv5x5_x8_scalar,
                             f32_fma_peak_12x4_scalar, kMR, kNR, f32_normalise_rgb_x1_scalar};
#if defined(GAZECROP_HAVE_AVX2_KERNELS)
const KernelTable kAvx2 = {"avx2", f32_conv1x1_6x16_avx2, f32_conv3x3_6x16_avx2, f32_softplus_x8_avx2,
                           f32_gather_s2_x8_avx2, f32_dwconv3x3_x8_avx2, f32_dwconv5x5_x8_avx2,
                           f32_fma_peak_12x8_avx2, kMR, kNR, f32_normalise_rgb_x8_avx2};
#endif
#if defined(GAZECROP_HAVE_AVX512_KERNELS)
const KernelTable kAvx512 = {"avx512", f32_conv1x1_6x64_avx512, f32_conv3x3_6x64_avx512, f32_softplus_x16_avx512,
                             f32_gather_s2_x16_avx512, f32_dwconv3x3_x16_avx512, f32_dwconv5x5_x16_avx512,
                             f32_fma_peak_12x16_avx512, kMR, 64, f32_normalise_rgb_x16_avx512,
                             f32_conv1x1_rows_6x64_avx512, f32_conv3x3_rows_6x64_avx512};
#endif
#if defined(GAZECROP_HAVE_NEON_KERNELS)
const KernelTable kNeon = {"neon", f32_conv1x1_6x16_neon, f32_conv3x3_6x16_neon, f32_softplus_x4_neon,
                           f32_gather_s2_x8_neon, f32_dwconv3x3_x4_neon, f32_dwconv5x5_x4_neon,
                           f32_fma_peak_12x4_neon, kMR, kNR, f32_normalise_rgb_x1_scalar};
#endif

const Int8KernelTable kInt8Scalar = {"scalar", s8_gemm_4x16c4_scalar, s8_dwconv_c1_scalar, s8_add_x1_scalar, false};
#if defined(GAZECROP_HAVE_AVX2_KERNELS)
const Int8KernelTable kInt8Avx2 = {"avx2", s8_gemm_2x16c4_avx2, s8_dwconv_c8_avx2, s8_add_x8_avx2, false};
#endif
#if defined(GAZECROP_HAVE_AVX512VNNI_KERNELS)
const Int8KernelTable kInt8Avx512Vnni = {"avx512vnni", s8_gemm_8x16c4_avx512vnni, s8_dwconv_c16_avx512vnni,
                                         s8_add_x16_avx512vnni, true};
#endif

const KernelTable* default_table() {
  const char* env = std::getenv("GAZECROP_ISA");
  if (env && *env) {
    if (const KernelTable* t = find_kernels(env)) return t;
    // An unknown or unsupported request falls back to the best set rather than failing at import.
  }
  // The best supported set: kKernelSets is ordered best last.
  const KernelTable* best = &kScalar;
  for (const char* n : kKernelSets)
    if (const KernelTable* t = find_kernels(n)) best = t;
  return best;
}

std::atomic<const KernelTable*>& override_slot() {
  static std::atomic<const KernelTable*> slot{nullptr};
  return slot;
}

// Best of many short runs: on a loaded machine a run of ~1 ms often goes without preemption, so the best one
// is the CPU's undisturbed rate.
double measure_peak(const KernelTable& t) {
  float out[kPeakChains];
  constexpr std::size_t iters = 1 << 18;  // 0.1 GFLOP with 16 lanes: ~1 ms per run at 100 GFLOP/s
  for (int w = 0; w < 4; ++w) t.fma_peak(iters, out);  // warm-up: clocks up (and the AVX-512 licence on Intel)
  double best = 0;
  for (int r = 0; r < 40; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    const double flops = t.fma_peak(iters, out);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s > 0) best = std::max(best, flops / s / 1e9);
  }
  return best;
}

}  // namespace

const Int8KernelTable& int8_kernels(const KernelTable& t) {
#if defined(GAZECROP_HAVE_AVX512VNNI_KERNELS)
  if (std::strcmp(t.name, "avx512") == 0 && cpu_features().avx512vnni) return kInt8Avx512Vnni;
#endif
#if defined(GAZECROP_HAVE_AVX2_KERNELS)
  if ((std::strcmp(t.name, "avx512") == 0 || std::strcmp(t.name, "avx2") == 0) && cpu_features().avx2)
    return kInt8Avx2;
#endif
  return kInt8Scalar;
}

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect();
  return f;
}

const KernelTable* find_kernels(const char* name) {
  if (name == nullptr) return nullptr;
  if (std::strcmp(name, "scalar") == 0) return &kScalar;
#if defined(GAZECROP_HAVE_AVX2_KERNELS)
  if (std::strcmp(name, "avx2") == 0) return cpu_features().avx2 ? &kAvx2 : nullptr;
#endif
#if defined(GAZECROP_HAVE_AVX512_KERNELS)
  if (std::strcmp(name, "avx512") == 0) return cpu_features().avx512f ? &kAvx512 : nullptr;
#endif
#if defined(GAZECROP_HAVE_NEON_KERNELS)
  if (std::strcmp(name, "neon") == 0) return cpu_features().neon ? &kNeon : nullptr;
#endif
  return nullptr;
}

const KernelTable& active_kernels() {
  if (const KernelTable* t = override_slot().load(std::memory_order_acquire)) return *t;
  static const KernelTable* chosen = default_table();
  return *chosen;
}

bool set_kernel_set(const char* name) {
  const KernelTable* t = find_kernels(name);
  if (!t) return false;
  override_slot().store(t, std::memory_order_release);
  return true;
}

double peak_gflops(const KernelTable& t) {
  static std::mutex mu;
  static const KernelTable* done[sizeof kKernelSets / sizeof kKernelSets[0]] = {};
  static double value[sizeof kKernelSets / sizeof kKernelSets[0]] = {};
  std::lock_guard<std::mutex> lock(mu);
  for (std::size_t i = 0; i < sizeof kKernelSets / sizeof kKernelSets[0]; ++i) {
    if (done[i] == &t) return value[i];
    if (!done[i]) {
      value[i] = measure_peak(t);
      done[i] = &t;
      return value[i];
    }
  }
  return measure_peak(t);
}

}  // namespace kernels
}  // namespace gazecrop
