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

}  // namespace

struct Int8Trunk::Step {
  enum Kind { kGemm, kIm2col, kDepthwise, kAdd } kind = kGemm;
  int out = 0;                         // value id written
  std::vector<int> inputs;             // value ids read
  int k = 1, stride = 1, lo = -128, hi = 127;
  PadRule pad;
  int cin = 0, cout = 0, kc = 0;       // GEMM: K (a multiple of 4)
  std::vector<std::int8_t> w;          // GEMM: per block of 16 output channels, kc / 4 groups of 64 bytes
  std::vector<std::int32_t> wdw;       // depthwise: (k * k) x w_stride int32
  std::size_t w_stride = 0;
  Requant rq;
  std::int32_t ma = 0, mb = 0;         // add
  int add_shift = 0;
};

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
    if (rec.op_type == kAdd) {
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
      steps_.push_back(std::move(st));
      continue;
    }
    const TensorRecord& wq = pw.tensors[rec.first_tensor + 2];
    const TensorRecord& par = pw.tensors[rec.first_tensor + 3];
    const bool dw = rec.op_type == kDepthwiseConv2d;
    st->cin = rec.iparams[0];
    st->cout = rec.iparams[1];
    st->k = rec.iparams[2];
    st->stride = rec.iparams[3];
    st->pad = PadRule::from_record(rec);
    const int m_out = st->cout, taps = st->k * st->k;
    const double sx = scale_[rec.inputs[0]];
    const int zx = zp_[rec.inputs[0]];
    st->rq.bias.resize(std::size_t(m_out));
    st->rq.mult.resize(std::size_t(m_out));
    st->rq.shift.resize(std::size_t(m_out));
    const int per = dw ? taps : st->cin * taps;  // weights per output channel
    for (int m = 0; m < m_out; ++m) {
      const double sw = par.values[std::size_t(m)], b = par.values[std::size_t(m_out + m)];
      std::int64_t mult = 0;
      int shift = 0;
      if (!int8_multiplier(sx * sw / sy, &mult, &shift) || shift < 32)
        throw std::invalid_argument(where + ": requantisation factor out of range");
      st->rq.mult[std::size_t(m)] = std::int32_t(mult);
      st->rq.shift[std::size_t(m)] = shift;
      std::int64_t wsum = 0;
      for (int t = 0; t < per; ++t) wsum += wq.q8[std::size_t(m) * per + t];
      // B[m] = nearbyint(b / (s_x s_w)) (double), minus the stored zero point's share: the kernels multiply
      // the stored bytes q + 128.
      const double big_b = std::nearbyint(b / (sx * sw));
      const std::int64_t fold = std::int64_t(128 + zx) * wsum;
      st->rq.bias[std::size_t(m)] = to_i32(big_b - double(fold), where);
    }
    if (dw) {
      st->kind = Step::kDepthwise;
      st->w_stride = std::size_t((m_out + 15) / 16 * 16);
      st->wdw.assign(std::size_t(taps) * st->w_stride, 0);
      for (int m = 0; m < m_out; ++m)
        for (int t = 0; t < taps; ++t) st->wdw[std::size_t(t) * st->w_stride + m] = wq.q8[std::size_t(m) * taps + t];
    } else {
      const int cs_in = round4(st->cin);
      st->kind = st->k == 1 && st->stride == 1 ? Step::kGemm : Step::kIm2col;  // a 1x1 has no padding
      st->kc = taps * cs_in;  // im2col order: tap-major, channels of the padded pixel within
      const int blocks = (m_out + 15) / 16;
      st->w.assign(std::size_t(blocks) * std::size_t(st->kc / 4) * 64, 0);
      for (int m = 0; m < m_out; ++m) {
        std::int8_t* blk = st->w.data() + std::size_t(m / 16) * std::size_t(st->kc / 4) * 64;
        for (int c = 0; c < st->cin; ++c)
          for (int t = 0; t < taps; ++t) {
            const int kk = t * cs_in + c;
            blk[std::size_t(kk / 4) * 64 + std::size_t(m % 16) * 4 + std::size_t(kk % 4)] =
                wq.q8[(std::size_t(m) * st->cin + std::size_t(c)) * taps + std::size_t(t)];
          }
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
  // back to the workspace at the end, also when a step throws.
  WorkspaceBuffers bufs(ws, std::size_t(n_) + 1);
  std::vector<std::uint8_t*> vals(std::size_t(n_) + 1, nullptr);
  std::vector<char> keep(std::size_t(n_) + 1, 0);
  for (int v : dequantise) keep[std::size_t(v)] = 1;
  auto alloc = [&](int v) {  // the ring (and slack) = the zero point; every op writes the whole interior
    const QLayout l = QLayout::of(shapes[std::size_t(v)]);
    std::uint8_t* const buf =
        reinterpret_cast<std::uint8_t*>(bufs.take(std::size_t(v), (l.bytes + sizeof(float) - 1) / sizeof(float)));
    vals[std::size_t(v)] = buf;
    const std::uint8_t z = std::uint8_t(zp_[std::size_t(v)] + 128);
    const std::size_t edge = std::size_t(kRing) * std::size_t(l.cs), inner = std::size_t(l.w) * std::size_t(l.cs);
    std::memset(buf, z, l.at(0, 0));
    for (int i = 0; i < l.h; ++i) {
      std::uint8_t* row = buf + l.at(i, 0);
      std::memset(row - edge, z, edge);
      std::memset(row + inner, z, edge);
    }
    std::memset(buf + l.at(l.h, 0) - edge, z, l.bytes - (l.at(l.h, 0) - edge));
    // The padding channels (cs > c) of interior pixels are left as they are: the GEMM reads them against zero
    // weights, the add sums them into padding channels, nothing else reads them.
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
  static const char* kind_names[] = {"int8 1x1", "int8 im2col", "int8 depthwise", "int8 add"};
  for (int i = 0; i < n_; ++i) {
    const Step& st = *steps_[std::size_t(i)];
    const auto t0 = profile ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point();
    alloc(st.out);
    const QLayout lo = QLayout::of(shapes[std::size_t(st.out)]);
    std::uint8_t* y = vals[std::size_t(st.out)];
    const int zy = zp_[std::size_t(st.out)] + 128, lo8 = st.lo + 128, hi8 = st.hi + 128;  // the stored form
    const std::size_t rows = std::size_t(lo.h);
    if (st.kind == Step::kAdd) {
      const QLayout la = QLayout::of(shapes[std::size_t(st.inputs[0])]);
      const QLayout lb = QLayout::of(shapes[std::size_t(st.inputs[1])]);
      if (la.h != lb.h || la.w != lb.w)
        throw std::invalid_argument("add: inputs have different grids " + std::to_string(la.h) + "x" +
                                    std::to_string(la.w) + " and " + std::to_string(lb.h) + "x" + std::to_string(lb.w));
      const std::uint8_t* a = vals[std::size_t(st.inputs[0])];
      const std::uint8_t* b = vals[std::size_t(st.inputs[1])];
      const int za = zp_[std::size_t(st.inputs[0])] + 128, zb = zp_[std::size_t(st.inputs[1])] + 128;
      pool.run(rows, [&](std::size_t r) {
        const int ri = int(r);
        kt.add(std::size_t(lo.w) * std::size_t(lo.cs), a + la.at(ri, 0), za, st.ma, b + lb.at(ri, 0), zb, st.mb,
               st.add_shift, zy, lo8, hi8, y + lo.at(ri, 0));
      });
    } else {
      const int vin = st.inputs[0];
      const QLayout li = QLayout::of(shapes[std::size_t(vin)]);
      const std::uint8_t* x = vals[std::size_t(vin)];
      const Pads p = st.pad.at(li.h, li.w);
      if (st.kind == Step::kDepthwise) {
        pool.run(rows, [&](std::size_t r) {
          const int ri = int(r);
          kt.dwconv(std::size_t(lo.w), std::size_t(st.cout), st.k, st.stride,
                    x + li.at(ri * st.stride - p.top, -p.left), std::size_t(li.cs), li.row, st.wdw.data(),
                    st.w_stride, st.rq.bias.data(), st.rq.mult.data(), st.rq.shift.data(), zy, lo8, hi8,
                    y + lo.at(ri, 0), std::size_t(lo.cs));
        });
      } else if (st.kind == Step::kGemm) {
        pool.run(rows, [&](std::size_t r) {
          const int ri = int(r);
          kt.gemm(std::size_t(st.cout), std::size_t(lo.w), std::size_t(st.kc), x + li.at(ri, 0), std::size_t(li.cs),
                  st.w.data(), st.rq.bias.data(), st.rq.mult.data(), st.rq.shift.data(), zy, lo8, hi8,
                  y + lo.at(ri, 0), std::size_t(lo.cs));
        });
      } else {  // im2col: each output row's windows, tap-major, each tap the input pixel's cs bytes
        const std::size_t row_bytes = std::size_t(lo.w) * std::size_t(st.kc);
        const std::size_t run = std::size_t(st.k) * std::size_t(li.cs);  // a window row: k pixels, contiguous
        const std::size_t blocks = (run + 15) / 16;
        ws.reserve_slots(std::size_t(pool.size()));
        pool.run(rows, [&](std::size_t r, int thread) {
          const int ri = int(r);
          // One row's windows (a few KB, the thread's slot: stays in L1 for the GEMM); every byte is written
          // below. Window rows are copied in 16-byte blocks (the stem's 12-byte rows took 0.33 ms of a 192x256
          // run in 4-byte pieces): a block may run up to 15 bytes past its window row, into bytes a later copy
          // rewrites (pixel j's rows in order, then pixel j + 1's; 16 bytes of slack past the last), and it
          // reads up to 15 bytes past the row in the input, inside its ring (2 pixels) and the next row's, or
          // kSlack.
          static_assert(2 * kRing * 4 + kSlack >= 15, "im2col blocks read past a window row");
          std::uint8_t* const col = reinterpret_cast<std::uint8_t*>(
              ws.slot(std::size_t(thread), (row_bytes + 16 + sizeof(float) - 1) / sizeof(float)));
          for (int j = 0; j < lo.w; ++j)
            for (int u = 0; u < st.k; ++u) {
              std::uint8_t* dst = col + std::size_t(j) * st.kc + std::size_t(u) * run;
              const std::uint8_t* src = x + li.at(ri * st.stride + u - p.top, j * st.stride - p.left);
              for (std::size_t b = 0; b < blocks; ++b) std::memcpy(dst + 16 * b, src + 16 * b, 16);
            }
          kt.gemm(std::size_t(st.cout), std::size_t(lo.w), std::size_t(st.kc), col, std::size_t(st.kc),
                  st.w.data(), st.rq.bias.data(), st.rq.mult.data(), st.rq.shift.data(), zy, lo8, hi8,
                  y + lo.at(ri, 0), std::size_t(lo.cs));
        });
      }
    }
    emit(st.out);
    if (profile) {
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      std::fprintf(stderr, "gazecrop: op %-3d (%s, %s) %4dx%4dx%4d %9.3f ms\n", i, kind_names[st.kind], kt.name,
                   lo.c, lo.h, lo.w, ms);
    }
    for (int v : st.inputs)
      if (last_use_[std::size_t(v)] == i) bufs.give(std::size_t(v));
  }
}

}  // namespace detail
}  // namespace gazecrop
