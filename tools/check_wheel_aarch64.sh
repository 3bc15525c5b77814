#!/usr/bin/env bash
# Imports and runs an aarch64 gazecrop wheel (tools/build_wheels.sh) under qemu-aarch64 user-mode emulation:
#   tools/check_wheel_aarch64.sh gazecrop-...-manylinux_2_28_aarch64.whl
# The interpreter is Debian's arm64 Python 3.11 (its .deb packages fetched with apt-get download from a private
# package list, unpacked into a temporary root, nothing installed on this system); numpy and pillow come as
# aarch64 wheels from PyPI (pip download), unpacked beside the gazecrop wheel. Checks that the NEON kernel set
# is the default and that the bundled model reproduces the golden log-density of tests/data/golden_fast.npz
# (max abs error 1e-3, as tests/test_golden.py) on the NEON and the scalar set, and crops a photo.
# Installs qemu-user with apt-get when missing, saying so.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
whl=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
py=${PYTHON:-python3}
if ! command -v qemu-aarch64 >/dev/null 2>&1; then
  echo "check_wheel_aarch64: installing qemu-user with apt-get (the user-mode emulator)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-user >/dev/null
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/debs" "$tmp/root" "$tmp/site"
: >"$tmp/status"
apt=(-o APT::Architecture=arm64 -o APT::Architectures=arm64 -o APT::Sandbox::User=root -o Dir::State::Lists="$tmp/lists"
     -o Dir::Cache="$tmp/cache" -o Dir::State::status="$tmp/status")
echo "check_wheel_aarch64: fetching Debian's arm64 Python 3.11 with apt-get download (unpacked in $tmp, not installed)"
apt-get "${apt[@]}" update -qq
(cd "$tmp/debs" && apt-get "${apt[@]}" download -qq libc6 libpython3.11-minimal python3.11-minimal \
  libpython3.11-stdlib libexpat1 zlib1g libffi8 libbz2-1.0 liblzma5 libssl3 libcrypt1 libuuid1 libstdc++6 libgcc-s1 \
  2>/dev/null)  # libstdc++ and libgcc_s: numpy's C++ parts
for d in "$tmp"/debs/*.deb; do dpkg-deb -x "$d" "$tmp/root"; done
"$py" -m pip download --quiet --only-binary :all: --platform manylinux_2_28_aarch64 --platform manylinux2014_aarch64 \
  --python-version 3.11 --implementation cp --abi cp311 -d "$tmp/wheels" "numpy>=1.22" "pillow>=9.1"
for w in "$tmp"/wheels/*.whl "$whl"; do "$py" -m zipfile -e "$w" "$tmp/site"; done
cd "$root"
PYTHONPATH="$tmp/site" qemu-aarch64 -L "$tmp/root" "$tmp/root/usr/bin/python3.11" - <<'PY'
import platform
import numpy as np
import gazecrop
import gazecrop._core as core

print(f"check_wheel_aarch64: Python {platform.python_version()} on {platform.machine()} (qemu), gazecrop from "
      f"{gazecrop.__file__}, kernel set {core.kernel_set()} of {core.supported_kernel_sets()}")
assert platform.machine() == "aarch64" and core.kernel_set() == "neon", core.kernel_set()
assert core.supported_kernel_sets() == ["scalar", "neon"], core.supported_kernel_sets()
model = gazecrop.load_model()  # the model bundled in the wheel
with np.load("tests/data/golden_fast.npz") as z:
    image, expect = z["image3"], z["log_density3"]
for ks in ("neon", "scalar"):
    core.set_kernel_set(ks)
    err = float(np.abs(model.run(image) - expect).max())
    print(f"  golden case 3 on {ks}: max abs error {err:.2g}")
    assert err < 1e-3, (ks, err)
core.set_kernel_set("neon")
print("  crop_box(examples/photo.jpg, 16:9) =", gazecrop.crop_box("examples/photo.jpg", 16 / 9))
PY
echo "check_wheel_aarch64: OK"
