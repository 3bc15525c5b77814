// Parser and validator of the `.gzw` file (docs/weights-format.md). Everything the spec lists is checked
// before any tensor data is used; errors are gazecrop::FormatError naming field, op or tensor and numbers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "gazecrop/gazecrop.h"

namespace gazecrop {
namespace detail {

enum OpType : std::uint32_t {
  kConv2d = 1,
  kDenseBlock = 2,
  kAvgPool = 3,
  kMaxPool = 4,
  kResizeBilinear = 5,
  kConcat = 6,
  kGaussianBlur = 7,
  kCentreBias = 8,
  kLogSoftmax = 9,
  kDepthwiseConv2d = 10,  // version 2
  kAdd = 11,              // version 2
};

const char* op_name(std::uint32_t type);

struct TensorRecord {
  std::string name;
  std::uint32_t ndim = 0;
  std::uint32_t shape[4] = {0, 0, 0, 0};
  std::uint64_t offset = 0;
  std::uint64_t nbytes = 0;
  std::uint32_t dtype = 1;          // 1 float32, 2 int8 (version 3: an int8 trunk's convolution weights)
  std::vector<float> values;        // float32 tensors, copied out of the file (little-endian)
  std::vector<std::int8_t> q8;      // int8 tensors (values in -127..127)
};

struct OpRecord {
  std::uint32_t op_type = 0;
  std::uint32_t num_inputs = 0;
  std::uint32_t inputs[4] = {0, 0, 0, 0};
  std::uint32_t output = 0;
  std::int32_t iparams[12] = {};
  float fparams[8] = {};
  std::uint32_t first_tensor = 0;
  std::uint32_t num_tensors = 0;
  std::vector<int> value_channels;  // channels of each input value (filled by validation)
  int out_channels = 0;
  float out_scale = 0.0f;           // version 3, int8 trunk ops: quantisation of the output value
  std::int32_t out_zero_point = 0;
};

// Version 3's int8 trunk (docs/weights-format.md, "int8 trunk"; the arithmetic: python/gazecrop/int8.py).
struct Int8Header {
  std::uint32_t ops = 0;          // ops 0 .. ops - 1 run in int8; 0 = the file has no int8 trunk
  std::uint32_t precision = 0;    // the file's default: 0 float32, 1 int8
  float input_scale = 0.0f;       // quantisation of value 0
  std::int32_t input_zero_point = 0;
  std::uint32_t verdict = 0;      // 0 not evaluated, 1 met the quality bar, 2 did not
};

struct ParsedWeights {
  ModelInfo info{};
  std::vector<OpRecord> ops;
  std::vector<TensorRecord> tensors;
  Int8Header int8;
};

// Fixed-point form (mult in [2^30, 2^31), shift) of a positive requantisation factor, as gazecrop.int8.multiplier;
// false when shift would leave 1..62.
bool int8_multiplier(double real, std::int64_t* mult, int* shift);

// Validates `size` bytes of a .gzw file; throws FormatError.
ParsedWeights parse_weights(const std::uint8_t* data, std::size_t size);

std::uint32_t crc32(const std::uint8_t* data, std::size_t size);

}  // namespace detail
}  // namespace gazecrop
