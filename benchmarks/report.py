"""Write the benchmark sections of ``benchmarks/RESULTS.md`` and ``benchmarks/quality_vs_time.png``.

    python benchmarks/report.py --gates benchmarks/results/gates.json --quality benchmarks/results/quality.json \
        [--suites benchmarks/results/suites.json] [--thumbor benchmarks/results/thumbor.json] \
        [--batch benchmarks/results/batch.json] [--kernel-sets benchmarks/results/kernel_sets.json] \
        [--crop benchmarks/results/crop_quality.json] [--fairness benchmarks/results/fairness.json] \
        [--soak benchmarks/results/soak_thumbor.json benchmarks/results/soak_library.json ...]

Inputs are what ``bash benchmarks/gates.sh --all`` writes (``gates.py --json``, ``quality.py --json``,
pytest-benchmark's ``--benchmark-json``, ``kernel_sets.py --json``). Only the text between ``<!-- benchmarks:begin -->`` and
``<!-- benchmarks:end -->`` is replaced (and, with ``--fairness``, the text between ``<!-- fairness:begin -->``
and ``<!-- fairness:end -->``: the audit of ``benchmarks/fairness.py --json``); other sections of RESULTS.md
(the native core's) are left alone. With ``--soak``, the text between ``<!-- soak:begin -->`` and
``<!-- soak:end -->`` (``benchmarks/soak.py --json``). Any of ``--gates``, ``--fairness`` and ``--soak`` may
be given alone.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
PLOT = HERE / "quality_vs_time.png"
BEGIN, END = "<!-- benchmarks:begin -->", "<!-- benchmarks:end -->"
FAIR_BEGIN, FAIR_END = "<!-- fairness:begin -->", "<!-- fairness:end -->"
HEADER = """# gazecrop benchmark results

Run every suite, the gates, the quality script and this report with one command (from the repository root,
with the `bench` extra installed: `pip install ".[bench]"`):

```bash
bash benchmarks/gates.sh --all
```

`bash benchmarks/gates.sh --quick` runs only the speed gates (what CI runs); `python -m pytest benchmarks/`
runs the pytest-benchmark suites and the gates. Ratios are measured within one process with the methods
interleaved round by round; absolute times depend on the machine and its load, recorded beside them.

"""


def _ms(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.2f}"


def _gate(g: dict) -> str:
    if g.get("passed") is None:
        return f"skipped ({g.get('skipped', '')})"
    return f"**{'pass' if g['passed'] else 'FAIL'}** (ratio {g['value']:.2f})"


def _row_name(row: dict) -> str:
    return row.get("label") if row.get("label") and row["method"].startswith(("vanilla", "pruned", "unpruned")) \
        else row["method"]


def section_gates(gates: dict) -> str:
    m = gates["machine"]
    out = [f"Machine: **{m['cpu']}**, {m['cores']} cores ({m.get('flags', '')}), native core kernel set "
           f"`{m.get('kernel_set', '?')}`, Python {m['python']}; {m['date']}; commit `{m['commit']}`; "
           f"1-minute load average at the start {m.get('load_avg_1m', '?')} (a shared machine"
           + (": other jobs were running, so medians sit above minima" if (m.get("load_avg_1m") or 0) > 1 else "")
           + f"). Mode: `{gates['mode']}`.", ""]
    out += ["| gate | measured | needs | result |", "|---|---|---|---|"]
    need = {"model_speedup": ">= 10", "implementation": "> 1 (each peer)", "backbone": "> 1 (each peer)",
            "int8": "> 1 (aim 1.5)", "end_to_end": ">= 1"}
    for r in gates["gates"]:
        g = r["gate"]
        if g.get("table"):
            continue
        val = "-" if g.get("value") is None else f"{g['value']:.2f}"
        if g.get("per_peer"):
            val += " (" + ", ".join(f"{k.split(',')[0]} {v:.2f}" for k, v in g["per_peer"].items()) + ")"
        out.append(f"| {g['expr']} | {val} | {need.get(r['suite'], '')} | {_gate(g)} |")
    out.append("")
    out.append("Ratios: the median over interleaving rounds of per-round ratios (per-round minimum of the back-to-back "
               "calls for the model and implementation gates, per-round median over the photos end to end); "
               "see `benchmarks/harness.py`.")
    return "\n".join(out)


def _evaluated_auc(row: dict, quality: Optional[dict]) -> Optional[float]:
    """Pooled val AUC-Judd of a model-speed row from quality.json's ``gazecrop.evaluate`` results."""
    met = ((quality or {}).get("saliency") or {}).get("metrics") or {}
    keys = []
    if row["method"].startswith("vanilla"):
        keys.append("teacher " + row.get("label", "").replace("vanilla teacher ", "").split(" ")[0])
    if row.get("path"):
        keys += [f"gzw {row['path']}"] + [k for k in met if k.startswith("gzw ") and k.endswith(Path(row["path"]).name)]
    for k in keys:
        if k in met and "pooled" in met[k]:
            return float(met[k]["pooled"]["auc"])
    return None


