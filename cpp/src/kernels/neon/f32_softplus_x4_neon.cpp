// NEON softplus, 4 floats per step: x <- max(x, 0) + log1p(exp(-|x|)) in place.
// The AVX2 kernel's Cephes exp/log polynomials and operation order (FMA for FMA), log1p(z) = log(u) * z /
// (u - 1), u = 1 + z; `frintn` rounds to nearest even like _MM_FROUND_TO_NEAREST_INT. Tail (n mod 4): the
// scalar formula. Scalar twin: ../scalar/f32_softplus_x8_scalar.cpp; x86 twin: ../avx2/f32_softplus_x8_avx2.cpp.
#include <arm_neon.h>

#include <algorithm>
#include <cmath>

#include "../kernels.h"

namespace gazecrop {
namespace kernels {
namespace {

inline float32x4_t k(float v) { return vdupq_n_f32(v); }

// exp(x) for x <= 0 (here x = -|v|), result in (0, 1].
inline float32x4_t exp_neg(float32x4_t x) {
  x = vmaxq_f32(x, k(-87.0f));
  const float32x4_t fx = vrndnq_f32(vmulq_f32(x, k(1.44269504088896341f)));
  x = vfmsq_f32(x, fx, k(0.693359375f));
  x = vfmsq_f32(x, fx, k(-2.12194440e-4f));
  float32x4_t y = k(1.9875691500e-4f);
  y = vfmaq_f32(k(1.3981999507e-3f), y, x);
  y = vfmaq_f32(k(8.3334519073e-3f), y, x);
  y = vfmaq_f32(k(4.1665795894e-2f), y, x);
  y = vfmaq_f32(k(1.6666665459e-1f), y, x);
  y = vfmaq_f32(k(5.0000001201e-1f), y, x);
  y = vfmaq_f32(vaddq_f32(x, k(1.0f)), y, vmulq_f32(x, x));
  const int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(fx), vdupq_n_s32(127)), 23);  // fx is integral
  return vmulq_f32(y, vreinterpretq_f32_s32(e));
}

// log(u) for u in [1, 2].
inline float32x4_t log_1_2(float32x4_t u) {
  const uint32x4_t bits = vreinterpretq_u32_f32(u);
  float32x4_t e = vcvtq_f32_s32(vsubq_s32(vreinterpretq_s32_u32(vshrq_n_u32(bits, 23)), vdupq_n_s32(126)));
  // mantissa in [0.5, 1)
  float32x4_t m = vreinterpretq_f32_u32(vorrq_u32(vandq_u32(bits, vdupq_n_u32(0x007FFFFF)), vdupq_n_u32(0x3F000000)));
  const uint32x4_t small = vcltq_f32(m, k(0.707106781186547524f));
  e = vsubq_f32(e, vreinterpretq_f32_u32(vandq_u32(small, vreinterpretq_u32_f32(k(1.0f)))));
  m = vsubq_f32(vaddq_f32(m, vreinterpretq_f32_u32(vandq_u32(small, vreinterpretq_u32_f32(m)))), k(1.0f));
  const float32x4_t z = vmulq_f32(m, m);
  float32x4_t y = k(7.0376836292e-2f);
  y = vfmaq_f32(k(-1.1514610310e-1f), y, m);
  y = vfmaq_f32(k(1.1676998740e-1f), y, m);
  y = vfmaq_f32(k(-1.2420140846e-1f), y, m);
  y = vfmaq_f32(k(1.4249322787e-1f), y, m);
  y = vfmaq_f32(k(-1.6668057665e-1f), y, m);
  y = vfmaq_f32(k(2.0000714765e-1f), y, m);
  y = vfmaq_f32(k(-2.4999993993e-1f), y, m);
  y = vfmaq_f32(k(3.3333331174e-1f), y, m);
  y = vmulq_f32(vmulq_f32(y, m), z);
  y = vfmaq_f32(y, e, k(-2.12194440e-4f));
  y = vfmsq_f32(y, z, k(0.5f));
  return vfmaq_f32(vaddq_f32(m, y), e, k(0.693359375f));
}

}  // namespace

void f32_softplus_x4_neon(std::size_t n, float* x) {
  const float32x4_t one = k(1.0f), zero = k(0.0f);
  const uint32x4_t sign = vdupq_n_u32(0x80000000u);
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const float32x4_t v = vld1q_f32(x + i);
    const float32x4_t z = exp_neg(vreinterpretq_f32_u32(vorrq_u32(vreinterpretq_u32_f32(v), sign)));  // exp(-|v|)
    const float32x4_t u = vaddq_f32(one, z);
    const float32x4_t d = vsubq_f32(u, one);
    // log1p(z) = log(u) * z / d when d != 0, else z
    const uint32x4_t d0 = vceqq_f32(d, zero);
    const float32x4_t l = vmulq_f32(log_1_2(u), vdivq_f32(z, vbslq_f32(d0, one, d)));
    const float32x4_t lp = vbslq_f32(d0, z, l);
    vst1q_f32(x + i, vaddq_f32(vmaxq_f32(v, zero), lp));
  }
  for (; i < n; ++i) x[i] = std::max(x[i], 0.0f) + std::log1p(std::exp(-std::fabs(x[i])));
}

}  // namespace kernels
}  // namespace gazecrop
