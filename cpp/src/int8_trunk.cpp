// The int8 trunk (int8_trunk.h): packing at load, and the run over channels-last int8 values. The arithmetic is
// python/gazecrop/int8.py's (module docstring); the kernels (kernels.h, "int8") are exact, so every set gives
// the same bytes.
#include "int8_trunk.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "ops/op.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace gazecrop {
namespace detail {

namespace {

constexpr int kRing = 2;        // ring pixels on every side: the largest padding (5x5, or TensorFlow "same")
constexpr std::size_t kSlack = 64;

int round4(int c) { return (c + 3) / 4 * 4; }

// Geometry of one int8 value.
struct QLayout {
  int c = 0, h = 0, w = 0, cs = 0;
  std::size_t row = 0, bytes = 0;
  static QLayout of(const Shape& s) {
    QLayout l;
    l.c = s.c;
    l.h = s.h;
    l.w = s.w;
    l.cs = round4(s.c);
    l.row = std::size_t(s.w + 2 * kRing) * std::size_t(l.cs);
    l.bytes = std::size_t(s.h + 2 * kRing) * l.row + kSlack;
    return l;
  }
  // Pixel (i, j) of the image (i, j may reach -kRing .. into the ring).
  std::size_t at(int i, int j) const {
    return std::size_t(i + kRing) * row + std::size_t(j + kRing) * std::size_t(cs);
  }
};

// Per output channel: the int32 bias (zero points folded in), and the requantisation.
struct Requant {
  std::vector<std::int32_t> bias, mult, shift;
};

std::int32_t to_i32(double v, const std::string& where) {
  if (!(std::fabs(v) <= 2147483647.0)) throw std::invalid_argument(where + ": int8 bias out of range");
  return std::int32_t(v);
}

// One convolution packed for the kernels: GEMM weights (read in place, run_conv) or depthwise ones, and the
// requantisation of its output channels.
struct ConvPack {
  int cin = 0, cout = 0, k = 1, stride = 1, kc = 0;  // kc: the GEMM's K = k * k * cs_in (tap-major)
  std::vector<std::int8_t> w;                        // GEMM: per block of 16 output channels, kc / 4 groups of 64 bytes
  std::vector<std::int32_t> wdw;                     // depthwise: (k * k) x w_stride int32
  std::size_t w_stride = 0;
  Requant rq;
};

// Packs int8 weights `wq` ((M, C, k, k), or (M, 1, k, k) for a depthwise) with their (2, M) scales and biases
// `par`, read at (sx, zx) and requantised to sy.
ConvPack pack_conv(const TensorRecord& wq, const TensorRecord& par, int cin, int cout, int k, int stride, bool dw,
                   double sx, int zx, double sy, const std::string& where) {
  ConvPack c;
  c.cin = cin;
  c.cout = cout;
  c.k = k;
  c.stride = stride;
  const int taps = k * k;
  c.rq.bias.resize(std::size_t(cout));
  c.rq.mult.resize(std::size_t(cout));
  c.rq.shift.resize(std::size_t(cout));
  const int per = dw ? taps : cin * taps;  // weights per output channel
  for (int m = 0; m < cout; ++m) {
    const double sw = par.values[std::size_t(m)], b = par.values[std::size_t(cout + m)];
    std::int64_t mult = 0;
    int shift = 0;
    if (!int8_multiplier(sx * sw / sy, &mult, &shift) || shift < 32)
      throw std::invalid_argument(where + ": requantisation factor out of range");
    c.rq.mult[std::size_t(m)] = std::int32_t(mult);
    c.rq.shift[std::size_t(m)] = shift;
    std::int64_t wsum = 0;
    for (int t = 0; t < per; ++t) wsum += wq.q8[std::size_t(m) * per + t];
    // B[m] = nearbyint(b / (s_x s_w)) (double), minus the stored zero point's share: the kernels multiply the
    // stored bytes q + 128.
    const double big_b = std::nearbyint(b / (sx * sw));
    const std::int64_t fold = std::int64_t(128 + zx) * wsum;
    c.rq.bias[std::size_t(m)] = to_i32(big_b - double(fold), where);
  }
  if (dw) {
    c.w_stride = std::size_t((cout + 15) / 16 * 16);
    c.wdw.assign(std::size_t(taps) * c.w_stride, 0);
    for (int m = 0; m < cout; ++m)
      for (int t = 0; t < taps; ++t) c.wdw[std::size_t(t) * c.w_stride + m] = wq.q8[std::size_t(m) * taps + t];
    return c;
  }
  const int cs_in = round4(cin);
  c.kc = taps * cs_in;  // tap-major, the channels of the padded pixel within (run_conv reads it in place)
  const int blocks = (cout + 15) / 16;
  c.w.assign(std::size_t(blocks) * std::size_t(c.kc / 4) * 64, 0);
  for (int m = 0; m < cout; ++m) {
    std::int8_t* blk = c.w.data() + std::size_t(m / 16) * std::size_t(c.kc / 4) * 64;
    for (int ch = 0; ch < cin; ++ch)
      for (int t = 0; t < taps; ++t) {
        const int kk = t * cs_in + ch;
        blk[std::size_t(kk / 4) * 64 + std::size_t(m % 16) * 4 + std::size_t(kk % 4)] =
            wq.q8[(std::size_t(m) * cin + std::size_t(ch)) * taps + std::size_t(t)];
      }
  }
  return c;
}

// One layer of an int8 dense block: the 1x1 convolution to the bottleneck, the 3x3 back to the state.
struct DenseLayer {
  int c_in = 0;     // the state's channels this layer reads
  ConvPack conv1, conv2;
  int mid_zp = 0;   // the bottleneck's zero point
};

}  // namespace

struct Int8Trunk::Step {
  enum Kind { kConv, kDepthwise, kAdd, kMaxPool, kAvgPool, kDense } kind = kConv;
  int out = 0;                         // value id written
  std::vector<int> inputs;             // value ids read
  int lo = -128, hi = 127;
  PadRule pad;
  ConvPack conv;                       // kConv, kDepthwise
  std::int32_t ma = 0, mb = 0;         // add
  int add_shift = 0;
  int pool_k = 0, pool_stride = 0, pool_pad = 0;
  std::int32_t avg_mult = 0, avg_shift = 0;  // avg_pool: the multiplier of 1 / k^2
  std::vector<DenseLayer> layers;      // kDense
};

namespace {

// The ring (and slack) of an int8 value's buffer = the byte z; the interior is left as it is.
void fill_ring(std::uint8_t* buf, const QLayout& l, std::uint8_t z) {
  const std::size_t edge = std::size_t(kRing) * std::size_t(l.cs), inner = std::size_t(l.w) * std::size_t(l.cs);
  std::memset(buf, z, l.at(0, 0));
  for (int i = 0; i < l.h; ++i) {
    std::uint8_t* row = buf + l.at(i, 0);
    std::memset(row - edge, z, edge);
    std::memset(row + inner, z, edge);
  }
  std::memset(buf + l.at(l.h, 0) - edge, z, l.bytes - (l.at(l.h, 0) - edge));
}

// dst[c] = the largest of the rows x cols window's bytes at src (rows `row`, pixels `pixel` bytes apart) for
// c < n: 16 channels per SSE2 register (every x86-64 CPU), else the compiler's loop.
void max_window(std::uint8_t* dst, const std::uint8_t* src, int rows, int cols, std::size_t row, std::size_t pixel,
                int n) {
  int c = 0;
#if defined(__SSE2__)
  for (; c + 16 <= n; c += 16) {
    __m128i m = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + c));
    for (int u = 0; u < rows; ++u)
      for (int v = 0; v < cols; ++v)
        m = _mm_max_epu8(m, _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + u * row + v * pixel + c)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + c), m);
  }