def section_model(r: dict, quality: Optional[dict] = None) -> str:
    out = ["### 1. Model speed-up (PyTorch, 1 thread, the same 1024x768 photo at each model's input size)", ""]
    out += [f"- {n}" for n in r["notes"]]
    out.append("- val AUC-Judd: from the model card, else (marked *) from the `gazecrop.evaluate` run of "
               "section 4 (pooled over the val split)")
    out += ["", "| model | input (h x w) | MMACs | median ms | min ms | speed-up over the teacher | val AUC-Judd |",
            "|---|---|---|---|---|---|---|"]
    for row in sorted(r["rows"], key=lambda x: -x["median_ms"]):
        ev = _evaluated_auc(row, quality)
        auc = "stand-in" if row.get("standin") else (f"{row['auc']:.4f}" if row.get("auc") is not None else
                                                     (f"{ev:.4f}*" if ev is not None else "n/a"))
        inp = "x".join(map(str, row.get("input", ())))
        macs = "-" if row.get("macs") is None else f"{row['macs'] / 1e6:.0f}"
        out.append(f"| {_row_name(row)} | {inp} | {macs} | {_ms(row['median_ms'])} | {_ms(row['min_ms'])} | "
                   f"{row.get('speedup_vs_teacher', 0):.1f}x | {auc} |")
    out += [f"\nSkipped: {k}: {v}" for k, v in r["skipped"].items()]
    return "\n".join(out)


def section_impl(r: dict) -> str:
    out = ["### 2. Implementation speed-up (the pruned student's weights, batch 1)", ""]
    out += [f"- {n}" for n in r["notes"]]
    return "\n".join(out + _impl_table(r, "time / time(core, 1 thread)"))


def _impl_table(r: dict, ratio: str) -> list:
    """Rows of an implementation table (sections 2 and 2b): times, GFLOP/s, the ratio to the gated core."""
    out = ["", f"| implementation | median ms | min ms | GFLOP/s (median) | GFLOP/s (min) | {ratio} |",
           "|---|---|---|---|---|---|"]
    for row in sorted(r["rows"], key=lambda x: x["median_ms"]):
        best = row.get("gflops", 0) * row["median_ms"] / row["min_ms"] if row["min_ms"] else 0
        out.append(f"| {row['method']} | {_ms(row['median_ms'])} | {_ms(row['min_ms'])} | {row.get('gflops', 0):.1f} | "
                   f"{best:.1f} | {row.get('speedup_of_core', 0):.2f} |")
    return out + [f"\nSkipped: {k}: {v}" for k, v in r["skipped"].items()]


def _measured_on(r: dict) -> list:
    """The machine line of a suite measured on its own (``gates.py --update``)."""
    m = r.get("machine")
    return [f"- measured on **{m['cpu']}** ({m.get('flags', '')}), {m['date']}, commit `{m['commit']}`, load average "
            f"{m.get('load_avg_1m', '?')}, kernel set by default `{m.get('kernel_set', '?')}`"] if m else []


def section_backbone(r: dict) -> str:
    out = ["### 2b. Pretrained backbone (EfficientNet-Lite0 cut after stage 5, ImageNet weights, batch 1, 1 thread)", ""]
    out += _measured_on(r) + [f"- {n}" for n in r["notes"]]
    return "\n".join(out + _impl_table(r, "time / time(best core)"))


PEERS = """How each method gets its box (`benchmarks/methods.py`; every one returns the largest box of the aspect,
so the quality table compares placement only):

- gazecrop: `gazecrop.crop_box(path, "16:9", model=gazecrop.load_model(pruned, threads=1))` (Pillow draft-mode
  decode, model run at 192x256, `mass` crop);
- libvips attention: `pyvips.Image.new_from_file(path).smartcrop(w, h, interesting="attention")`, the box from the
  output's offsets; libvips' operation cache off (every call decodes the file), `VIPS_CONCURRENCY=1`;
- OpenCV spectral residual: `cv2.imread(path, cv2.IMREAD_REDUCED_COLOR_4)` (DCT-scaled decode, like gazecrop's
  draft mode), `cv2.saliency.StaticSaliencySpectralResidual.computeSaliency`, the map pooled 4x and cropped by
  gazecrop's `mass` rule; `cv2.setNumThreads(1)`;
- smartcrop.py: Pillow decode, `SmartCrop().crop(image, tw, th, min_scale=1.0)` with a 256-pixel target of the
  aspect (its usual thumbnail use: the analysis runs on a prescaled copy), the box scaled back by smartcrop;
- centre crop: the image size from the file header, the centred box;
- gazecrop (int8 Lite0 candidate) (table only, not gated; not the default): the same call with
  `weights/candidate-lite0/gazecrop-fast-int8.gzw`, whose int8 trunk runs where the CPU has AVX-512 VNNI;
- vanilla teacher + mass crop (tables only, not gated): the teacher member behind gazecrop's model interface, so
  `gazecrop.crop_box` decodes, resizes to 384x512, runs it in PyTorch (1 thread) and places the `mass` crop."""


def section_int8(r: dict) -> str:
    out = ["### 2c. int8 trunk (the Lite0 student calibrated by `python -m gazecrop.train.calibrate`, batch 1, "
           "1 thread)", ""]
    out += _measured_on(r) + [f"- {n}" for n in r["notes"]]
    return "\n".join(out + _impl_table(r, "time / time(core int8)"))


def section_e2e(r: dict) -> str:
    out = ["### 3. End to end (crop box from a 1024x768 JPEG on disk, decode included, 1 thread)", ""]
    out += [f"- {n}" for n in r["notes"]]
    out += ["", PEERS]
    out += ["", "| method | median ms | min ms | speed relative to libvips attention |", "|---|---|---|---|"]
    for row in sorted(r["rows"], key=lambda x: x["median_ms"]):
        sp = row.get("speedup_vs_vips")
        out.append(f"| {row['method']} | {_ms(row['median_ms'])} | {_ms(row['min_ms'])} | "
                   + ("-" if sp is None else f"{sp:.2f}x") + " |")
    out += [f"\nSkipped: {k}: {v}" for k, v in r["skipped"].items()]
    return "\n".join(out)


