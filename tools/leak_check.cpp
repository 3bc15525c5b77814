// LeakSanitizer check of the native core over the calls of the library soak (benchmarks/soak.py): the model
// inputs the Python layer handed to the core (dumped by the soak), run from several threads at once for a
// number of rounds, each output compared bit for bit with the one Python got, plus the core's refusals (bad
// shapes, short output buffers, bad weights files) thrown and caught over and over. Built with
// -fsanitize=address (LeakSanitizer included) by tools/leak_check.sh; any leak makes the process exit non-zero
// at its end, any mismatch too.
//
//   leak_check model.gzw calls.bin THREADS ROUNDS
//
// calls.bin: "GZLEAK01", uint32 count, then per call: int32 height, int32 width, int32 threads,
// height * width * 3 uint8 RGB, int32 out_height, int32 out_width, out_height * out_width float32 (the
// log-density Python got). All little-endian.
#include <gazecrop/gazecrop.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Call {
  int height = 0, width = 0, threads = 1, out_height = 0, out_width = 0;
  std::vector<std::uint8_t> rgb;
  std::vector<float> expected;
};

template <typename T>
bool get(std::ifstream& f, T* v) {
  return bool(f.read(reinterpret_cast<char*>(v), sizeof(T)));
}

bool read_calls(const char* path, std::vector<Call>* calls) {
  std::ifstream f(path, std::ios::binary);
  char magic[8];
  std::uint32_t n = 0;
  if (!f.read(magic, 8) || std::memcmp(magic, "GZLEAK01", 8) != 0 || !get(f, &n)) return false;
  for (std::uint32_t i = 0; i < n; ++i) {
    Call c;
    if (!get(f, &c.height) || !get(f, &c.width) || !get(f, &c.threads) || c.height < 1 || c.width < 1 ||
        c.height > 8192 || c.width > 8192)
      return false;
    c.rgb.resize(std::size_t(c.height) * c.width * 3);
    if (!f.read(reinterpret_cast<char*>(c.rgb.data()), std::streamsize(c.rgb.size()))) return false;
    if (!get(f, &c.out_height) || !get(f, &c.out_width) || c.out_height < 1 || c.out_width < 1 ||
        c.out_height > 8192 || c.out_width > 8192)
      return false;
    c.expected.resize(std::size_t(c.out_height) * c.out_width);
    if (!f.read(reinterpret_cast<char*>(c.expected.data()), std::streamsize(4 * c.expected.size()))) return false;
    calls->push_back(std::move(c));
  }
  return true;
}

std::vector<char> read_file(const char* path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<char>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// Each refusal must throw (and free what it allocated); returns how many did not throw.
int bad_calls(const gazecrop::Model& m, const std::vector<char>& weights, const char* missing) {
  int not_thrown = 0;
  std::vector<std::uint8_t> px(64 * 48 * 3, 7);
  std::vector<float> out(4);
  auto expect_throw = [&](auto&& f) {
    try {
      f();
      ++not_thrown;
    } catch (const std::exception&) {
    }
  };
  expect_throw([&] { m.run(gazecrop::ImageU8{px.data(), 0, 48}); });                      // empty image
  expect_throw([&] { m.run(gazecrop::ImageU8{px.data(), 48, 64}, out.data(), out.size()); });  // short output
  gazecrop::RunOptions o;
  o.threads = 0;
  expect_throw([&] { m.run(gazecrop::ImageU8{px.data(), 48, 64}, o); });  // threads out of range
  expect_throw([&] { gazecrop::Model::load(missing); });                    // no such file
  for (std::size_t cut : {std::size_t(3), weights.size() / 3, weights.size() - 1})  // truncated files
    expect_throw([&] { gazecrop::Model::from_memory(weights.data(), cut); });
  std::vector<char> flipped(weights);  // a corrupted header byte
  flipped[9] ^= 0x5a;
  expect_throw([&] { gazecrop::Model::from_memory(flipped.data(), flipped.size()); });
  return not_thrown;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s model.gzw calls.bin THREADS ROUNDS\n", argv[0]);
    return 2;
  }
  std::vector<Call> calls;
  if (!read_calls(argv[2], &calls) || calls.empty()) {
    std::fprintf(stderr, "cannot read %s\n", argv[2]);
    return 2;
  }
  const int threads = std::atoi(argv[3]), rounds = std::atoi(argv[4]);
  const std::vector<char> weights = read_file(argv[1]);
  const std::string missing = std::string(argv[2]) + ".missing.gzw";
  std::atomic<long> done{0}, mismatches{0}, not_thrown{0};
  {
    // models loaded both ways, shared by every thread; a second model loaded and dropped each round
    const gazecrop::Model from_file = gazecrop::Model::load(argv[1]);
    const gazecrop::Model from_memory = gazecrop::Model::from_memory(weights.data(), weights.size());
    for (int r = 0; r < rounds; ++r) {
      std::vector<std::thread> pool;
      for (int t = 0; t < threads; ++t)
        pool.emplace_back([&, t] {
          const gazecrop::Model& m = (t % 2) ? from_memory : from_file;
          for (std::size_t i = t; i < calls.size(); i += threads) {
            const Call& c = calls[i];
            gazecrop::RunOptions o;
            o.threads = c.threads;
            const gazecrop::LogDensity d = m.run(gazecrop::ImageU8{c.rgb.data(), c.height, c.width}, o);
            if (d.height != c.out_height || d.width != c.out_width ||
                std::memcmp(d.data.data(), c.expected.data(), 4 * c.expected.size()) != 0)
              mismatches.fetch_add(1);
            done.fetch_add(1);
          }
          not_thrown.fetch_add(bad_calls(m, weights, missing.c_str()));
        });
      for (auto& t : pool) t.join();
      const gazecrop::Model again = gazecrop::Model::load(argv[1]);  // loaded and released
      (void)again.num_ops();
    }
  }
  std::printf("leak_check: %ld calls, %ld mismatches, %ld bad calls not refused, %d threads x %d rounds\n",
              done.load(), mismatches.load(), not_thrown.load(), threads, rounds);
  return (mismatches.load() || not_thrown.load()) ? 1 : 0;
}
