#!/usr/bin/env bash
# Configure, build and install the gazecrop C++ core to a temporary prefix, build cpp/example against the
# installed package (find_package(gazecrop)), write a random .gzw and a PPM image with the Python writer,
# run the example and check its salient point against the NumPy reference. Used by .ci/run.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
gen=()
command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
jobs=$(nproc 2>/dev/null || echo 2)

cmake -S "$root" -B "$tmp/core" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$tmp/prefix" >/dev/null
cmake --build "$tmp/core" -j "$jobs" >/dev/null
cmake --install "$tmp/core" >/dev/null
cmake -S "$root/cpp/example" -B "$tmp/example" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/example" >/dev/null

PYTHONPATH="$root/python${PYTHONPATH:+:$PYTHONPATH}" python3 - "$tmp" <<'PY'
import sys
import numpy as np
from gazecrop import reference, weights
from gazecrop._testing import student_like

tmp = sys.argv[1]
net = student_like(0)
weights.write_weights(f"{tmp}/model.gzw", net)
rng = np.random.default_rng(0)
h, w = 192, 256
img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
with open(f"{tmp}/image.ppm", "wb") as f:
    f.write(b"P6\n%d %d\n255\n" % (w, h) + img.tobytes())
ld = reference.run(net, img)
i, j = np.unravel_index(int(np.argmax(ld)), ld.shape)
with open(f"{tmp}/expected.txt", "w") as f:
    f.write("salient point x=%.1f y=%.1f\n" % ((j + 0.5) * w / ld.shape[1], (i + 0.5) * h / ld.shape[0]))
np.save(f"{tmp}/reference_ld.npy", ld)
PY

"$tmp/example/gazecrop_example" "$tmp/model.gzw"
out=$("$tmp/example/gazecrop_example" "$tmp/model.gzw" "$tmp/image.ppm")
echo "$out"
expected=$(cat "$tmp/expected.txt")
if ! grep -qxF "$expected" <<<"$out"; then
  echo "C++ example: expected '$expected' (NumPy reference)" >&2
  exit 1
fi
# The crop box: gazecrop.crop's rule on the reference's map; the core's map differs from it by rounding only, so
# the boxes agree, or (a near-tie) the core's box keeps as much of the reference's mass to 1e-4.
PYTHONPATH="$root/python${PYTHONPATH:+:$PYTHONPATH}" GAZECROP_PLACEMENT=python python3 - "$tmp" "$out" <<'PY'
import re
import sys
import numpy as np
from gazecrop.crop import choose_crop, CropBox
from gazecrop.crop import _Density

tmp, out = sys.argv[1], sys.argv[2]
m = re.search(r"crop 16:9 left=(\d+) top=(\d+) width=(\d+) height=(\d+) score=([0-9.]+)", out)
assert m, f"no crop line in the example's output:\n{out}"
got = CropBox(*(int(v) for v in m.groups()[:4]))
ld = np.load(f"{tmp}/reference_ld.npy")
ref = choose_crop(ld, (256, 192), "16:9")
kept = _Density(ld, (256, 192)).box_mass(got)
print(f"reference box {tuple(ref.box)} score {ref.score:.6f}; the core's box {tuple(got)} keeps {kept:.6f}")
assert got == ref.box or kept >= ref.score - 1e-4, "the example's crop disagrees with gazecrop.crop"
PY
echo "C++ example OK: salient point and crop box agree with the NumPy reference"