def section_split(r: dict) -> str:
    """The split of one crop's time (``benchmarks/gates.py``'s ``split`` table, issue 22)."""
    out = ["### 3b. Where one crop's time goes (1 thread; not a gate)", ""]
    out += [f"- {n}" for n in r["notes"]]
    out += ["", "*decode*: Pillow's draft decode at the DCT scale gazecrop asks for (a PNG: the whole image; the "
            "floor of this path); "
            "*prepare*: gazecrop's image step (open, decode, orientation, RGB array); *model*: the native core "
            "on that array (its resize to the model input included); *placement*: the mass crop from the "
            "model's outputs; *crop_box*: the public call end to end.", "",
            "| photos | step | median ms | min ms | libvips / crop_box | crop_box / decode |", "|---|---|---|---|---|---|"]
    for row in r["rows"]:
        sp, od = row.get("speedup_vs_vips"), row.get("over_decode")
        out.append(f"| {row['photos']} | {row['method']} | {_ms(row['median_ms'])} | {_ms(row['min_ms'])} | "
                   + ("-" if sp is None else f"{sp:.2f}x") + " | " + ("-" if od is None else f"{od:.2f}x") + " |")
    out += [f"\nSkipped: {k}: {v}" for k, v in r["skipped"].items()]
    return "\n".join(out)


def section_suites(suites: dict) -> str:
    out = ["### pytest-benchmark suites (`python -m pytest benchmarks/ -k 'not gate'`, each method timed on its own)",
           "", "| group | test | min ms | median ms | mean ms | rounds |", "|---|---|---|---|---|---|"]
    mine = [b for b in suites["benchmarks"] if re.match(r"\d ", b["group"] or "")]  # the native core's: its section
    for b in sorted(mine, key=lambda b: (b["group"], b["stats"]["median"])):
        s = b["stats"]
        out.append(f"| {(b['group'] or '').split(':')[0]} | {b['name'].split('[')[-1].rstrip(']')} | "
                   f"{s['min'] * 1e3:.2f} | {s['median'] * 1e3:.2f} | {s['mean'] * 1e3:.2f} | {s['rounds']} |")
    return "\n".join(out)


def section_quality(q: dict) -> str:
    c = q["crop"]
    aspects = q["aspects"]
    out = ["### 4. Quality beside speed", "",
           f"Mean share of human fixations inside the crop box, {q['n_images']} {q['split']} images (MIT1003, OSIE, "
           f"Scene500 val split), largest box of each aspect; gazecrop model: {q['gazecrop_model']}"
           + (" (**random weights: its quality numbers mean nothing yet**)" if q["gazecrop_standin"] else "")
           + ". `s / box`: mean time per box over these images (not interleaved; the end-to-end table is the "
             "speed reference; the teacher runs once per image for its 4 boxes).", "",
           "| method | " + " | ".join(aspects) + " | mean | s / box |", "|---|" + "---|" * (len(aspects) + 2)]
    mean = {m: sum(d.values()) / len(d) for m, d in c["shares"].items()}
    for m in sorted(c["shares"], key=lambda m: -mean[m]):
        d = c["shares"][m]
        t = c["seconds_per_box"].get(m)
        out.append(f"| {m} | " + " | ".join(f"{d[a]:.3f}" for a in aspects) + f" | {mean[m]:.3f} | "
                   + ("-" if t is None else f"{t * 1e3:.1f} ms") + " |")
    out += [f"\nSkipped: {k}: {v}" for k, v in c["skipped"].items()]
    sal = q.get("saliency")
    out += ["", "Saliency metrics of the students next to the teacher (val split, `python -m gazecrop.evaluate`):", ""]
    if not sal:
        out.append("not run (`--no-metrics`).")
    elif "skipped" in sal:
        out.append(f"not run: {sal['skipped']}.")
    else:
        sys.path.insert(0, str(HERE.parent / "python"))
        from gazecrop.evaluate import format_table

        out += [f"`{' '.join(sal['argv'])}`", "", format_table(sal["metrics"])]
    return "\n".join(out)


