"""Issue 23 on the command line and in batch jobs: ``gazecrop --keep / --boost / --focal / --fit / --background``
and ``gazecrop-batch`` with a CSV manifest of per-image regions (part of the chunk's resume key) and ``--fit``."""

import csv
import io
import json
import os

import pytest
from PIL import Image

import gazecrop
from gazecrop import batch
from gazecrop.batch import BatchOptions, crop_records, read_csv_manifest
from gazecrop.cli import main, parse_regions

from _batch_helpers import read_table
from test_cli import _photo as cli_photo
from test_cli import fixed  # noqa: F401  (the fixture: a fixed peak instead of the bundled model)


def _photo(path, size=(320, 160), seed=0):
    return cli_photo(path, size, seed)


def _json(capsys):
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


# -------------------------------------------------------------------------------------------------- CLI

def test_cli_regions_give_the_apis_boxes(fixed, tmp_path, capsys):
    p = _photo(tmp_path / "a.png")
    args = ["--keep", "10,20,40,40", "--keep", "60,100,20,20", "--boost", "0,0,50,50,2.5"]
    assert main([p, "-a", "1:1", "-a", "9:16", "--json"] + args) == 0
    rec = _json(capsys)[0]
    want = gazecrop.crops(p, ["1:1", "9:16"], model=fixed, keep=[(10, 20, 40, 40), (60, 100, 20, 20)],
                          boost=[((0, 0, 50, 50), 2.5)])
    assert [c["box"] for c in rec["crops"]] == [list(r.box) for r in want]
    assert [c["kept"] for c in rec["crops"]] == [r.kept for r in want] and want[0].kept == 1.0
    assert want[0].box.left == 0  # the keep regions pulled the box from the peak on the right
    calls = fixed.calls
    assert main([p, "-a", "16:9", "--focal", "300,10", "--json"]) == 0
    c = _json(capsys)[0]["crops"][0]
    assert fixed.calls == calls and c["salient_point"] == [300, 10] and c["box"] == [36, 0, 284, 160]


def test_cli_fit_pads_thumbnails_as_the_api_does(fixed, tmp_path, capsys):
    p = _photo(tmp_path / "a.png")
    out = tmp_path / "out"
    assert main([p, "--size", "100x100", "--size", "200x100", "--fit", "pad", "--background", "#204060",
                 "--out", str(out), "--json"]) == 0
    rec = _json(capsys)[0]
    assert [c["fit"] for c in rec["crops"]] == ["pad", "pad"]
    with Image.open(out / "a_100x100.png") as im:
        ref = gazecrop.thumbnail(p, (100, 100), fit="pad", background=(32, 64, 96))
        assert im.size == (100, 100) and im.tobytes() == ref.tobytes()
        assert im.getpixel((50, 2)) == (32, 64, 96)
    assert main([p, "--size", "100x100", "--fit", "auto", "--out", str(out / "auto"), "--json"]) == 0
    c = _json(capsys)[0]["crops"][0]
    assert c["fit"] == ("pad" if c["pad"] else "crop")
    assert main([p, "--size", "100x50", "--fit", "auto", "--json"]) == 0  # the image's own aspect: pad
    c = _json(capsys)[0]["crops"][0]
    assert c["pad"] and c["fit"] == "pad"
    assert main([p, "--size", "100x50", "--fit", "auto"]) == 0
    assert "padded: the whole image" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["--keep", "1,2,3"], "--keep '1,2,3': expected L,T,W,H"),
    (["--keep", "1,2,3,x"], "--keep '1,2,3,x': expected"),
    (["--keep", "0,0,0,5"], "--keep: keep box"),
    (["--boost", "1,2,3,4"], "--boost '1,2,3,4': expected L,T,W,H,WEIGHT"),
    (["--boost", "1,2,3,4,0"], "--boost: boost weight must be > 0 and at most 1e+09"),
    (["--focal", "5"], "--focal '5': expected X,Y"),
    (["--focal=-1,5"], "--focal: focal"),
    (["--fit", "pad"], "--fit pad applies to --size thumbnails"),
    (["--size", "9x9", "--background", "red"], "--background fills the padding of --fit pad"),
    (["--size", "9x9", "--fit", "pad", "--background", "nocolour"], "--background 'nocolour'"),
])
def test_cli_bad_regions_or_fit_are_usage_errors(fixed, tmp_path, capsys, args, message):
    p = _photo(tmp_path / "a.png")
    with pytest.raises(SystemExit) as e:
        main([p] + args)
    assert e.value.code == 2 and message in capsys.readouterr().err and fixed.calls == 0


