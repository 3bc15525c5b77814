"""What a new user trips over in the first hour (issue 24): encoded bytes and file objects as images, the pixel
limit and how to raise it, folders read recursively by both commands with relative paths kept, the crop
advice's wording, enlarged thumbnails, transparent heatmaps, AVIF, animated inputs, standard input, odd
file names in the text output, batch resume whatever the chunk size and its lock file, Ctrl-C while
importing, atomic training outputs."""

import ast
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

import gazecrop
from gazecrop import ImageTooLargeError, _output
from gazecrop.cli import heatmap_overlay, main

from test_cli import _photo, fixed  # noqa: F401 - the fixed-peak model fixture and the photo helper
from test_faults import _cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


# ------------------------------------------------------------------------ 2. bytes and file objects

def test_bytes_and_binary_file_objects_are_images_everywhere(fixed, tmp_path):
    path = _photo(tmp_path / "p.jpg", quality=90)
    data = _read(path)
    want = gazecrop.crops(path, ["16:9", "1:1"])
    want_crop = np.asarray(gazecrop.crop(path, "1:1"))
    want_thumb = np.asarray(gazecrop.thumbnail(path, (32, 18)))
    makers = {"bytes": lambda: data, "bytearray": lambda: bytearray(data), "memoryview": lambda: memoryview(data),
              "BytesIO": lambda: io.BytesIO(data), "file": lambda: files.append(open(path, "rb")) or files[-1],
              "EncodedImage": lambda: gazecrop.EncodedImage(data, "upload.jpg")}
    files = []  # the caller owns file objects (closed below); gazecrop reads them, never closes them
    for kind, make in makers.items():
        assert [r.box for r in gazecrop.crops(make(), ["16:9", "1:1"])] == [r.box for r in want], kind
        assert gazecrop.crop_box(make(), "16:9") == want[0].box, kind
        assert gazecrop.saliency_map(make()).shape == (120, 160), kind
        assert gazecrop.predict(make()).size == (160, 120), kind
        # crop and thumbnail look at the image twice (box, then pixels): a file object is read once
        assert np.array_equal(np.asarray(gazecrop.crop(make(), "1:1")), want_crop), kind
        assert np.array_equal(np.asarray(gazecrop.thumbnail(make(), (32, 18))), want_thumb), kind
    assert not any(f.closed for f in files)
    for f in files:
        f.close()
    f = io.BytesIO(b"header" + data)
    f.seek(6)  # read from the current position, as Image.open does
    assert gazecrop.crop_box(f, "16:9") == want[0].box


def test_text_mode_files_and_bad_bytes_are_clear_errors(fixed, tmp_path):
    (tmp_path / "t.txt").write_text("x")
    with open(tmp_path / "t.txt") as f, pytest.raises(TypeError, match="binary mode"):
        gazecrop.crop_box(f, "1:1")
    with pytest.raises(gazecrop.ImageError, match="<bytes>: not a readable image"):
        gazecrop.crop_box(b"not an image", "1:1")
    buf = bytearray(_read(_photo(tmp_path / "p.png")))
    enc = gazecrop.EncodedImage(buf)
    buf[:] = b"\0" * len(buf)  # the caller's buffer changes: the EncodedImage kept its own copy
    assert gazecrop.crop_box(enc, "1:1").height == 120


# ------------------------------------------------------------------------ 12. the pixel limit