#endif
  for (; c < n; ++c) {
    std::uint8_t m = src[c];
    for (int u = 0; u < rows; ++u)
      for (int v = 0; v < cols; ++v) m = std::max(m, src[u * row + v * pixel + std::size_t(c)]);
    dst[c] = m;
  }
}

// dst[c] = clamp(zy + ((acc[c] - k2 zy) * mult + 2^(shift - 1)) >> shift, 0, 255): the average pool's
// requantisation (kernels::requantize); with mult = 2^30 (k^2 a power of two) exactly
// (acc[c] - k2 zy + 2^(shift - 31)) >> (shift - 30) in int16 lanes (|acc - k2 zy| <= 64 x 255).
void average_bytes(std::uint8_t* dst, const std::int16_t* acc, int n, int k2, int zy, std::int32_t mult, int shift) {
  int c = 0;
#if defined(__SSE2__)
  if (mult == (1 << 30)) {
    const __m128i off = _mm_set1_epi16(std::int16_t(-k2 * zy + (1 << (shift - 31)))), vz = _mm_set1_epi16(std::int16_t(zy));
    for (; c + 16 <= n; c += 16) {
      const __m128i* a = reinterpret_cast<const __m128i*>(acc + c);
      const __m128i lo = _mm_add_epi16(_mm_srai_epi16(_mm_add_epi16(_mm_loadu_si128(a), off), shift - 30), vz);
      const __m128i hi = _mm_add_epi16(_mm_srai_epi16(_mm_add_epi16(_mm_loadu_si128(a + 1), off), shift - 30), vz);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + c), _mm_packus_epi16(lo, hi));  // clamps to 0 .. 255
    }
  }
