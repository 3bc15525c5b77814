// Correctness check of the native core without Python, for a build on another architecture run under
// emulation (tools/test_aarch64.sh: AArch64 under qemu-aarch64); it runs on any build.
//
//   aarch64_check FIXTURES [--expect SET]
//
// 1. The kernel self-test (kernels/self_test.cpp: every kernels.def entry against a naive loop at tile-edge
//    sizes); with --expect, the set SET must be supported and every one of its kernels pass.
// 2. Every case of FIXTURES/manifest.txt (tools/aarch64_fixtures.py: each op over tile-edge sizes, whole random
//    networks, the shipped models' golden arrays) on every supported kernel set, against the expected output
//    (NumPy reference or PyTorch golden) within the case's bound (abs: max |out - ref|; rel: max
//    |out - ref| / max(|ref|, 1); golden: max |out - ref|), and each set against the scalar set within the same
//    bound; the best set again on 2 threads must give the same bits.
// 3. Every crop placement of FIXTURES/placement.txt (gazecrop.crop's Python reference on random grids) through
//    place_crops, which must give the same boxes, scores, peaks and cut measures bit for bit.
// 4. Every int8 trunk of FIXTURES/int8.txt (random inverted-residual networks and DenseNets calibrated for
//    int8): each trunk value's bytes on every kernel set equal to those of the exact reference,
//    gazecrop.int8.run_trunk.
// Prints one summary line per part; exits 1 on the first failures (all printed), 0 otherwise.

#include <gazecrop/gazecrop.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/self_test.h"

