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
  std::vector<float> values;  // copied out of the file (little-endian float32)
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
};

struct ParsedWeights {
  ModelInfo info{};
  std::vector<OpRecord> ops;
  std::vector<TensorRecord> tensors;
};

// Validates `size` bytes of a .gzw file; throws FormatError.
ParsedWeights parse_weights(const std::uint8_t* data, std::size_t size);

std::uint32_t crc32(const std::uint8_t* data, std::size_t size);

}  // namespace detail
}  // namespace gazecrop
