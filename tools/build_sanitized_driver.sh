#!/usr/bin/env bash
# Builds a native driver together with the core's sources under a sanitizer (no CMake, no Python):
#   tools/build_sanitized_driver.sh thread|address DRIVER.cpp OUTPUT
# ISA flags per file as in CMakeLists.txt (only the AVX2 / AVX-512 kernels get them). Used by
# tools/tsan_check.sh (ThreadSanitizer) and tools/leak_check.sh (AddressSanitizer + LeakSanitizer).
set -euo pipefail
[ $# -eq 3 ] || { echo "usage: $0 thread|address DRIVER.cpp OUTPUT" >&2; exit 2; }
sanitizer=$1 driver=$2 output=$3
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
src="$root/cpp/src"
flags=(-std=c++17 -O1 -g -fno-omit-frame-pointer "-fsanitize=$sanitizer" -I"$root/cpp/include" -I"$src")
isa=() objs=()
case "$(uname -m)" in
  x86_64|amd64)
    isa=(-DGAZECROP_HAVE_AVX2_KERNELS=1 -DGAZECROP_HAVE_AVX512_KERNELS=1 -DGAZECROP_HAVE_AVX512VNNI_KERNELS=1)
    for f in "$src"/kernels/avx2/*.cpp; do
      g++ "${flags[@]}" -mavx2 -mfma -c "$f" -o "$tmp/$(basename "$f" .cpp).o"; objs+=("$tmp/$(basename "$f" .cpp).o")
    done
    for f in "$src"/kernels/avx512/*.cpp; do
      # the int8 kernels' file needs AVX-512 BW + VL + VNNI as well (GAZECROP_AVX512VNNI_FLAGS in CMakeLists.txt)
      case "$f" in
        *vnni*) extra=(-mavx512bw -mavx512vl -mavx512vnni) ;;
        *) extra=() ;;
      esac
      g++ "${flags[@]}" -mavx512f "${extra[@]}" -mavx2 -mfma -c "$f" -o "$tmp/$(basename "$f" .cpp).o"
      objs+=("$tmp/$(basename "$f" .cpp).o")
    done ;;
esac
g++ "${flags[@]}" "${isa[@]}" "$driver" \
  "$src"/model.cpp "$src"/weights_loader.cpp "$src"/thread_pool.cpp "$src"/int8_trunk.cpp "$src"/image_resize.cpp \
  "$src"/placement.cpp "$src"/ops/*.cpp "$src"/kernels/dispatch.cpp \
  "$src"/kernels/scalar/*.cpp "${objs[@]}" -o "$output" -lpthread