#endif
  const std::int64_t half = std::int64_t(1) << (shift - 1);
  for (; c < n; ++c) {
    const std::int64_t q = (std::int64_t(acc[c] - k2 * zy) * mult + half) >> shift;
    dst[c] = std::uint8_t(std::min<std::int64_t>(255, std::max<std::int64_t>(0, zy + q)));
  }
}

// acc[c] += src[c] for c < n (the average pool's window sums, at most 64 x 255: no overflow; SSE2, else the
// compiler's loop).
void add_bytes(std::int16_t* acc, const std::uint8_t* src, int n) {
  int c = 0;
#if defined(__SSE2__)
  const __m128i zero = _mm_setzero_si128();
  for (; c + 16 <= n; c += 16) {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + c));
    __m128i* a = reinterpret_cast<__m128i*>(acc + c);
    _mm_storeu_si128(a, _mm_add_epi16(_mm_loadu_si128(a), _mm_unpacklo_epi8(b, zero)));
    _mm_storeu_si128(a + 1, _mm_add_epi16(_mm_loadu_si128(a + 1), _mm_unpackhi_epi8(b, zero)));
  }
#endif
  for (; c < n; ++c) acc[c] = std::int16_t(acc[c] + src[c]);
}

// A convolution, each output row one GEMM reading the input in place: window row u of pixel j is k pixels'
// contiguous channels at x.at(r s + u - top, j s - left) (the ring holds the padding), so the K of the packed
// weights (tap-major, the padded pixel's channels within) is k segments of k cs bytes, the input rows apart,
// and the pixels are s cs bytes apart (cs: the input layout's; the packed channels may be fewer, a dense
// layer reading the first of its state's). The output pointer `y` and its layout `lo` may address a channel
// slice of a wider value (a dense block's state).
void run_conv(const kernels::Int8KernelTable& kt, ThreadPool& pool, const ConvPack& c, const Pads& p,
              const std::uint8_t* x, const QLayout& li, int zy, int lo8, int hi8, std::uint8_t* y, const QLayout& lo) {
  // A segment: k pixels of the packed K's round4(cin) channels (a dense layer reads a prefix of its state's)
  const std::size_t seg = std::size_t(c.kc / c.k), xs = std::size_t(c.stride) * std::size_t(li.cs);
  if (c.k > 1 && seg != std::size_t(c.k) * std::size_t(li.cs))  // a window row must be contiguous
    throw std::logic_error("int8 conv: a k x k window over a channel prefix");
  pool.run(std::size_t(lo.h), [&](std::size_t r) {
    const int ri = int(r);
    kt.gemm(std::size_t(c.cout), std::size_t(lo.w), std::size_t(c.kc), x + li.at(ri * c.stride - p.top, -p.left), xs,
            seg, li.row, c.w.data(), c.rq.bias.data(), c.rq.mult.data(), c.rq.shift.data(), zy, lo8, hi8,
            y + lo.at(ri, 0), std::size_t(lo.cs));
  });
}

}  // namespace