def test_cli_region_outside_an_image_fails_that_input_only(fixed, tmp_path, capsys):
    small, large = _photo(tmp_path / "s.png", (100, 100)), _photo(tmp_path / "l.png", (400, 300))
    assert main([small, large, "--keep", "150,10,20,20"]) == 1
    cap = capsys.readouterr()
    assert "keep box (150, 10, 20, 20) is not inside the 100x100 image" in cap.err
    assert large in cap.out and small not in cap.out


# ------------------------------------------------------------------------------------------------ batch

def _manifest(path, rows, header=("path", "keep", "boost", "focal")):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return str(path)


def test_csv_manifest_regions_are_parsed_and_checked(tmp_path):
    m = _manifest(tmp_path / "m.csv", [["a.jpg", "1,2,3,4; 5,6,7,8", "", ""], ["b.jpg", "", "0,0,9,9,1.5", "4,5"],
                                       ["c.jpg", "", "", ""], ["# a comment", "", "", ""], []])
    rows = read_csv_manifest(m)
    assert rows == [("a.jpg", {"keep": [[1, 2, 3, 4], [5, 6, 7, 8]], "boost": [], "focal": None}),
                    ("b.jpg", {"keep": [], "boost": [[[0, 0, 9, 9], 1.5]], "focal": [4.0, 5.0]}), ("c.jpg", None)]
    assert batch.read_manifest(m) == ["a.jpg", "b.jpg", "c.jpg"]
    assert parse_regions(["1,2,3,4"], [], "4,5")["focal"] == (4.0, 5.0)
    for rows, header, message in [([["a.jpg", "1,2,3"]], ("path", "keep"), "line 2: --keep '1,2,3'"),
                                  ([["a.jpg", "x"]], ("path", "keeps"), "'path' column"),
                                  ([["a.jpg"]], ("keep",), "'path' column"),
                                  ([["", "1,2,3,4"]], ("path", "keep"), "line 2: regions without a path"),
                                  ([["a.jpg", "1", "2", "3", "4"]], ("path", "keep"), "quote cells")]:
        bad = _manifest(tmp_path / "bad.csv", rows, header)
        with pytest.raises(ValueError, match=message):
            read_csv_manifest(bad)


def test_batch_records_follow_per_image_regions(fixed, tmp_path):
    p = _photo(tmp_path / "a.png")
    opts = BatchOptions(aspects=("1:1",), sizes=("100x100",), fit="auto", write_crops=False)
    regions = [{"keep": [[10, 20, 40, 40]], "boost": [], "focal": None}, None,
               json.dumps({"focal": [300, 10]}), {"keep": [[0, 0, 500, 10]]}]
    recs = crop_records([p] * 4, opts, regions=regions)
    assert [r["error"] for r in recs] == [None] * 6 + ["%s: keep box (0, 0, 500, 10) is not inside the 320x160 "
                                                       "image" % p]
    want = gazecrop.crops(p, ["1:1", 1.0], model=fixed, keep=[(10, 20, 40, 40)])
    assert [(r["left"], r["top"], r["kept"]) for r in recs[:2]] == [(w.box.left, w.box.top, 1.0) for w in want]
    assert recs[2]["kept"] is None and recs[2]["left"] != recs[0]["left"]
    assert (recs[4]["point_x"], recs[4]["point_y"]) == (300, 10)
    assert [r["fit"] for r in recs[:6]] == [None, "crop", None, "crop", None, "crop"]


