// Fuzz harness for the .gzw loader (and, for files it accepts, one small run fused and one op by op, and one with
// the head map when the file has one). Rejection with
// gazecrop::FormatError (or std::invalid_argument from the run) is fine; a crash or sanitizer report is a bug.
//
// clang: built as a libFuzzer target (-fsanitize=fuzzer):  fuzz_weights corpus/
// other compilers (GAZECROP_FUZZ_MAIN): a self-contained driver:
//   fuzz_weights FILE...                      replay files
//   fuzz_weights --mutate N SEED.gzw [RNG]    N random mutations of a valid file, the CRC refreshed in most
//                                             cases so that the checks behind the checksum are reached
#include <gazecrop/gazecrop.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > (1u << 20)) return 0;  // size cap, as libvips' harnesses do
  try {
    const gazecrop::Model m = gazecrop::Model::from_memory(data, size);
    const std::vector<std::uint8_t> rgb(16 * 16 * 3, 128);
    int oh = 0, ow = 0;
    m.output_size(16, 16, &oh, &ow);
    if (std::int64_t(oh) * ow <= 4096) {
      gazecrop::RunOptions plain;
      plain.fuse = false;
      (void)m.run(gazecrop::ImageU8{rgb.data(), 16, 16});  // fused inverted residuals (the default)
      (void)m.run(gazecrop::ImageU8{rgb.data(), 16, 16}, plain);
      if (m.has_head_map()) {  // version 3: both outputs in one run
        int hh = 0, hw = 0;
        m.head_map_size(16, 16, &hh, &hw);
        std::vector<float> d(std::size_t(oh) * ow), h(std::size_t(hh) * hw);
        m.run(gazecrop::ImageBatchU8{rgb.data(), 1, 16, 16}, d.data(), d.size(), h.data(), h.size(), plain);
      }
      if (m.info().int8_ops > 0) {  // version 3: the int8 trunk, fused tail and op by op
        gazecrop::RunOptions q8;
        q8.precision = 1;
        (void)m.run(gazecrop::ImageU8{rgb.data(), 16, 16}, q8);
        q8.fuse = false;
        (void)m.run(gazecrop::ImageU8{rgb.data(), 16, 16}, q8);
        (void)m.int8_values(gazecrop::ImageU8{rgb.data(), 16, 16});
      }
    }
  } catch (const gazecrop::FormatError&) {
  } catch (const std::invalid_argument&) {
  }
  return 0;
}

#if defined(GAZECROP_FUZZ_MAIN)
namespace {

std::vector<std::uint8_t> read_file(const char* path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<std::uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

std::uint32_t crc32(const std::uint8_t* p, std::size_t n) {
  std::uint32_t c = 0xFFFFFFFFu;
  for (std::size_t i = 0; i < n; ++i) {
    c ^= p[i];
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
  }
  return c ^ 0xFFFFFFFFu;
}

void put32(std::vector<std::uint8_t>& b, std::size_t off, std::uint32_t v) {
  if (off + 4 <= b.size()) std::memcpy(&b[off], &v, 4);  // little-endian hosts
}

void mutate(std::vector<std::uint8_t>& b, std::mt19937_64& rng) {
  static const std::uint32_t interesting[] = {0, 1, 2, 3, 7, 8, 9, 13, 16, 27, 63, 64, 65, 255, 256, 4096, 65536,
                                              0x7FFFFFFF, 0x80000000u, 0xFFFFFFFFu, 0xFFFFFFFEu};
  const int edits = 1 + int(rng() % 4);
  for (int e = 0; e < edits && !b.empty(); ++e) {
    const std::size_t pos = std::size_t(rng() % b.size());
    switch (rng() % 7) {
      case 0: b[pos] ^= std::uint8_t(1u << (rng() % 8)); break;
      case 1: b[pos] = std::uint8_t(rng()); break;
      case 2: put32(b, pos & ~std::size_t(3), interesting[rng() % (sizeof(interesting) / 4)]); break;
      case 3: put32(b, pos & ~std::size_t(3), std::uint32_t(rng() % 300)); break;
      case 4: b.resize(std::size_t(rng() % (b.size() + 1))); break;
      case 5: b.insert(b.begin() + std::ptrdiff_t(pos), std::size_t(1 + rng() % 64), std::uint8_t(rng())); break;
      default: {  // float field or weight: nan / inf / huge / zero
        const float vals[] = {0.0f, -0.0f, 1e30f, -1e30f, 1e-30f, 0.5f};
        float v = vals[rng() % 6];
        if (rng() % 4 == 0) v = std::numeric_limits<float>::quiet_NaN();
        std::uint32_t u;
        std::memcpy(&u, &v, 4);
        put32(b, pos & ~std::size_t(3), u);
      }
    }
  }
  if (b.size() >= 144 && rng() % 10 != 0) {
    if (rng() % 2) {  // keep the file_size field consistent after length changes
      const std::uint64_t n = b.size();
      std::memcpy(&b[32], &n, 8);
      const char end[8] = {'G', 'Z', 'W', 'E', 'N', 'D', 0, 0};
      std::memcpy(&b[b.size() - 8], end, 8);
      put32(b, b.size() - 12, 0);
    }
    put32(b, b.size() - 16, crc32(b.data(), b.size() - 16));
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 4 && std::strcmp(argv[1], "--mutate") == 0) {
    const long n = std::atol(argv[2]);
    const std::vector<std::uint8_t> seed = read_file(argv[3]);
    std::mt19937_64 rng(argc >= 5 ? std::strtoull(argv[4], nullptr, 10) : 1);
    long accepted = 0;
    for (long i = 0; i < n; ++i) {
      std::vector<std::uint8_t> b = seed;
      mutate(b, rng);
      try {
        (void)gazecrop::Model::from_memory(b.data(), b.size());
        ++accepted;
      } catch (const gazecrop::FormatError&) {
      }
      LLVMFuzzerTestOneInput(b.data(), b.size());
    }
    std::printf("fuzz_weights: %ld mutated cases, %ld accepted, no crash\n", n, accepted);
    return 0;
  }
  for (int i = 1; i < argc; ++i) {
    const std::vector<std::uint8_t> b = read_file(argv[i]);
    LLVMFuzzerTestOneInput(b.data(), b.size());
  }
  std::printf("fuzz_weights: replayed %d file(s), no crash\n", argc - 1);
  return 0;
}
#endif
