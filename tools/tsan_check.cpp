// ThreadSanitizer check of the core: one Model run from 3 threads at once with 1..3 intra-op threads each;
// every result must equal the serial one. Built and run by tools/tsan_check.sh.
#include <gazecrop/gazecrop.h>
#include <cstdio>
#include <thread>
#include <vector>
#include <cstring>
int main(int argc, char** argv) {
  auto m = gazecrop::Model::load(argv[1]);
  std::vector<uint8_t> img(96 * 128 * 3);
  for (size_t i = 0; i < img.size(); ++i) img[i] = uint8_t(i * 37);
  gazecrop::RunOptions o1; o1.threads = 1;
  auto ref = m.run(gazecrop::ImageU8{img.data(), 96, 128}, o1);
  std::vector<std::thread> ts;
  int bad = 0;
  for (int t = 0; t < 3; ++t) ts.emplace_back([&, t] {
    gazecrop::RunOptions o; o.threads = 1 + t;
    for (int r = 0; r < 3; ++r) {
      auto d = m.run(gazecrop::ImageU8{img.data(), 96, 128}, o);
      if (std::memcmp(d.data.data(), ref.data.data(), 4 * d.data.size())) __atomic_add_fetch(&bad, 1, __ATOMIC_RELAXED);
    }
  });
  for (auto& t : ts) t.join();
  std::printf("tsan run done, mismatches %d\n", bad);
  return bad;
}