Int8Trunk::Int8Trunk(const ParsedWeights& pw) {
  n_ = int(pw.int8.ops);
  in_scale_ = pw.int8.input_scale;
  in_zp_ = pw.int8.input_zero_point;
  scale_.push_back(in_scale_);
  zp_.push_back(in_zp_);
  for (int i = 0; i < n_; ++i) {
    scale_.push_back(pw.ops[std::size_t(i)].out_scale);
    zp_.push_back(pw.ops[std::size_t(i)].out_zero_point);
  }
  // The input table: q = clamp(nearbyint(f32(f32(f32(p) - mean) / std) / s) + z), float32 arithmetic as
  // gazecrop.int8.input_table (no product is followed by a sum, so no contraction can change it).
  for (int c = 0; c < 3; ++c)
    for (int p = 0; p < 256; ++p) {
      const float x = (float(p) - pw.info.mean[c]) / pw.info.std[c];
      const float r = std::min(1000.0f, std::max(-1000.0f, x / in_scale_));  // clip(rint(r) + z) unchanged
      const long q = std::lrint(r) + in_zp_;
      lut_[c][p] = std::uint8_t(std::min(127L, std::max(-128L, q)) + 128);
    }
  last_use_.assign(std::size_t(n_) + 1, -1);
  for (int i = 0; i < n_; ++i) {
    const OpRecord& rec = pw.ops[std::size_t(i)];
    const std::string where = "int8 trunk op " + std::to_string(i);
    auto st = std::make_unique<Step>();
    st->out = i + 1;
    for (std::uint32_t k = 0; k < rec.num_inputs; ++k) {
      st->inputs.push_back(int(rec.inputs[k]));
      last_use_[rec.inputs[k]] = i;
    }
    const int act = rec.op_type == kAdd ? rec.iparams[0] : rec.iparams[5];
    const double sy = scale_[std::size_t(i) + 1];
    const int zy = zp_[std::size_t(i) + 1];
    st->lo = (act == 1 || act == 3) ? std::max(-128, zy) : -128;
    st->hi = act == 3 ? int(std::min(127.0, double(zy) + std::nearbyint(6.0 / sy))) : 127;
    const double sx = scale_[rec.inputs[0]];
    const int zx = zp_[rec.inputs[0]];
    switch (rec.op_type) {
      case kAdd: {
        st->kind = Step::kAdd;
        const double sa = scale_[rec.inputs[0]], sb = scale_[rec.inputs[1]];
        std::int64_t mult = 0;
        int shift = 0;
        // gazecrop.int8.add_multipliers: the shift of the larger factor, both factors on it.
        if (!int8_multiplier(std::max(sa / sy, sb / sy), &mult, &shift))
          throw std::invalid_argument(where + ": add factor out of range");
        st->ma = std::int32_t(std::nearbyint(std::ldexp(sa / sy, shift)));
        st->mb = std::int32_t(std::nearbyint(std::ldexp(sb / sy, shift)));
        st->add_shift = shift;
        break;
      }
      case kMaxPool:
      case kAvgPool: {  // the output keeps the input's quantisation (checked by the loader)
        st->kind = rec.op_type == kMaxPool ? Step::kMaxPool : Step::kAvgPool;
        st->pool_k = rec.iparams[0];
        st->pool_stride = rec.iparams[1];
        st->pool_pad = rec.op_type == kMaxPool ? rec.iparams[2] : 0;
        if (rec.op_type == kAvgPool) {  // gazecrop.int8: requantise(sum (q - z)) by the multiplier of 1 / k^2
          std::int64_t mult = 0;
          int shift = 0;
          if (!int8_multiplier(1.0 / double(st->pool_k * st->pool_k), &mult, &shift) || shift < 32)
            throw std::invalid_argument(where + ": avg_pool kernel out of range");
          st->avg_mult = std::int32_t(mult);
          st->avg_shift = shift;
        }
        break;
      }
      case kDenseBlock: {  // the state keeps the input's quantisation (checked by the loader)
        st->kind = Step::kDense;
        const int nl = rec.iparams[1];
        const std::size_t f = rec.first_tensor, q = f + 4 * std::size_t(nl);
        const TensorRecord& mid = pw.tensors[q + 4 * std::size_t(nl)];
        int c = rec.iparams[0];
        for (int l = 0; l < nl; ++l) {
          DenseLayer d;
          const TensorRecord& w1 = pw.tensors[f + 4 * std::size_t(l)];
          const TensorRecord& w2 = pw.tensors[f + 4 * std::size_t(l) + 2];
          const int b = int(w1.shape[0]), g = int(w2.shape[0]);
          const double sm = mid.values[std::size_t(l)];
          d.mid_zp = int(mid.values[std::size_t(nl + l)]);
          d.c_in = c;
          const std::string wl = where + " layer " + std::to_string(l);
          d.conv1 = pack_conv(pw.tensors[q + 4 * std::size_t(l)], pw.tensors[q + 4 * std::size_t(l) + 1], c, b, 1, 1,
                              false, sy, zy, sm, wl);
          d.conv2 = pack_conv(pw.tensors[q + 4 * std::size_t(l) + 2], pw.tensors[q + 4 * std::size_t(l) + 3], b, g, 3,
                              1, false, sm, d.mid_zp, sy, wl);
          st->layers.push_back(std::move(d));
          c += g;
        }
        break;
      }
      default: {  // conv2d, depthwise_conv2d
        const bool dw = rec.op_type == kDepthwiseConv2d;
        st->pad = PadRule::from_record(rec);
        st->conv = pack_conv(pw.tensors[rec.first_tensor + 2], pw.tensors[rec.first_tensor + 3], rec.iparams[0],
                             rec.iparams[1], rec.iparams[2], rec.iparams[3], dw, sx, zx, sy, where);
        st->kind = dw ? Step::kDepthwise : Step::kConv;
      }
    }
    steps_.push_back(std::move(st));
  }
}

