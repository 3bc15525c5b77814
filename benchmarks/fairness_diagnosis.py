"""Where a model's gender / race gap on portraits comes from: the fairness audit (``benchmarks/fairness.py``) on
the **tune half** under controlled changes of the portraits, and where the saliency maps put density on faces.

Rows of the audit table (same draws for every row, so rows differ only by the change named):

- ``as is``: the portraits (512 px tiles), the model named by ``--model`` (default: the bundled one);
- ``greyscale``: luminance only (is it colour?);
- ``face only``: everything outside the head box (the Haar face box grown by half its height upward and a little
  down, :func:`gazecrop.crop.head_box`) painted mid-grey (is it the face itself?);
- ``face masked``: the face box painted mid-grey, hair, clothing and background kept (is it what is around it?);
- ``tiles 128 px``: the portraits at 128 px (is it the image size?);
- ``teacher (...)``: with ``--teacher vanilla|ensemble``, the teacher run in PyTorch on the same draws (is the gap
  inherited through distillation?).

Each gives the pooled gender delta (women over men, same race), the pooled race delta (white over Black, same
gender) and the worst |delta| of the six white / Black x female / male comparisons, for both layouts (side by
side, 1:1; stacked, 16:9), for the default strategy and the ``tile mass`` diagnostic.

The face table: for each group (tune half, faces the cascade finds), the mean share of the portrait's density
inside the face box, the share of the face's density in the eyes band and in the mouth band (bands of equal
height; eyes from the eye cascade where it finds both), and where the density peaks (eyes band / mouth band /
rest of the face / outside the face). Human fixations on faces fall mostly on the eyes.

    python benchmarks/fairness_diagnosis.py --model weights/gazecrop-fast.gzw --pairs 300 --md diag.md
    python benchmarks/fairness_diagnosis.py --teacher vanilla --rows as-is --pairs 150

Needs OpenCV (``pip install ".[bench]"``) for the face boxes and, for ``--teacher``, ``".[train]"``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import fairness as F  # noqa: E402

ROWS = ("as-is", "greyscale", "face-only", "face-masked", "tiles-128")
GREY = 128


class TorchSaliency:
    """A PyTorch saliency module as a gazecrop model (``gazecrop.api.SaliencyModel``): ``log_density(rgb)`` resizes
    a uint8 (H, W, 3) image to the module's input size (long side ``long_side``, sides multiples of 32, Pillow
    bilinear: :func:`gazecrop.train.teacher.preprocess`) and returns its float32 (H_in / 8, W_in / 8) log-density."""

    def __init__(self, module, long_side: int, label: str) -> None:
        self.module, self.long_side, self.path = module, long_side, label

    def input_size(self, height: int, width: int):
        from gazecrop.train.teacher import input_size

        wi, hi = input_size(width, height, self.long_side)
        return hi, wi

    def log_density(self, rgb: np.ndarray) -> np.ndarray:
        import torch

        from gazecrop.train.teacher import preprocess

        with torch.no_grad():
            return self.module(preprocess(rgb, self.long_side))[0].numpy().astype(np.float32)


def teacher_model(which: str) -> TorchSaliency:
    """The vanilla teacher member or the whole ensemble (``weights/teacher``) at long side 512."""
    import torch

    from gazecrop.train import teacher as T

    torch.set_num_threads(1)
    mod = T.load_member("vanilla") if which == "vanilla" else T.load_ensemble()
    return TorchSaliency(mod, 512, f"teacher ({which})")


class Portraits:
    """Portrait loader with the rows' changes; face parts found once per portrait (None: no face found)."""

    def __init__(self, photos: Path) -> None:
        self.photos = Path(photos)
        self.base = F.portrait_loader(self.photos)
        self.parts: Dict[str, object] = {}

    def face(self, name: str):
        from gazecrop.train.faces import face_parts

        if name not in self.parts:
            self.parts[name] = face_parts(self.base(name))
        return self.parts[name]

    def loader(self, row: str) -> Callable[[str], np.ndarray]:
        from gazecrop.train.faces import head_box

        if row == "greyscale":
            return F.portrait_loader(self.photos, grayscale=True)
        if row == "tiles-128":
            return F.portrait_loader(self.photos, tile=(128, 128))
        if row not in ("face-only", "face-masked"):
            return self.base
        cache: Dict[str, np.ndarray] = {}

        def load(name: str) -> np.ndarray:
            if name not in cache:
                a = self.base(name).copy()
                p = self.face(name)
                if p is not None:
                    if row == "face-only":
                        l, t, w, h = head_box(p.face, (a.shape[1], a.shape[0]))
                        keep = a[t:t + h, l:l + w].copy()
                        a[:] = GREY
                        a[t:t + h, l:l + w] = keep
                    else:
                        l, t, w, h = p.face
                        a[t:t + h, l:l + w] = GREY
                cache[name] = a
            return cache[name]

        return load


