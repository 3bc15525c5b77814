"""A small photo-like corpus for the batch tests (seeded, generated): smooth backgrounds with a bright blob
somewhere, several sizes, JPEG and PNG, one EXIF-rotated file, the same file name in two folders, and bad
files of several kinds. Shared by tests/test_batch.py and tests/test_batch_engines.py."""

import json
import os

import numpy as np
import pytest
from PIL import Image

import gazecrop

ASPECTS = ("16:9", "1:1")
BAD = ("b/garbage.jpg", "b/empty.png", "b/truncated.jpg", "b/text.webp")
"""Files in the corpus that are not usable images (relative to its folder)."""


def _picture(rng, size):
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    base = rng.uniform(40, 120, 3)[None, None, :] + 30 * np.sin(x[..., None] / rng.uniform(8, 30)) \
        * np.cos(y[..., None] / rng.uniform(8, 30))
    cx, cy, r = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h, rng.uniform(0.06, 0.15) * max(w, h)
    blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))[..., None]
    img = base * (1 - blob) + rng.uniform(180, 255, 3)[None, None, :] * blob
    img += rng.normal(0, 6, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def make_corpus(root, n: int = 24, seed: int = 0) -> list:
    """Write ``n`` good images under ``root/a`` and ``root/b`` plus the :data:`BAD` files; returns the good
    files' paths (sorted)."""
    rng = np.random.default_rng(seed)
    sizes = [(320, 240), (240, 320), (400, 225), (300, 300), (257, 193), (180, 360)]
    good = []
    for i in range(n):
        sub = "a" if i % 2 == 0 else "b"
        os.makedirs(os.path.join(root, sub), exist_ok=True)
        im = _picture(rng, sizes[i % len(sizes)])
        if i == 0 or i == 1:  # the same name in both folders
            name = "same.jpg"
        elif i % 5 == 0:
            name = f"p{i:02d}.png"
        else:
            name = f"p{i:02d}.jpg"
        path = os.path.join(root, sub, name)
        if name.endswith(".png"):
            im.save(path)
        elif i == 2:  # stored sideways, displayed upright
            exif = Image.Exif()
            exif[0x0112] = 6
            im.save(path, quality=90, exif=exif.tobytes())
        else:
            im.save(path, quality=90)
        good.append(path)
    b = os.path.join(root, "b")
    with open(os.path.join(b, "garbage.jpg"), "wb") as f:
        f.write(b"\xff\xd8\xff\xe0 not really a jpeg" * 10)
    open(os.path.join(b, "empty.png"), "wb").close()
    with open(good[1], "rb") as f:
        data = f.read()
    with open(os.path.join(b, "truncated.jpg"), "wb") as f:
        f.write(data[: len(data) // 3])
    with open(os.path.join(b, "text.webp"), "w") as f:
        f.write("just text")
    return sorted(good)


def expected(paths, aspects=ASPECTS) -> dict:
    """``{path: [(aspect, (left, top, width, height), (x, y), score), ...]}`` from the single-process API."""
    out = {}
    for p in paths:
        out[p] = [(a, tuple(r.box), tuple(r.salient_point), r.score)
                  for a, r in zip(aspects, gazecrop.crops(p, aspects))]
    return out


def boxes(records) -> dict:
    """The same shape as :func:`expected`, from table records (failures left out)."""
    out = {}
    for r in records:
        if r["error"] is None:
            out.setdefault(r["source"], []).append(
                (r["aspect"], (r["left"], r["top"], r["width"], r["height"]), (r["point_x"], r["point_y"]),
                 r["score"]))
    return out


def read_table(out_dir):
    """All records of a job's table, in file order (part-00000 first)."""
    import pyarrow.parquet as pq

    d = os.path.join(out_dir, "table")
    rows = []
    for f in sorted(os.listdir(d)):
        rows += pq.read_table(os.path.join(d, f)).to_pylist()
    return rows


def snapshot(out_dir) -> dict:
    """Every file under ``out_dir`` but the lock (relative path -> bytes): equal snapshots, equal output."""
    snap = {}
    for root, _dirs, files in os.walk(out_dir):
        for f in files:
            p = os.path.join(root, f)
            rel = os.path.relpath(p, out_dir)
            if rel != ".gazecrop-batch.lock":
                with open(p, "rb") as fh:
                    snap[rel] = fh.read()
    return snap


def temporaries(out_dir) -> list:
    """Temporary files (``.<name>.<random>.tmp``) anywhere under ``out_dir``."""
    return [os.path.join(r, f) for r, _d, fs in os.walk(out_dir) for f in fs if f.endswith(".tmp")]


def same_output(out_a, out_b) -> bool:
    """Two jobs' outputs hold the same crops (byte for byte), job file and table rows; failure messages may be
    worded differently by different readers (a file system's own error text), so only whether a row failed
    is compared."""
    a, b = snapshot(out_a), snapshot(out_b)
    files = lambda s: {k: v for k, v in s.items() if not k.startswith("table")}  # noqa: E731
    rows = lambda d: [{**r, "error": r["error"] is not None} for r in read_table(d)]  # noqa: E731
    return files(a) == files(b) and sorted(k for k in a if k.startswith("table")) == \
        sorted(k for k in b if k.startswith("table")) and rows(out_a) == rows(out_b)


def interrupt_then_resume(engine, sources, out, root, monkeypatch, chunk_size=8, **kw):
    """Stop a job (as Ctrl-C would) right after its second table file is written, check that two are there,
    run it again and check that it skipped exactly those; returns the second run's summary."""
    from gazecrop import batch
    from gazecrop.batch import BatchOptions, run_job

    opts = BatchOptions(aspects=ASPECTS)
    write = batch._write_part
    written = []

    def write_then_stop(*args):
        failed = write(*args)
        written.append(args[0])
        if len(written) == 2:
            raise KeyboardInterrupt
        return failed

    monkeypatch.setattr(batch, "_write_part", write_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run_job(sources, out, opts, engine=engine, chunk_size=chunk_size, root=root, **kw)
    monkeypatch.setattr(batch, "_write_part", write)
    first = [int(f[5:10]) for f in os.listdir(os.path.join(out, "table"))]
    assert len(first) == 2
    progress = os.path.join(out, batch.PROGRESS_DIR)  # images finished in chunks not written yet
    in_parts = {s for i in first for s in sources[i * chunk_size:(i + 1) * chunk_size]}
    kept = set()
    for f in os.listdir(progress) if os.path.isdir(progress) else []:
        with open(os.path.join(progress, f)) as fh:
            kept.add(json.load(fh)["source"])
    s = run_job(sources, out, opts, engine=engine, chunk_size=chunk_size, root=root, **kw)
    assert s.skipped == len(in_parts) + len(kept - in_parts)
    assert s.processed == len(sources) - s.skipped
    assert not os.path.exists(progress) and not os.path.exists(os.path.join(out, batch.LOCK_NAME))
    return s
