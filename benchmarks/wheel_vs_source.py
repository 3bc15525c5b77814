"""The binary wheel's native core against the source build's, in one process:
``python benchmarks/wheel_vs_source.py WHEEL [--rounds N] [--json PATH]``.

Loads ``gazecrop._core`` as installed (the source build: ``pip install .``, the system compiler) and the
``_core`` module inside ``WHEEL`` (``tools/build_wheels.sh``: zig c++ for glibc 2.28, static libc++) side by
side in this process (the wheel's module under another package name: the two share no C++ runtime or pybind11
state). Reports both modules' kernel sets (default and supported) and times the shipped model
(``weights/gazecrop-fast.gzw`` at its input size for a 1024x768 photo, 1 thread, each module on its default kernel
set) interleaved round by round (:func:`harness.interleaved`, 5 calls per round each); the ratio is the median
over rounds of the per-round minimum ratios (:func:`harness.paired_ratio`; > 1: the wheel is slower).
Also reports the largest difference between the two modules' log-densities (different compilers may contract
multiply-adds differently). Times only, checks nothing.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

import harness as H  # noqa: E402 - sets the one-thread environment first


def load_wheel_core(wheel: Path, tmp: Path):
    """The ``gazecrop/_core*.so`` of ``wheel`` loaded as module ``gazecrop_wheel._core``."""
    with zipfile.ZipFile(wheel) as z:
        names = [n for n in z.namelist() if n.startswith("gazecrop/_core") and n.endswith(".so")]
        if len(names) != 1:
            raise SystemExit(f"{wheel}: expected one gazecrop/_core*.so, found {names}")
        path = Path(z.extract(names[0], tmp))
    loader = importlib.machinery.ExtensionFileLoader("gazecrop_wheel._core", str(path))
    spec = importlib.util.spec_from_file_location("gazecrop_wheel._core", path, loader=loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/wheel_vs_source.py", description=__doc__.split("\n\n")[0])
    p.add_argument("wheel", type=Path, help="a gazecrop wheel for this platform and Python")
    p.add_argument("--rounds", type=int, default=31)
    p.add_argument("--json", default=None, help="also write the results as JSON here")
    a = p.parse_args(argv)
    source = H.import_gazecrop()._core
    wheel = load_wheel_core(a.wheel, Path(tempfile.mkdtemp(prefix="gazecrop-wheel-")))
    path = H.WEIGHTS / H.PRUNED_FILE
    net = H.read_network(path)
    paths, desc = H.photo_paths(1)
    rgb_full = H.photo_array(paths[0])
    hw = net.input_size(rgb_full.shape[0], rgb_full.shape[1])
    rgb = np.ascontiguousarray(H.resized(rgb_full, hw))
    models = {"source": source.Model(str(path)), "wheel": wheel.Model(str(path))}
    outs = {k: m.run(rgb, threads=1) for k, m in models.items()}
    fns = {k: (lambda m=m: m.run(rgb, threads=1)) for k, m in models.items()}
    stats = H.interleaved(fns, a.rounds, warmup=2, inner={k: 5 for k in fns})
    res = {"machine": H.machine(), "wheel": a.wheel.name, "model": str(path.relative_to(H.ROOT)), "input": list(hw),
           "photo": desc, "rounds": a.rounds,
           "kernel_set": {"source": source.kernel_set(), "wheel": wheel.kernel_set()},
           "supported": {"source": source.supported_kernel_sets(), "wheel": wheel.supported_kernel_sets()},
           "median_ms": {k: s.median * 1e3 for k, s in stats.items()},
           "min_ms": {k: s.min * 1e3 for k, s in stats.items()},
           "ratio_wheel_over_source": H.paired_ratio(stats["wheel"], stats["source"]),
           "max_abs_diff": float(np.max(np.abs(outs["wheel"].astype(np.float64) - outs["source"])))}
    m = res["machine"]
    print(f"wheel vs source build: {m['cpu']}, {m['cores']} cores, {m['date']}, commit {m['commit']}, "
          f"load {m.get('load_avg_1m', '?')}")
    for k in ("source", "wheel"):
        print(f"  {k:<6} kernel set {res['kernel_set'][k]} (supported {', '.join(res['supported'][k])}); "
              f"median {res['median_ms'][k]:.3f} ms, min {res['min_ms'][k]:.3f} ms")
    print(f"  {res['model']} at {hw[0]}x{hw[1]}, 1 thread, {a.rounds} interleaved rounds: wheel / source "
          f"{res['ratio_wheel_over_source']:.3f} (median of per-round min ratios); max |diff| of the "
          f"log-densities {res['max_abs_diff']:.2g}")
    if a.json:
        H.write_json(a.json, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
