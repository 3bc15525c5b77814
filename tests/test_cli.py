"""Command line (gazecrop.cli): boxes printed per input, JSON records, failing files reported and skipped
with a non-zero exit, atomic outputs, inputs never overwritten, format / ICC / EXIF kept, heatmaps."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageCms

import gazecrop.api as api
from gazecrop.cli import main

from _crop_helpers import FixedModel, peak_grid


@pytest.fixture
def fixed(monkeypatch):
    """Every CLI run uses a fixed peak (right half, upper third) instead of the bundled model."""
    m = FixedModel(peak_grid(6, 8, 1, 6))
    monkeypatch.setattr(api, "_model", lambda model: m)
    return m


def _photo(path, size=(160, 120), seed=0, **kw):
    a = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(a).save(path, **kw)
    return str(path)


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    _photo(d / "a.jpg", quality=90)
    _photo(d / "b.png", seed=1)
    (d / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    (d / "notes.txt").write_text("not picked up from folders")
    return d


def _no_temp_files(d):
    return [f for f in os.listdir(d) if f.startswith(".") or f.endswith(".tmp")] == []


def test_boxes_are_printed_for_each_input(fixed, folder, capsys):
    rc = main([str(folder / "a.jpg"), str(folder / "b.png"), "--aspect", "16:9", "-a", "1:1"])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0 and len(out) == 4
    assert out[0].startswith(str(folder / "a.jpg") + "\t16:9\tleft=0 top=0 width=160 height=90")
    assert "\t1:1\tleft=40 top=0 width=120 height=120" in out[1]


def test_one_bad_file_among_good_ones(fixed, folder, tmp_path, capsys):
    out_dir = tmp_path / "out"
    rc = main([str(folder), str(tmp_path / "missing.jpg"), "--aspect", "16:9", "--out", str(out_dir)])
    cap = capsys.readouterr()
    assert rc == 1
    assert sorted(os.listdir(out_dir)) == ["a_16x9.jpg", "b_16x9.png"]
    assert "bad.jpg" in cap.err and "missing.jpg" in cap.err and "2 of 4 input(s) failed" in cap.err
    assert "a.jpg" in cap.out and "b.png" in cap.out and "bad.jpg" not in cap.out
    assert _no_temp_files(out_dir)


def test_json_records(fixed, folder, tmp_path, capsys):
    rc = main([str(folder / "*.jpg"), str(folder / "b.png"), "--json", "-a", "1.78", "-a", "9:16",
               "--out", str(tmp_path / "o")])
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert rc == 1 and [os.path.basename(r["input"]) for r in lines] == ["a.jpg", "bad.jpg", "b.png"]
    a, bad, b = lines
    assert "error" in bad and "crops" not in bad
    assert a["width"] == 160 and a["height"] == 120
    assert [c["aspect_text"] for c in a["crops"]] == ["1.78", "9:16"]
    c = a["crops"][1]
    assert c["box"] == [92, 0, 68, 120] and c["salient_point"] == [130, 30]
    assert c["output"].endswith("a_9x16.jpg") and os.path.isfile(c["output"])
    assert 0 <= c["score"] <= 1 and c["strategy"] == "mass" and c["peaks"][0][:2] == [130, 30]


def test_inputs_are_never_overwritten(fixed, tmp_path, capsys):
    a = _photo(tmp_path / "a.jpg")
    clash = _photo(tmp_path / "a_1x1.jpg", seed=3)  # the output name of a.jpg for 1:1
    before = (tmp_path / "a_1x1.jpg").read_bytes()
    rc = main([a, clash, "--aspect", "1:1", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 1 and "refusing to overwrite input" in err
    assert (tmp_path / "a_1x1.jpg").read_bytes() == before
    assert os.path.isfile(tmp_path / "a_1x1_1x1.jpg")  # the other input still done
    assert _no_temp_files(tmp_path)


def test_outputs_are_written_atomically(fixed, tmp_path, monkeypatch, capsys):
    src = _photo(tmp_path / "a.png")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    old = out_dir / "a_1x1.png"
    old.write_bytes(b"previous output")

    def broken_save(self, fp, *args, **kwargs):
        fp.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    rc = main([src, "--aspect", "1:1", "--out", str(out_dir)])
    assert rc == 1 and "disk full" in capsys.readouterr().err
    assert old.read_bytes() == b"previous output"  # never a partial file in place
    assert _no_temp_files(out_dir)


def test_jpeg_quality_icc_and_exif_are_kept(fixed, tmp_path):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x0110] = "TestCam"  # model
    exif[0x0112] = 1
    src = _photo(tmp_path / "p.jpg", quality=60, icc_profile=icc, exif=exif.tobytes())
    assert main([src, "-a", "1:1", "--out", str(tmp_path / "o")]) == 0
    with Image.open(src) as a, Image.open(tmp_path / "o" / "p_1x1.jpg") as b:
        assert b.format == "JPEG" and b.size == (120, 120)
        assert b.quantization == a.quantization
        assert b.info.get("icc_profile") == icc
        assert b.getexif().get(0x0110) == "TestCam" and b.getexif().get(0x0112) == 1


def test_exif_rotated_input_is_cropped_as_displayed(fixed, tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    src = _photo(tmp_path / "r.jpg", size=(160, 120), quality=95, exif=exif.tobytes())
    assert main([src, "-a", "1:1", "--out", str(tmp_path / "o")]) == 0
    with Image.open(tmp_path / "o" / "r_1x1.jpg") as b:
        assert b.size == (120, 120)
        assert b.getexif().get(0x0112, 1) == 1  # pixels are stored as displayed


def test_png_with_alpha_and_heatmap(fixed, tmp_path):
    rgba = np.random.default_rng(0).integers(0, 256, (40, 90, 4), dtype=np.uint8)
    src = tmp_path / "t.png"
    Image.fromarray(rgba, "RGBA").save(src)
    assert main([str(src), "-a", "1:1", "-a", "2:1", "--out", str(tmp_path / "o"), "--heatmap"]) == 0
    with Image.open(tmp_path / "o" / "t_1x1.png") as b:
        assert b.mode == "RGBA" and b.size == (40, 40)
    with Image.open(tmp_path / "o" / "t_heatmap.jpg") as h:
        assert h.format == "JPEG" and h.size == (90, 40) and h.mode == "RGB"


def test_jobs_give_the_same_output_in_order(fixed, tmp_path, capsys):
    files = [_photo(tmp_path / f"p{i}.png", size=(50 + 10 * i, 40), seed=i) for i in range(5)]
    assert main(files + ["-a", "1:1", "--jobs", "1"]) == 0
    one = capsys.readouterr().out
    assert main(files + ["-a", "1:1", "--jobs", "3"]) == 0
    assert capsys.readouterr().out == one


def test_progress_bar_only_when_asked(fixed, tmp_path, capsys):
    files = [_photo(tmp_path / f"p{i}.png", seed=i) for i in range(2)]
    main(files)
    assert "[" not in capsys.readouterr().err  # stderr is not a terminal here
    main(files + ["--progress"])
    assert "2/2" in capsys.readouterr().err


def test_folder_glob_and_recursive_expansion(fixed, tmp_path, capsys):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    _photo(tmp_path / "d" / "x.JPG")
    _photo(tmp_path / "d" / "sub" / "y.png")
    main([str(tmp_path / "d"), "--no-recursive"])
    assert capsys.readouterr().out.count("\n") == 1
    main([str(tmp_path / "d")])  # sub-folders by default, as gazecrop-batch
    assert capsys.readouterr().out.count("\n") == 2
    main([str(tmp_path / "d"), "--recursive"])
    assert capsys.readouterr().out.count("\n") == 2
    main([str(tmp_path / "d" / "**" / "*.png")])
    assert "y.png" in capsys.readouterr().out
    assert main([str(tmp_path / "d" / "*.gif")]) == 2  # nothing matched


@pytest.mark.parametrize("argv", [["x.jpg", "--aspect", "16:0"], ["x.jpg", "--heatmap"], ["x.jpg", "--jobs", "0"],
                                  ["x.jpg", "--strategy", "faces"], [], ["x.jpg", "--aspect", "1e-300:1e300"],
                                  ["x.jpg", "--out", "o", "--name", ".."], ["x.jpg", "--out", "o", "--name", "."],
                                  ["x.jpg", "--out", "o", "--name", "{stem!r}{ext}"],
                                  ["x.jpg", "--out", "o", "--name", "{stem.__class__}"],
                                  ["x.jpg", "--out", "o", "--name", "{0}{ext}"]])
def test_usage_errors(argv, fixed):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2


def test_unloadable_model_is_reported(tmp_path, capsys):
    bad = tmp_path / "m.gzw"
    bad.write_bytes(b"not a model")
    src = _photo(tmp_path / "a.png")
    assert main([src, "--model", str(bad)]) == 2
    assert "cannot load model" in capsys.readouterr().err


def test_python_m_gazecrop_with_a_real_model_file(tmp_path):
    pytest.importorskip("gazecrop._core")
    from gazecrop.weights import write_weights
    from _crop_helpers import tiny_network

    model = tmp_path / "tiny.gzw"
    write_weights(model, tiny_network())
    src = _photo(tmp_path / "a.jpg", size=(200, 100))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    r = subprocess.run([sys.executable, "-m", "gazecrop", src, "--aspect", "1:1", "--model", str(model),
                        "--out", str(tmp_path / "o"), "--json"], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout)
    assert rec["crops"][0]["box"][2:] == [100, 100]
    assert os.path.isfile(tmp_path / "o" / "a_1x1.jpg")


def test_cli_matches_the_api(fixed, tmp_path, capsys):
    import gazecrop

    src = _photo(tmp_path / "a.jpg", size=(300, 200))
    main([src, "-a", "16:9", "--json"])
    rec = json.loads(capsys.readouterr().out)
    assert rec["crops"][0]["box"] == list(gazecrop.crop_box(src, "16:9", model=fixed))


def test_name_template(fixed, tmp_path, capsys):
    src = _photo(tmp_path / "a.jpg")
    assert main([src, "-a", "16:9", "--out", str(tmp_path / "o"), "--name", "{stem}{ext}"]) == 0
    assert os.listdir(tmp_path / "o") == ["a.jpg"]
    # the same template writing next to the input would replace it: refused
    assert main([src, "-a", "16:9", "--out", str(tmp_path), "--name", "{stem}{ext}"]) == 1
    assert "refusing to overwrite input" in capsys.readouterr().err
    for bad in (["--name", "{nope}"], ["--name", "../{stem}{ext}"],
                ["-a", "1:1", "-a", "2:1", "--name", "{stem}{ext}"]):
        with pytest.raises(SystemExit):
            main([src, "--out", str(tmp_path / "o")] + bad)


def test_mpo_lossless_webp_and_read_only_formats(fixed, tmp_path):
    a = Image.new("RGB", (64, 48), (10, 200, 30))
    a.save(tmp_path / "m.jpg", format="MPO", save_all=True, append_images=[Image.new("RGB", (64, 48))])
    _photo(tmp_path / "w.webp", size=(64, 48), lossless=True)
    _photo(tmp_path / "q.webp", size=(64, 48), quality=50)
    (tmp_path / "x.xpm").write_text('/* XPM */\nstatic char * t_xpm[] = {\n"4 2 2 1",\n"a c #FF0000",\n'
                                    '"b c #0000FF",\n"aabb",\n"abab"};\n')
    out = tmp_path / "o"
    files = [str(tmp_path / n) for n in ("m.jpg", "w.webp", "q.webp", "x.xpm")]
    assert main(files + ["-a", "1:1", "--out", str(out)]) == 0
    with Image.open(out / "m_1x1.jpg") as m, Image.open(tmp_path / "m.jpg") as src:
        assert m.format == "JPEG" and m.size == (48, 48) and m.quantization == src.quantization
    with open(tmp_path / "w.webp", "rb") as f:
        assert b"VP8L" in f.read(64)
    with open(out / "w_1x1.webp", "rb") as f:
        assert b"VP8L" in f.read(64)  # lossless in, lossless out
    with open(out / "q_1x1.webp", "rb") as f:
        assert b"VP8 " in f.read(64)
    with Image.open(out / "x_1x1.png") as x:  # Pillow cannot write XPM: PNG instead
        assert x.format == "PNG" and x.size == (2, 2)


def test_name_clash_between_inputs_fails_the_later_one(fixed, tmp_path, capsys):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    first = _photo(tmp_path / "x" / "p.png", seed=1)
    second = _photo(tmp_path / "y" / "p.png", seed=2)
    for jobs in ("1", "2"):
        out = tmp_path / f"o{jobs}"
        assert main([first, second, "-a", "1:1", "--out", str(out), "--jobs", jobs]) == 1
        err = capsys.readouterr().err
        assert f"{second}: output" in err and f"also the output of {first}" in err
        with Image.open(out / "p_1x1.png") as im, Image.open(first) as src:
            assert np.array_equal(np.asarray(im), np.asarray(src)[:, 40:160])  # the box is (40, 0, 120, 120)


@pytest.mark.parametrize("size,aspect", [((1, 5000), "16:9"), ((5000, 1), "9:16"), ((2, 3000), "1:1"),
                                         ((3000, 1700), "3000:1")], ids=str)
def test_heatmap_of_thin_images_and_extreme_aspects(fixed, tmp_path, size, aspect):
    src = _photo(tmp_path / "thin.png", size=size)
    assert main([src, "-a", aspect, "--out", str(tmp_path / "o"), "--heatmap"]) == 0
    with Image.open(tmp_path / "o" / "thin_heatmap.jpg") as h:  # at most 1024 px on the long side
        scale = min(1.0, 1024 / max(size))
        assert h.size == tuple(max(1, round(v * scale)) for v in size)


def test_output_folder_that_cannot_be_made(fixed, tmp_path, capsys):
    src = _photo(tmp_path / "a.jpg")
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file", tmp_path / "file" / "sub"):
        assert main([src, "-a", "1:1", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "cannot create output folder" in err and "Traceback" not in err
    assert (tmp_path / "file").read_text() == "x"
