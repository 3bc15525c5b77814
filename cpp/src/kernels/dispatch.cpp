// CPU feature detection (once) and the KernelTable choice (once; GAZECROP_ISA=scalar|avx2 forces a set).
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "kernels.h"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#define GAZECROP_X86_GNU 1
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
#endif
  return f;
}

const KernelTable kScalar = {"scalar", f32_conv1x1_6x16_scalar, f32_conv3x3_6x16_scalar, f32_softplus_x8_scalar, f32_gather_s2_x8_scalar,
                           f32_dwconv3x3_x8_scalar, f32_dwconv5x5_x8_scalar, kMR, kNR};
#if defined(GAZECROP_HAVE_AVX2_KERNELS)
const KernelTable kAvx2 = {"avx2", f32_conv1x1_6x16_avx2, f32_conv3x3_6x16_avx2, f32_softplus_x8_avx2, f32_gather_s2_x8_avx2,
                         f32_dwconv3x3_x8_avx2, f32_dwconv5x5_x8_avx2, kMR, kNR};
#endif

const KernelTable* default_table() {
  const char* env = std::getenv("GAZECROP_ISA");
  if (env && *env) {
    if (const KernelTable* t = find_kernels(env)) return t;
    // An unknown or unsupported request falls back to the best set rather than failing at import.
  }
#if defined(GAZECROP_HAVE_AVX2_KERNELS)
  if (cpu_features().avx2) return &kAvx2;
#endif
  return &kScalar;
}

std::atomic<const KernelTable*>& override_slot() {
  static std::atomic<const KernelTable*> slot{nullptr};
  return slot;
}

}  // namespace

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

}  // namespace kernels
}  // namespace gazecrop
