// Op 6 concat: channel concatenation of 2 .. 4 values on the same grid.
#include <cstring>

#include "op.h"

namespace gazecrop {
namespace detail {
namespace {

class Concat final : public Op {
 public:
  Shape out_shape(const std::vector<Shape>& in) const override {
    Shape s{0, in[0].h, in[0].w};
    for (const Shape& x : in) {
      if (x.h != s.h || x.w != s.w)
        throw std::invalid_argument(label + ": inputs have different grids " + std::to_string(s.h) + "x" +
                                    std::to_string(s.w) + " and " + std::to_string(x.h) + "x" + std::to_string(x.w));
      s.c += x.c;
    }
    return s;
  }

  void run(const RunContext&, const std::vector<Frame>& in, const Frame& out) const override {
    int c0 = 0;
    for (const Frame& x : in) {
      std::memcpy(out.plane_ptr(c0), x.data, std::size_t(x.c) * out.plane * sizeof(float));
      c0 += x.c;
    }
  }
};

}  // namespace

std::unique_ptr<Op> make_concat(const OpRecord&, const std::vector<TensorRecord>&) {
  return std::make_unique<Concat>();
}

}  // namespace detail
}  // namespace gazecrop