def audit_row(model, load, pairs: int, seed: int, n_boot: int) -> dict:
    """Pooled gender / race delta and worst |delta| per layout and method (default strategy, tile mass) on the
    tune half."""
    res = F.run(F.DEFAULT_FACES, pairs, seed, n_boot, list(F.LAYOUTS), only=("tune",), quiet=True,
                evaluate=F.GazecropEvaluate(model), load=load, main_only=True)
    out = {}
    for lay, halves in res["summary"].items():
        for m, s in halves["tune"].items():
            if m == "centre":
                continue
            pooled = s["pooled"]
            out.setdefault(lay, {})[m] = {
                "gender": pooled["gender (female vs male, same race)"]["delta"],
                "gender_ci_boot": pooled["gender (female vs male, same race)"].get("ci_boot"),
                "race": pooled["race (white vs Black, same gender)"]["delta"],
                "worst": s["worst"]["abs_delta"], "worst_comparison": s["worst"]["comparison"]}
    return out


def face_table(model, portraits: Portraits) -> Dict[str, dict]:
    """Per group of the tune half: face's share of the density, eyes / mouth bands' shares of the face's
    density, and the peak's location shares (module docstring)."""
    import gazecrop
    from gazecrop.crop import box_mass

    groups = F.split_halves(F.load_groups(F.DEFAULT_FACES))["tune"]
    out: Dict[str, dict] = {}
    for g in ("WF", "WM", "BF", "BM"):
        rows: List[List[float]] = []
        for name in groups.get(g, []):
            p = portraits.face(name)
            if p is None:
                continue
            a = portraits.base(name)
            pred = gazecrop.predict(a, model=model)
            size = pred.size
            face = box_mass(pred.log_density, size, p.face)
            eyes = box_mass(pred.log_density, size, p.eyes) / face
            mouth = box_mass(pred.log_density, size, p.mouth) / face
            x, y = pred.crops(["1:1"], strategy="point")[0].salient_point

            def inside(b):
                return b[0] <= x < b[0] + b[2] and b[1] <= y < b[1] + b[3]

            where = [inside(p.eyes), inside(p.mouth) and not inside(p.eyes), inside(p.face)]
            loc = [float(where[0]), float(where[1]), float(where[2] and not (where[0] or where[1])),
                   float(not where[2])]
            rows.append([face, eyes, mouth] + loc)
        if rows:
            m = np.mean(rows, axis=0)
            out[g] = {"n": len(rows), "face_share": m[0], "eyes_of_face": m[1], "mouth_of_face": m[2],
                      "peak_eyes": m[3], "peak_mouth": m[4], "peak_face_other": m[5], "peak_outside": m[6]}
    return out


def val_faces(models: Dict[str, object]) -> dict:
    """Faces in crowd photos: on the val photos where OpenCV's Haar cascade finds a face (full resolution,
    :func:`gazecrop.train.faces.detect_faces`; it has false positives, so a rough check), per model the share of
    photos whose salient point lies in a detected head (:func:`gazecrop.crop.head_box`) and the mean share of
    the density in the heads, beside the share of the people's fixations there. A fairness fix that takes
    density off faces shows here, on photos no training term saw."""
    import gazecrop
    from gazecrop.crop import box_mass
    from gazecrop.datasets import load_datasets, load_image
    from gazecrop.train.faces import detect_faces, head_box

    out: Dict[str, dict] = {"photos": 0, "with_faces": 0, "fixations_in_heads": 0.0,
                            "models": {k: {"peak_in_head": 0.0, "head_share": 0.0} for k in models}}
    fix_share = []
    for s in load_datasets(split="val"):
        out["photos"] += 1
        img = load_image(s)
        heads = [head_box(f, (img.shape[1], img.shape[0])) for f in detect_faces(img)]
        if not heads:
            continue
        out["with_faces"] += 1
        fx, fy = s.fixations_at(img.shape[1], img.shape[0])
        hit = np.zeros(len(fx), bool)
        for l, t, w, h in heads:
            hit |= (fx >= l) & (fx < l + w) & (fy >= t) & (fy < t + h)
        fix_share.append(float(hit.mean()) if len(fx) else 0.0)
        for name, m in models.items():
            pred = gazecrop.predict(img, model=m)
            x, y = pred.crops(["1:1"], strategy="point")[0].salient_point
            r = out["models"][name]
            r["peak_in_head"] += float(any(l <= x < l + w and t <= y < t + h for l, t, w, h in heads))
            r["head_share"] += sum(box_mass(pred.log_density, pred.size, b) for b in heads)
    n = max(out["with_faces"], 1)
    for r in out["models"].values():
        r["peak_in_head"] /= n
        r["head_share"] /= n
    out["fixations_in_heads"] = float(np.mean(fix_share)) if fix_share else 0.0
    return out


