// gazecrop embedding example: load a .gzw model, run it on an RGB image buffer, print the salient point
// (the argmax of the log-density) in image pixel coordinates and the 16:9 crop box the default placement
// chooses (gazecrop::place_crops_log: from pixels to box without Python).
//
//   gazecrop_example model.gzw [image.ppm]     (binary P6 PPM, maxval 255; default: a synthetic image)
#include <gazecrop/gazecrop.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

namespace {

bool read_ppm(const std::string& path, std::vector<std::uint8_t>* rgb, int* h, int* w) {
  std::ifstream f(path, std::ios::binary);
  std::string magic;
  int maxval = 0;
  if (!(f >> magic >> *w >> *h >> maxval) || magic != "P6" || maxval != 255 || *w < 1 || *h < 1) return false;
  f.get();  // the single whitespace byte after maxval
  rgb->resize(std::size_t(*h) * std::size_t(*w) * 3);
  return bool(f.read(reinterpret_cast<char*>(rgb->data()), std::streamsize(rgb->size())));
}

// A grey gradient with a bright red disc off-centre.
void synthetic(std::vector<std::uint8_t>* rgb, int h, int w) {
  rgb->resize(std::size_t(h) * w * 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      std::uint8_t* p = &(*rgb)[(std::size_t(y) * w + x) * 3];
      const double d = std::hypot(x - 0.7 * w, y - 0.35 * h);
      const int g = 60 + 40 * x / w;
      p[0] = d < 0.1 * h ? 250 : std::uint8_t(g);
      p[1] = d < 0.1 * h ? 30 : std::uint8_t(g);
      p[2] = d < 0.1 * h ? 30 : std::uint8_t(g);
    }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    std::cerr << "usage: " << argv[0] << " model.gzw [image.ppm]\n";
    return 2;
  }
  try {
    const gazecrop::Model model = gazecrop::Model::load(argv[1]);
    std::vector<std::uint8_t> rgb;
    int h = 192, w = 256;
    if (argc == 3) {
      if (!read_ppm(argv[2], &rgb, &h, &w)) {
        std::cerr << "cannot read " << argv[2] << " as a binary P6 PPM with maxval 255\n";
        return 1;
      }
    } else {
      synthetic(&rgb, h, w);
    }
    gazecrop::RunOptions opt;
    opt.threads = 2;
    const gazecrop::LogDensity d = model.run(gazecrop::ImageU8{rgb.data(), h, w}, opt);
    std::size_t best = 0;
    double mass = 0.0;
    for (std::size_t i = 0; i < d.data.size(); ++i) {
      if (d.data[i] > d.data[best]) best = i;
      mass += std::exp(double(d.data[i]));
    }
    const int gi = int(best / std::size_t(d.width)), gj = int(best % std::size_t(d.width));
    // Grid cell centre -> image pixel coordinates (the grid covers the whole image).
    const double x = (gj + 0.5) * w / d.width, y = (gi + 0.5) * h / d.height;
    std::printf("gazecrop %s (kernels: %s)\n", gazecrop::version(), gazecrop::kernel_set());
    std::printf("image %dx%d -> log-density grid %dx%d (total mass %.6f)\n", w, h, d.width, d.height, mass);
    std::printf("grid argmax row %d col %d\n", gi, gj);
    std::printf("salient point x=%.1f y=%.1f\n", x, y);
    // The crop: the model's grid covers the whole image, so the placement maps it onto the w x h pixels.
    const std::array<int, 2> box = gazecrop::largest_box_size(w, h, 16.0 / 9.0);
    const gazecrop::Placement placed =
        gazecrop::place_crops_log(d.data.data(), d.height, d.width, w, h, {box});
    const gazecrop::PlacedBox& b = placed.boxes[0].ranked[0];
    std::printf("crop 16:9 left=%d top=%d width=%d height=%d score=%.6f\n", b.left, b.top, box[0], box[1],
                b.score);
    return 0;
  } catch (const gazecrop::FormatError& e) {
    std::cerr << "invalid model file: " << e.what() << "\n";
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
  }
  return 1;
}
