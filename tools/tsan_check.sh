#!/usr/bin/env bash
# Builds the core's sources with -fsanitize=thread together with tools/tsan_check.cpp and runs it on a
# student-sized random network (a data race or a result differing from the serial run fails).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
src="$root/cpp/src"
flags=(-std=c++17 -O1 -g -fsanitize=thread -I"$root/cpp/include" -I"$src")
isa=() objs=()
case "$(uname -m)" in
  x86_64|amd64)
    # ISA flags per file, as in CMakeLists.txt: the AVX2 and AVX-512 kernels as separate objects
    isa=(-DGAZECROP_HAVE_AVX2_KERNELS=1 -DGAZECROP_HAVE_AVX512_KERNELS=1)
    for f in "$src"/kernels/avx2/*.cpp; do
      g++ "${flags[@]}" -mavx2 -mfma -c "$f" -o "$tmp/$(basename "$f" .cpp).o"; objs+=("$tmp/$(basename "$f" .cpp).o")
    done
    for f in "$src"/kernels/avx512/*.cpp; do
      g++ "${flags[@]}" -mavx512f -mavx2 -mfma -c "$f" -o "$tmp/$(basename "$f" .cpp).o"; objs+=("$tmp/$(basename "$f" .cpp).o")
    done ;;
esac
g++ "${flags[@]}" "${isa[@]}" "$root/tools/tsan_check.cpp" \
  "$src"/model.cpp "$src"/weights_loader.cpp "$src"/thread_pool.cpp "$src"/ops/*.cpp "$src"/kernels/dispatch.cpp \
  "$src"/kernels/scalar/*.cpp "${objs[@]}" -o "$tmp/tsan_check" -lpthread
PYTHONPATH="$root/python${PYTHONPATH:+:$PYTHONPATH}" python3 -c "from gazecrop import weights, _testing; weights.write_weights('$tmp/m.gzw', _testing.student_like(0))"
TSAN_OPTIONS=halt_on_error=1 "$tmp/tsan_check" "$tmp/m.gzw"
