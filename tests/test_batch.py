"""Batch crops without an engine (gazecrop.batch): the engine-neutral unit of work gives the single-process
API's boxes, one failure record per bad input and never raises; the local engine and ``gazecrop-batch``
write the Parquet table and crops atomically, resume after an interruption or a SIGKILL with identical output,
and re-do everything when the model or an option changes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

import gazecrop
from gazecrop import EncodedImage
from gazecrop import batch
from gazecrop.batch import BatchOptions, crop_records, plan_names, run_job

from _batch_helpers import (ASPECTS, BAD, boxes, expected, interrupt_then_resume, make_corpus, read_table, snapshot,
                            temporaries)

OPTS = BatchOptions(aspects=ASPECTS)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    good = make_corpus(str(root), n=12)
    return str(root), good, expected(good)


# ------------------------------------------------------------------------------ the engine-neutral function

def test_records_match_the_api_for_paths_and_bytes(corpus, tmp_path):
    root, good, want = corpus
    recs = crop_records(good, OPTS, crops_dir=str(tmp_path / "crops"))
    assert [r["source"] for r in recs] == [p for p in good for _ in ASPECTS]
    assert boxes(recs) == want
    encoded = []
    for p in good:
        with open(p, "rb") as f:
            encoded.append(EncodedImage(f.read(), p))
    recs_b = crop_records(encoded, BatchOptions(aspects=ASPECTS, write_crops=False))
    assert boxes(recs_b) == want  # the same bytes give the same boxes as the file (JPEG draft mode, EXIF)
    r = recs[0]
    assert set(r) == set(batch.COLUMN_NAMES) and r["error"] is None and r["schema_version"] == batch.SCHEMA_VERSION
    assert r["point_x_norm"] == pytest.approx((r["point_x"] + 0.5) / r["image_width"])
    assert 0 < r["point_y_norm"] < 1 and 0 < r["score"] <= 1
    assert (r["model_name"], r["model_version"]) == batch.model_info(None)
    assert r["crop_path"] == "crops/" + os.path.basename(os.path.splitext(good[0])[0]) + "_16x9.jpg"
    with gazecrop.crop(good[0], "16:9") as want_img, Image.open(tmp_path / r["crop_path"]) as got:
        assert got.size == want_img.size
    rotated = [x for x in recs if x["source"].endswith("p02.jpg")][0]
    assert (rotated["image_width"], rotated["image_height"]) == (225, 400)  # stored 400x225, EXIF 6


def test_one_failure_record_per_bad_input_and_no_exception(corpus, tmp_path):
    root, good, _ = corpus
    bad = [os.path.join(root, b) for b in BAD] + [os.path.join(root, "missing.jpg"), root]
    recs = crop_records([good[0]] + bad + [good[1]], OPTS, crops_dir=str(tmp_path / "c"))
    failures = [r for r in recs if r["error"] is not None]
    assert [r["source"] for r in failures] == bad
    assert all(r["error"].startswith(r["source"]) for r in failures)
    assert "No such file or directory" in failures[-2]["error"] and "is a folder" in failures[-1]["error"]
    assert not any("_Failure" in r["error"] for r in failures)  # the reason, not the exception type
    assert all(r["aspect"] is None and r["left"] is None and r["model_name"] for r in failures)
    assert len(recs) == 2 * len(ASPECTS) + len(bad)
    enc = crop_records([EncodedImage(b"GIF89a nope", "mem://x.gif")], OPTS, crops_dir=str(tmp_path / "c"))
    assert len(enc) == 1 and enc[0]["error"].startswith("mem://x.gif: not a readable image file")


def test_crop_names_follow_relative_paths(corpus, tmp_path):
    root, good, _ = corpus
    same = [p for p in good if p.endswith("same.jpg")]
    rel = plan_names(same)
    assert rel == ["a/same.jpg", "b/same.jpg"]
    recs = crop_records(same, OPTS, crops_dir=str(tmp_path / "crops"), relnames=rel)
    paths = [r["crop_path"] for r in recs]
    assert paths == ["crops/a/same_16x9.jpg", "crops/a/same_1x1.jpg", "crops/b/same_16x9.jpg",
                     "crops/b/same_1x1.jpg"]
    assert all((tmp_path / p).is_file() for p in paths)


def test_plan_names_for_uris_roots_and_single_files(tmp_path):
    assert plan_names(["s3://bkt/x/a/1.jpg", "s3://bkt/x/b/1.jpg"]) == ["a/1.jpg", "b/1.jpg"]
    assert plan_names(["gs://b/p/q.jpg"]) == ["q.jpg"]
    assert plan_names(["s3://bkt/x/a/1.jpg"], root="s3://bkt") == ["x/a/1.jpg"]
    assert plan_names([str(tmp_path / "d" / "e.jpg")], root=str(tmp_path)) == ["d/e.jpg"]
    with pytest.raises(ValueError, match="not under --root"):
        plan_names([str(tmp_path / "e.jpg")], root=str(tmp_path / "d"))


@pytest.mark.parametrize("kw, err", [
    (dict(aspects=()), "at least one"), (dict(aspects=("16:9", "16/9")), "repeat"), (dict(aspects=("0:1",)), None),
    (dict(strategy="nope"), "unknown strategy"), (dict(name="{stem}{ext}", aspects=("1:1", "2:1")), "aspect"),
    (dict(name="a/{stem}{ext}"), "plain file name"), (dict(sizes=("0x9",)), "--size"),
    (dict(sizes=("9",)), "--size"), (dict(aspects=("16:9",), sizes=("16x9",)), "repeat"),
    (dict(aspects=(), sizes=()), "at least one"), (dict(sizes=("8x8", "9x9"), name="{stem}{ext}"), "size"),
])
def test_bad_options_are_refused(kw, err):
    with pytest.raises(ValueError, match=err):
        BatchOptions(**kw)
    with pytest.raises(TypeError):
        BatchOptions(aspects="16:9")
    with pytest.raises(TypeError):
        BatchOptions(sizes="320x180")


def test_resume_key_covers_model_aspects_and_options(tmp_path):
    k = batch.job_key(OPTS)
    assert k == batch.job_key(BatchOptions(aspects=ASPECTS))
    others = [BatchOptions(aspects=("16:9",)), BatchOptions(aspects=ASPECTS, strategy="centre"),
              BatchOptions(aspects=ASPECTS, name="{aspect}-{stem}{ext}"), BatchOptions(aspects=ASPECTS,
                                                                                       write_crops=False),
              BatchOptions(aspects=ASPECTS, sizes=("320x180",)), BatchOptions(aspects=ASPECTS, sizes=("320x181",)),
              BatchOptions(aspects=ASPECTS, sizes=("320x180", "64x64")),
              BatchOptions(aspects=ASPECTS, sizes=("320x180",), upscale=False)]
    copy = tmp_path / "other.gzw"
    copy.write_bytes(Path(gazecrop.model.default_model_path()).read_bytes())
    assert batch.model_info(str(copy))[1] == batch.model_info(None)[1]  # same bytes, same version
    assert len({k} | {batch.job_key(o) for o in others}) == 1 + len(others)


# ------------------------------------------------------------------------------------------- thumbnails

SIZES = ("320x180", "64x64", "1x40", "40x1")


def test_thumbnail_sizes_are_exact_and_carried_by_the_records(corpus, tmp_path):
    import numpy as np

    _, good, _ = corpus
    paths = good[:3]
    opts = BatchOptions(aspects=("16:9",), sizes=SIZES, format="png", name="{stem}_{size}{ext}")
    recs = crop_records(paths, opts, crops_dir=str(tmp_path / "crops"))
    assert len(recs) == len(paths) * (1 + len(SIZES)) and all(r["error"] is None for r in recs)
    ratios = [16 / 9] + [int(w) / int(h) for w, h in (s.split("x") for s in SIZES)]
    for i, p in enumerate(paths):
        mine = recs[i * (1 + len(SIZES)):(i + 1) * (1 + len(SIZES))]
        assert [r["aspect"] for r in mine] == ["16:9", "320:180", "64:64", "1:40", "40:1"]
        assert [(r["size_width"], r["size_height"]) for r in mine] == [(None, None), (320, 180), (64, 64), (1, 40),
                                                                      (40, 1)]
        want = gazecrop.crops(p, ratios)  # the boxes of the single-process API, aspect by aspect
        assert [(r["left"], r["top"], r["width"], r["height"]) for r in mine] == [tuple(w.box) for w in want]
        stem = os.path.splitext(os.path.basename(p))[0]
        assert [r["crop_path"] for r in mine] == [f"crops/{stem}_{t}.png" for t in ("16x9",) + SIZES]
        for r, size in zip(mine[1:], SIZES):
            w, h = (int(v) for v in size.split("x"))
            with Image.open(tmp_path / r["crop_path"]) as got:
                assert got.size == (w, h)  # exactly the size asked for, however extreme
                assert np.array_equal(np.asarray(got.convert("RGB")),
                                      np.asarray(gazecrop.thumbnail(p, (w, h)).convert("RGB")))
        with Image.open(tmp_path / mine[0]["crop_path"]) as got:
            assert got.size == (mine[0]["width"], mine[0]["height"])  # --aspect crops stay at the box's size


def test_no_upscale_keeps_small_boxes_at_their_size(corpus, tmp_path):
    _, good, _ = corpus
    p = good[0]
    box = gazecrop.crops(p, [1.0])[0].box
    big = f"{3 * box.width}x{3 * box.height}"
    for upscale, want in ((True, (3 * box.width, 3 * box.height)), (False, (box.width, box.height))):
        crops = tmp_path / f"crops-{upscale}"
        (r,) = crop_records([p], BatchOptions(sizes=(big,), upscale=upscale), crops_dir=str(crops))
        assert (r["size_width"], r["size_height"]) == (3 * box.width, 3 * box.height)
        with Image.open(tmp_path / r["crop_path"].replace("crops/", f"crops-{upscale}/", 1)) as got:
            assert got.size == want


def test_sizes_are_part_of_the_resume_key(corpus, tmp_path):
    _, good, _ = corpus
    out = tmp_path / "out"
    first = BatchOptions(sizes=("96x54",))
    assert run_job(good[:3], str(out), first).processed == 3
    assert {(r["aspect"], r["size_width"]) for r in read_table(out)} == {("96:54", 96)}
    again = run_job(good[:3], str(out), first)
    assert (again.processed, again.skipped) == (0, 3)
    for opts in (BatchOptions(sizes=("96x55",)), BatchOptions(sizes=("96x55",), upscale=False),
                 BatchOptions(sizes=("96x55", "20x20"))):
        assert batch.job_key(opts) != batch.job_key(first)
        s = run_job(good[:3], str(out), opts)
        assert (s.processed, s.skipped) == (3, 0)  # a changed size re-does everything
        rows = read_table(out)
        assert [(r["size_width"], r["size_height"]) for r in rows] == [
            (int(w), int(h)) for _ in good[:3] for w, h in (v.split("x") for v in opts.sizes)]
        for r in rows:
            with Image.open(out / r["crop_path"]) as got:
                assert got.size == (r["size_width"], r["size_height"]) or not opts.upscale


# ------------------------------------------------------------------------------------- the local engine

def test_local_job_table_crops_and_resume(corpus, tmp_path):
    root, good, want = corpus
    out = tmp_path / "out"
    sources, r, _ = batch.expand_inputs([root])
    assert r == root and len(sources) == len(good) + len(BAD)
    s1 = run_job(sources, str(out), OPTS, jobs=2, chunk_size=4, root=r)
    assert (s1.inputs, s1.processed, s1.skipped) == (len(sources), len(sources), 0)
    assert sorted(os.path.relpath(f[0], root) for f in s1.failed) == sorted(BAD)
    rows = read_table(out)
    assert boxes(rows) == want and sum(r["error"] is not None for r in rows) == len(BAD)
    assert [r["source"] for r in rows if r["aspect"] != "1:1"] == sources  # input order
    n_parts = -(-len(sources) // 4)
    assert sorted(os.listdir(out / "table")) == [f"part-{i:05d}.parquet" for i in range(n_parts)]
    import pyarrow.parquet as pq

    meta = pq.read_metadata(out / "table" / "part-00000.parquet").metadata
    assert meta[b"gazecrop.schema_version"] == str(batch.SCHEMA_VERSION).encode()
    assert meta[b"gazecrop.job_key"] == batch.job_key(OPTS).encode()
    job = json.loads((out / "job.json").read_text())
    assert job["schema_version"] == batch.SCHEMA_VERSION and job["options"]["aspects"] == list(ASPECTS)
    before = snapshot(out)
    s2 = run_job(sources, str(out), OPTS, jobs=2, chunk_size=4, root=r)  # finished: everything skipped
    assert (s2.processed, s2.skipped, len(s2.failed)) == (0, len(sources), len(BAD))
    assert snapshot(out) == before
    os.unlink(out / rows[0]["crop_path"])  # a missing crop re-does its chunk only
    s3 = run_job(sources, str(out), OPTS, jobs=1, chunk_size=4, root=r)
    assert (s3.processed, s3.skipped) == (4, len(sources) - 4) and snapshot(out) == before
    s4 = run_job(sources, str(out), BatchOptions(aspects=("1:1",)), jobs=2, chunk_size=4, root=r)
    assert s4.processed == len(sources)  # a new option re-does everything
    assert {r["aspect"] for r in read_table(out)} == {"1:1", None}
    s5 = run_job(sources[:5], str(out), BatchOptions(aspects=("1:1",)), chunk_size=4, root=r, overwrite=True)
    assert s5.processed == 5 and sorted(os.listdir(out / "table")) == ["part-00000.parquet", "part-00001.parquet"]


def test_interrupted_job_resumes_to_identical_output(corpus, tmp_path, monkeypatch):
    root, _, _ = corpus
    sources, r, _ = batch.expand_inputs([root])
    clean = tmp_path / "clean"
    run_job(sources, str(clean), OPTS, jobs=2, chunk_size=3, root=r)
    out = tmp_path / "out"
    interrupt_then_resume("local", sources, str(out), r, monkeypatch, chunk_size=3, jobs=2)
    assert snapshot(out) == snapshot(clean) and temporaries(out) == []


def test_stale_temporary_files_are_removed_and_one_job_at_a_time(corpus, tmp_path):
    root, good, _ = corpus
    out = tmp_path / "out"
    run_job(good[:2], str(out), OPTS)
    dead = 4194999  # above the largest PID Linux hands out: a writer killed long ago
    (out / "crops" / f".same_1x1.jpg.gz{dead}_ab12cd.tmp").write_bytes(b"partial")
    (out / "table" / f".part-00000.parquet.gz{dead}_zz9.tmp").write_bytes(b"partial")
    (out / "crops" / "keep.tmp").write_bytes(b"not ours")
    run_job(good[:2], str(out), OPTS)
    assert temporaries(out) == [str(out / "crops" / "keep.tmp")]
    import fcntl

    assert not (out / ".gazecrop-batch.lock").exists()  # removed after a run
    with open(out / ".gazecrop-batch.lock", "a") as f:  # another job holds the lock
        fcntl.flock(f, fcntl.LOCK_EX)
        with pytest.raises(RuntimeError, match="another gazecrop-batch job"):
            run_job(good[:2], str(out), OPTS)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="zombies are told apart through /proc")
def test_a_temporary_file_of_an_exited_unreaped_writer_is_stale(tmp_path):
    # a writer that died mid-write and was not reaped yet (a zombie: a Dask worker orphaned by a killed driver
    # in a container whose PID 1 does not reap) holds its PID; its file is still stale (the batch soak found one)
    from gazecrop import _atomic

    code = "import os, sys; open(os.path.join(sys.argv[1], f'.x.jpg.gz{os.getpid()}_ab12.tmp'), 'wb').write(b'p')"
    p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)])
    try:
        deadline = time.monotonic() + 30
        while not list(tmp_path.iterdir()) or \
                Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert _atomic.clean_stale(str(tmp_path)) == 1 and list(tmp_path.iterdir()) == []
    finally:
        p.wait()


def test_an_unwritable_crop_is_a_failure_record_not_a_crash(corpus, tmp_path):
    root, good, _ = corpus
    out = tmp_path / "out"
    (out / "crops").mkdir(parents=True)
    (out / "crops" / "same_16x9.jpg").mkdir()  # a folder where the crop should go
    pair = [os.path.join(root, "a", "same.jpg"), os.path.join(root, "a", "p04.jpg")]
    s = run_job(pair, str(out), OPTS)
    assert [f[0] for f in s.failed] == pair[:1]
    assert s.processed == 2 and len(read_table(out)) == 1 + len(ASPECTS)


# ------------------------------------------------------------------------------------------ command line

def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "gazecrop.batch", *args], capture_output=True, text=True, **kw)


def test_cli_summary_manifest_and_exit_status(corpus, tmp_path, capsys):
    root, good, want = corpus
    manifest = tmp_path / "list.txt"
    manifest.write_text("# photos\n" + "\n".join(good[:3]) + "\n\n" + str(tmp_path / "gone.jpg") + "\n")
    rc = batch.main([str(manifest), "-a", "16:9", "-a", "1:1", "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "4 input(s): 4 processed, 0 already done, 1 failed" in err and "gone.jpg: No such file or directory" in err
    assert boxes(read_table(tmp_path / "o")) == {p: want[p] for p in good[:3]}
    rc = batch.main([str(manifest), "-a", "16:9", "-a", "1:1", "--out", str(tmp_path / "o"), "--progress"])
    err = capsys.readouterr().err
    assert rc == 1 and "0 processed, 4 already done, 1 failed" in err
    assert batch.main([good[0], "--out", str(tmp_path / "p"), "--no-crops"]) == 0
    assert not (tmp_path / "p" / "crops").exists() and read_table(tmp_path / "p")[0]["crop_path"] is None
    (tmp_path / "empty-list.txt").write_text("# nothing yet\n")
    assert batch.main([str(tmp_path / "empty-list.txt"), "--out", str(tmp_path / "q")]) == 2


def test_cli_size_option_and_size_field_in_name(corpus, tmp_path, capsys):
    _, good, _ = corpus
    out = tmp_path / "o"
    argv = good[:2] + ["--size", "96x54", "-s", "33x77", "-a", "1:1", "--name", "{stem}-{size}{ext}", "--out",
                       str(out), "--no-progress"]
    assert batch.main(argv) == 0, capsys.readouterr().err
    rows = read_table(out)
    assert [(r["aspect"], r["size_width"], r["size_height"]) for r in rows] == [
        ("1:1", None, None), ("96:54", 96, 54), ("33:77", 33, 77)] * 2
    stem = os.path.splitext(os.path.basename(good[0]))[0]
    assert [r["crop_path"] for r in rows[:3]] == [f"crops/{stem}-{t}.jpg" for t in ("1x1", "96x54", "33x77")]
    for r in rows:
        with Image.open(out / r["crop_path"]) as got:
            assert got.size == ((r["size_width"], r["size_height"]) if r["size_width"] else (r["width"], r["height"]))
    job = json.loads((out / "job.json").read_text())
    assert job["options"]["sizes"] == ["96x54", "33x77"] and job["options"]["upscale"] is True
    assert batch.main(argv) == 0 and "0 processed, 2 already done" in capsys.readouterr().err
    assert batch.main(argv[:-3] + ["--no-upscale", "--out", str(out), "--no-progress"]) == 0
    assert "2 processed, 0 already done" in capsys.readouterr().err  # --no-upscale is part of the key too


@pytest.mark.parametrize("argv", [
    ["x.jpg"], ["x.jpg", "--out", "o", "-a", "nope"], ["x.jpg", "--out", "o", "--engine", "spark"],
    ["x.jpg", "--out", "o", "-j", "0"], ["x.jpg", "--out", "o", "--name", "{width}{ext}"],
    ["x.jpg", "--out", "o", "--size", "0x10"], ["x.jpg", "--out", "o", "--size", "320"],
    ["x.jpg", "--out", "o", "--size", "16x9", "-a", "16:9"], ["x.jpg", "--out", "o", "--size", "8x8", "-s", "8x8"],
    ["x.jpg", "--out", "o", "--size", "8x8", "-a", "1:1", "--name", "{stem}{ext}"],
    ["x.jpg", "--out", "o", "--chunk-size", "0"], ["x.jpg", "--out", ""],
])
def test_cli_usage_errors(argv):
    with pytest.raises(SystemExit) as e:
        batch.main(argv)
    assert e.value.code == 2


def test_cli_address_without_engine_is_refused(corpus, tmp_path, capsys):
    _, good, _ = corpus
    assert batch.main([good[0], "--out", str(tmp_path / "o"), "--address", "tcp://x:1"]) == 2
    assert "--address is for --engine ray or dask" in capsys.readouterr().err


def _wait_for(path, proc, timeout=60.0):
    t = time.monotonic()
    while not os.path.exists(path):
        if proc.poll() is not None or time.monotonic() - t > timeout:
            return False
        time.sleep(0.002)
    return True


@pytest.mark.parametrize("sig, rc", [(signal.SIGKILL, -9), (signal.SIGTERM, 143)])
def test_killed_cli_job_finishes_identically_on_restart(corpus, tmp_path, sig, rc):
    root, _, _ = corpus
    args = [root, "-a", "16:9", "-a", "1:1", "--chunk-size", "2", "-j", "1", "--no-progress"]
    clean = tmp_path / "clean"
    assert _cli(*args, "--out", str(clean)).returncode == 1  # the bad files
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "gazecrop.batch", *args, "--out", str(out)],
                            stderr=subprocess.PIPE, text=True)
    assert _wait_for(out / "table" / "part-00000.parquet", proc)
    proc.send_signal(sig)
    err = proc.communicate()[1]
    assert proc.returncode == rc, err
    if sig == signal.SIGTERM:
        assert "stopped by SIGTERM; finished work is kept" in err and "Traceback" not in err
        assert temporaries(out) == []
    assert len(os.listdir(out / "table")) < 8  # killed before the end
    again = _cli(*args, "--out", str(out))
    assert again.returncode == 1 and "already done" in again.stderr
    assert snapshot(out) == snapshot(clean) and temporaries(out) == []


def test_odd_file_names_are_kept_in_crops_and_readable_in_the_table(corpus, tmp_path):
    root, good, want = corpus
    src = tmp_path / "in"
    src.mkdir()
    odd = os.fsdecode(b"caf\xe9 \xff.jpg")  # Latin-1 bytes: not valid UTF-8
    with open(good[0], "rb") as f:
        data = f.read()
    with open(os.path.join(str(src), odd), "wb") as f:
        f.write(data)
    out = tmp_path / "out"
    s = run_job(batch.expand_inputs([str(src)])[0], str(out), OPTS, root=str(src))
    assert s.failed == [] and s.processed == 1
    rows = read_table(out)
    assert rows[0]["source"].endswith("caf\\xe9 \\xff.jpg")  # valid UTF-8 in the table, the bytes shown
    assert (rows[0]["left"], rows[0]["top"], rows[0]["width"], rows[0]["height"]) == want[good[0]][0][1]
    assert os.fsencode(os.listdir(out / "crops")[0]).startswith(b"caf\xe9 \xff_")  # the real name on disk


def test_a_table_that_cannot_be_written_stops_the_job_cleanly(corpus, tmp_path, monkeypatch, capsys):
    import errno

    root, good, _ = corpus
    real = batch.write_bytes

    def full_disk(path, data):
        if str(path).endswith(".parquet"):
            raise OSError(errno.ENOSPC, "No space left on device")  # as a short write reports it: no name
        return real(path, data)

    monkeypatch.setattr(batch, "write_bytes", full_disk)
    out = tmp_path / "out"
    assert batch.main(good[:3] + ["--out", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "cannot write " in err and ".parquet" in err  # names the file
    assert os.listdir(out / "table") == [] and temporaries(out) == []
    monkeypatch.setattr(batch, "write_bytes", real)
    assert batch.main(good[:3] + ["--out", str(out), "--no-progress"]) == 0  # the rerun finishes


def test_encoded_image_is_handled_like_its_file(corpus):
    _, good, _ = corpus
    rotated = [p for p in good if p.endswith("p02.jpg")][0]  # EXIF orientation 6
    png = [p for p in good if p.endswith(".png")][0]
    for path in (rotated, png):
        enc = EncodedImage(Path(path).read_bytes(), path)
        assert [r.box for r in gazecrop.crops(enc, ASPECTS)] == [r.box for r in gazecrop.crops(path, ASPECTS)]
        assert gazecrop.crop(enc, "1:1").size == gazecrop.crop(path, "1:1").size
    with pytest.raises(gazecrop.ImageError, match="^x.bin: not a readable image file"):
        gazecrop.crops(EncodedImage(b"\x00" * 64, "x.bin"), ["1:1"])
    with pytest.raises(TypeError, match="must be bytes"):
        EncodedImage("not bytes", "x.jpg")
