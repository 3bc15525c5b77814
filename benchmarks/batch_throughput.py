"""Batch throughput: crops of 1,000 photos, 2 aspects, crops written, on the same cores by

- ``gazecrop -j N``: the crop CLI, one process, N threads (the baseline),
- ``gazecrop-batch --engine ray``: Ray Data on a local cluster of N CPUs (``ray.init(num_cpus=N)``),
- ``gazecrop-batch --engine dask``: a Dask ``LocalCluster`` of N single-threaded worker processes,

each in its own fresh process, timed from the parent. Reported per method: cluster start-up, time to the
first finished image (pipeline start: actors / workers started, the model loaded, the first image done), model
load (``gazecrop.load_model()``, measured on its own), end-to-end wall time, and the steady-state rate: images
finished between the 10 % and the 90 % marks divided by the time between them (start-up and the tail left
out), in images per second per core, and the CPU time per image over the same span: user + system time of
the whole process tree (the CLI's process; the Ray driver with its raylet, GCS, workers and actors; the Dask
client with its scheduler, nannies and workers), read with psutil at the 10 % and 90 % marks. On a shared
machine the wall-clock rate depends on how much of the cores the other jobs leave (and a method with more
processes gets a larger share of them); CPU time per image does not, so the engines' steady-state overhead is
their CPU time per image over the single process's (the single process runs first and last; its two runs are
averaged and both reported).

    python benchmarks/batch_throughput.py --json benchmarks/results/batch.json     # 1,000 photos, 2 cores
    python benchmarks/batch_throughput.py --n 100 --engines single,dask            # a quick look

The photos are the first ``--n`` MIT1003 stimuli in ``../shared/data/eyetracking`` (read in place, never
copied into the repository); outputs go to a temporary folder that is removed afterwards. Needs the ``ray`` and
``dask`` extras for those methods (skipped with a message otherwise). Times only; results are checked in
tests/test_batch_engines.py.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PHOTOS = REPO.parent / "shared" / "data" / "eyetracking" / "mit1003" / "stimuli"
ASPECTS = ("16:9", "1:1")


LO, HI = 0.1, 0.9
"""Steady state: between the completions of these shares of the images."""


def _steady(times: List[float], lo: float = LO, hi: float = HI) -> float:
    """Images per second between the ``lo`` and ``hi`` shares of the completions (sorted times in s)."""
    t = sorted(times)
    i, j = int(lo * (len(t) - 1)), int(hi * (len(t) - 1))
    return (j - i) / max(t[j] - t[i], 1e-9)


def _tree_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and all its descendants: those alive now, and through
    their parents' children times, those that have exited and been waited for (Ray and Dask start and stop
    worker processes), so the sum only grows."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root] + root.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.NoSuchProcess:
            pass
    return total


class _CpuMarks:
    """CPU time of a process tree when the ``LO`` and ``HI`` shares of ``n`` images are done."""

    def __init__(self, pid: int, n: int) -> None:
        self.pid, self.marks = pid, {int(LO * (n - 1)) + 1: None, int(HI * (n - 1)) + 1: None}

    def done(self, k: int) -> None:
        if k in self.marks:
            self.marks[k] = _tree_cpu(self.pid)

    def per_image(self) -> float:
        (a, ca), (b, cb) = sorted(self.marks.items())
        return (cb - ca) / (b - a) if ca is not None and cb is not None else float("nan")


def _single(files: List[str], out: str, cores: int) -> dict:
    """``gazecrop -j cores`` in a subprocess; completion time of each input from its stdout lines."""
    cmd = [sys.executable, "-m", "gazecrop", *files, "--out", out, "-j", str(cores), "--no-progress"]
    for a in ASPECTS:
        cmd += ["-a", a]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cpu = _CpuMarks(proc.pid, len(files))
    done: List[float] = []
    lines = 0
    assert proc.stdout is not None
    for _ in proc.stdout:  # one line per aspect, an input's lines together, flushed per input
        lines += 1
        if lines % len(ASPECTS) == 0:
            done.append(time.perf_counter() - t0)
            cpu.done(len(done))
    err = proc.stderr.read() if proc.stderr else ""
    rc = proc.wait()
    wall = time.perf_counter() - t0
    if rc != 0 or len(done) != len(files):
        raise RuntimeError(f"gazecrop exited {rc} after {len(done)} of {len(files)} inputs: {err[-2000:]}")
    return {"cluster_start_s": 0.0, "first_result_s": min(done), "wall_s": wall, "done": done,
            "cpu_s_per_image": cpu.per_image()}


def _child(engine: str, manifest: str, out: str, cores: int) -> None:
    """Run one engine's job in this (fresh) process and print its timings as JSON on the last line."""
    t0 = time.perf_counter()
    from gazecrop.batch import BatchOptions, read_manifest, run_job

    files = read_manifest(manifest)
    opts = BatchOptions(aspects=ASPECTS)
    address = None
    cluster = None
    if engine == "ray":
        import ray

        ray.init(num_cpus=cores, include_dashboard=False, logging_level="WARNING")
    elif engine == "dask":
        from gazecrop.dask import local_cluster

        cluster = local_cluster(cores)  # what gazecrop-batch --engine dask starts
        address = cluster.scheduler_address
    t_cluster = time.perf_counter() - t0
    done: List[float] = []
    cpu = _CpuMarks(os.getpid(), len(files))

    def progress(n: int, total: int, failed: int) -> None:
        done.append(time.perf_counter() - t0)
        cpu.done(n)

    summary = run_job(files, out, opts, engine=engine, jobs=cores, address=address, root=str(PHOTOS),
                      progress=progress)
    wall = time.perf_counter() - t0
    if engine == "ray":
        import ray

        ray.shutdown()
    if cluster is not None:
        cluster.close()
    if summary.failed or len(done) != len(files):
        raise SystemExit(f"{engine}: {len(summary.failed)} failed, {len(done)} of {len(files)} done")
    print(json.dumps({"cluster_start_s": t_cluster, "first_result_s": min(done), "wall_s": wall, "done": done,
                      "cpu_s_per_image": cpu.per_image()}))


