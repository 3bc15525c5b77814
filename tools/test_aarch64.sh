#!/usr/bin/env bash
# The native core on AArch64 without ARM hardware: cross-compiles the core (CMake, Debian's
# g++-aarch64-linux-gnu, static executables) and runs under qemu-aarch64 user-mode emulation, as a Cortex-A72
# (ARMv8.0-A: Advanced SIMD, no later extensions):
#   1. tools/aarch64_check.cpp on the fixtures of tools/aarch64_fixtures.py (written on this host with NumPy):
#      the kernel self-test (the NEON set must pass it whole), every op and whole random networks on the NEON
#      and scalar sets against the NumPy reference and against each other, the shipped models' golden arrays;
#      then GAZECROP_ISA=scalar must force the scalar set;
#   2. the loader fuzz driver (cpp/fuzz/fuzz_weights.cpp, replay mode) on the seed files, then a fixed-seed set
#      of mutations of each: rejection is fine, a crash fails.
# Installs what is missing (g++-aarch64-linux-gnu, qemu-user) with apt-get, saying so. Needs cmake and a
# Python with NumPy (the gazecrop sources come from this checkout). Usage: tools/test_aarch64.sh [MUTATIONS]
# (mutations per seed file, default 100).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mutations=${1:-100}
py=${PYTHON:-python3}

need=()
command -v aarch64-linux-gnu-g++ >/dev/null 2>&1 || need+=(g++-aarch64-linux-gnu)
command -v qemu-aarch64 >/dev/null 2>&1 || need+=(qemu-user)
if [ "${#need[@]}" -gt 0 ]; then
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  echo "test_aarch64: installing ${need[*]} with apt-get (Debian packages: the AArch64 cross compiler and user-mode emulator)"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
echo "test_aarch64: $(aarch64-linux-gnu-g++ --version | head -1); $(qemu-aarch64 --version | head -1)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
jobs=$(nproc 2>/dev/null || echo 2)
[ "$jobs" -le 2 ] || jobs=2
cmake -S "$root" -B "$tmp/build" -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 \
  -DCMAKE_CXX_COMPILER=aarch64-linux-gnu-g++ -DCMAKE_BUILD_TYPE=Release -DGAZECROP_BUILD_FUZZ=ON \
  -DCMAKE_EXE_LINKER_FLAGS=-static >/dev/null
cmake --build "$tmp/build" -j "$jobs" --target gazecrop_core fuzz_weights >/dev/null
aarch64-linux-gnu-g++ -std=c++17 -O2 -I"$root/cpp/include" -I"$root/cpp/src" "$root/tools/aarch64_check.cpp" \
  "$tmp/build/libgazecrop_core.a" -static -pthread -o "$tmp/aarch64_check"
PYTHONPATH="$root/python${PYTHONPATH:+:$PYTHONPATH}" "$py" "$root/tools/aarch64_fixtures.py" "$tmp/fx"

emu=(qemu-aarch64 -cpu cortex-a72)
"${emu[@]}" "$tmp/aarch64_check" "$tmp/fx" --expect neon
mkdir "$tmp/none" && : >"$tmp/none/manifest.txt"
got=$(GAZECROP_ISA=scalar "${emu[@]}" "$tmp/aarch64_check" "$tmp/none" | head -1)
case "$got" in
  *"(default scalar)") echo "GAZECROP_ISA=scalar: $got" ;;
  *) echo "test_aarch64: GAZECROP_ISA=scalar did not force the scalar set: $got" >&2; exit 1 ;;
esac
"${emu[@]}" "$tmp/build/fuzz_weights" "$tmp"/fx/seeds/*.gzw
# two emulators at a time (2 cores); seed file number i seeds the mutation generator
i=0
for seed in "$tmp"/fx/seeds/*.gzw; do
  i=$((i + 1))
  printf '%s %s\n' "$i" "$seed"
done | xargs -P 2 -L 1 sh -c 'out=$("$0" -cpu cortex-a72 "$1" --mutate "$2" "$4" "$3") && echo "$(basename "$4"): $out"' \
  qemu-aarch64 "$tmp/build/fuzz_weights" "$mutations"
echo "test_aarch64: OK (NEON kernel set under qemu-aarch64 -cpu cortex-a72)"