def section_thumbor(t: dict) -> str:
    """thumbor's smart crops with the gazecrop detector against gazecrop's own (``thumbor_agreement.py``)."""
    aspects = t["aspects"]
    rules = [k for k in t["iou"]]
    mean = {k: sum(t["share"][k][a] for a in aspects) / len(aspects) for k in t["share"]}
    gain = {k: sum(t["gain"][k][a] for a in aspects) / len(aspects) for k in t["gain"]}
    iou = {k: sum(t["iou"][k][a] for a in aspects) / len(aspects) for k in rules}
    det, own = rules[0], "gazecrop"
    out = ["### 5. In thumbor: the gazecrop detector's crops against gazecrop's own", "",
           f"`{t['command']}` ({t['date']}, commit `{t['commit']}`, {t['machine']}): {t['n_images']} {t['split']} "
           f"images, model `{t['model']}`, largest box of each aspect. gazecrop's own box "
           "(`Prediction.crops`, the default placement) against the box thumbor 7.8 cuts for a `/WxH/smart/` "
           "request from the detector's focal points (reference aspects "
           f"{', '.join(t['reference'])}; thumbor's rule as `gazecrop.thumbor.thumbor_crop` rewrites it, checked "
           "against a running thumbor by `tests/test_thumbor_server.py`), and two other single-centre rules. "
           "Cells: mean share of human fixations inside the box / normalised gain from the means (centre crop "
           "0, oracle 1) / mean IoU with gazecrop's box.", "",
           "| rule | " + " | ".join(aspects) + " | mean |", "|---|" + "---|" * (len(aspects) + 1)]
    for k in [own] + rules:
        cells = [f"{t['share'][k][a]:.3f} / {t['gain'][k][a]:+.2f}" + (f" / {t['iou'][k][a]:.2f}" if k in rules
                                                                      else "") for a in aspects]
        out.append(f"| {'gazecrop (own crop)' if k == own else k} | " + " | ".join(cells)
                   + f" | {mean[k]:.4f} / {gain[k]:+.3f}" + (f" / {iou[k]:.3f}" if k in rules else "") + " |")
    for k in ("centre", "oracle"):
        out.append(f"| {k} box | " + " | ".join(f"{t['share'][k][a]:.3f}" for a in aspects) + f" | {mean[k]:.4f} |")
    close = t["iou_ge_0.9"][det]
    out += ["", f"thumbor with the detector keeps {mean[det]:.4f} of the fixations against gazecrop's own "
                f"{mean[own]:.4f} ({(mean[det] - mean[own]) * 100:+.2f} points; per aspect "
                + ", ".join(f"{a} {(t['share'][det][a] - t['share'][own][a]) * 100:+.1f}" for a in aspects)
                + f"); mean IoU {iou[det]:.3f}, IoU >= 0.9 for "
                + ", ".join(f"{close[a]:.0%} ({a})" for a in aspects)
                + f" of the images. The detector's own work after the model run: median "
                  f"{t['points_ms_median']:.1f} ms per image."]
    photo = t.get("photo")
    if photo:
        pa = list(next(iter(photo.values())))
        out += ["", "On the sample photo `examples/photo.jpg` (512 x 512): each box as (left, top, width, height) and "
                    "whether it keeps the eyes and mouth (`tests/test_crop_photo.py`'s region):", "",
                "| rule | " + " | ".join(pa) + " |", "|---|" + "---|" * len(pa)]
        for k, d in photo.items():
            out.append(f"| {'gazecrop (own crop)' if k == own else k} | " + " | ".join(
                f"{tuple(d[a]['box'])} {'keeps' if d[a]['keeps_eyes_and_mouth'] else '**cuts**'}" for a in pa) + " |")
    return "\n".join(out)


# label offsets (points) and alignment where the default (right of the marker) collides or leaves the axes
LABEL_PLACE = {"OpenCV spectral residual": (-6, -12, "right"), "vanilla teacher (PyTorch) + mass crop": (-6, 6, "right")}


