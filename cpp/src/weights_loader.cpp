// .gzw parser/validator; the order and wording of checks follow docs/weights-format.md "Validation".
#include "weights_loader.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>
#include <utility>

namespace gazecrop {
namespace detail {
namespace {

constexpr std::uint8_t kMagic[8] = {0x89, 'G', 'Z', 'W', '\r', '\n', 0x1a, '\n'};
constexpr std::uint8_t kEndMagic[8] = {'G', 'Z', 'W', 'E', 'N', 'D', 0, 0};
constexpr std::uint32_t kMaxVersion = 3;
constexpr std::uint64_t kAlign = 64;
constexpr std::uint32_t kMaxOps = 4096;
constexpr std::uint32_t kMaxTensors = 65536;
constexpr std::int64_t kMaxChannels = 65536;
constexpr std::size_t kFileHeader = 64, kModelInfo = 64, kOpRecord = 128, kTensorRecord = 96, kTrailer = 16;
constexpr std::size_t kMinFile = kFileHeader + kModelInfo + kTrailer;  // 144

template <typename... Args>
[[noreturn]] void fail(Args&&... args) {
  std::ostringstream s;
  (s << ... << args);
  throw FormatError(s.str());
}

std::uint32_t rd_u32(const std::uint8_t* p) {
  return std::uint32_t(p[0]) | std::uint32_t(p[1]) << 8 | std::uint32_t(p[2]) << 16 | std::uint32_t(p[3]) << 24;
}
std::uint64_t rd_u64(const std::uint8_t* p) { return std::uint64_t(rd_u32(p)) | std::uint64_t(rd_u32(p + 4)) << 32; }
std::int32_t rd_i32(const std::uint8_t* p) {
  const std::uint32_t u = rd_u32(p);
  std::int32_t v;
  std::memcpy(&v, &u, 4);
  return v;
}
float rd_f32(const std::uint8_t* p) {
  const std::uint32_t u = rd_u32(p);
  float v;
  std::memcpy(&v, &u, 4);
  return v;
}
bool all_zero(const std::uint8_t* p, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i)
    if (p[i]) return false;
  return true;
}
std::uint64_t align_up(std::uint64_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

struct Table {
  std::uint32_t t[256];
  Table() {
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
  }
};

std::string shape_str(const TensorRecord& t) {
  std::ostringstream s;
  s << "(";
  for (std::uint32_t d = 0; d < t.ndim; ++d) s << (d ? ", " : "") << t.shape[d];
  s << (t.ndim == 1 ? ",)" : ")");
  return s.str();
}

// Number of (iparams, fparams) each op uses in a file of `version`; the rest must be zero.
void used_params(std::uint32_t type, std::uint32_t version, int* ni, int* nf) {
  switch (type) {
    case kConv2d: *ni = version >= 2 ? 11 : 6; *nf = 0; return;
    case kDepthwiseConv2d: *ni = 11; *nf = 0; return;
    case kAdd: *ni = 1; *nf = 0; return;
    case kDenseBlock: *ni = 3; *nf = 0; return;
    case kAvgPool: *ni = 2; *nf = 0; return;
    case kMaxPool: *ni = 3; *nf = 0; return;
    case kGaussianBlur: *ni = 1; *nf = 2; return;
    case kCentreBias: *ni = 0; *nf = 1; return;
    default: *ni = 0; *nf = 0; return;
  }
}

class Validator {
 public:
  Validator(OpRecord& op, std::size_t index, const std::vector<TensorRecord>& tensors,
            const std::vector<int>& channels, std::uint32_t version, bool int8)
      : op_(op), i_(index), tensors_(tensors), channels_(channels), version_(version), int8_(int8) {
    std::ostringstream s;
    s << "op " << index << " (" << op_name(op.op_type) << ")";
    where_ = s.str();
  }

  int check() {
    const int c = channels_[op_.inputs[0]];
    const std::int32_t* ip = op_.iparams;
    switch (op_.op_type) {
      case kConv2d:
      case kDepthwiseConv2d: {
        const bool dw = op_.op_type == kDepthwiseConv2d;
        const std::int64_t cin = ip[0], cout = ip[1], k = ip[2], s = ip[3], act = ip[5];
        if (cin != c) fail(where_, ": in_channels ", cin, " != ", c, " channels of input value ", op_.inputs[0]);
        range("out_channels", cout, 1, kMaxChannels);
        if (dw ? (k != 3 && k != 5) : (k != 1 && k != 3)) fail(where_, ": kernel ", k, dw ? " not 3 or 5" : " not 1 or 3");
        if (s != 1 && s != 2) fail(where_, ": stride ", s, " not 1 or 2");
        const std::int64_t mode = ip[6];
        range("padding_mode", mode, 0, 2);
        range("padding", ip[4], 0, mode == 0 ? k / 2 : 0);
        const char* sides[4] = {"pad_top", "pad_bottom", "pad_left", "pad_right"};
        for (int j = 0; j < 4; ++j) range(sides[j], ip[7 + j], 0, mode == 1 ? k / 2 : 0);
        expect_count(int8_ ? 4 : 2);
        if (int8_ && act != 0 && act != 1 && act != 3)
          fail(where_, ": activation ", act, " cannot run in the int8 trunk (0, 1 or 3)");
        if (dw) {
          if (cout != cin) fail(where_, ": out_channels ", cout, " != in_channels ", cin);
          if (act != 0 && act != 1 && act != 3) fail(where_, ": activation ", act, " not 0, 1 or 3");
          expect_shape(0, "weight", {std::uint32_t(cin), 1, std::uint32_t(k), std::uint32_t(k)});
        } else {
          range("activation", act, 0, version_ >= 2 ? 3 : 2);
          expect_shape(0, "weight", {std::uint32_t(cout), std::uint32_t(cin), std::uint32_t(k), std::uint32_t(k)});
        }
        expect_shape(1, "bias", {std::uint32_t(cout)});
        if (int8_) {
          const TensorRecord& w = tensor(0);
          expect_shape(2, "int8 weight", std::vector<std::uint32_t>(w.shape, w.shape + w.ndim));
          if (tensor(2).dtype != 2) fail(where_, ": tensor ", tensor(2).name, " must be int8 (dtype 2)");
          expect_shape(3, "int8 scales and bias", {2, std::uint32_t(cout)});
        }
        return int(cout);
      }
      case kAdd: {
        range("activation", ip[0], 0, 3);
        if (int8_ && ip[0] == 2) fail(where_, ": activation 2 cannot run in the int8 trunk (0, 1 or 3)");
        const int c2 = channels_[op_.inputs[1]];
        if (c2 != c) fail(where_, ": inputs have ", c, " and ", c2, " channels");
        expect_count(0);
        return c;
      }
      case kDenseBlock: {
        const std::int64_t cin = ip[0], nl = ip[1], cout = ip[2];
        if (cin != c) fail(where_, ": in_channels ", cin, " != ", c, " channels of input value ", op_.inputs[0]);
        range("num_layers", nl, 1, 256);
        if (int8_ && op_.num_tensors != 8 * nl + 1)
          fail(where_, ": ", op_.num_tensors, " tensors, an int8 trunk dense block owns 8 per layer + 1 = ", 8 * nl + 1);
        if (!int8_ && op_.num_tensors != 4 * nl)
          fail(where_, ": ", op_.num_tensors, " tensors, expected 4 per layer = ", 4 * nl);
        std::int64_t cl = cin;
        for (std::int64_t l = 0; l < nl; ++l) {
          const TensorRecord& w1 = tensor(4 * l);
          const TensorRecord& w2 = tensor(4 * l + 2);
          if (w1.ndim != 4 || w2.ndim != 4)
            fail(where_, ": layer ", l, " conv weights must be 4-D, got ", shape_str(w1), " and ", shape_str(w2));
          const std::uint32_t b = w1.shape[0], g = w2.shape[0];
          std::ostringstream ctx;
          ctx << "layer " << l << " ";
          const std::string p = ctx.str();
          expect_shape(4 * l, p + "conv1.weight", {b, std::uint32_t(cl), 1, 1}, cl);
          expect_shape(4 * l + 1, p + "conv1.bias", {b}, cl);
          expect_shape(4 * l + 2, p + "conv2.weight", {g, b, 3, 3}, cl);
          expect_shape(4 * l + 3, p + "conv2.bias", {g}, cl);
          cl += g;
          range("channels", cl, 1, kMaxChannels);
        }
        if (cl != cout) fail(where_, ": out_channels ", cout, " != ", cl, " (in_channels + growth)");
        if (int8_) {  // per convolution its int8 weights and (2, M) scales and biases, then the (2, L) bottlenecks
          for (std::int64_t j = 0; j < 2 * nl; ++j) {
            const TensorRecord& w = tensor(2 * j);
            expect_shape(4 * nl + 2 * j, "int8 weight", std::vector<std::uint32_t>(w.shape, w.shape + w.ndim));
            expect_shape(4 * nl + 2 * j + 1, "int8 scales and bias", {2, w.shape[0]});
          }
          expect_shape(8 * nl, "bottleneck scales and zero points", {2, std::uint32_t(nl)});
        }
        return int(cout);
      }
      case kAvgPool:
      case kMaxPool: {
        range("kernel", ip[0], 1, 8);
        range("stride", ip[1], 1, 8);
        if (op_.op_type == kMaxPool) range("padding", ip[2], 0, ip[0] / 2);
        if (int8_ && op_.op_type == kAvgPool && ip[0] < 2)
          fail(where_, ": kernel ", ip[0], " cannot run in the int8 trunk (2 or more)");
        expect_count(0);
        return c;
      }
      case kResizeBilinear:
        expect_count(0);
        return c;
      case kConcat: {
        expect_count(0);
        std::int64_t total = 0;
        for (std::uint32_t j = 0; j < op_.num_inputs; ++j) total += channels_[op_.inputs[j]];
        range("channels", total, 1, kMaxChannels);
        return int(total);
      }
      case kGaussianBlur: {
        const float sigma = op_.fparams[0], trunc = op_.fparams[1];
        if (!(sigma > 0 && sigma <= 1000) || !(trunc > 0 && trunc <= 10))
          fail(where_, ": sigma ", sigma, " or truncate ", trunc, " out of range (0, 1000] / (0, 10]");
        range("border", ip[0], 0, 2);
        expect_count(0);
        return c;
      }
      case kCentreBias: {
        if (c != 1) fail(where_, ": input has ", c, " channels, expected 1");
        expect_count(1);
        if (tensor(0).ndim != 2) fail(where_, ": log_map must be 2-D (h, w), got ", shape_str(tensor(0)));
        return 1;
      }
      case kLogSoftmax:
        if (c != 1) fail(where_, ": input has ", c, " channels, expected 1");
        expect_count(0);
        return 1;
      default:
        fail(where_, ": unknown op code ", op_.op_type);
    }
  }

  // Every tensor float32 except an int8 trunk convolution's third and a dense block's int8 weights (after its
  // 4L float tensors, every other one); resize, concat and the head ops cannot be in the trunk.
  void check_dtypes() const {
    const bool dense = op_.op_type == kDenseBlock;
    if (int8_ && op_.op_type != kConv2d && op_.op_type != kDepthwiseConv2d && op_.op_type != kAdd && !dense &&
        op_.op_type != kMaxPool && op_.op_type != kAvgPool)
      fail(where_, ": cannot run in the int8 trunk (conv2d, depthwise_conv2d, add, dense_block and pools only)");
    const std::uint32_t nf = dense ? std::uint32_t(4 * op_.iparams[1]) : 2;  // float tensors before the int8 ones
    for (std::uint32_t j = 0; j < op_.num_tensors; ++j) {
      const bool q = int8_ && j >= nf && (j - nf) % 2 == 0 && j + 1 < op_.num_tensors;
      if (tensor(j).dtype != (q ? 2u : 1u))
        fail(where_, ": tensor ", tensor(j).name, " has dtype ", tensor(j).dtype, ", expected ", q ? 2 : 1);
    }
  }

 private:
  const TensorRecord& tensor(std::int64_t j) const { return tensors_[op_.first_tensor + std::size_t(j)]; }
  void range(const char* label, std::int64_t v, std::int64_t lo, std::int64_t hi) const {
    if (v < lo || v > hi) fail(where_, ": ", label, " ", v, " not in ", lo, "..", hi);
  }
  void expect_count(std::uint32_t n) const {
    if (op_.num_tensors != n) fail(where_, ": owns ", op_.num_tensors, " tensors, expected ", n);
  }
  void expect_shape(std::int64_t j, const std::string& what, std::vector<std::uint32_t> shape,
                    std::int64_t chained_from = -1) const {
    const TensorRecord& t = tensor(j);
    bool ok = t.ndim == shape.size();
    for (std::size_t d = 0; ok && d < shape.size(); ++d) ok = t.shape[d] == shape[d];
    if (!ok) {
      TensorRecord e;
      e.ndim = std::uint32_t(shape.size());
      for (std::size_t d = 0; d < shape.size(); ++d) e.shape[d] = shape[d];
      if (chained_from >= 0)
        fail(where_, ": ", what, " tensor ", t.name, " has shape ", shape_str(t), ", expected ", shape_str(e),
             " chaining from ", chained_from, " input channels");
      fail(where_, ": ", what, " tensor ", t.name, " has shape ", shape_str(t), ", expected ", shape_str(e));
    }
  }

  OpRecord& op_;
  std::size_t i_;
  const std::vector<TensorRecord>& tensors_;
  const std::vector<int>& channels_;
  std::uint32_t version_;
  bool int8_;
  std::string where_;
};

// model_name / model_version of a version-2 file: ASCII [A-Za-z0-9_.+-], NUL-padded (may be empty).
std::string read_label(const std::uint8_t* p, std::size_t n, const char* field) {
  std::size_t len = 0;
  while (len < n && p[len]) ++len;
  bool ok = all_zero(p + len, n - len);
  for (std::size_t k = 0; ok && k < len; ++k) {
    const char ch = char(p[k]);
    ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' ||
         ch == '.' || ch == '+' || ch == '-';
  }
  if (!ok) fail("model info: bad ", field, " (ASCII [A-Za-z0-9_.+-], NUL-padded)");
  return std::string(reinterpret_cast<const char*>(p), len);
}

}  // namespace

const char* op_name(std::uint32_t type) {
  switch (type) {
    case kConv2d: return "conv2d";
    case kDenseBlock: return "dense_block";
    case kAvgPool: return "avg_pool";
    case kMaxPool: return "max_pool";
    case kResizeBilinear: return "resize_bilinear";
    case kConcat: return "concat";
    case kGaussianBlur: return "gaussian_blur";
    case kCentreBias: return "centre_bias";
    case kLogSoftmax: return "log_softmax";
    case kDepthwiseConv2d: return "depthwise_conv2d";
    case kAdd: return "add";
    default: return "unknown";
  }
}

std::uint32_t crc32(const std::uint8_t* data, std::size_t size) {
  static const Table table;
  std::uint32_t c = 0xFFFFFFFFu;
  for (std::size_t i = 0; i < size; ++i) c = table.t[(c ^ data[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

bool int8_multiplier(double real, std::int64_t* mult, int* shift) {
  if (!(std::isfinite(real) && real > 0)) return false;
  int e = 0;
  const double f = std::frexp(real, &e);  // real = f 2^e, f in [0.5, 1)
  std::int64_t m = std::int64_t(std::nearbyint(f * 2147483648.0));
  if (m == (std::int64_t(1) << 31)) m = std::int64_t(1) << 30, ++e;
  if (31 - e < 1 || 31 - e > 62) return false;
  *mult = m;
  *shift = 31 - e;
  return true;
}

namespace {

// One int8 convolution (float weight `w`, its (2, M) scales and int8-path biases `par`) read at scale sx and
// written at sy: positive weight scales, factors within the convolution rule, int32 accumulators.
void check_int8_conv(const std::string& where, const TensorRecord& w, const TensorRecord& par, double sx, double sy) {
  std::int64_t mult = 0;
  int shift = 0;
  const std::size_t m_out = w.shape[0], k = std::size_t(w.values.size() / m_out);
  for (std::size_t m = 0; m < m_out; ++m) {
    const double sw = par.values[m], b = par.values[m_out + m];
    if (!(sw > 0)) fail(where, ": weight scale ", sw, " of channel ", m, " must be > 0");
    if (!int8_multiplier(sx * sw / sy, &mult, &shift) || shift < 32)
      fail(where, ": requantisation factor ", sx * sw / sy, " of channel ", m, " out of range (shift 32..62)");
    const double bq = std::nearbyint(b / (sx * sw));
    const double worst = std::fabs(bq) + 255.0 * 127.0 * double(k);
    if (!(worst <= 2147483647.0)) fail(where, ": channel ", m, "'s accumulator can reach ", worst, " (> 2^31 - 1)");
  }
}

// The checks of gazecrop.int8.Int8Trunk.validate that need the tensor data: positive weight scales, every
// requantisation factor within the fixed-point range, and int32 accumulators that cannot overflow.
void check_int8_arithmetic(const ParsedWeights& pw) {
  auto scale = [&](std::uint32_t v) { return v == 0 ? pw.int8.input_scale : pw.ops[v - 1].out_scale; };
  for (std::uint32_t i = 0; i < pw.int8.ops; ++i) {
    const OpRecord& op = pw.ops[i];
    const std::string where = "int8 trunk: op " + std::to_string(i) + " (" + op_name(op.op_type) + ")";
    std::int64_t mult = 0;
    int shift = 0;
    if (op.op_type == kAdd) {
      const double big = std::max(double(scale(op.inputs[0])), double(scale(op.inputs[1])));
      if (!int8_multiplier(big / double(op.out_scale), &mult, &shift) || shift < 10)
        fail(where, ": requantisation factor ", big / double(op.out_scale), " out of range (shift 10..62)");
      continue;
    }
    if (op.op_type == kMaxPool || op.op_type == kAvgPool || op.op_type == kDenseBlock) {
      const std::uint32_t v = op.inputs[0];
      const std::int32_t zin = v == 0 ? pw.int8.input_zero_point : pw.ops[v - 1].out_zero_point;
      if (!(scale(v) == op.out_scale) || zin != op.out_zero_point)
        fail(where, " must keep its input's scale and zero point (", scale(v), ", ", zin, "), has (", op.out_scale,
             ", ", op.out_zero_point, ")");
    }
    if (op.op_type == kMaxPool || op.op_type == kAvgPool) continue;
    if (op.op_type == kDenseBlock) {
      const std::uint32_t nl = std::uint32_t(op.iparams[1]);
      const TensorRecord& mid = pw.tensors[op.first_tensor + 8 * nl];
      for (std::uint32_t l = 0; l < nl; ++l) {
        const float sm = mid.values[l], zm = mid.values[nl + l];
        if (!(sm > 0)) fail(where, ": bottleneck ", l, "'s scale ", sm, " must be > 0");
        if (!(zm == std::nearbyint(zm) && zm >= -128.0f && zm <= 127.0f))
          fail(where, ": bottleneck ", l, "'s zero point ", zm, " not an integer in -128..127");
        const double sb = op.out_scale;
        check_int8_conv(where + " layer " + std::to_string(l) + " conv1", pw.tensors[op.first_tensor + 4 * l],
                        pw.tensors[op.first_tensor + 4 * nl + 4 * l + 1], sb, sm);
        check_int8_conv(where + " layer " + std::to_string(l) + " conv2", pw.tensors[op.first_tensor + 4 * l + 2],
                        pw.tensors[op.first_tensor + 4 * nl + 4 * l + 3], sm, sb);
      }
      continue;
    }
    check_int8_conv(where, pw.tensors[op.first_tensor], pw.tensors[op.first_tensor + 3], scale(op.inputs[0]),
                    op.out_scale);
  }
}

}  // namespace

ParsedWeights parse_weights(const std::uint8_t* data, std::size_t n) {
  if (data == nullptr && n != 0) fail("null data pointer");
  if (n < kMinFile) fail("file is ", n, " bytes, smaller than the minimum ", kMinFile, " (truncated?)");
  if (std::memcmp(data, kMagic, 8) != 0) fail("bad magic: not a gazecrop weights file");
  const std::uint32_t version = rd_u32(data + 8);
  if (version < 1 || version > kMaxVersion) fail("unsupported version ", version, " (this reader knows 1, 2 and 3)");
  const std::uint32_t header_bytes = rd_u32(data + 12), num_ops = rd_u32(data + 16), num_tensors = rd_u32(data + 20);
  const std::uint64_t data_offset = rd_u64(data + 24), file_size = rd_u64(data + 32);
  if (file_size != n) fail("file_size field ", file_size, " != actual size ", n, " (truncated or padded?)");
  // Version 3: head_output at byte 40 (checked with the graph below) and the int8 trunk's fields at 44..63 (all
  // zero when there is no trunk).
  const std::uint32_t head_output = version >= 3 ? rd_u32(data + 40) : 0;
  Int8Header int8;
  if (version >= 3) {
    int8.ops = rd_u32(data + 44);
    int8.precision = rd_u32(data + 48);
    int8.input_scale = rd_f32(data + 52);
    int8.input_zero_point = rd_i32(data + 56);
    int8.verdict = rd_u32(data + 60);
  }
  if (!all_zero(data + (version >= 3 ? 44 : 40), version >= 3 ? 20 : 24) && int8.ops == 0)
    fail("file header: reserved bytes are not zero");
  if (int8.ops != 0) {
    if (int8.ops >= num_ops) fail("int8_ops ", int8.ops, " not in 1..", num_ops - 1, " (the last op stays float)");
    if (int8.precision > 1) fail("file header: precision ", int8.precision, " not 0 (fp32) or 1 (int8)");
    if (int8.verdict > 2) fail("file header: int8_verdict ", int8.verdict, " not 0, 1 or 2");
    if (!(std::isfinite(int8.input_scale) && int8.input_scale > 0))
      fail("int8 trunk: input scale ", int8.input_scale, " must be finite and > 0");
    if (int8.input_zero_point < -128 || int8.input_zero_point > 127)
      fail("int8 trunk: input zero point ", int8.input_zero_point, " not in -128..127");
  }
  const std::uint8_t* trailer = data + n - kTrailer;
  if (std::memcmp(trailer + 8, kEndMagic, 8) != 0 || rd_u32(trailer + 4) != 0)
    fail("bad trailer end_magic (truncated file?)");
  if (num_ops < 1 || num_ops > kMaxOps) fail("num_ops ", num_ops, " not in 1..", kMaxOps);
  if (num_tensors > kMaxTensors) fail("num_tensors ", num_tensors, " > ", kMaxTensors);
  const std::uint64_t expect_hb = 128 + 128 * std::uint64_t(num_ops) + 96 * std::uint64_t(num_tensors);
  if (header_bytes != expect_hb)
    fail("header_bytes ", header_bytes, " != ", expect_hb, " for ", num_ops, " ops, ", num_tensors, " tensors");
  if (data_offset != align_up(header_bytes)) fail("data_offset ", data_offset, " != ", align_up(header_bytes));
  if (data_offset + kTrailer > n) fail("data_offset ", data_offset, " past the end of the ", n, "-byte file");
  const std::uint32_t stored_crc = rd_u32(trailer);
  const std::uint32_t actual_crc = crc32(data, n - kTrailer);
  if (stored_crc != actual_crc) {
    std::ostringstream s;
    s << std::hex << "checksum mismatch: stored crc32 0x" << stored_crc << ", computed 0x" << actual_crc;
    throw FormatError(s.str());
  }

  ParsedWeights pw;
  const std::uint8_t* mi = data + 64;
  for (int c = 0; c < 3; ++c) {
    pw.info.mean[c] = rd_f32(mi + 4 * c);
    pw.info.std[c] = rd_f32(mi + 12 + 4 * c);
  }
  const std::uint32_t long_side = rd_u32(mi + 24), multiple = rd_u32(mi + 28);
  pw.info.format_version = int(version);
  if (version < 2) {
    if (!all_zero(mi + 32, 32)) fail("model info: reserved bytes are not zero");
  } else {
    pw.info.name = read_label(mi + 32, 20, "model_name");
    pw.info.model_version = read_label(mi + 52, 12, "model_version");
  }
  for (int c = 0; c < 3; ++c) {
    if (!std::isfinite(pw.info.mean[c]) || !std::isfinite(pw.info.std[c]))
      fail("model info: mean and std must be finite, got mean[", c, "] ", pw.info.mean[c], ", std[", c, "] ",
           pw.info.std[c]);
    if (!(pw.info.std[c] > 0)) fail("model info: std must be > 0, got std[", c, "] ", pw.info.std[c]);
  }
  if (long_side < 16 || long_side > 4096) fail("model info: input_long_side ", long_side, " not in 16..4096");
  if (multiple < 1 || multiple > 256) fail("model info: size_multiple ", multiple, " not in 1..256");
  pw.info.input_long_side = int(long_side);
  pw.info.size_multiple = int(multiple);

  // Tensor table.
  const std::uint64_t end_data = n - kTrailer;
  const std::uint8_t* tbase = data + 128 + 128 * std::size_t(num_ops);
  pw.tensors.resize(num_tensors);
  std::vector<std::pair<std::uint64_t, std::uint32_t>> regions;
  regions.reserve(num_tensors);
  for (std::uint32_t j = 0; j < num_tensors; ++j) {
    const std::uint8_t* r = tbase + 96 * std::size_t(j);
    TensorRecord& t = pw.tensors[j];
    std::size_t len = 0;
    while (len < 48 && r[len]) ++len;
    bool name_ok = len >= 1 && all_zero(r + len, 48 - len);
    for (std::size_t k = 0; name_ok && k < len; ++k) {
      const char ch = char(r[k]);
      name_ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' ||
                ch == '.';
    }
    if (!name_ok) fail("tensor ", j, ": bad name (must be 1..48 chars of [A-Za-z0-9_.], NUL-padded)");
    t.name.assign(reinterpret_cast<const char*>(r), len);
    const std::string where = "tensor " + std::to_string(j) + " (" + t.name + ")";
    if (!all_zero(r + 88, 8)) fail(where, ": reserved bytes are not zero");
    t.dtype = rd_u32(r + 48);
    if (t.dtype != 1 && !(t.dtype == 2 && int8.ops != 0))
      fail(where, ": unknown dtype ", t.dtype, t.dtype == 2 ? " (int8 needs an int8 trunk)" : "");
    const std::uint64_t elem = t.dtype == 2 ? 1 : 4;
    t.ndim = rd_u32(r + 52);
    if (t.ndim < 1 || t.ndim > 4) fail(where, ": ndim ", t.ndim, " not in 1..4");
    std::uint64_t count = 1;
    bool shape_ok = true;
    for (std::uint32_t d = 0; d < 4; ++d) {
      t.shape[d] = rd_u32(r + 56 + 4 * d);
      if (d < t.ndim) {
        shape_ok = shape_ok && t.shape[d] >= 1;
        count *= t.shape[d];  // each factor < 2^32 and at most 4 factors, but guard the product:
        if (count > (std::uint64_t(1) << 40)) shape_ok = false;
      } else {
        shape_ok = shape_ok && t.shape[d] == 0;
      }
    }
    if (!shape_ok)
      fail(where, ": bad shape (", t.shape[0], ", ", t.shape[1], ", ", t.shape[2], ", ", t.shape[3], ") for ndim ",
           t.ndim);
    t.offset = rd_u64(r + 72);
    t.nbytes = rd_u64(r + 80);
    if (t.nbytes != elem * count)
      fail(where, ": nbytes ", t.nbytes, " != ", elem, " * prod", shape_str(t), " = ", elem * count);
    if (t.offset % kAlign) fail(where, ": offset ", t.offset, " not a multiple of ", kAlign);
    if (t.offset < data_offset || t.offset > end_data || t.nbytes > end_data - t.offset)
      fail(where, ": data at offset ", t.offset, " (", t.nbytes, " bytes) outside the data region [", data_offset,
           ", ", end_data, ")");
    regions.emplace_back(t.offset, j);
  }
  std::sort(regions.begin(), regions.end());
  for (std::size_t k = 1; k < regions.size(); ++k) {
    const TensorRecord& a = pw.tensors[regions[k - 1].second];
    const TensorRecord& b = pw.tensors[regions[k].second];
    if (b.offset < a.offset + a.nbytes) fail("tensors ", a.name, " and ", b.name, " overlap");
  }

  // Op table, graph and channel chaining.
  pw.ops.resize(num_ops);
  std::vector<int> channels{3};
  std::uint32_t next = 0;
  for (std::uint32_t i = 0; i < num_ops; ++i) {
    const std::uint8_t* r = data + 128 + 128 * std::size_t(i);
    OpRecord& op = pw.ops[i];
    op.op_type = rd_u32(r);
    const std::uint32_t last_code = version >= 2 ? kAdd : kLogSoftmax;
    if (op.op_type < kConv2d || op.op_type > last_code)
      fail("op ", i, ": unknown op code ", op.op_type, " in a version-", version, " file");
    const std::string where = "op " + std::to_string(i) + " (" + op_name(op.op_type) + ")";
    if (i < int8.ops) {  // the int8 trunk: the output value's quantisation, then 4 reserved bytes
      op.out_scale = rd_f32(r + 116);
      op.out_zero_point = rd_i32(r + 120);
      if (!all_zero(r + 124, 4)) fail(where, ": reserved bytes are not zero");
      if (!(std::isfinite(op.out_scale) && op.out_scale > 0))
        fail(where, ": int8 output scale ", op.out_scale, " must be finite and > 0");
      if (op.out_zero_point < -128 || op.out_zero_point > 127)
        fail(where, ": int8 output zero point ", op.out_zero_point, " not in -128..127");
    } else if (!all_zero(r + 116, 12)) {
      fail(where, ": reserved bytes are not zero");
    }
    op.num_inputs = rd_u32(r + 4);
    for (int k = 0; k < 4; ++k) op.inputs[k] = rd_u32(r + 8 + 4 * k);
    if (op.num_inputs < 1 || op.num_inputs > 4) fail(where, ": num_inputs ", op.num_inputs, " not in 1..4");
    for (std::uint32_t k = op.num_inputs; k < 4; ++k)
      if (op.inputs[k]) fail(where, ": unused input slot ", k, " is ", op.inputs[k], ", not 0");
    op.output = rd_u32(r + 24);
    if (op.output != i + 1) fail(where, ": output value id ", op.output, " != ", i + 1);
    for (int k = 0; k < 12; ++k) op.iparams[k] = rd_i32(r + 28 + 4 * k);
    for (int k = 0; k < 8; ++k) op.fparams[k] = rd_f32(r + 76 + 4 * k);
    op.first_tensor = rd_u32(r + 108);
    op.num_tensors = rd_u32(r + 112);
    if (op.first_tensor != next || op.num_tensors > num_tensors - op.first_tensor)
      fail(where, ": tensor range [", op.first_tensor, ", ", std::uint64_t(op.first_tensor) + op.num_tensors,
           ") does not continue at ", next, " within ", num_tensors, " tensors");
    next = op.first_tensor + op.num_tensors;
    std::uint32_t lo = 1, hi = 1;
    if (op.op_type == kResizeBilinear || op.op_type == kAdd) lo = hi = 2;
    if (op.op_type == kConcat) lo = 2, hi = 4;
    if (op.num_inputs < lo || op.num_inputs > hi)
      fail(where, ": num_inputs ", op.num_inputs, " not in ", lo, "..", hi);
    for (std::uint32_t k = 0; k < op.num_inputs; ++k)
      if (op.inputs[k] > i) fail(where, ": input value id ", op.inputs[k], " not in 0..", i);
    for (int k = 0; k < 8; ++k)
      if (!std::isfinite(op.fparams[k])) fail(where, ": non-finite float param ", k, " (", op.fparams[k], ")");
    int ni = 0, nf = 0;
    used_params(op.op_type, version, &ni, &nf);
    for (int k = ni; k < 12; ++k)
      if (op.iparams[k]) fail(where, ": iparams[", k, "] = ", op.iparams[k], " but the op uses only ", ni);
    for (int k = nf; k < 8; ++k)
      if (op.fparams[k] != 0.0f)
        fail(where, ": fparams[", k, "] = ", op.fparams[k], " but the op uses only ", nf);
    for (std::uint32_t k = 0; k < op.num_inputs; ++k) op.value_channels.push_back(channels[op.inputs[k]]);
    Validator v(op, i, pw.tensors, channels, version, i < int8.ops);
    op.out_channels = v.check();
    v.check_dtypes();
    channels.push_back(op.out_channels);
  }
  if (next != num_tensors) fail("ops own ", next, " tensors but the table has ", num_tensors);
  if (channels.back() != 1) fail("the last op's output has ", channels.back(), " channels, expected 1");
  if (head_output != 0) {  // version 3: a leaf value with one channel, not the log-density
    if (head_output >= num_ops)
      fail("head_output ", head_output, " not in 1..", num_ops - 1, " (a value other than the log-density)");
    if (channels[head_output] != 1)
      fail("head_output value ", head_output, " has ", channels[head_output], " channels, expected 1");
    for (std::uint32_t i = 0; i < num_ops; ++i)
      for (std::uint32_t k = 0; k < pw.ops[i].num_inputs; ++k)
        if (pw.ops[i].inputs[k] == head_output) fail("head_output value ", head_output, " is read by op ", i);
    if (head_output <= int8.ops)
      fail("int8 trunk: the head map (value ", head_output, ") must be outside the trunk (ops 0..", int8.ops - 1, ")");
  }
  pw.info.head_output = int(head_output);

  // Tensor data (only now, after every offset was checked): copy out and reject non-finite values.
  for (std::uint32_t j = 0; j < num_tensors; ++j) {
    TensorRecord& t = pw.tensors[j];
    const std::uint8_t* p = data + t.offset;
    if (t.dtype == 2) {
      t.q8.resize(std::size_t(t.nbytes));
      for (std::size_t k = 0; k < t.q8.size(); ++k) {
        t.q8[k] = std::int8_t(p[k]);
        if (t.q8[k] == -128) fail("tensor ", j, " (", t.name, "): int8 weight -128 at element ", k, " (-127..127)");
      }
      continue;
    }
    const std::size_t count = std::size_t(t.nbytes / 4);
    t.values.resize(count);
    for (std::size_t k = 0; k < count; ++k) {
      const float v = rd_f32(p + 4 * k);
      if (!std::isfinite(v)) fail("tensor ", j, " (", t.name, "): non-finite value at element ", k);
      t.values[k] = v;
    }
  }
  pw.int8 = int8;
  pw.info.int8_ops = int(int8.ops);
  pw.info.default_precision = int(int8.precision);
  pw.info.int8_verdict = int(int8.verdict);
  if (int8.ops != 0) check_int8_arithmetic(pw);
  return pw;
}

}  // namespace detail
}  // namespace gazecrop