def test_pixel_limit_error_says_how_to_raise_it_and_max_pixels_does(fixed, tmp_path, monkeypatch, capsys):
    path = _photo(tmp_path / "p.png")  # 160 x 120 = 19200 pixels
    with pytest.raises(ImageTooLargeError, match=r"--max-pixels 19200 \(command line\), max_pixels=19200"):
        gazecrop.crops(path, ["1:1"], max_pixels=19199)
    assert gazecrop.crop_box(path, "1:1", max_pixels=19200).height == 120
    with pytest.raises(ValueError):
        gazecrop.crop_box(path, "1:1", max_pixels=0)
    # Pillow's own limit far below: Pillow refuses to open (over twice its limit) or crop the image ...
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageTooLargeError, match="max_pixels="):
        gazecrop.crop(path, "1:1")
    # ... unless max_pixels allows it, in every call; Pillow's limit is restored afterwards
    assert gazecrop.crop(path, "1:1", max_pixels=20000).size == (120, 120)
    assert gazecrop.thumbnail(path, (16, 9), max_pixels=20000).size == (16, 9)
    assert gazecrop.saliency_map(io.BytesIO(_read(path)), max_pixels=20000).shape == (120, 160)
    assert Image.MAX_IMAGE_PIXELS == 1000
    assert main([path, "-a", "1:1"]) == 1
    assert "--max-pixels 19200" in capsys.readouterr().err
    out = tmp_path / "o"
    assert main([path, "-a", "1:1", "--max-pixels", "20000", "--out", str(out), "--heatmap"]) == 0
    assert sorted(os.listdir(out)) == ["p_1x1.png", "p_heatmap.jpg"] and Image.MAX_IMAGE_PIXELS == 1000
    with pytest.raises(SystemExit):
        main([path, "--max-pixels", "0"])


def test_batch_takes_max_pixels(tmp_path):
    pytest.importorskip("pyarrow")
    from gazecrop.batch import BatchOptions, _parse_args, job_key, run_job

    path = _photo(tmp_path / "p.png")
    s = run_job([path], str(tmp_path / "o"), BatchOptions(max_pixels=100), root=str(tmp_path))
    assert len(s.failed) == 1 and "--max-pixels 19200" in s.failed[0][1]
    s = run_job([path], str(tmp_path / "o2"), BatchOptions(max_pixels=19200), root=str(tmp_path))
    assert s.failed == [] and s.processed == 1
    assert _parse_args([path, "--out", "o", "--max-pixels", "5"]).options.max_pixels == 5
    assert job_key(BatchOptions()) != job_key(BatchOptions(max_pixels=5))


# ------------------------------------------------------------------------ 5. folders, recursion, {dir}

@pytest.fixture
def tree(tmp_path):
    d = tmp_path / "photos"
    for sub, seed in (("a", 1), ("b", 2), ("b/c", 3)):
        (d / sub).mkdir(parents=True)
        _photo(d / sub / "x.jpg", seed=seed, quality=90)
    _photo(d / "top.png")
    return d


