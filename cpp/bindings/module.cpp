// gazecrop._core: the pybind11 wrapper of the native core (cpp/include/gazecrop/gazecrop.h). Validates
// arrays, copies shapes into plain structs, allocates the output, releases the GIL, runs, returns.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "gazecrop/gazecrop.h"
#include "kernels/kernels.h"    // benchmark hook only (cpp/src): peak_gflops
#include "kernels/self_test.h"  // test hook only (cpp/src)

namespace py = pybind11;

namespace {

std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t d = 0; d < a.ndim(); ++d) s += (d ? ", " : "") + std::to_string(a.shape(d));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

// RunOptions::precision of a Python value: None -> -1, 'fp32' -> 0, 'int8' -> 1; ValueError otherwise.
int precision_code(const py::object& precision) {
  if (precision.is_none()) return -1;
  const std::string p = py::isinstance<py::str>(precision) ? precision.cast<std::string>() : std::string("?");
  if (p != "fp32" && p != "int8")
    throw py::value_error("precision must be None (the default), 'fp32' or 'int8', got " +
                          std::string(py::repr(precision)));
  return p == "int8" ? 1 : 0;
}

// One image (uint8 (H, W, 3) / float32 (3, H, W)) -> (h, w), or a batch (uint8 (N, H, W, 3) / float32
// (N, 3, H, W)) -> (N, h, w).
py::object run(const gazecrop::Model& model, const py::array& image, int threads, bool fuse, bool head_map,
               const py::object& precision) {
  if (threads < 1 || threads > 256) throw py::value_error("threads must be in 1..256, got " + std::to_string(threads));
  const int prec = precision_code(precision);
  const bool u8 = image.dtype().equal(py::dtype::of<std::uint8_t>());
  const bool f32 = image.dtype().equal(py::dtype::of<float>());
  if (!u8 && !f32)
    throw py::type_error("image dtype must be uint8 (H, W, 3) or float32 (3, H, W) (or a batch of them), got " +
                         std::string(py::str(image.dtype())));
  const bool batch = image.ndim() == 4;
  const py::ssize_t b = batch ? 1 : 0;  // axis offset
  if ((image.ndim() != 3 && image.ndim() != 4) || (u8 && image.shape(2 + b) != 3) || (f32 && image.shape(b) != 3))
    throw py::value_error(std::string("image must be ") +
                          (u8 ? "uint8 (N, H, W, 3) for a batch or uint8 (H, W, 3)" : "float32 (N, 3, H, W) for a batch or float32 (3, H, W)") +
                          ", got shape " + shape_str(image));
  if (!(image.flags() & py::array::c_style))
    throw py::value_error("image must be C-contiguous (use numpy.ascontiguousarray)");
  const py::ssize_t count = batch ? image.shape(0) : 1;
  const py::ssize_t h = u8 ? image.shape(b) : image.shape(1 + b), w = u8 ? image.shape(1 + b) : image.shape(2 + b);
  if (count < 1 || count > 65536) throw py::value_error("batch size " + std::to_string(count) + " not in 1..65536");
  if (h < 1 || w < 1 || h > 32768 || w > 32768)
    throw py::value_error("image size " + std::to_string(h) + "x" + std::to_string(w) + " not supported");
  int oh = 0, ow = 0;
  model.output_size(int(h), int(w), &oh, &ow);  // std::invalid_argument -> ValueError
  py::array_t<float> out = batch ? py::array_t<float>({count, py::ssize_t(oh), py::ssize_t(ow)})
                                 : py::array_t<float>({py::ssize_t(oh), py::ssize_t(ow)});
  float* dst = out.mutable_data();
  const std::size_t n = std::size_t(count) * std::size_t(oh) * std::size_t(ow);
  py::array_t<float> heads;
  float* hdst = nullptr;
  std::size_t hn = 0;
  if (head_map) {
    if (!model.has_head_map()) throw py::value_error("this model has no head map (weights format version 3)");
    int hh = 0, hw = 0;
    model.head_map_size(int(h), int(w), &hh, &hw);
    heads = batch ? py::array_t<float>({count, py::ssize_t(hh), py::ssize_t(hw)})
                  : py::array_t<float>({py::ssize_t(hh), py::ssize_t(hw)});
    hdst = heads.mutable_data();
    hn = std::size_t(count) * std::size_t(hh) * std::size_t(hw);
  }
  gazecrop::RunOptions opt;
  opt.threads = threads;
  opt.fuse = fuse;
  opt.precision = prec;
  if (u8) {
    const gazecrop::ImageBatchU8 img{static_cast<const std::uint8_t*>(image.data()), int(count), int(h), int(w)};
    py::gil_scoped_release release;
    model.run(img, dst, n, hdst, hn, opt);
  } else {
    const gazecrop::ImageBatchF32 img{static_cast<const float*>(image.data()), int(count), int(h), int(w)};
    py::gil_scoped_release release;
    model.run(img, dst, n, hdst, hn, opt);
  }
  if (head_map) return py::make_tuple(out, heads);
  return std::move(out);
}

