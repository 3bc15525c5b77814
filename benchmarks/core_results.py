#!/usr/bin/env python3
"""Runs benchmarks/test_core_speed.py (and, if built, the kernel micro-benchmark) and prints the markdown
table for the "Native core" section of benchmarks/RESULTS.md.

    python benchmarks/core_results.py [--bench-kernels build/bench/bench_kernels]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench-kernels", default=None, help="path of the bench_kernels executable")
    args = ap.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "bench.json")
        subprocess.run([sys.executable, "-m", "pytest", os.path.join(here, "test_core_speed.py"), "-q",
                        "-p", "no:cacheprovider", f"--benchmark-json={out}"], check=True, stdout=subprocess.DEVNULL)
        with open(out) as f:
            data = json.load(f)
    import gazecrop._core as core

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=here).stdout.strip()
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    print(f"CPU: {cpu_model()} ({os.cpu_count()} cores{', AVX2+FMA' if ' avx2' in flags else ''}"
          f"{', AVX-512F' if ' avx512f' in flags else ''}); "
          f"date {datetime.date.today()}; commit {commit}; core kernel set `{core.kernel_set()}`; "
          f"load average {os.getloadavg()[0]:.1f} while measuring.\n")
    rows = {b["name"]: b for b in data["benchmarks"]}
    print("| `student_like(0)`, (3, 192, 256) float32, batch 1 | threads | median ms | min ms | GFLOP/s (median) | GFLOP/s (min) |")
    print("|---|---|---|---|---|---|")
    labels = [("test_core[avx512-1]", "C++ core, AVX-512F", 1), ("test_core[avx512-2]", "C++ core, AVX-512F", 2),
              ("test_core[avx2-1]", "C++ core, AVX2+FMA", 1), ("test_core[avx2-2]", "C++ core, AVX2+FMA", 2),
              ("test_core[scalar-1]", "C++ core, scalar", 1), ("test_pytorch", "PyTorch CPU (same weights)", 1),
              ("test_numpy_reference", "NumPy reference", 1)]
    for key, label, th in labels:
        b = rows.get(key)
        if not b:
            continue
        s, e = b["stats"], b["extra_info"]
        print(f"| {label} | {th} | {s['median'] * 1e3:.2f} | {s['min'] * 1e3:.2f} | {e['gflops_median']:.1f} | "
              f"{e['gflops_min']:.1f} |")
    print("\n| layer (conv + 1x1 head, student shapes) | kernel set | median ms | GFLOP/s (median) | GFLOP/s (min) |")
    print("|---|---|---|---|---|")
    for name, b in rows.items():
        if name.startswith("test_layer["):
            layer, isa = name[len("test_layer["):-1].rsplit("-", 1)
            s, e = b["stats"], b["extra_info"]
            print(f"| {layer} | {isa} | {s['median'] * 1e3:.3f} | {e['gflops_median']:.1f} | {e['gflops_min']:.1f} |")
    if args.bench_kernels:
        print("\nKernel micro-benchmark (`bench_kernels`, one thread, median; share of each kernel set's peak as "
              "measured by its FMA-throughput loop):\n")
        print(subprocess.run([args.bench_kernels], capture_output=True, text=True, check=True).stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