def _engine(engine: str, files: List[str], out: str, cores: int, tmp: str) -> dict:
    manifest = os.path.join(tmp, "manifest.txt")
    with open(manifest, "w") as f:
        f.write("\n".join(files) + "\n")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--child", engine, manifest, out, str(cores)],
                          capture_output=True, text=True)
    spawn = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{engine} run failed ({proc.returncode}): {proc.stderr[-3000:]}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    r["wall_s"] = spawn  # from the parent, like the single process (interpreter start included)
    return r


def _model_load_s() -> float:
    code = ("import time, gazecrop; t = time.perf_counter(); gazecrop.load_model(); "
            "print(time.perf_counter() - t)")
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout)


def _machine() -> dict:
    cpu = "?"
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                text=True).stdout.strip()
    except OSError:
        commit = "?"
    versions = {}
    for mod in ("ray", "dask", "distributed", "pyarrow"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            versions[mod] = None
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": commit, "load_avg_1m": round(os.getloadavg()[0], 2), "versions": versions}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/batch_throughput.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=1000, help="photos (default 1000)")
    p.add_argument("--cores", type=int, default=2, help="cores every method gets (default 2)")
    p.add_argument("--engines", default="single,ray,dask", help="comma-separated subset of single,ray,dask")
    p.add_argument("--json", metavar="PATH", help="write the results here")
    p.add_argument("--child", nargs=4, metavar=("ENGINE", "MANIFEST", "OUT", "CORES"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        _child(a.child[0], a.child[1], a.child[2], int(a.child[3]))
        return 0
    if not PHOTOS.is_dir():
        print(f"batch_throughput: no photos at {PHOTOS}", file=sys.stderr)
        return 2
    files = [str(PHOTOS / f) for f in sorted(os.listdir(PHOTOS))[:a.n]]
    engines = [e for e in a.engines.split(",") if e]
    plan = (["single"] if "single" in engines else []) + [e for e in engines if e != "single"] + \
        (["single"] if "single" in engines and len(engines) > 1 else [])
    results = {"machine": _machine(), "n": len(files), "cores": a.cores, "aspects": list(ASPECTS),
               "model_load_s": _model_load_s(), "runs": []}
    tmp = tempfile.mkdtemp(prefix="gazecrop-batch-bench-")
    try:
        for k, method in enumerate(plan):
            if method in ("ray", "dask"):
                mod = {"ray": "ray", "dask": "distributed"}[method]
                try:
                    __import__(mod)
                except ImportError:
                    print(f"batch_throughput: {mod} not installed, {method} skipped (pip install "
                          f"\".[{method}]\")", file=sys.stderr)
                    continue
            out = os.path.join(tmp, f"out{k}")
            r = _single(files, out, a.cores) if method == "single" else _engine(method, files, out, a.cores, tmp)
            done = r.pop("done")
            r.update(method=method, steady_img_s=_steady(done), steady_img_s_core=_steady(done) / a.cores)
            results["runs"].append(r)
            print(f"{method:7s} cluster {r['cluster_start_s']:5.1f} s  first result {r['first_result_s']:5.1f} s  "
                  f"wall {r['wall_s']:6.1f} s  steady {r['steady_img_s']:6.1f} img/s "
                  f"({r['steady_img_s_core']:.1f} per core)  CPU {r['cpu_s_per_image'] * 1000:.1f} ms/image",
                  flush=True)
            shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    singles = [r for r in results["runs"] if r["method"] == "single"]
    if singles:
        base = sum(r["steady_img_s"] for r in singles) / len(singles)
        cpu = sum(r["cpu_s_per_image"] for r in singles) / len(singles)
        results["single_steady_img_s"], results["single_cpu_s_per_image"] = base, cpu
        for r in results["runs"]:
            r["overhead_wall"] = base / r["steady_img_s"] - 1.0  # steady wall time per image over the single's
            r["overhead"] = r["cpu_s_per_image"] / cpu - 1.0  # steady CPU time per image over the single's
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