// uint8 (H, W, C) -> uint8 (out_h, out_w, C), C in 1..4 (gazecrop::resize_bilinear_u8).
py::array_t<std::uint8_t> resize(const py::array& image, int out_h, int out_w) {
  if (!image.dtype().equal(py::dtype::of<std::uint8_t>()))
    throw py::type_error("image dtype must be uint8, got " + std::string(py::str(image.dtype())));
  if (image.ndim() != 3 || image.shape(2) < 1 || image.shape(2) > 4)
    throw py::value_error("image must be uint8 (H, W, C) with C in 1..4, got shape " + shape_str(image));
  if (!(image.flags() & py::array::c_style))
    throw py::value_error("image must be C-contiguous (use numpy.ascontiguousarray)");
  const py::ssize_t h = image.shape(0), w = image.shape(1), c = image.shape(2);
  if (h < 1 || w < 1 || h > 65536 || w > 65536)
    throw py::value_error("image size " + std::to_string(h) + "x" + std::to_string(w) + " not supported");
  if (out_h < 1 || out_w < 1 || out_h > 65536 || out_w > 65536)
    throw py::value_error("output size " + std::to_string(out_h) + "x" + std::to_string(out_w) + " not in 1..65536");
  py::array_t<std::uint8_t> out({py::ssize_t(out_h), py::ssize_t(out_w), c});
  const auto* src = static_cast<const std::uint8_t*>(image.data());
  std::uint8_t* dst = out.mutable_data();
  {
    py::gil_scoped_release release;
    gazecrop::resize_bilinear_u8(src, int(h), int(w), int(c), dst, out_h, out_w);
  }
  return out;
}