def test_recursive_outputs_keep_relative_paths(fixed, tree, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([str(tree), "-a", "1:1", "--out", str(out), "--heatmap", "--json"]) == 0
    files = sorted(os.path.relpath(os.path.join(r, f), out) for r, _d, fs in os.walk(out) for f in fs)
    assert files == ["a/x_1x1.jpg", "a/x_heatmap.jpg", "b/c/x_1x1.jpg", "b/c/x_heatmap.jpg", "b/x_1x1.jpg",
                     "b/x_heatmap.jpg", "top_1x1.png", "top_heatmap.jpg"]
    recs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {os.path.relpath(r["crops"][0]["output"], out) for r in recs} >= {"a/x_1x1.jpg", "b/c/x_1x1.jpg"}
    flat = tmp_path / "flat"  # {dir} placed by the template: a flat folder, no collision
    assert main([str(tree), "-a", "1:1", "--out", str(flat), "--name", "all/{dir}/{stem}{ext}"]) == 0
    assert sorted(os.listdir(flat / "all")) == ["a", "b", "top.png"]
    only = tmp_path / "only"
    assert main([str(tree), "-a", "1:1", "--out", str(only), "--no-recursive"]) == 0
    assert sorted(os.listdir(only)) == ["top_1x1.png"]
    capsys.readouterr()
    for bad in ("/abs/{stem}{ext}", "{dir}/../{stem}{ext}", "{dir}/", "./{stem}{ext}"):
        with pytest.raises(SystemExit):
            main([str(tree), "--out", str(out), "--name", bad])


def test_both_commands_read_sub_folders_by_default(tree):
    pytest.importorskip("pyarrow")
    from gazecrop import batch, cli

    for parse in (cli._parse_args, batch._parse_args):
        assert parse([str(tree), "--out", "o"]).recursive is True
        assert parse([str(tree), "--out", "o", "-r"]).recursive is True
        assert parse([str(tree), "--out", "o", "--no-recursive"]).recursive is False
    assert len(batch.expand_inputs([str(tree)]).sources) == len(cli.expand_inputs([str(tree)])) == 4


# ------------------------------------------------------------------------ 6. the advice's wording

def test_crop_advice_reads_as_optional_not_as_a_loss(fixed, tmp_path, capsys):
    path = _photo(tmp_path / "p.png")  # the fixed peak fits any 1:1 box: 100 % inside
    r = gazecrop.crops(path, ["1:1", "4:3"])
    assert r[0].keep_whole and r[0].advice == "keeps 100.0% of what people look at"
    assert r[1].advice == "the aspect 1.33 is within 5% of the image's own (1.33)"
    main([path, "-a", "1:1"])
    line = capsys.readouterr().out
    assert "\tcrop optional: keeps 100.0% of what people look at" in line and "keep whole" not in line


# ------------------------------------------------------------------------ 7. upscaled thumbnails

def test_enlarged_thumbnails_are_warned_about_and_recorded(fixed, tmp_path, capsys):
    tiny = _photo(tmp_path / "tiny.png", size=(8, 8))
    out = tmp_path / "o"
    assert main([tiny, "--size", "320x180", "--size", "4x4", "--out", str(out), "--json"]) == 0
    cap = capsys.readouterr()
    big, small = json.loads(cap.out)["crops"]
    assert big["box"][2:] == [8, 4] and big["upscaled"] == 45.0  # 180 / 4
    assert "upscaled" not in small
    assert cap.err.count("warning") == 1 and "enlarged 45 times" in cap.err and "--no-upscale" in cap.err
    with Image.open(out / "tiny_320x180.png") as im:
        assert im.size == (320, 180)
    assert main([tiny, "--size", "320x180", "--out", str(tmp_path / "n"), "--json", "--no-upscale"]) == 0
    cap = capsys.readouterr()
    assert "upscaled" not in json.loads(cap.out)["crops"][0] and "warning" not in cap.err


# ------------------------------------------------------------------------ 8. heatmaps of transparent images

def test_heatmap_composites_transparent_pixels_over_the_crop_background(fixed, tmp_path):
    a = np.zeros((60, 80, 4), np.uint8)
    a[..., 0] = 255  # red everywhere, fully transparent on the left half
    a[:, 40:, 3] = 255
    rgba = Image.fromarray(a, "RGBA")
    pred = gazecrop.predict(rgba)
    got = np.asarray(heatmap_overlay(rgba, pred, max_side=None))
    seen = Image.fromarray(gazecrop._image.to_rgb(rgba))  # what the model and a JPEG crop show: white
    assert np.array_equal(got, np.asarray(heatmap_overlay(seen, pred, max_side=None)))
    left = got[:, :20].astype(int)
    assert (left[..., 1] > 100).all()  # no red under the transparent pixels


# ------------------------------------------------------------------------ 9. AVIF outputs

def test_avif_format_where_pillow_writes_it_and_a_clear_error_elsewhere(fixed, tmp_path, monkeypatch, capsys):
    src = _photo(tmp_path / "p.png")
    if _output.writable("AVIF"):
        assert main([src, "-a", "1:1", "--out", str(tmp_path / "o"), "--format", "avif"]) == 0
        with Image.open(tmp_path / "o" / "p_1x1.avif") as im:
            assert im.format == "AVIF" and im.size == (120, 120)
    monkeypatch.setattr(_output, "writable", lambda fmt: None if fmt == "AVIF" else fmt)
    with pytest.raises(SystemExit) as e:
        main([src, "--out", str(tmp_path / "n"), "--format", "avif"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--format avif: this Pillow" in err and "cannot write AVIF" in err and "jpeg, png, webp" in err
    with pytest.raises(ValueError, match="cannot write AVIF"):
        pytest.importorskip("gazecrop.batch").BatchOptions(format="avif")


# ------------------------------------------------------------------------ 10. animated inputs

def test_animated_inputs_are_flagged_once(fixed, tmp_path, capsys):
    frames = [Image.new("RGB", (64, 48), c) for c in ("red", "green", "blue")]
    gif, apng = tmp_path / "a.gif", tmp_path / "a.png"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100, loop=0)
    frames[0].save(apng, save_all=True, append_images=frames[1:2], duration=100)
    still = _photo(tmp_path / "s.jpg")
    assert main([str(gif), str(apng), still, "-a", "1:1", "-a", "16:9", "--json"]) == 0
    cap = capsys.readouterr()
    recs = [json.loads(line) for line in cap.out.splitlines()]
    assert [(r["animated"], r["frames"]) for r in recs] == [(True, 3), (True, 2), (False, 1)]
    assert cap.err.count("warning") == 2 and cap.err.count(f"{gif}: 3 frames") == 1
    assert "only the first frame" in cap.err
    assert gazecrop._image.frame_count(_read(gif)) == 3
    mpo = tmp_path / "m.mpo"  # a JPEG with a second image (a phone camera's preview) is a still photo
    frames[0].save(mpo, "MPO", save_all=True, append_images=frames[1:2])
    with Image.open(mpo) as im:
        assert im.format == "MPO" and im.n_frames == 2
    assert gazecrop._image.frame_count(str(mpo)) == 1


# ------------------------------------------------------------------------ 11. standard input

def test_dash_reads_the_image_from_standard_input(tmp_path):
    src = _photo(tmp_path / "p.jpg", quality=90)
    data = _read(src)
    r = _cli(["-", "--aspect", "1:1", "--json"], input=data)
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout)
    assert rec["input"] == "-" and rec["crops"][0]["box"] == [40, 0, 120, 120]
    out = tmp_path / "o"
    r = _cli(["-", "-a", "16:9", "--out", out], input=data)
    assert r.returncode == 0 and os.listdir(out) == ["stdin_16x9.jpg"], r.stderr
    assert r.stdout.decode().startswith("-\t16:9\t")
    r = _cli(["-", "-a", "1:1"], input=b"not an image")
    assert r.returncode == 1 and b"-: not a readable image file" in r.stderr and b"Traceback" not in r.stderr
    r = _cli(["-", "-a", "1:1"], input=b"")
    assert r.returncode == 2 and b"-: standard input is empty" in r.stderr
    r = _cli(["-", "-", "-a", "1:1"], input=data)
    assert r.returncode == 2


# ------------------------------------------------------------------------ 13. odd file names in text lines

def test_tabs_and_newlines_in_file_names_keep_one_line_per_result(fixed, tmp_path, capsys):
    d = tmp_path / "in"
    d.mkdir()
    odd = _photo(d / "a\tb\nc\\d.png")
    out = tmp_path / "o"
    assert main([odd, "-a", "1:1", "-a", "16:9", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    first = lines[0].split("\t")
    assert first[0] == f"{d}/a\\tb\\nc\\\\d.png" and first[1] == "1:1"
    assert first[-1] == f"-> {out}/a\\tb\\nc\\\\d_1x1.png" and os.path.isfile(out / "a\tb\nc\\d_1x1.png")
    from gazecrop.cli import escape_field

    assert escape_field("x\x01\x7fé") == "x\\x01\\x7fé" and escape_field("plain é") == "plain é"


# ------------------------------------------------------------------------ 4. batch resume and its lock

def _batch_inputs(tmp_path, n=5):
    d = tmp_path / "in"
    d.mkdir()
    return [_photo(d / f"p{i}.png", seed=i) for i in range(n)], str(d)


def test_batch_resume_keeps_finished_images_whatever_the_chunk_size(tmp_path, monkeypatch):
    pytest.importorskip("pyarrow")
    from gazecrop import batch
    from gazecrop.batch import BatchOptions, run_job

    from _batch_helpers import snapshot

    paths, root = _batch_inputs(tmp_path)
    opts = BatchOptions(aspects=("1:1", "16:9"))
    clean = tmp_path / "clean"
    run_job(paths, str(clean), opts, jobs=1, root=root)  # one chunk of 256

    def stop_after_three(done, total, failed):
        if done == 3:
            raise KeyboardInterrupt

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_job(paths, str(out), opts, jobs=1, root=root, progress=stop_after_three)
    assert os.listdir(out / "table") == []  # no chunk finished ...
    assert len(os.listdir(out / batch.PROGRESS_DIR)) == 3  # ... but three images are kept
    s = run_job(paths, str(out), opts, jobs=1, root=root)
    assert (s.skipped, s.processed) == (3, 2)
    assert snapshot(out) == snapshot(clean)
    assert not (out / batch.PROGRESS_DIR).exists() and not (out / batch.LOCK_NAME).exists()
    os.unlink(out / "crops" / "p0_1x1.png")  # a kept image whose crop went missing is done again
    with pytest.raises(KeyboardInterrupt):
        run_job(paths, str(out), opts, jobs=1, root=root, progress=stop_after_three, overwrite=True)
    os.unlink(out / "crops" / "p0_1x1.png")
    s = run_job(paths, str(out), opts, jobs=1, root=root)
    assert (s.skipped, s.processed) == (2, 3) and snapshot(out) == snapshot(clean)


_HOLDING_JOB = """
import os, sys, time
from gazecrop import batch
from gazecrop.batch import BatchOptions, run_job

started, release, out, root = sys.argv[1:5]
write = batch._write_part

def write_and_wait(*args):
    open(started, "w").close()
    while not os.path.exists(release):
        time.sleep(0.02)
    return write(*args)

batch._write_part = write_and_wait
run_job(sys.argv[5:], out, BatchOptions(), jobs=1, root=root)
"""


def test_two_concurrent_jobs_and_no_lock_file_left(tmp_path):
    pytest.importorskip("pyarrow")
    from gazecrop import batch
    from gazecrop.batch import BatchOptions, main as batch_main, run_job

    paths, root = _batch_inputs(tmp_path, 2)
    out = tmp_path / "out"
    started, release = tmp_path / "started", tmp_path / "release"
    first = subprocess.Popen([sys.executable, "-c", _HOLDING_JOB, str(started), str(release), str(out), root]
                             + paths, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not started.exists():
            assert first.poll() is None and time.monotonic() < deadline, first.stderr.read()
            time.sleep(0.05)
        assert (out / batch.LOCK_NAME).exists()
        with pytest.raises(RuntimeError, match="another gazecrop-batch job is writing"):
            run_job(paths, str(out), BatchOptions(), root=root)
        assert batch_main(paths + ["--out", str(out), "--no-progress"]) == 2
    finally:
        release.touch()
        _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert not (out / batch.LOCK_NAME).exists()  # removed by the job that held it
    s = run_job(paths, str(out), BatchOptions(), root=root)  # the second job can now run
    assert s.skipped == 2 and not (out / batch.LOCK_NAME).exists()


def test_lock_stays_exclusive_while_jobs_remove_it(tmp_path):
    """Jobs that open the lock file just before the holder removes it must not both run: many threads (each
    its own open file, so flock sees separate holders) take the lock in turn, never two at once."""
    from gazecrop.batch import _job_lock

    inside, most, entries = [0], [0], [0]
    guard = threading.Lock()

    def worker():
        for _ in range(150):
            try:
                with _job_lock(str(tmp_path)):
                    with guard:
                        inside[0] += 1
                        most[0] = max(most[0], inside[0])
                        entries[0] += 1
                    time.sleep(0.0005)
                    with guard:
                        inside[0] -= 1
            except RuntimeError:
                pass

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 1 and entries[0] > 0
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------------ 13. Ctrl-C while importing

_INTERRUPT_DURING_IMPORT = """
import os, runpy, signal, sys
fired = []

def interrupt_while_importing_numpy(event, args):
    if event == "import" and args and args[0] == "numpy" and not fired:
        fired.append(1)
        os.kill(os.getpid(), signal.SIGINT)

sys.addaudithook(interrupt_while_importing_numpy)
sys.argv = [sys.argv[1], "--version"]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.parametrize("script", ["gazecrop", "gazecrop-batch"])
def test_sigint_while_importing_ends_without_a_traceback(script):
    path = os.path.join(os.path.dirname(sys.executable), script)
    if not os.path.isfile(path):
        pytest.skip(f"no installed {script} script beside {sys.executable}")
    r = subprocess.run([sys.executable, "-c", _INTERRUPT_DURING_IMPORT, path], capture_output=True, text=True,
                       timeout=120)
    assert "Traceback" not in r.stderr and "KeyboardInterrupt" not in r.stderr, r.stderr
    assert r.returncode == 130 and f"{script}: stopped by SIGINT" in r.stderr


# ------------------------------------------------------------------------ 13. atomic training outputs

def test_training_and_evaluation_outputs_go_through_the_atomic_writer():
    """No ``Path.write_text``, ``open(..., "w"/"a")`` or ``json.dump`` to a file in the training code and
    ``gazecrop.evaluate``: their JSON, CSV and marker files are written by :func:`gazecrop._atomic.write_text`
    (complete or not at all)."""
    pkg = os.path.join(ROOT, "python", "gazecrop")
    files = [os.path.join(pkg, "evaluate.py")] + [os.path.join(pkg, "train", f)
                                                  for f in sorted(os.listdir(os.path.join(pkg, "train")))
                                                  if f.endswith(".py")]
    bad = []
    for f in files:
        for node in ast.walk(ast.parse(_read(f))):
            if not isinstance(node, ast.Call):
                continue
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
            mode = node.args[1] if name == "open" and len(node.args) > 1 else None
            if name in ("write_text", "write_bytes") and isinstance(fn, ast.Attribute) and \
                    not (isinstance(fn.value, ast.Name) and fn.value.id == "_atomic") or \
                    name == "dump" and isinstance(fn, ast.Attribute) and getattr(fn.value, "id", "") == "json" or \
                    isinstance(mode, ast.Constant) and any(c in str(mode.value) for c in "wax"):
                bad.append(f"{os.path.relpath(f, ROOT)}:{node.lineno}")
    assert bad == []


def test_evaluate_json_is_written_atomically(tmp_path, monkeypatch):
    from gazecrop import _atomic, evaluate

    monkeypatch.setattr(evaluate, "evaluate", lambda preds, samples, log=None: [{"model": "m", "ig": 1.0}])
    monkeypatch.setattr(evaluate, "format_table", lambda res: "table")
    monkeypatch.setattr(evaluate.gds, "load_dataset", lambda *a, **k: [])
    out = tmp_path / "res.json"
    out.write_text("previous")

    def full_disk(fd, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_atomic, "_write", full_disk)
    with pytest.raises(OSError):
        evaluate.main(["--no-teacher", "--json", str(out)])
    assert out.read_text() == "previous" and os.listdir(tmp_path) == ["res.json"]