def _d(v: Optional[float]) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:+.3f}"


def markdown(result: dict) -> str:
    lines = [f"Fairness diagnosis, tune half ({result['pairs']} pairs per main comparison and layout, seed "
             f"{result['seed']}), model `{result['model']}`. Pooled gender delta (women over men) / pooled race delta "
             "(white over Black) / worst |delta| (six main comparisons).", "",
             "| row | method | side by side (1:1) | stacked (16:9) |", "|---|---|---|---|"]
    for row, r in result["rows"].items():
        for m in r["side"]:
            cells = [f"{_d(r[lay][m]['gender'])} / {_d(r[lay][m]['race'])} / {r[lay][m]['worst']:.3f}"
                     for lay in ("side", "stacked")]
            lines.append(f"| {row} | {m} | " + " | ".join(cells) + " |")
    for label, ft in result.get("faces", {}).items():
        lines += ["", f"Where `{label}` puts density on faces (tune half, portraits alone, largest Haar face):", "",
                  "| group | n | face share | eyes band / face | mouth band / face | peak: eyes | mouth | "
                  "rest of face | outside |", "|---|---|---|---|---|---|---|---|---|"]
        for g, v in ft.items():
            lines.append(f"| {F.group_name(g)} | {v['n']} | {v['face_share']:.3f} | {v['eyes_of_face']:.3f} | "
                         f"{v['mouth_of_face']:.3f} | {v['peak_eyes']:.2f} | {v['peak_mouth']:.2f} | "
                         f"{v['peak_face_other']:.2f} | {v['peak_outside']:.2f} |")
    vf = result.get("val_faces")
    if vf:
        lines += ["", f"Faces in crowd photos (val, {vf['with_faces']} of {vf['photos']} photos with a Haar face; heads "
                  f"hold {vf['fixations_in_heads']:.3f} of the people's fixations):", "",
                  "| model | salient point in a head | density in the heads |", "|---|---|---|"]
        for name, r in vf["models"].items():
            lines.append(f"| {name} | {r['peak_in_head']:.3f} | {r['head_share']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="a .gzw (default: the bundled model)")
    p.add_argument("--teacher", choices=("vanilla", "ensemble"), default=None,
                   help="also audit the teacher in PyTorch (as-is row only; slow: the ensemble is ~2 s a composite)")
    p.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS + ("none",))
    p.add_argument("--pairs", type=int, default=300)
    p.add_argument("--seed", type=int, default=2021)
    p.add_argument("--boot", type=int, default=500)
    p.add_argument("--no-faces", action="store_true", help="skip the face table")
    p.add_argument("--val-faces", nargs="*", metavar="GZW", default=None,
                   help="faces in crowd photos (val) for --model and these .gzw files; alone with --rows none")
    p.add_argument("--md", default=None)
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    if a.pairs < 1:
        p.error(f"--pairs must be >= 1, got {a.pairs}")
    if not (F.DEFAULT_FACES / "labels.csv").is_file():
        print(f"no portraits at {F.DEFAULT_FACES}: skipped")
        return 0
    import gazecrop
    from harness import write_json

    model = gazecrop.load_model(a.model, threads=1)
    portraits = Portraits(F.DEFAULT_FACES / "photos")
    result = {"model": Path(str(model.path)).name if hasattr(model, "path") else str(a.model), "pairs": a.pairs,
              "seed": a.seed, "rows": {}, "faces": {}}
    for row in [r for r in a.rows if r != "none"]:
        print(f"[diagnosis] {row}", file=sys.stderr, flush=True)
        result["rows"][row] = audit_row(model, portraits.loader(row), a.pairs, a.seed, a.boot)
    if not a.no_faces:
        result["faces"][result["model"]] = face_table(model, portraits)
    if a.val_faces is not None:
        print("[diagnosis] faces in val photos", file=sys.stderr, flush=True)
        extra = {Path(g).parent.name + "/" + Path(g).name: gazecrop.load_model(g, threads=1) for g in a.val_faces}
        result["val_faces"] = val_faces({result["model"]: model, **extra})
    if a.teacher:
        t = teacher_model(a.teacher)
        print(f"[diagnosis] {t.path}", file=sys.stderr, flush=True)
        result["rows"][t.path] = audit_row(t, portraits.base, a.pairs, a.seed, a.boot)
        if not a.no_faces:
            result["faces"][t.path] = face_table(t, portraits)
    text = markdown(result)
    print(text)
    if a.md:
        from gazecrop._atomic import atomic_open

        with atomic_open(a.md) as f:
            f.write(text.encode())
    if a.json:
        write_json(a.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