// float64 (h, w) density, maximum 1 -> (point, peaks, per box size (ranked boxes, cut)) (gazecrop::place_crops).
py::tuple place(const py::array& density, int width, int height, const std::vector<std::array<int, 2>>& boxes,
                const std::vector<std::array<int, 4>>& heads, std::optional<double> object_yield, int candidates) {
  if (!density.dtype().equal(py::dtype::of<double>()))
    throw py::type_error("density dtype must be float64, got " + std::string(py::str(density.dtype())));
  if (density.ndim() != 2) throw py::value_error("density must be a 2-D (h, w) grid, got shape " + shape_str(density));
  if (!(density.flags() & py::array::c_style))
    throw py::value_error("density must be C-contiguous (use numpy.ascontiguousarray)");
  const py::ssize_t cells_max = py::ssize_t(1) << 22;
  if (density.shape(0) > cells_max || density.shape(1) > cells_max || density.shape(0) * density.shape(1) > cells_max)
    throw py::value_error("density grid " + shape_str(density) + " too large (at most 2^22 cells)");
  // Copied while the GIL is held: an unaligned buffer (numpy allows one) is read byte-wise, and another thread
  // changing the array cannot race the placement.
  std::vector<double> grid(std::size_t(density.shape(0)) * std::size_t(density.shape(1)));
  if (!grid.empty()) std::memcpy(grid.data(), density.data(), grid.size() * sizeof(double));
  gazecrop::PlacementOptions opt;
  opt.object_rule = object_yield.has_value();
  opt.object_yield = object_yield.value_or(0.0);
  opt.candidates = candidates;
  opt.heads = heads;
  gazecrop::Placement pl;
  {
    py::gil_scoped_release release;
    pl = gazecrop::place_crops(grid.data(), int(density.shape(0)), int(density.shape(1)), width, height, boxes,
                               opt);
  }
  py::list peaks, out;
  for (const auto& p : pl.peaks) peaks.append(py::make_tuple(p.x, p.y, p.strength));
  for (const auto& b : pl.boxes) {
    py::list ranked;
    for (const auto& r : b.ranked) ranked.append(py::make_tuple(r.left, r.top, r.score));
    out.append(py::make_tuple(ranked, b.cut));
  }
  return py::make_tuple(py::make_tuple(pl.point_x, pl.point_y), peaks, out);
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "gazecrop native core (see cpp/include/gazecrop/gazecrop.h and docs/native-core.md)";

  PYBIND11_CONSTINIT static py::gil_safe_call_once_and_store<py::object> format_error;
  format_error.call_once_and_store_result(
      [] { return py::module_::import("gazecrop.weights").attr("WeightsFormatError"); });
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const gazecrop::FormatError& e) {
      PyErr_SetString(format_error.get_stored().ptr(), e.what());
    } catch (const gazecrop::IoError& e) {
      PyObject* type = e.errno_value == ENOENT ? PyExc_FileNotFoundError
                       : (e.errno_value == EACCES || e.errno_value == EPERM) ? PyExc_PermissionError
                                                                             : PyExc_OSError;
      PyErr_SetString(type, e.what());
    }
  });

  py::class_<gazecrop::Model>(m, "Model", "A .gzw network loaded and validated by the native core (immutable).")
      .def(py::init([](const std::string& path) { return gazecrop::Model::load(path); }), py::arg("path"),
           "Load and validate a .gzw file. Raises WeightsFormatError (ValueError) or OSError.")
      .def_static(
          "from_bytes",
          [](const py::bytes& data) {
            const std::string s = data;
            return gazecrop::Model::from_memory(s.data(), s.size());
          },
          py::arg("data"), "Load and validate the bytes of a .gzw file.")
      .def("run", &run, py::arg("image").noconvert(), py::arg("threads") = 1, py::arg("fuse") = true,
           py::arg("head_map") = false, py::arg("precision") = py::none(),
           "Run on uint8 (H, W, 3) RGB or float32 (3, H, W) pixels (0..255, C-contiguous); returns the float32 "
           "(h, w) log-density. A batch of same-size images, uint8 (N, H, W, 3) or float32 (N, 3, H, W), runs in "
           "one call and returns (N, h, w). fuse=False runs inverted residuals op by op instead of fused (the "
           "same result bit for bit; tests and benchmarks compare). head_map=True also returns the head map "
           "(format version 3): a tuple (log-density, head-map logits), each (h, w) or (N, h, w); ValueError when "
           "the file has none. precision: None (the file's default; GAZECROP_PRECISION=fp32|int8 overrides it), "
           "'fp32', or 'int8' (the int8 trunk of a calibrated file, format version 3; uint8 images only; "
           "ValueError otherwise). The GIL is released during the run.")
      .def(
          "int8_values",
          [](const gazecrop::Model& self, const py::array& image) {
            if (!image.dtype().equal(py::dtype::of<std::uint8_t>()))
              throw py::type_error("image dtype must be uint8 (H, W, 3), got " + std::string(py::str(image.dtype())));
            if (image.ndim() != 3 || image.shape(2) != 3)
              throw py::value_error("image must be uint8 (H, W, 3), got shape " + shape_str(image));
            if (!(image.flags() & py::array::c_style))
              throw py::value_error("image must be C-contiguous (use numpy.ascontiguousarray)");
            if (image.shape(0) < 1 || image.shape(1) < 1 || image.shape(0) > 32768 || image.shape(1) > 32768)
              throw py::value_error("image size not supported: " + shape_str(image));
            const gazecrop::ImageU8 img{static_cast<const std::uint8_t*>(image.data()), int(image.shape(0)),
                                        int(image.shape(1))};
            std::vector<std::vector<std::int8_t>> vals;
            {
              py::gil_scoped_release release;
              vals = self.int8_values(img);
            }
            py::list out;
            for (const auto& v : vals) {
              py::array_t<std::int8_t> a(py::ssize_t(v.size()));
              std::copy(v.begin(), v.end(), a.mutable_data());
              out.append(a);
            }
            return out;
          },
          py::arg("image").noconvert(),
          "The int8 trunk's values for a uint8 (H, W, 3) image on the current kernel set: value v's int8 (C, h, "
           "w) bytes, flattened, for v = 0 .. int8_ops (tests compare them with gazecrop.int8.run_trunk). "
           "ValueError without a trunk.")
      .def_property_readonly("has_head_map", &gazecrop::Model::has_head_map,
                             "Whether the file has a head map output (format version 3).")
      .def_property_readonly("name", [](const gazecrop::Model& self) { return self.info().name; },
                             "model_name of the header ('' in version-1 files).")
      .def_property_readonly("model_version", [](const gazecrop::Model& self) { return self.info().model_version; },
                             "model_version of the header ('' in version-1 files).")
      .def_property_readonly("format_version", [](const gazecrop::Model& self) { return self.info().format_version; },
                             "The file's format version (1, 2 or 3).")
      .def(
          "runs_int8",
          [](const gazecrop::Model& self, const py::object& precision) {
            gazecrop::RunOptions opt;
            opt.precision = precision_code(precision);
            return self.runs_int8(opt);
          },
          py::arg("precision") = py::none(),
          "Whether run(uint8 image, precision=precision) takes the int8 trunk in this process (the file's "
          "default, GAZECROP_PRECISION and the kernel set applied); ValueError as run().")
      .def_property_readonly("int8_ops", [](const gazecrop::Model& self) { return self.info().int8_ops; },
                             "Ops in the file's int8 trunk (format version 3; 0 = none).")
      .def_property_readonly("default_precision",
                             [](const gazecrop::Model& self) {
                               return std::string(self.info().default_precision == 1 ? "int8" : "fp32");
                             },
                             "The precision the file asks for by default: 'fp32' or 'int8' (format version 3); "
                             "what a run takes here: runs_int8().")
      .def(
          "output_size",
          [](const gazecrop::Model& self, int height, int width) {
            int oh = 0, ow = 0;
            self.output_size(height, width, &oh, &ow);
            return py::make_tuple(oh, ow);
          },
          py::arg("height"), py::arg("width"), "Output grid (h, w) for an input of height x width.")
      .def_property_readonly("num_ops", &gazecrop::Model::num_ops)
      .def("steps", &gazecrop::Model::steps, py::arg("fuse") = true,
           "Labels of the steps run(fuse=fuse) executes: 'op 7 (conv2d)', or 'ops 3-6 (inverted_residual)' for a "
           "fused inverted residual.");

  m.def("kernel_set", [] { return std::string(gazecrop::kernel_set()); },
        "Name of the kernel set in use: 'avx512', 'avx2', 'neon' (AArch64) or 'scalar' (the best this CPU and OS "
        "support; GAZECROP_ISA=scalar|avx2|avx512|neon forces one at import).");
  m.def("int8_kernel_set", [] { return std::string(gazecrop::int8_kernel_set()); },
        "The int8 kernels that go with the kernel set in use: 'avx512vnni' (a file's int8 default runs only on "
        "these: faster than float32), 'avx2' or 'scalar' (exact, slower: int8 only when asked for).");
  m.def(
      "set_kernel_set",
      [](const std::string& name) {
        if (!gazecrop::set_kernel_set(name))
          throw py::value_error("kernel set '" + name + "' is unknown or not supported by this CPU/build");
      },
      py::arg("name"), "Switch the process-wide kernel set (tests); ValueError when unsupported.");
  m.def(
      "supported_kernel_sets", [] { return gazecrop::supported_kernel_sets(); },
      "Kernel sets this build and CPU can run, best last, e.g. ['scalar', 'avx2', 'avx512'] (x86-64) or "
      "['scalar', 'neon'] (AArch64).");
  m.def(
      "_peak_gflops",
      [](const std::string& name) {
        const gazecrop::kernels::KernelTable* t = gazecrop::kernels::find_kernels(name.c_str());
        if (!t) throw py::value_error("kernel set '" + name + "' is unknown or not supported by this CPU/build");
        py::gil_scoped_release release;
        return gazecrop::kernels::peak_gflops(*t);
      },
      py::arg("name"),
      "Benchmark hook: single-thread peak GFLOP/s of a kernel set, measured once per process with its "
      "FMA-throughput loop (kernels.def's *_fma_peak_* kernels); ValueError when unsupported.");
  m.def(
      "_kernel_self_test", [] { return gazecrop::kernels::kernel_self_test(); },
      "Test hook: every kernels.def kernel against a naive loop over tile-edge sizes; [(name, 'ok' | "
      "'skipped: ...' | failure)].");
  m.def("resize", &resize, py::arg("image").noconvert(), py::arg("height"), py::arg("width"),
        "Resize uint8 (H, W, C) pixels (C 1..4, C-contiguous) to uint8 (height, width, C): antialiased bilinear, "
        "bit for bit Pillow 13's Image.resize((width, height), Image.BILINEAR, reducing_gap=None) for 1 and 3 "
        "channels (L, RGB; Pillow premultiplies alpha for LA / RGBA, this does not). The GIL is released during the "
        "resize.");
  m.def("place", &place, py::arg("density").noconvert(), py::arg("width"), py::arg("height"), py::arg("boxes"),
        py::arg("heads"), py::arg("object_yield"), py::arg("candidates"),
        "The 'mass' crop placement of gazecrop.crop for the largest box of each size (gazecrop::place_crops): "
        "density float64 (h, w), C-contiguous, finite, >= 0, maximum exactly 1 (exp(log_density - max)); boxes "
        "[(width, height)], each spanning the image's width or height; heads [(left, top, right, bottom)]; "
        "object_yield a float >= 0 or None (no object rule); candidates >= 1. Returns ((x, y) salient point, "
        "[(x, y, strength)] peaks, [([(left, top, score)] ranked boxes, cut)] per box). ValueError / TypeError "
        "for bad arguments. The GIL is released during the placement.");
  m.def("version", [] { return std::string(gazecrop::version()); }, "Version of the native core.");
}