def test_batch_job_with_a_csv_manifest_redoes_a_chunk_whose_region_changed(fixed, tmp_path, capsys):
    files = [_photo(tmp_path / f"p{i}.png", seed=i) for i in range(3)]
    rows = [[files[0], "10,20,40,40", "", ""], [files[1], "", "", ""], [files[2], "", "", "200,100"]]
    m = _manifest(tmp_path / "m.csv", rows)
    out = str(tmp_path / "out")
    args = [m, "--aspect", "1:1", "--size", "64x64", "--fit", "pad", "--background", "black", "--out", out,
            "--chunk-size", "1", "--no-progress", "--jobs", "1"]
    assert batch.main(args) == 0
    assert "3 processed, 0 already done" in capsys.readouterr().err
    t = read_table(out)
    assert [r["kept"] for r in t] == [1.0, 1.0, None, None, None, None]
    assert [r["fit"] for r in t] == [None, "pad"] * 3
    with Image.open(os.path.join(out, t[1]["crop_path"])) as im:
        assert im.size == (64, 64) and im.getpixel((32, 2)) == (0, 0, 0)
    assert (t[4]["point_x"], t[4]["point_y"]) == (200, 100)
    rows[0][1] = "200,20,40,40"  # a changed region: only its chunk is done again
    _manifest(tmp_path / "m.csv", rows)
    assert batch.main(args) == 0
    assert "1 processed, 2 already done" in capsys.readouterr().err
    t2 = read_table(out)
    want = gazecrop.crops(files[0], ["1:1"], model=fixed, keep=[(200, 20, 40, 40)])[0]
    assert (t2[0]["left"], t2[0]["top"]) == tuple(want.box)[:2] and t2[2:] == t[2:]


def test_batch_fit_options_are_checked(tmp_path, capsys):
    with pytest.raises(ValueError, match="applies to thumbnail sizes"):
        BatchOptions(aspects=("1:1",), fit="pad")
    with pytest.raises(ValueError, match="unknown fit"):
        BatchOptions(sizes=("9x9",), fit="fill")
    o = BatchOptions(sizes=("9x9",), fit="pad", background="#102030")
    assert o.background == (16, 32, 48) and BatchOptions(**o.to_dict()) == o
    with pytest.raises(SystemExit) as e:
        batch.main([str(tmp_path), "--out", str(tmp_path / "o"), "--fit", "auto"])
    assert e.value.code == 2 and "--fit auto applies to --size" in capsys.readouterr().err


# ------------------------------------------------- with issue 24's inputs, limits, naming and resume

def test_regions_and_fit_work_on_bytes_file_objects_and_the_pixel_limit(fixed, tmp_path):
    p = _photo(tmp_path / "a.jpg")
    with open(p, "rb") as f:
        data = f.read()
    kw = dict(keep=[(10, 20, 40, 40)], boost=[((0, 0, 50, 50), 2.5)])
    want = gazecrop.crops(p, ["1:1", "9:16"], model=fixed, **kw)
    assert gazecrop.crops(data, ["1:1", "9:16"], model=fixed, **kw) == want
    with open(p, "rb") as f:
        assert gazecrop.crop_box(f, "16:9", focal=(300, 10), max_pixels=320 * 160) == \
            gazecrop.crop_box(p, "16:9", focal=(300, 10))
    with open(p, "rb") as f:  # read once: for the box and for the pixels
        got = gazecrop.crop(f, "1:1", model=fixed, **kw)
    assert got.tobytes() == gazecrop.crop(p, "1:1", model=fixed, **kw).tobytes()
    for fit in ("crop", "pad", "auto"):
        with open(p, "rb") as f:
            got = gazecrop.thumbnail(io.BytesIO(f.read()), (64, 64), model=fixed, fit=fit, focal=(300, 10))
        assert got.tobytes() == gazecrop.thumbnail(p, (64, 64), model=fixed, fit=fit, focal=(300, 10)).tobytes()
    calls = fixed.calls
    for call in (lambda: gazecrop.predict(data, focal=(300, 10), max_pixels=1000),
                 lambda: gazecrop.thumbnail(data, (64, 64), model=fixed, fit="pad", max_pixels=1000),
                 lambda: gazecrop.crop(data, "1:1", model=fixed, keep=[(10, 20, 40, 40)], max_pixels=1000)):
        with pytest.raises(gazecrop.ImageTooLargeError, match="max_pixels="):
            call()
    assert fixed.calls == calls