Int8Trunk::~Int8Trunk() = default;

void Int8Trunk::run(const kernels::Int8KernelTable& kt, ThreadPool& pool, Workspace& ws, const std::uint8_t* image,
                    const std::vector<Shape>& shapes, const std::vector<int>& dequantise,
                    const std::function<Frame(int)>& out_frame,
                    const std::function<void(int, const std::vector<std::int8_t>&)>& int8_out) const {
  // Not zeroed: the ring is filled with the zero point, every op writes the whole interior. Every buffer goes
  // back to the workspace at the end, also when a step throws. Buffer n_ + 1: a dense block's bottleneck.
  WorkspaceBuffers bufs(ws, std::size_t(n_) + 2);
  const std::size_t kMid = std::size_t(n_) + 1;
  std::vector<std::uint8_t*> vals(std::size_t(n_) + 1, nullptr);
  std::vector<char> keep(std::size_t(n_) + 1, 0);
  for (int v : dequantise) keep[std::size_t(v)] = 1;
  auto take = [&](std::size_t slot, const QLayout& l) {
    return reinterpret_cast<std::uint8_t*>(bufs.take(slot, (l.bytes + sizeof(float) - 1) / sizeof(float)));
  };
  auto alloc = [&](int v) {  // the ring (and slack) = the zero point; every op writes the whole interior
    const QLayout l = QLayout::of(shapes[std::size_t(v)]);
    vals[std::size_t(v)] = take(std::size_t(v), l);
    fill_ring(vals[std::size_t(v)], l, std::uint8_t(zp_[std::size_t(v)] + 128));
    // The padding channels (cs > c) of interior pixels are left as they are: the GEMM reads them against zero
    // weights, the add sums them into padding channels, a dense block copies them with its input onto channels
    // its layers then write (or the state's own padding), nothing else reads them.
  };
  auto emit = [&](int v) {
    const QLayout l = QLayout::of(shapes[std::size_t(v)]);
    const std::uint8_t* q = vals[std::size_t(v)];
    if (keep[std::size_t(v)]) {
      const Frame f = out_frame(v);
      const float s = scale_[std::size_t(v)], z = float(zp_[std::size_t(v)] + 128);  // (q + 128) - (z + 128)
      for (int c = 0; c < l.c; ++c)
        for (int i = 0; i < l.h; ++i) {
          float* dst = f.pixel(c, i, 0);
          const std::uint8_t* src = q + l.at(i, 0) + std::size_t(c);
          for (int j = 0; j < l.w; ++j) dst[j] = (float(src[std::size_t(j) * std::size_t(l.cs)]) - z) * s;
        }
      zero_ring(f, 0, f.c);
    }
    if (int8_out) {
      std::vector<std::int8_t> chw(std::size_t(l.c) * std::size_t(l.h) * std::size_t(l.w));
      for (int c = 0; c < l.c; ++c)
        for (int i = 0; i < l.h; ++i)
          for (int j = 0; j < l.w; ++j)
            chw[(std::size_t(c) * l.h + i) * l.w + j] = std::int8_t(int(q[l.at(i, j) + std::size_t(c)]) - 128);
      int8_out(v, chw);
    }
  };

  // Value 0: the image through the input table.
  {
    alloc(0);
    const QLayout l = QLayout::of(shapes[0]);
    std::uint8_t* q = vals[0];
    for (int i = 0; i < l.h; ++i) {
      const std::uint8_t* src = image + std::size_t(i) * std::size_t(l.w) * 3;
      std::uint8_t* dst = q + l.at(i, 0);
      for (int j = 0; j < l.w; ++j)
        for (int c = 0; c < 3; ++c) dst[std::size_t(j) * 4 + std::size_t(c)] = lut_[c][src[std::size_t(j) * 3 + c]];
    }
    emit(0);
  }
  static const bool profile = std::getenv("GAZECROP_PROFILE") != nullptr;  // per-op time on stderr
  static const char* kind_names[] = {"int8 conv",     "int8 depthwise", "int8 add",
                                     "int8 max_pool", "int8 avg_pool",  "int8 dense_block"};
  for (int i = 0; i < n_; ++i) {
    const Step& st = *steps_[std::size_t(i)];
    const auto t0 = profile ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point();
    alloc(st.out);
    const QLayout lo = QLayout::of(shapes[std::size_t(st.out)]);
    std::uint8_t* y = vals[std::size_t(st.out)];
    const int zy = zp_[std::size_t(st.out)] + 128, lo8 = st.lo + 128, hi8 = st.hi + 128;  // the stored form
    const std::size_t rows = std::size_t(lo.h);
    const int vin = st.inputs[0];
    const QLayout li = QLayout::of(shapes[std::size_t(vin)]);
    const std::uint8_t* x = vals[std::size_t(vin)];
    switch (st.kind) {
      case Step::kAdd: {
        const QLayout lb = QLayout::of(shapes[std::size_t(st.inputs[1])]);
        if (li.h != lb.h || li.w != lb.w)
          throw std::invalid_argument("add: inputs have different grids " + std::to_string(li.h) + "x" +
                                      std::to_string(li.w) + " and " + std::to_string(lb.h) + "x" +
                                      std::to_string(lb.w));
        const std::uint8_t* b = vals[std::size_t(st.inputs[1])];
        const int za = zp_[std::size_t(vin)] + 128, zb = zp_[std::size_t(st.inputs[1])] + 128;
        pool.run(rows, [&](std::size_t r) {
          const int ri = int(r);
          kt.add(std::size_t(lo.w) * std::size_t(lo.cs), x + li.at(ri, 0), za, st.ma, b + lb.at(ri, 0), zb, st.mb,
                 st.add_shift, zy, lo8, hi8, y + lo.at(ri, 0));
        });
        break;
      }
      case Step::kMaxPool:  // the window's largest stored byte (q + 128 is monotone in q), padding never taken
      case Step::kAvgPool: {
        const int k = st.pool_k, s = st.pool_stride, pad = st.pool_pad, c = lo.c;
        pool.run(rows, [&](std::size_t r) {
          const int ri = int(r), u0 = std::max(0, ri * s - pad), u1 = std::min(li.h, ri * s - pad + k);
          constexpr int kChunk = 256;
          std::int16_t acc[kChunk];  // a window's sum of stored bytes: at most 64 x 255
          for (int j = 0; j < lo.w; ++j) {
            const int v0 = std::max(0, j * s - pad), v1 = std::min(li.w, j * s - pad + k);
            std::uint8_t* dst = y + lo.at(ri, j);
            for (int c0 = 0; c0 < c; c0 += kChunk) {
              const int n = std::min(kChunk, c - c0);
              if (st.kind == Step::kMaxPool) {
                max_window(dst + c0, x + li.at(u0, v0) + c0, u1 - u0, v1 - v0, li.row, std::size_t(li.cs), n);
                continue;
              }
              // sum (q - z) over the k x k window (no padding), requantised by the multiplier of 1 / k^2
              for (int ch = 0; ch < n; ++ch) acc[ch] = 0;
              for (int u = u0; u < u1; ++u)
                for (int v = v0; v < v1; ++v) add_bytes(acc, x + li.at(u, v) + c0, n);
              average_bytes(dst + c0, acc, n, k * k, zy, st.avg_mult, st.avg_shift);
            }
          }
        });
        break;
      }
      case Step::kDense: {
        // The state: the input's pixels (its cs bytes: a padding byte lands on a channel the first layer then
        // writes), then each layer's new channels written in place after the ones it read.
        pool.run(rows, [&](std::size_t r) {
          const int ri = int(r);
          for (int j = 0; j < lo.w; ++j) std::memcpy(y + lo.at(ri, j), x + li.at(ri, j), std::size_t(li.cs));
        });
        for (const DenseLayer& d : st.layers) {
          const QLayout lm = QLayout::of(Shape{d.conv1.cout, lo.h, lo.w});
          std::uint8_t* mid = take(kMid, lm);
          fill_ring(mid, lm, std::uint8_t(d.mid_zp + 128));
          // ReLU after both: the lower bound is the zero point (stored z + 128)
          run_conv(kt, pool, d.conv1, Pads{}, y, lo, d.mid_zp + 128, d.mid_zp + 128, 255, mid, lm);
          run_conv(kt, pool, d.conv2, Pads{1, 1, 1, 1}, mid, lm, zy, zy, 255, y + d.c_in, lo);
          bufs.give(kMid);
        }
        break;
      }
      case Step::kDepthwise: {
        const ConvPack& c = st.conv;
        const Pads p = st.pad.at(li.h, li.w);
        pool.run(rows, [&](std::size_t r) {
          const int ri = int(r);
          kt.dwconv(std::size_t(lo.w), std::size_t(c.cout), c.k, c.stride, x + li.at(ri * c.stride - p.top, -p.left),
                    std::size_t(li.cs), li.row, c.wdw.data(), c.w_stride, c.rq.bias.data(), c.rq.mult.data(),
                    c.rq.shift.data(), zy, lo8, hi8, y + lo.at(ri, 0), std::size_t(lo.cs));
        });
        break;
      }
      case Step::kConv:
        run_conv(kt, pool, st.conv, st.pad.at(li.h, li.w), x, li, zy, lo8, hi8, y, lo);
        break;
    }
    const auto t1 = profile ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point();
    emit(st.out);
    if (profile) {
      const auto t2 = std::chrono::steady_clock::now();
      const double ms = std::chrono::duration<double, std::milli>(t2 - t0).count();
      std::fprintf(stderr, "gazecrop: op %-3d (%s, %s) %4dx%4dx%4d %9.3f ms (dequantised for float ops: %.3f ms)\n",
                   i, kind_names[st.kind], kt.name, lo.c, lo.h, lo.w, ms,
                   std::chrono::duration<double, std::milli>(t2 - t1).count());
    }
    for (int v : st.inputs)
      if (last_use_[std::size_t(v)] == i) bufs.give(std::size_t(v));
  }
}

}  // namespace detail
}  // namespace gazecrop