def plot(gates: dict, q: dict, path: Path = PLOT) -> Optional[str]:
    """Quality (mean fixation share over the aspects) against time per image, every cropping method."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no plot"
    e2e = next((r for r in gates["gates"] if r["suite"] == "end_to_end"), {"rows": []})
    t_e2e = {row["method"]: row["median_ms"] for row in e2e["rows"]}
    c = q["crop"]
    fig, ax = plt.subplots(figsize=(8.5, 5.2), dpi=120)
    for m, d in c["shares"].items():
        y = sum(d.values()) / len(d)
        if m.startswith("oracle"):
            ax.axhline(y, ls="--", c="grey", lw=1)
            ax.text(0.02, y, " oracle (upper bound)", va="bottom", color="grey", transform=ax.get_yaxis_transform())
            continue
        if m in t_e2e:
            x, filled = t_e2e[m], True
        elif m.startswith("gazecrop") and "gazecrop" in t_e2e:
            x, filled = t_e2e["gazecrop"], True
        elif m in c["seconds_per_box"]:
            x, filled = c["seconds_per_box"][m] * 1e3, False
        else:
            continue
        colour = "tab:red" if m.startswith("gazecrop") else "tab:blue"
        ax.scatter([x], [y], s=50, c=colour if filled else "white", edgecolors=colour, zorder=3)
        label = m + (" [random-weight stand-in]" if q["gazecrop_standin"] and m in ("gazecrop", "gazecrop (point)")
                     else "")
        dx, dy, ha = LABEL_PLACE.get(m, (6, -11 if m.startswith("gazecrop") else 4, "left"))
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(dx, dy), ha=ha,
                    fontsize=8, color="tab:red" if m.startswith("gazecrop") else "black")
    ax.set_xscale("log")
    ax.set_xlabel("time per image, ms (median, 1024x768 JPEG from disk, decode included, 1 thread)\n"
                  "hollow marker: mean over the val images instead")
    ax.set_ylabel(f"mean fixation share inside the crop\n({q['n_images']} val images, aspects "
                  f"{', '.join(q['aspects'])})")
    title = "gazecrop vs peers: crop quality against time"
    if q["gazecrop_standin"]:
        title += "\n(the pruned student is missing: 'gazecrop' runs a random-weight stand-in of its size)"
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return None


def section_batch(b: dict) -> str:
    """Batch throughput (``benchmarks/batch_throughput.py --json``): the crop CLI against Ray and Dask."""
    m = b["machine"]
    v = m.get("versions", {})
    out = [f"### 6. At scale: `gazecrop -j {b['cores']}` vs Ray vs Dask (`benchmarks/batch_throughput.py`)",
           "",
           f"{b['n']} MIT1003 photos, aspects {', '.join(b['aspects'])}, crops written, {b['cores']} cores for every "
           f"method; **{m['cpu']}**, {m['cores']} cores, Python {m['python']}, Ray {v.get('ray')}, Dask "
           f"{v.get('dask')}, pyarrow {v.get('pyarrow')}; {m['date']}; commit `{m['commit']}`; 1-minute load "
           f"average at the start {m.get('load_avg_1m', '?')} (a shared machine). Model load "
           f"(`gazecrop.load_model()`) {b['model_load_s'] * 1000:.0f} ms.", "",
           "| method | cluster start s | first image done s | wall s | steady img/s | per core | CPU ms / image "
           "| cores busy | steady overhead (CPU) | (wall) |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    names = {"single": f"`gazecrop -j {b['cores']}` (one process)", "ray": "`gazecrop-batch --engine ray`",
             "dask": "`gazecrop-batch --engine dask`"}
    def pct(r: dict, key: str) -> str:
        return "-" if r.get(key) is None or r["method"] == "single" else f"{r[key] * 100:+.0f} %"

    for r in b["runs"]:
        out.append(f"| {names.get(r['method'], r['method'])} | {r['cluster_start_s']:.1f} | "
                   f"{r['first_result_s']:.1f} | {r['wall_s']:.1f} | {r['steady_img_s']:.1f} | "
                   f"{r['steady_img_s_core']:.2f} | {r['cpu_s_per_image'] * 1000:.1f} | "
                   f"{r['cpu_s_per_image'] * r['steady_img_s']:.2f} | {pct(r, 'overhead')} | "
                   f"{pct(r, 'overhead_wall')} |")
    out += ["", "Steady state: between the 10 % and 90 % marks of the images finished (cluster start, worker "
            "start-up, model load and the tail left out). CPU ms / image: user + system time of the method's "
            "whole process tree over that span per image; overhead (CPU): that over the single process's (the "
            "mean of its runs before and after the engines), the measure that does not depend on how much of "
            "the shared cores other jobs left; (wall): the same from the wall-clock rates. Cores busy: CPU time "
            "per image times images per second, how much of the cores a method keeps working (the single "
            "process's two threads share one interpreter lock for the Python parts of each image; the engines "
            "run one process per core). First image done: from the command's start, cluster start included."]
    load = m.get("load_avg_1m") or 0
    if load > 1:
        out += ["", f"Other jobs shared the two cores (load average {load} at the start), so every method got "
                "less than the cores it asked for, and a method with more processes got a larger share of them: "
                "compare the CPU columns, not the wall-clock rates."]
    if b.get("notes"):
        out += [""] + [f"- {n}" for n in b["notes"]]
    return "\n".join(out)


def _op_cell(o: dict) -> str:
    """One kernel set's measurement of one op: time, GFLOP/s and share of the set's peak, GB/s."""
    ms = o["ms"]
    cell = f"{ms:.3f} ms"
    if o["mflop"] > 0 and ms > 0:
        g = o["mflop"] / ms
        cell += f", {g:.1f} GFLOP/s ({100 * g / o['peak']:.0f}%)"
    if ms > 0:
        cell += f", {o['mb'] / ms:.1f} GB/s"
    return cell


def section_kernel_sets(ks: dict) -> str:
    """The native core's kernel sets (``benchmarks/kernel_sets.py``): peaks, the shipped model, per-op profiles,
    fused inverted residuals against op by op."""
    m = ks["machine"]
    sets = list(ks["peaks"])[::-1]  # best first
    out = ["### 7. Kernel sets (native core, 1 thread; `python benchmarks/kernel_sets.py`)", "",
           f"Machine: **{m['cpu']}**, {m['cores']} cores ({m.get('flags', '')}); {m['date']}; commit `{m['commit']}`; "
           f"load average {m.get('load_avg_1m', '?')}; mode `{ks['mode']}`. Default kernel set here: `{ks['default']}` "
           "(the best the CPU and OS support: CPUID + XGETBV).", "",
           "Peak = each set's FMA-throughput loop (12 independent accumulators, best of 40 runs of ~1 ms; CPUID "
           "cannot tell the 512-bit FMA port count). Equal AVX2 and AVX-512 peaks mean 512-bit FMAs issue at half "
           "the rate of 256-bit ones (AMD Zen 4 double-pumps them); two 512-bit ports would show twice the AVX2 peak.",
           "", "| kernel set | peak GFLOP/s (1 thread) |", "|---|---|"]
    out += [f"| `{k}` | {ks['peaks'][k]:.1f} |" for k in sets]
    sh = ks.get("shipped")
    if sh:
        out += ["", f"Shipped model `{sh['path']}` at {sh['input'][0]}x{sh['input'][1]} ({2 * sh['macs'] / 1e9:.3f} GFLOP),"
                f" batch 1, the kernel sets interleaved in one process ({sh['photo']}); speed-up = median over rounds "
                f"of per-round minimum ratios against `{sh['reference']}`:", "",
                "| kernel set | median ms | min ms | GFLOP/s (min) | share of peak (min) | speed-up over "
                f"`{sh['reference']}` |", "|---|---|---|---|---|---|"]
        for r in sh["rows"]:
            out.append(f"| `{r['kernel_set']}` | {r['median_ms']:.3f} | {r['min_ms']:.3f} | {r['gflops']:.1f} | "
                       f"{100 * r['gflops'] / ks['peaks'][r['kernel_set']]:.0f}% | {r['speedup_vs_avx2']:.2f}x |")
    names = {"shipped": f"shipped model `{sh['path']}`" if sh else "shipped model",
             "backbone": ks.get("backbone_label", "backbone")}
    for name, prof in ks.get("profiles", {}).items():
        first = prof[sets[0]]["ops"]
        runs = first[0].get("runs", "?")
        out += ["", f"Per-op profile of the {names.get(name, name)} (`GAZECROP_PROFILE=1`, the kernel sets alternating "
                f"run by run in one process, minimum time over {runs} runs each; FLOP and bytes as the core counts "
                "them: inputs, output and weights once each, so GB/s is a lower bound of the traffic; total = the sum "
                "of the per-op minima):", "",
                "| kernel set | total ms | 1x1 convolutions: GFLOP/s (share of peak) | depthwise: GFLOP/s, GB/s |",
                "|---|---|---|---|"]
        for k in sets:
            sm = prof[k]["summary"]
            tot = next(o for o in prof[k]["ops"] if o["label"] == "total")
            c1 = sm.get("conv1x1")
            dw = sm.get("depthwise")
            out.append(f"| `{k}` | {tot['ms']:.3f} | " +
                       (f"{c1['gflops']:.1f} ({100 * c1['share_of_peak']:.0f}%)" if c1 else "-") + " | " +
                       (f"{dw['gflops']:.1f}, {dw['gbs']:.1f} GB/s" if dw else "-") + " |")
        out += ["", "| op | path | output (c x h x w) | MFLOP | MB | " + " | ".join(f"`{k}`" for k in sets) + " |",
                "|---|---|---|---|---|" + "---|" * len(sets)]
        by = {k: {o["label"]: o for o in prof[k]["ops"]} for k in sets}
        for o in first:
            if o["label"] == "total":
                continue
            cells = [_op_cell(by[k][o["label"]]) if o["label"] in by[k] else "-" for k in sets]
            out.append(f"| {o['label']} | {o['what'] or '-'} | {'x'.join(map(str, o['shape']))} | {o['mflop']:.2f} | "
                       f"{o['mb']:.3f} | " + " | ".join(cells) + " |")
    if ks.get("fusion"):
        out += ["", "Fused inverted residuals (the loader's fusion, `run(fuse=True)`, the default) against op by op "
                "(`run(fuse=False)`), 1 thread, every row pair interleaved in one process; speed-up = median over "
                "rounds of per-round minimum ratios:", "",
                "| network | input | kernel set | fused median / min ms | op by op median / min ms | speed-up |",
                "|---|---|---|---|---|---|"]
        for r in ks["fusion"]:
            out.append(f"| {r['network']} | {r['input'][0]}x{r['input'][1]} | `{r['kernel_set']}` | "
                       f"{r['fused_median_ms']:.3f} / {r['fused_min_ms']:.3f} | "
                       f"{r['op_by_op_median_ms']:.3f} / {r['op_by_op_min_ms']:.3f} | {r['speedup']:.3f}x |")
    out += [f"\nSkipped: {k}: {v}" for k, v in ks.get("skipped", {}).items()]
    return "\n".join(out)


def section_crop(crop: dict) -> str:
    """Summary of ``benchmarks/crop_quality.py --json`` (the full tables are in ``benchmarks/crop_quality.md``)."""
    res, meta = crop["results"], crop["meta"]
    splits = list(res)
    rules = list(next(iter(res.values()))["rules"])
    out = ["### Crop placement", "",
           f"Mean normalised gain over the aspects {', '.join(crop['aspects'])} (centre crop 0, oracle 1), from "
           f"`{meta['command']}` ({meta['model']}, {meta['date']}); every rule and measure in "
           "`benchmarks/crop_quality.md`.", "",
           "| rule | " + " | ".join(f"{sp} ({res[sp]['n_images']} images)" for sp in splits) + " |",
           "|---" * (len(splits) + 1) + "|"]
    for m in rules:
        out.append(f"| {m} | " + " | ".join(f"{res[sp]['rules'][m]['mean_gain']:+.3f}" for sp in splits) + " |")
    sym = res[splits[0]].get("symmetry") or {}
    if sym:
        out += ["", f"Flip symmetry ({splits[0]}): mirrored boxes within 1 % for {sym['within_1pc']:.1%} of "
                    f"crops, {sym['within_1pc_symmetric']:.1%} with `symmetric=True`; map asymmetry (KL) "
                    f"{sym['kl_bits']:.4f} bits."]
    if "placement" in meta:
        p = meta["placement"]
        out += ["", f"Placement from the grid: {p['one_aspect_ms']:.2f} ms for one aspect, "
                    f"{p['four_aspects_ms']:.2f} ms for four (median CPU time)."]
    return "\n".join(out)


def build(gates: dict, quality: Optional[dict], suites: Optional[dict], thumbor: Optional[dict] = None,
          batch: Optional[dict] = None, kernel_sets: Optional[dict] = None, crop: Optional[dict] = None) -> str:
    parts = ["## Benchmarks and speed gates", "",
             "Written by `benchmarks/report.py` from `benchmarks/results/*.json` (raw numbers committed beside "
             "this file); do not edit by hand.", "", section_gates(gates), ""]
    by = {r["suite"]: r for r in gates["gates"]}
    if "model_speedup" in by:
        parts += [section_model(by["model_speedup"], quality), ""]
    for key, fn in (("implementation", section_impl), ("backbone", section_backbone), ("int8", section_int8),
                    ("end_to_end", section_e2e),
                    ("end_to_end_split", section_split)):
        if key in by:
            parts += [fn(by[key]), ""]
    if quality:
        parts += [section_quality(quality), "", f"![quality against time per image]({PLOT.name})", ""]
    if thumbor:
        parts += [section_thumbor(thumbor), ""]
    if batch:
        parts += [section_batch(batch), ""]
    if kernel_sets:
        parts += [section_kernel_sets(kernel_sets), ""]
    if crop:
        parts += [section_crop(crop), ""]
    if suites:
        parts += [section_suites(suites), ""]
    return "\n".join(parts)


def section_fairness(result: dict) -> str:
    """The fairness audit's section (tables from :func:`fairness.markdown`)."""
    sys.path.insert(0, str(HERE))
    import fairness

    return "\n".join(["## Fairness of crops (`benchmarks/fairness.py`)", "",
                      "Written by `benchmarks/report.py` from `benchmarks/results/fairness.json` (every pair drawn "
                      "and its outcome: `fairness_draws.csv.gz`); protocol in the docstring of "
                      "`benchmarks/fairness.py`; do not edit by hand.", "", fairness.markdown(result), ""])