namespace {

template <typename T>
std::vector<T> read_raw(const std::string& path, std::size_t count) {
  std::ifstream f(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (bytes.size() != count * sizeof(T))
    throw std::runtime_error(path + ": " + std::to_string(bytes.size()) + " bytes, expected " +
                             std::to_string(count * sizeof(T)));
  std::vector<T> v(count);
  std::memcpy(v.data(), bytes.data(), bytes.size());
  return v;
}

// The case's error measure of `out` against `ref` (see the header comment).
double error(const std::string& mode, const std::vector<float>& out, const std::vector<float>& ref) {
  double e = 0;
  for (std::size_t i = 0; i < out.size(); ++i) {
    double d = std::fabs(double(out[i]) - double(ref[i]));
    if (mode == "rel") d /= std::max(std::fabs(double(ref[i])), 1.0);
    if (std::isnan(d)) return INFINITY;
    e = std::max(e, d);
  }
  return e;
}

struct Case {
  std::string name, model, kind, mode;
  int h = 0, w = 0, oh = 0, ow = 0;
  double bound = 0;
};

std::vector<float> run(const gazecrop::Model& m, const Case& c, const std::vector<std::uint8_t>& u8,
                       const std::vector<float>& f32, int threads) {
  gazecrop::RunOptions opt;
  opt.threads = threads;
  int oh = 0, ow = 0;
  m.output_size(c.h, c.w, &oh, &ow);
  if (oh != c.oh || ow != c.ow)
    throw std::runtime_error(c.name + ": output " + std::to_string(oh) + "x" + std::to_string(ow) + ", expected " +
                             std::to_string(c.oh) + "x" + std::to_string(c.ow));
  std::vector<float> out(std::size_t(oh) * ow);
  if (c.kind == "u8")
    m.run(gazecrop::ImageU8{u8.data(), c.h, c.w}, out.data(), out.size(), opt);
  else
    m.run(gazecrop::ImageF32{f32.data(), c.h, c.w}, out.data(), out.size(), opt);
  return out;
}

double hex(const std::string& s) { return std::strtod(s.c_str(), nullptr); }

// Part 3: one line of placement.txt (tools/aarch64_fixtures.py placement_cases); the first difference, or "".
std::string check_placement(const std::string& dir, const std::string& line) {
  std::istringstream in(line);
  int id = 0, gh = 0, gw = 0, W = 0, H = 0, k = 0, nbox = 0, nhead = 0;
  std::string oy, bar;
  in >> id >> gh >> gw >> W >> H >> k >> oy >> nbox;
  std::vector<std::array<int, 2>> boxes(std::size_t(std::max(nbox, 0)));
  for (auto& b : boxes) in >> b[0] >> b[1];
  gazecrop::PlacementOptions opt;
  opt.object_rule = oy != "none";
  opt.object_yield = opt.object_rule ? hex(oy) : 0.0;
  opt.candidates = k;
  in >> nhead;
  opt.heads.resize(std::size_t(std::max(nhead, 0)));
  for (auto& h : opt.heads) in >> h[0] >> h[1] >> h[2] >> h[3];
  const std::vector<double> d =
      read_raw<double>(dir + "/placement" + std::to_string(id) + ".grid", std::size_t(gh) * std::size_t(gw));
  const gazecrop::Placement p = gazecrop::place_crops(d.data(), gh, gw, W, H, boxes, opt);
  const std::string name = "placement " + std::to_string(id) + ": ";
  int px = 0, py = 0, npeak = 0;
  in >> bar >> px >> py >> npeak;
  if (px != p.point_x || py != p.point_y) return name + "salient point";
  if (npeak != int(p.peaks.size())) return name + "number of peaks";
  for (const auto& pk : p.peaks) {
    int x = 0, y = 0;
    std::string st;
    in >> x >> y >> st;
    if (x != pk.x || y != pk.y || hex(st) != pk.strength) return name + "peak";
  }
  in >> bar;
  for (const auto& b : p.boxes) {
    int nrank = 0;
    in >> nrank;
    const std::size_t expected = std::min(b.ranked.size(), std::size_t(k));  // CropResult keeps `candidates`
    if (std::size_t(nrank) != expected) return name + "number of candidates";
    for (std::size_t r = 0; r < expected; ++r) {
      int left = 0, top = 0;
      std::string sc;
      in >> left >> top >> sc;
      const double score = std::min(1.0, std::max(0.0, b.ranked[r].score));  // clamped as CropResult's
      if (left != b.ranked[r].left || top != b.ranked[r].top || hex(sc) != score) return name + "ranked box";
    }
    std::string cut;
    in >> cut;
    if (hex(cut) != b.cut) return name + "cut";
  }
  if (!in) return name + "malformed line";
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s FIXTURES [--expect SET]\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  const std::string expect = argc >= 4 && std::strcmp(argv[2], "--expect") == 0 ? argv[3] : "";
  const std::vector<std::string> sets = gazecrop::supported_kernel_sets();
  std::string joined;
  for (const auto& s : sets) joined += (joined.empty() ? "" : ", ") + s;
  std::printf("kernel sets supported: %s (default %s)\n", joined.c_str(), gazecrop::kernel_set());
  int failures = 0;
  if (!expect.empty() && std::find(sets.begin(), sets.end(), expect) == sets.end()) {
    std::printf("FAIL: kernel set %s not supported\n", expect.c_str());
    ++failures;
  }

  // 1. kernel self-test
  int ok = 0, skipped = 0, expected_ok = 0;
  for (const auto& [name, result] : gazecrop::kernels::kernel_self_test()) {
    const bool of_expected = !expect.empty() && name.size() > expect.size() &&
                             name.compare(name.size() - expect.size() - 1, std::string::npos, "_" + expect) == 0;
    if (result == "ok") {
      ++ok;
      expected_ok += of_expected;
    } else if (result.rfind("skipped", 0) == 0 && !of_expected) {
      ++skipped;
    } else {
      std::printf("FAIL: kernel %s: %s\n", name.c_str(), result.c_str());
      ++failures;
    }
  }
  std::printf("kernel self-test: %d ok, %d skipped (set not supported here)%s\n", ok, skipped,
              expect.empty() ? "" : (", " + std::to_string(expected_ok) + " of them " + expect).c_str());
  if (!expect.empty() && expected_ok == 0) {
    std::printf("FAIL: no %s kernel in the self-test\n", expect.c_str());
    ++failures;
  }

  // 2. networks
  std::ifstream manifest(dir + "/manifest.txt");
  if (!manifest) {
    std::printf("FAIL: cannot read %s/manifest.txt\n", dir.c_str());
    return 1;
  }
  std::map<std::string, gazecrop::Model> models;
  std::map<std::string, std::map<std::string, double>> worst;  // mode -> set -> max(err / bound)
  std::map<std::string, int> count;
  std::string line;
  while (std::getline(manifest, line)) {
    if (line.empty()) continue;
    Case c;
    std::istringstream in(line);
    in >> c.name >> c.model >> c.kind >> c.h >> c.w >> c.oh >> c.ow >> c.mode >> c.bound;
    try {
      auto it = models.find(c.model);
      if (it == models.end()) it = models.emplace(c.model, gazecrop::Model::load(dir + "/" + c.model)).first;
      const gazecrop::Model& m = it->second;
      const std::size_t n_in = std::size_t(c.h) * c.w * 3;
      const std::vector<std::uint8_t> u8 = c.kind == "u8" ? read_raw<std::uint8_t>(dir + "/" + c.name + ".in", n_in)
                                                          : std::vector<std::uint8_t>();
      const std::vector<float> f32 = c.kind == "f32" ? read_raw<float>(dir + "/" + c.name + ".in", n_in)
                                                     : std::vector<float>();
      const std::vector<float> ref = read_raw<float>(dir + "/" + c.name + ".ref", std::size_t(c.oh) * c.ow);
      std::vector<float> scalar;
      for (const auto& s : sets) {
        gazecrop::set_kernel_set(s);
        const std::vector<float> out = run(m, c, u8, f32, 1);
        const double e = error(c.mode, out, ref);
        double& wst = worst[c.mode][s];
        wst = std::max(wst, e / c.bound);
        if (!(e <= c.bound)) {
          std::printf("FAIL: %s on %s: error %.3g > %.3g (%s)\n", c.name.c_str(), s.c_str(), e, c.bound, c.mode.c_str());
          ++failures;
        }
        if (s == "scalar") {
          scalar = out;
        } else {
          const double d = error(c.mode, out, scalar);
          double& wd = worst[c.mode][s + " vs scalar"];
          wd = std::max(wd, d / c.bound);
          if (!(d <= c.bound)) {
            std::printf("FAIL: %s: %s vs scalar differ by %.3g > %.3g\n", c.name.c_str(), s.c_str(), d, c.bound);
            ++failures;
          }
        }
        if (s == sets.back() && run(m, c, u8, f32, 2) != out) {
          std::printf("FAIL: %s on %s: 2 threads differ from 1\n", c.name.c_str(), s.c_str());
          ++failures;
        }
      }
      ++count[c.mode];
    } catch (const std::exception& e) {
      std::printf("FAIL: %s: %s\n", c.name.c_str(), e.what());
      ++failures;
    }
  }
  for (const auto& [mode, per_set] : worst) {
    std::printf("%-6s %3d cases, worst error / bound:", mode.c_str(), count[mode]);
    for (const auto& [s, v] : per_set) std::printf("  %s %.3g", s.c_str(), v);
    std::printf("\n");
  }
  // 3. crop placements
  std::ifstream placements(dir + "/placement.txt");
  int placed = 0;
  while (placements && std::getline(placements, line)) {
    if (line.empty()) continue;
    try {
      const std::string diff = check_placement(dir, line);
      if (!diff.empty()) {
        std::printf("FAIL: %s differs from gazecrop.crop\n", diff.c_str());
        ++failures;
      }
    } catch (const std::exception& e) {
      std::printf("FAIL: placement: %s\n", e.what());
      ++failures;
    }
    ++placed;
  }
  std::printf("crop placements: %d compared bit for bit with gazecrop.crop\n", placed);
  // 4. int8 trunks: every value's bytes on every kernel set (the int8 kernels that go with it) equal to the
  // exact reference's (gazecrop.int8.run_trunk).
  std::ifstream int8s(dir + "/int8.txt");
  int n8 = 0;
  while (int8s && std::getline(int8s, line)) {
    if (line.empty()) continue;
    std::istringstream in(line);
    int id = 0, h = 0, w = 0;
    std::size_t total = 0;
    in >> id >> h >> w >> total;
    const std::string base = dir + "/int8" + std::to_string(id);
    try {
      const gazecrop::Model m = gazecrop::Model::load(base + ".gzw");
      const std::vector<std::uint8_t> img = read_raw<std::uint8_t>(base + ".in", std::size_t(h) * w * 3);
      const std::vector<std::int8_t> want = read_raw<std::int8_t>(base + ".q", total);
      for (const auto& s : sets) {
        gazecrop::set_kernel_set(s);
        std::vector<std::int8_t> got;
        for (const auto& v : m.int8_values(gazecrop::ImageU8{img.data(), h, w})) got.insert(got.end(), v.begin(), v.end());
        if (got != want) {
          std::printf("FAIL: int8 trunk %d on %s differs from gazecrop.int8.run_trunk\n", id, s.c_str());
          ++failures;
        }
      }
    } catch (const std::exception& e) {
      std::printf("FAIL: int8 trunk %d: %s\n", id, e.what());
      ++failures;
    }
    ++n8;
  }
  std::printf("int8 trunks: %d compared byte for byte with gazecrop.int8.run_trunk on each kernel set\n", n8);
  std::printf("%s\n", failures ? "aarch64_check: FAILED" : "aarch64_check: all passed");
  return failures ? 1 : 0;
}
