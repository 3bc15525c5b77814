"""Thumbnails (gazecrop.thumbnail) and the CLI options of issue 11: --size, --no-upscale, --candidates, --zoom,
--symmetric, the clamped-box warning and the close flag in the JSON."""

import json
import math

import numpy as np
import pytest
from PIL import Image

import gazecrop
import gazecrop.api as api
from gazecrop.cli import main

from _crop_helpers import FixedModel, peak_grid


def photo(w, h, seed=0, mode="RGB"):
    a = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return Image.fromarray(a).convert(mode)


@pytest.fixture
def fixed():
    return FixedModel(peak_grid(6, 8, 1, 6))


SIZES = [(1, 1), (1, 4000), (4000, 1), (320, 180), (180, 320), (64, 64), (3, 2), (1000, 7)]


@pytest.mark.parametrize("image_size", [(640, 480), (1, 1), (1, 4000), (4000, 1), (7, 5)])
@pytest.mark.parametrize("size", SIZES)
def test_thumbnail_has_exactly_the_size_asked_for(fixed, image_size, size):
    out = gazecrop.thumbnail(photo(*image_size), size, model=fixed)
    assert isinstance(out, Image.Image) and out.size == size and out.mode == "RGB"


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "1", "CMYK", "LA"])
def test_thumbnail_of_other_modes(fixed, mode):
    out = gazecrop.thumbnail(photo(200, 100, mode=mode), (50, 40), model=fixed)
    assert out.size == (50, 40)


def test_thumbnail_is_the_crop_resized(fixed):
    img = photo(640, 480)
    box = gazecrop.crop_box(img, 16 / 9, model=fixed)
    out = gazecrop.thumbnail(img, (320, 180), model=fixed)
    ref = img.crop(box.to_pil()).resize((320, 180), Image.LANCZOS)
    diff = np.abs(np.asarray(out, np.int16) - np.asarray(ref, np.int16))
    assert diff.mean() < 2.0  # the same filter (reducing_gap only changes the last bits)


def test_no_upscale_never_enlarges(fixed):
    img = photo(160, 120)
    out = gazecrop.thumbnail(img, (640, 360), model=fixed, upscale=False)
    assert out.size == (160, 90)  # the 16:9 box at its own size
    out = gazecrop.thumbnail(img, (80, 45), model=fixed, upscale=False)
    assert out.size == (80, 45)  # reductions are unchanged
    assert gazecrop.thumbnail(img, (640, 360), model=fixed).size == (640, 360)


@pytest.mark.parametrize("bad,exc", [((0, 10), ValueError), ((10, 70000), ValueError), ((10.5, 10), TypeError),
                                     ("320x180", TypeError), ((1,), TypeError), ((True, 10), TypeError)])
def test_bad_thumbnail_size(fixed, bad, exc):
    with pytest.raises(exc):
        gazecrop.thumbnail(photo(10, 10), bad, model=fixed)
    assert fixed.calls == 0  # checked before the model runs


def test_options_go_through_the_api(fixed):
    img = photo(800, 600)
    res = gazecrop.crops(img, ["16:9", "9:16"], model=fixed, candidates=3)
    assert all(1 <= len(r.candidates) <= 3 and r.candidates[0].box == r.box for r in res)
    z = gazecrop.crops(img, ["16:9"], model=fixed, zoom=True)[0]
    assert z.box.width < 800 and z.scale < 1
    assert gazecrop.crop_box(img, "16:9", model=fixed, zoom=True) == z.box
    assert gazecrop.crop(img, "16:9", model=fixed, zoom=True).size == (z.box.width, z.box.height)
    with pytest.raises(ValueError):
        gazecrop.crops(img, ["16:9"], model=fixed, candidates=0)
    with pytest.raises(TypeError):
        gazecrop.crops(img, ["16:9"], model=fixed, symmetric="yes")


def test_symmetric_runs_the_model_twice_and_mirrors_exactly():
    class Lopsided:  # a model whose map of a mirrored photo is not the mirror of its map
        calls = 0

        def input_size(self, h, w):
            return h, w

        def log_density(self, rgb):
            self.calls += 1
            g = np.log(np.linspace(1, 3, 8))[None, :] + np.log(1 + rgb[:6, :8, 0].astype(np.float32) / 64)
            return (g - np.log(np.exp(g).sum())).astype(np.float32)

    a = np.random.default_rng(3).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    m = Lopsided()
    r1 = gazecrop.crops(a, ["1:2"], model=m, symmetric=True)[0]
    assert m.calls == 2
    r2 = gazecrop.crops(np.ascontiguousarray(a[:, ::-1]), ["1:2"], model=m, symmetric=True)[0]
    assert r2.box.left == 80 - r1.box.left - r1.box.width and r2.score == r1.score
    plain = gazecrop.predict(a, model=m).log_density
    sym = gazecrop.predict(a, model=m, symmetric=True).log_density
    assert not np.array_equal(plain, sym)