HEADS_BEGIN, HEADS_END = "<!-- head-cuts:begin -->", "<!-- head-cuts:end -->"


def section_head_cuts(run: dict) -> str:
    """The heads-cut section (:func:`head_cuts.markdown` of ``benchmarks/head_cuts.py --json`` output)."""
    sys.path.insert(0, str(HERE))
    import head_cuts

    return head_cuts.markdown(run["results"], run["meta"])


SOAK_BEGIN, SOAK_END = "<!-- soak:begin -->", "<!-- soak:end -->"


def _rss_cells(rss: dict) -> str:
    return (f"{rss['start_mib']:.0f} / {rss['warm_mib']:.0f} / {rss['peak_mib']:.0f} / {rss['end_mib']:.0f} | "
            f"{rss['growth']:+.1%}")


def section_soak(runs: list) -> str:
    """Soak tests under load and faults (``benchmarks/soak.py --json``; one file per interpreter that ran
    scenarios: thumbor's runs in a virtual environment of its own)."""
    out = ["## Under sustained load and faults (`benchmarks/soak.py`)", "",
           "Written by `benchmarks/report.py --soak` from `benchmarks/results/soak*.json`; protocol in the "
           "docstring of `benchmarks/soak.py`; do not edit by hand. RSS in MiB: start (first sample) / after "
           "warm-up (median over the first 10 % after it) / peak / end (median over the last 10 %); growth = "
           "end / after warm-up - 1 (target <= 5 % in full runs; the library's is the RSS it holds at rest, after "
           "`malloc_trim`, at 11 checkpoints: first three against last three). The glibc settings each run used are "
           "given with it (why: the soak's docstring).", ""]
    for run in runs:
        m = run["machine"]
        out += [f"`{run['command']}` ({run['mode']} run): **{m['cpu']}**, {m['cores']} cores, Python {m['python']}, "
                f"kernel set `{m.get('kernel_set', '?')}`; {m['date']}; commit `{m['commit']}`; 1-minute load "
                f"average at the start {m.get('load_avg_1m', '?')} (a shared machine: latencies include waiting for "
                f"a core); `MALLOC_ARENA_MAX={run.get('malloc_arena_max')}`"
                + (f", `MALLOC_MMAP_THRESHOLD_={run['malloc_mmap_threshold']}`" if run.get("malloc_mmap_threshold")
                   else "") + ".", ""]
        for name, r in run["scenarios"].items():
            if "skipped" in r:
                out += [f"**{name}**: skipped ({r['skipped']}).", ""]
                continue
            verdict = "pass" if r["passed"] else "**FAIL**: " + "; ".join(r.get("problems", []))
            if name == "thumbor" and "rss" in r:
                out += [f"### thumbor {r['thumbor']} with the gazecrop detector: {verdict}", "",
                        "| requests | clients | images (odd or broken) | differ from alone | unanswered | p50 ms | "
                        "p99 ms | server RSS MiB | RSS growth | detector failures logged |",
                        "|---|---|---|---|---|---|---|---|---|---|",
                        f"| {r['requests']} ({r['distinct_requests']} distinct) | {r['clients']} | {r['images']} "
                        f"({r['odd_or_broken']}) | {r['mismatches']} | {r['no_answer']} | {r['p50_ms']:.0f} | "
                        f"{r['p99_ms']:.0f} | {_rss_cells(r['rss'])} | {r['detector_failures_logged']} |", "",
                        "Answers by kind of image (HTTP status: count): " + "; ".join(
                            f"{k} " + ", ".join(f"{s}: {c}" for s, c in v.items()) for k, v in r["statuses"].items())
                        + ".", ""]
            elif name == "library" and "rss" in r:
                leak = r["leak_check"]
                held = r["rss"].get("held_mib")
                out += [f"### The library in a thread pool: {verdict}", "",
                        "| calls | threads | distinct inputs (odd or bad) | differ from single-threaded | calls/s | "
                        "RSS MiB | RSS growth | held after `malloc_trim` MiB | fds | OS threads |",
                        "|---|---|---|---|---|---|---|---|---|---|",
                        f"| {r['calls']} | {r['threads']} (model: {r['model_threads']}) | {r['distinct_inputs']} "
                        f"({r['odd_or_broken']}) | {r['mismatches']} | {r['calls_per_s']:.1f} | "
                        f"{_rss_cells(r['rss'])} | "
                        + (f"{held[0]:.0f} -> {held[-1]:.0f} ({r['rss']['held_growth']:+.1%})" if held else "-")
                        + f" | {r['fds'][0]} -> {r['fds'][1]} | {r['os_threads'][0]} -> {r['os_threads'][1]} |", "",
                        "Native leak check (`tools/leak_check.sh`, AddressSanitizer + LeakSanitizer): "
                        + (f"skipped ({leak['skipped']})" if "skipped" in leak else
                           (f"clean: `{leak.get('line', '')}`" if leak["passed"] else
                            f"**failed**: {leak.get('error', '')[:300]}")) + ".", "",
                        "Outcomes by kind of input (ok / error): " + "; ".join(
                            f"{k} {v['ok']} / {v['error']}" for k, v in r["outcomes"].items()) + ".", ""]
            elif name == "batch" and "engines" in r:
                out += [f"### gazecrop-batch under SIGKILL: {verdict}", "",
                        f"{r['images']} images ({r['broken']} broken), 2 aspects, crops written, chunks of "
                        f"{r['chunk_size']}; the uninterrupted local run took {r['reference_seconds']:.0f} s and "
                        f"wrote {r['records']} records and {r['crops']} crops."
                        + ("" if not r.get("versions") else " Versions: " + ", ".join(
                            f"{k} {v}" for k, v in r["versions"].items()) + "."), "",
                        "| engine | result | runs | driver kills | worker killed | processes alive 5 s after a driver's end | "
                        "seconds in all |", "|---|---|---|---|---|---|---|"]
                for e, er in r["engines"].items():
                    if "skipped" in er:
                        out.append(f"| {e} | skipped: {er['skipped']} | | | | | |")
                    else:
                        out.append(f"| {e} | {'identical to the uninterrupted run' if er['passed'] else 'FAIL'} | "
                                   f"{er['runs']} | {er['driver_kills']} | " + (
                                       f"yes, the run went on ({er.get('parts_after_worker_kill')} more table files)"
                                       if er["worker_killed"] else "-") + " | "
                                   f"{er['survivors']} | {er['seconds']:.0f} |")
                out.append("")
            else:
                out += [f"**{name}**: {verdict}", ""]
    return "\n".join(out)