def test_cli_focal_on_standard_input_and_padded_thumbnails_in_sub_folders(fixed, tmp_path, capsys):
    from test_faults import _cli

    os.makedirs(tmp_path / "in" / "sub")
    src = _photo(tmp_path / "in" / "sub" / "a.jpg")
    with open(src, "rb") as f:
        r = _cli(["-", "-a", "16:9", "--focal", "300,10", "--keep", "0,0,20,20", "--json"], input=f.read())
    assert r.returncode == 0, r.stderr
    c = json.loads(r.stdout)["crops"][0]
    want = gazecrop.crops(src, ["16:9"], focal=(300, 10), keep=[(0, 0, 20, 20)])[0]
    assert c["box"] == list(want.box) and c["salient_point"] == [300, 10] and c["kept"] == 1.0
    out = tmp_path / "out"
    assert main([str(tmp_path / "in"), "--size", "640x640", "--size", "32x32", "--fit", "pad", "--keep",
                 "10,20,40,40", "--out", str(out), "--json"]) == 0  # sub-folders by default, {dir} kept
    cap = capsys.readouterr()
    rec = json.loads(cap.out)
    assert [c["fit"] for c in rec["crops"]] == ["pad", "pad"]
    assert rec["crops"][0]["upscaled"] == 2.0 and "upscaled" not in rec["crops"][1]  # 640 / 320: the image's
    assert sorted(os.listdir(out / "sub")) == ["a_32x32.jpg", "a_640x640.jpg"]
    assert "the image is only 320x160 pixels and was enlarged 2 times" in cap.err


def test_batch_resume_keeps_finished_images_only_for_the_same_regions(fixed, tmp_path):
    pytest.importorskip("pyarrow")
    from _batch_helpers import snapshot

    files = [_photo(tmp_path / f"p{i}.png", seed=i) for i in range(4)]
    regions = {files[0]: {"keep": [[10, 20, 40, 40]], "boost": [], "focal": None},
               files[1]: {"keep": [], "boost": [], "focal": [200, 100]}}
    opts = BatchOptions(aspects=("1:1",), sizes=("64x64",), fit="auto")

    def stop_after_two(done, total, failed):
        if done == 2:
            raise KeyboardInterrupt

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):  # one chunk of 256: the two finished images are kept
        batch.run_job(files, str(out), opts, jobs=1, regions=regions, progress=stop_after_two)
    assert len(os.listdir(out / batch.PROGRESS_DIR)) == 2 and os.listdir(out / "table") == []
    regions[files[1]] = {"keep": [], "boost": [], "focal": [20, 10]}  # changed: that image is done again
    s = batch.run_job(files, str(out), opts, jobs=1, regions=regions)
    assert (s.skipped, s.processed) == (1, 3)
    clean = tmp_path / "clean"
    batch.run_job(files, str(clean), opts, jobs=1, regions=regions)
    assert snapshot(out) == snapshot(clean)
    assert not (out / batch.PROGRESS_DIR).exists() and not (out / batch.LOCK_NAME).exists()
    t = read_table(str(out))
    assert (t[2]["point_x"], t[2]["point_y"]) == (20, 10) and t[0]["kept"] == 1.0