# ------------------------------------------------------------------------------------------------------ CLI

@pytest.fixture
def cli_model(monkeypatch, fixed):
    monkeypatch.setattr(api, "_model", lambda model: fixed)
    return fixed


def test_cli_sizes_aspects_and_names(cli_model, tmp_path, capsys):
    src = tmp_path / "p.jpg"
    photo(640, 480).save(src, quality=90)
    out = tmp_path / "out"
    rc = main([str(src), "--size", "320x180", "-s", "1x4000", "--aspect", "1:1", "--out", str(out), "--json"])
    assert rc == 0
    rec = json.loads(capsys.readouterr().out)
    assert sorted(p.name for p in out.iterdir()) == ["p_1x1.jpg", "p_1x4000.jpg", "p_320x180.jpg"]
    with Image.open(out / "p_320x180.jpg") as im:
        assert im.size == (320, 180)
    with Image.open(out / "p_1x4000.jpg") as im:
        assert im.size == (1, 4000)
    with Image.open(out / "p_1x1.jpg") as im:
        assert im.size == (480, 480)
    by = {c["aspect_text"]: c for c in rec["crops"]}
    assert by["320x180"]["size"] == [320, 180] and "size" not in by["1:1"]
    rc = main([str(src), "-s", "64x32", "--name", "{stem}-{size}.png", "--out", str(out)])
    assert rc == 0 and (out / "p-64x32.png").is_file()
    rc = main([str(src), "-s", "6400x3200", "--no-upscale", "--name", "{stem}-big{ext}", "--out", str(out)])
    with Image.open(out / "p-big.jpg") as im:
        assert rc == 0 and im.size == (640, 320)


@pytest.mark.parametrize("argv", [
    ["--size", "0x10"], ["--size", "abc"], ["--size", "10"], ["--candidates", "0"], ["--zoom", "2,0.5"],
    ["--zoom", "x"], ["--size", "16x9", "--aspect", "16:9", "--out", "o"],
    ["--size", "10x10", "--size", "20x20", "--name", "{stem}{ext}", "--out", "o"]])
def test_cli_usage_errors_for_the_new_options(cli_model, tmp_path, argv):
    src = tmp_path / "p.png"
    photo(40, 30).save(src)
    with pytest.raises(SystemExit) as e:
        main([str(src)] + argv)
    assert e.value.code == 2


def test_cli_candidates_close_zoom_symmetric(monkeypatch, tmp_path, capsys):
    g = np.full((12, 8), -12.0)
    g[2, 4] = g[9, 4] = 0.0  # two equal subjects that a 16:9 box cannot hold together
    m = FixedModel(g)
    monkeypatch.setattr(api, "_model", lambda model: m)
    src = tmp_path / "tall.png"
    photo(400, 600).save(src)
    assert main([str(src), "-a", "16:9", "--candidates", "3", "--json", "--symmetric"]) == 0
    c = json.loads(capsys.readouterr().out)["crops"][0]
    assert c["close"] is True and 2 <= len(c["candidates"]) <= 3 and c["candidates"][0]["box"] == c["box"]
    assert m.calls == 2  # --symmetric
    assert main([str(src), "-a", "16:9", "--candidates", "2"]) == 0
    text = capsys.readouterr().out
    assert "close choice" in text and "alternatives=left=0 top=" in text
    assert main([str(src), "-a", "16:9", "--zoom", "0.5,0.4", "--json"]) == 0
    c = json.loads(capsys.readouterr().out)["crops"][0]
    assert c["scale"] < 1 and c["box"][2] < 400


def test_cli_warns_about_a_clamped_box(cli_model, tmp_path, capsys):
    src = tmp_path / "p.png"
    photo(40, 30).save(src)
    assert main([str(src), "-a", "1e-9", "--json"]) == 0
    cap = capsys.readouterr()
    c = json.loads(cap.out)["crops"][0]
    assert c["clamped"] is True and c["box"][2] == 1
    assert "clamped to 1" in cap.err
    assert main([str(src), "-a", "16:9"]) == 0
    assert "clamped" not in capsys.readouterr().err
    assert math.isfinite(c["cut"])