def write_results(block: str, path: Path = RESULTS, begin: str = BEGIN, end: str = END) -> None:
    text = path.read_text() if path.is_file() else HEADER
    if "gates.sh --all" not in text:  # someone else created the file: put the run command first
        text = HEADER + re.sub(r"^# .*\n+", "", text, count=1)
    new = f"{begin}\n{block}\n{end}"
    if begin in text and end in text:
        text = text[:text.index(begin)] + new + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + new + "\n"
    path.write_text(text)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/report.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--gates", default=None)
    p.add_argument("--quality", default=None)
    p.add_argument("--suites", default=None)
    p.add_argument("--thumbor", default=None, help="benchmarks/thumbor_agreement.py --json output")
    p.add_argument("--batch", default=None, help="batch_throughput.py --json output")
    p.add_argument("--kernel-sets", default=str(HERE / "results" / "kernel_sets.json"),
                   help="benchmarks/kernel_sets.py --json output (default: the committed one, when present; its "
                        "section names its own machine and date)")
    p.add_argument("--crop", default=str(HERE / "results" / "crop_quality.json"),
                   help="benchmarks/crop_quality.py --json output (default: the committed one, when present)")
    p.add_argument("--fairness", default=None, help="benchmarks/fairness.py --json output (skipped if absent)")
    p.add_argument("--soak", nargs="+", default=None, metavar="JSON",
                   help="benchmarks/soak.py --json outputs (one per interpreter that ran scenarios)")
    p.add_argument("--head-cuts", default=None, metavar="JSON", help="benchmarks/head_cuts.py --json output")
    p.add_argument("--out", default=str(RESULTS))
    a = p.parse_args(argv)
    if not a.gates and not a.fairness and not a.soak and not a.head_cuts:
        p.error("give --gates, --fairness, --soak and/or --head-cuts")
    if a.head_cuts:
        write_results(section_head_cuts(json.loads(Path(a.head_cuts).read_text())), Path(a.out), HEADS_BEGIN,
                      HEADS_END)
    if a.soak:
        runs = [json.loads(Path(f).read_text()) for f in a.soak if Path(f).is_file()]
        if runs:
            write_results(section_soak(runs), Path(a.out), SOAK_BEGIN, SOAK_END)
        else:
            print(f"no {' '.join(a.soak)}: soak section left as it was", file=sys.stderr)
    if a.fairness and Path(a.fairness).is_file():
        write_results(section_fairness(json.loads(Path(a.fairness).read_text())), Path(a.out), FAIR_BEGIN, FAIR_END)
    elif a.fairness:
        print(f"no {a.fairness}: fairness section left as it was", file=sys.stderr)
    if not a.gates:
        print(f"wrote {a.out}")
        return 0
    gates = json.loads(Path(a.gates).read_text())
    quality = json.loads(Path(a.quality).read_text()) if a.quality and Path(a.quality).is_file() else None
    suites = json.loads(Path(a.suites).read_text()) if a.suites and Path(a.suites).is_file() else None
    thumbor = json.loads(Path(a.thumbor).read_text()) if a.thumbor and Path(a.thumbor).is_file() else None
    batch = json.loads(Path(a.batch).read_text()) if a.batch and Path(a.batch).is_file() else None
    kernel_sets = json.loads(Path(a.kernel_sets).read_text()) if a.kernel_sets and Path(a.kernel_sets).is_file() \
        else None
    crop = json.loads(Path(a.crop).read_text()) if a.crop and Path(a.crop).is_file() else None
    write_results(build(gates, quality, suites, thumbor, batch, kernel_sets, crop), Path(a.out))
    if quality:
        msg = plot(gates, quality)
        if msg:
            print(msg, file=sys.stderr)
    print(f"wrote {a.out}" + ("" if not quality else f" and {PLOT}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
