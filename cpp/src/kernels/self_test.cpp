// Kernel self-test (see self_test.h): conv kernels over mr 1..6, nc below/at/above/multiples of the 16- and
// 64-pixel tiles, kc 1..27, both taps families, activation none / ReLU / ReLU6; outputs past nc must stay
// untouched. Unary kernels over a range of values including both tails; depthwise kernels over widths around
// their vector widths; FMA-peak loops against their closed form.
#include "self_test.h"

#include <cmath>
#include <cstring>
#include <random>
#include <sstream>
#include <vector>

#include "../tensor.h"
#include "kernels.h"

namespace gazecrop {
namespace kernels {
namespace {

std::string test_conv(ConvFn fn, bool taps9) {
  std::mt19937 rng(42);
  std::uniform_real_distribution<float> u(-1, 1);
  const int taps = taps9 ? 9 : 1;
  const std::ptrdiff_t row = 21;  // row stride of the input planes (3x3 offsets reach +-(row + 1))
  const std::size_t margin = std::size_t(row) + 1;
  for (std::size_t kc : {1, 2, 5, 13, 27})
    for (std::size_t mr = 1; mr <= 6; ++mr)
      for (std::size_t nc : {1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 48, 49, 63, 64, 65, 111, 128, 143})
        for (int act = 0; act <= 2; ++act) {
          const std::size_t xs = nc + 2 * margin + 16, ys = nc + 16;
          detail::AlignedBuffer x(kc * xs), w(kc * taps * mr), y(mr * ys);
          std::vector<float> bias(mr);
          for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = u(rng);
          for (std::size_t i = 0; i < w.size(); ++i) w.data()[i] = u(rng);
          for (float& b : bias) b = u(rng);
          for (std::size_t i = 0; i < y.size(); ++i) y.data()[i] = 12345.0f;
          fn(mr, nc, kc, x.data() + margin, xs, row, w.data(), bias.data(), y.data(), ys, act);
          for (std::size_t m = 0; m < mr; ++m)
            for (std::size_t n = 0; n < ys; ++n) {
              const float got = y.data()[m * ys + n];
              double want = 12345.0;  // past nc: untouched
              if (n < nc) {
                want = bias[m];
                for (std::size_t c = 0; c < kc; ++c)
                  for (int t = 0; t < taps; ++t) {
                    const std::ptrdiff_t off = taps9 ? (t / 3 - 1) * row + (t % 3 - 1) : 0;
                    want += double(w.data()[(c * taps + t) * mr + m]) *
                            x.data()[margin + c * xs + std::size_t(std::ptrdiff_t(n) + off)];
                  }
                if (act && want < 0) want = 0;
                if (act == 2 && want > 6) want = 6;
              }
              if (std::fabs(got - want) > 1e-5 * (1.0 + std::sqrt(double(kc * taps))) * (1.0 + std::fabs(want))) {
                std::ostringstream s;
                s << "mr=" << mr << " nc=" << nc << " kc=" << kc << " act=" << act << ": y[" << m << "][" << n
                  << "] = " << got << ", expected " << want;
                return s.str();
              }
            }
        }
  return "ok";
}

// A rows kernel against the naive loop, and bit for bit against its set's ConvFn (`flat`) called row by row,
// over 1..5 rows of 16..112 pixels with gaps of 2 or 5 floats between rows; nothing outside the rows written.
[[maybe_unused]] std::string test_conv_rows(ConvRowsFn fn, ConvFn flat, bool taps9) {  // AVX-512 only
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1, 1);
  const int taps = taps9 ? 9 : 1;
  for (std::size_t kc : {1, 3, 13, 27})
    for (std::size_t mr = 1; mr <= 6; ++mr)
      for (std::size_t w : {16, 32, 48, 64, 80, 112})
        for (std::size_t rows : {1, 2, 3, 5})
          for (int act = 0; act <= 2; ++act) {
            const std::size_t row = w + ((w / 16 + rows + mr) % 2 ? 2 : 5), margin = row + 1;
            const std::size_t plane = rows * row + 2 * margin + 16;
            detail::AlignedBuffer x(kc * plane), wt(kc * taps * mr), y(mr * plane), ref(mr * plane);
            std::vector<float> bias(mr);
            for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = u(rng);
            for (std::size_t i = 0; i < wt.size(); ++i) wt.data()[i] = u(rng);
            for (float& b : bias) b = u(rng);
            for (std::size_t i = 0; i < y.size(); ++i) y.data()[i] = ref.data()[i] = 12345.0f;
            fn(mr, rows, w, kc, x.data() + margin, plane, std::ptrdiff_t(row), wt.data(), bias.data(),
               y.data() + margin, plane, act);
            for (std::size_t r = 0; r < rows; ++r)
              flat(mr, w, kc, x.data() + margin + r * row, plane, std::ptrdiff_t(row), wt.data(), bias.data(),
                   ref.data() + margin + r * row, plane, act);
            for (std::size_t m = 0; m < mr; ++m)
              for (std::size_t q = 0; q < plane; ++q) {
                const float got = y.data()[m * plane + q];
                std::ostringstream s;
                s << "mr=" << mr << " rows=" << rows << " w=" << w << " kc=" << kc << " act=" << act << ": y[" << m
                  << "][" << q << "] = " << got;
                if (got != ref.data()[m * plane + q]) {
                  s << ", the set's ConvFn row by row gives " << ref.data()[m * plane + q];
                  return s.str();
                }
                const bool inside = q >= margin && (q - margin) / row < rows && (q - margin) % row < w;
                if (!inside) continue;  // untouched: equal to ref's sentinel, checked above
                double want = bias[m];
                for (std::size_t c = 0; c < kc; ++c)
                  for (int t = 0; t < taps; ++t) {
                    const std::ptrdiff_t off = taps9 ? (t / 3 - 1) * std::ptrdiff_t(row) + (t % 3 - 1) : 0;
                    want += double(wt.data()[(c * taps + t) * mr + m]) *
                            x.data()[c * plane + std::size_t(std::ptrdiff_t(q) + off)];
                  }
                if (act && want < 0) want = 0;
                if (act == 2 && want > 6) want = 6;
                if (std::fabs(got - want) > 1e-5 * (1.0 + std::sqrt(double(kc * taps))) * (1.0 + std::fabs(want))) {
                  s << ", expected " << want;
                  return s.str();
                }
              }
          }
  return "ok";
}

// An RGB normalisation kernel bit for bit against the formula, over widths around its vector widths, with
// sentinels past n in each plane.
std::string test_rgb(NormaliseRgbFn fn) {
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> byte(0, 255);
  const float mean[3] = {123.675f, 116.28f, 103.53f}, sd[3] = {58.395f, 57.12f, 57.375f};
  for (std::size_t n : {1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 48, 100, 257}) {
    std::vector<std::uint8_t> src(3 * n);
    for (std::uint8_t& v : src) v = std::uint8_t(byte(rng));
    std::vector<float> out(3 * (n + 1), 777.0f);
    fn(n, src.data(), mean, sd, out.data(), out.data() + (n + 1), out.data() + 2 * (n + 1));
    for (int c = 0; c < 3; ++c)
      for (std::size_t j = 0; j <= n; ++j) {
        const float got = out[std::size_t(c) * (n + 1) + j];
        const float want = j < n ? (float(src[3 * j + std::size_t(c)]) - mean[c]) / sd[c] : 777.0f;
        if (got != want) {
          std::ostringstream s;
          s << "n=" << n << " channel " << c << " pixel " << j << ": " << got << ", expected " << want;
          return s.str();
        }
      }
  }
  return "ok";
}

std::string test_unary(UnaryFn fn) {
  for (std::size_t n : {1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 100}) {
    std::vector<float> v(n + 1);
    for (std::size_t i = 0; i < n; ++i) v[i] = -90.0f + 180.0f * float(i) / float(n) + 0.37f;
    v[n] = 777.0f;  // sentinel past n
    std::vector<float> in(v);
    fn(n, v.data());
    for (std::size_t i = 0; i < n; ++i) {
      const double x = in[i];
      const double want = std::max(x, 0.0) + std::log1p(std::exp(-std::fabs(x)));
      if (std::fabs(v[i] - want) > 2e-6 * std::fabs(want) + 1e-30) {
        std::ostringstream s;
        s << "n=" << n << ": softplus(" << x << ") = " << v[i] << ", expected " << want;
        return s.str();
      }
    }
    if (v[n] != 777.0f) return "wrote past n=" + std::to_string(n);
  }
  return "ok";
}

std::string test_gather(GatherS2Fn fn) {
  for (std::size_t n = 1; n <= 40; ++n) {
    std::vector<float> src(2 * n - 1), dst(n + 8, -1.0f);
    for (std::size_t i = 0; i < src.size(); ++i) src[i] = float(i) * 0.5f + 1.0f;
    fn(n, src.data(), dst.data());  // ASan catches a read past src[2 (n - 1)]
    for (std::size_t t = 0; t < n + 8; ++t) {
      const float want = t < n ? src[2 * t] : -1.0f;
      if (dst[t] != want)
        return "n=" + std::to_string(n) + ": dst[" + std::to_string(t) + "] = " + std::to_string(dst[t]) +
               ", expected " + std::to_string(want);
    }
  }
  return "ok";
}

// Depthwise K x K over h_out x w_out (widths below, at, above and multiples of 8, 16 and 64; heights around the
// AVX-512 kernels' bands of 2 and 4 rows), both strides, every
// activation; input rows end exactly kDwOverRead floats of slack past the last named column, outputs past
// w_out stay untouched.
std::string test_dwconv(DwConvFn fn, int k) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-2, 2);
  for (int stride = 1; stride <= 2; ++stride)
    for (std::size_t h_out : {1, 2, 4, 5, 7})
      for (std::size_t w_out : {1, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 48, 63, 64, 65, 97})
        for (int act = 0; act <= 2; ++act) {
          const std::size_t in_h = stride * (h_out - 1) + k, in_w = stride * (w_out - 1) + k;
          const std::size_t x_row = in_w + kDwOverRead, y_row = w_out + 8;
          detail::AlignedBuffer x(in_h * x_row), y(h_out * y_row);
          std::vector<float> w(std::size_t(k) * k);
          for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = u(rng);
          for (float& v : w) v = u(rng);
          const float bias = u(rng);
          for (std::size_t i = 0; i < y.size(); ++i) y.data()[i] = 12345.0f;
          fn(h_out, w_out, x.data(), x_row, stride, w.data(), bias, y.data(), y_row, act);
          for (std::size_t i = 0; i < h_out; ++i)
            for (std::size_t j = 0; j < y_row; ++j) {
              double want = 12345.0;
              if (j < w_out) {
                want = bias;
                for (int a = 0; a < k; ++a)
                  for (int b = 0; b < k; ++b)
                    want += double(w[std::size_t(a) * k + b]) * x.data()[(stride * i + a) * x_row + stride * j + b];
                if (act && want < 0) want = 0;
                if (act == 2 && want > 6) want = 6;
              }
              const float got = y.data()[i * y_row + j];
              if (std::fabs(got - want) > 1e-5 * (1.0 + k) * (1.0 + std::fabs(want))) {
                std::ostringstream s;
                s << "stride=" << stride << " h_out=" << h_out << " w_out=" << w_out << " act=" << act << ": y[" << i
                  << "][" << j << "] = " << got << ", expected " << want;
                return s.str();
              }
            }
        }
  return "ok";
}

