// Kernel self-test: every kernel of kernels.def against a naive double-precision loop, over tile-edge sizes.
// Exposed to the tests as gazecrop._core._kernel_self_test(); not part of the public C++ API.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace gazecrop {
namespace kernels {

// (kernel name, "ok" | "skipped: ..." | first failure with its parameters), one entry per kernels.def line.
std::vector<std::pair<std::string, std::string>> kernel_self_test();

}  // namespace kernels
}  // namespace gazecrop
