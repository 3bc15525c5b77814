#!/usr/bin/env bash
# Builds the core's sources with -fsanitize=thread together with tools/tsan_check.cpp and runs it on a
# student-sized random network (a data race or a result differing from the serial run fails).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
src="$root/cpp/src"
avx2=()
case "$(uname -m)" in x86_64|amd64) avx2=(-DGAZECROP_HAVE_AVX2_KERNELS=1 -mavx2 -mfma "$src"/kernels/avx2/*.cpp) ;; esac
g++ -std=c++17 -O1 -g -fsanitize=thread -I"$root/cpp/include" -I"$src" "$root/tools/tsan_check.cpp" \
  "$src"/model.cpp "$src"/weights_loader.cpp "$src"/thread_pool.cpp "$src"/ops/*.cpp "$src"/kernels/dispatch.cpp \
  "$src"/kernels/scalar/*.cpp "${avx2[@]}" -o "$tmp/tsan_check" -lpthread
PYTHONPATH="$root/python${PYTHONPATH:+:$PYTHONPATH}" python3 -c "from gazecrop import weights, _testing; weights.write_weights('$tmp/m.gzw', _testing.student_like(0))"
TSAN_OPTIONS=halt_on_error=1 "$tmp/tsan_check" "$tmp/m.gzw"