// a_k = f + (a_0 - f) m^k with f = c / (1 - m), a_0 = 2 + chain, within the rounding bound of k float steps
// (at most two roundings each, as separate multiply and add; |a| <= a_0); the returned FLOPs must match a
// lane count.
std::string test_peak(PeakFn fn) {
  const std::size_t iters = 1000;
  float out[kPeakChains + 1];
  out[kPeakChains] = 777.0f;  // sentinel
  const double flops = fn(iters, out);
  const double lanes = flops / (2.0 * double(iters) * kPeakChains);
  if (lanes != 4 && lanes != 8 && lanes != 16) return "returned " + std::to_string(flops) + " FLOPs for " +
                                                      std::to_string(iters) + " iterations";
  if (out[kPeakChains] != 777.0f) return "wrote past out[kPeakChains - 1]";
  const double m = kPeakMul, f = double(kPeakAdd) / (1.0 - m), mk = std::pow(m, double(iters));
  for (int i = 0; i < kPeakChains; ++i) {
    const double want = f + (2.0 + i - f) * mk;
    if (std::fabs(out[i] - want) > 2.5 * double(iters) * std::ldexp(1.0, -24) * (2.0 + i)) {
      std::ostringstream s;
      s << "chain " << i << ": " << out[i] << " after " << iters << " steps, expected " << want;
      return s.str();
    }
  }
  return "ok";
}

// The ConvFn of the same set and family as a rows kernel: "f32_conv1x1_rows_6x64_avx512" -> the table's conv1x1.
[[maybe_unused]] ConvFn rows_flat_twin(const char* name) {
  const char* isa = std::strrchr(name, '_') + 1;
  const KernelTable* t = find_kernels(isa);
  return std::strstr(name, "3x3") != nullptr ? t->conv3x3 : t->conv1x1;
}

bool isa_ok(const char* isa) { return std::strcmp(isa, "scalar") == 0 || find_kernels(isa) != nullptr; }

}  // namespace

std::vector<std::pair<std::string, std::string>> kernel_self_test() {
  std::vector<std::pair<std::string, std::string>> out;
#define GAZECROP_CONV_KERNEL(name, isa)                                                           \
  out.emplace_back(#name, !isa_ok(#isa) ? std::string("skipped: ") + #isa + " not supported here" \
                                        : test_conv(name, std::strstr(#name, "3x3") != nullptr));
#define GAZECROP_CONVROWS_KERNEL(name, isa)                                                       \
  out.emplace_back(#name, !isa_ok(#isa) ? std::string("skipped: ") + #isa + " not supported here"   \
                                        : test_conv_rows(name, rows_flat_twin(#name),                 \
                                                         std::strstr(#name, "3x3") != nullptr));
#define GAZECROP_UNARY_KERNEL(name, isa) \
  out.emplace_back(#name, !isa_ok(#isa) ? std::string("skipped: ") + #isa + " not supported here" : test_unary(name));
#define GAZECROP_GATHER_KERNEL(name, isa) \
  out.emplace_back(#name, !isa_ok(#isa) ? std::string("skipped: ") + #isa + " not supported here" : test_gather(name));
#define GAZECROP_RGB_KERNEL(name, isa) \
  out.emplace_back(#name, !isa_ok(#isa) ? std::string("skipped: ") + #isa + " not supported here" : test_rgb(name));
#define GAZECROP_DWCONV_KERNEL(name, isa)                                                         \
  out.emplace_back(#name, !isa_ok(#isa) ? std::string("skipped: ") + #isa + " not supported here" \
                                        : test_dwconv(name, std::strstr(#name, "5x5") != nullptr ? 5 : 3));
#define GAZECROP_PEAK_KERNEL(name, isa) \
  out.emplace_back(#name, !isa_ok(#isa) ? std::string("skipped: ") + #isa + " not supported here" : test_peak(name));
#include "kernels.def"
#undef GAZECROP_DWCONV_KERNEL
#undef GAZECROP_CONV_KERNEL
#undef GAZECROP_CONVROWS_KERNEL
#undef GAZECROP_UNARY_KERNEL
#undef GAZECROP_GATHER_KERNEL
#undef GAZECROP_RGB_KERNEL
#undef GAZECROP_PEAK_KERNEL
  return out;
}

}  // namespace kernels
}  // namespace gazecrop
