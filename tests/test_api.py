"""Public API (saliency_map, crop_box, crops, crop, predict) on small model objects: shapes, logsumexp 0,
one model run for several aspects, EXIF orientation, draft decoding, model=None caching."""

import math

import numpy as np
import pytest
from PIL import Image, ImageOps

import gazecrop
import gazecrop.api as api
from gazecrop import CropBox, CropResult

from _crop_helpers import FixedModel, ReferenceModel, peak_grid, tiny_model, tiny_network


def lse(a):
    a = np.asarray(a, np.float64)
    m = a.max()
    return m + math.log(np.exp(a - m).sum())


def photo(h=90, w=120, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def model(tmp_path):
    return tiny_model(tmp_path)


def test_saliency_map_shape_and_normalisation(model):
    for h, w in [(90, 120), (1, 1), (7, 300), (300, 7)]:
        m = gazecrop.saliency_map(photo(h, w), model=model)
        assert m.shape == (h, w) and m.dtype == np.float32
        assert abs(lse(m)) < 1e-5


def test_predict_grid_is_a_log_density(model):
    pred = gazecrop.predict(photo(), model=model)
    assert pred.size == (120, 90) and pred.log_density.ndim == 2
    assert abs(lse(pred.log_density)) < 1e-4
    np.testing.assert_array_equal(pred.saliency_map(), gazecrop.saliency_map(photo(), model=model))


def test_reference_model_matches_the_native_model_when_built(tmp_path):
    pytest.importorskip("gazecrop._core")
    native = tiny_model(tmp_path)
    assert isinstance(native, gazecrop.Model)
    ref = ReferenceModel(tiny_network())
    img = photo(96, 128)
    np.testing.assert_allclose(native.log_density(img), ref.log_density(img), atol=1e-3)


def test_crops_runs_the_model_once():
    fixed = FixedModel(peak_grid(12, 16, 3, 12))
    res = gazecrop.crops(photo(1200, 1600), ["16:9", "1:1", 0.5625, "2:1"], model=fixed)
    assert fixed.calls == 1
    assert [r.box for r in res] == [CropBox(0, 0, 1600, 900), CropBox(400, 0, 1200, 1200),
                                    CropBox(912, 0, 675, 1200), CropBox(0, 0, 1600, 800)]
    # (the peak is at x = 1250.0 in edge coordinates: lefts 912 and 913 centre the box equally well, the tie
    # goes towards the image centre)
    assert all(isinstance(r, CropResult) and r.salient_point == (1250, 350) for r in res)


def test_crop_box_and_crop(tmp_path):
    fixed = FixedModel(peak_grid(12, 16, 8, 2))
    a = photo(120, 160)
    box = gazecrop.crop_box(a, "1:1", model=fixed)
    assert box == CropBox(0, 0, 120, 120) and all(isinstance(v, int) for v in box)
    out = gazecrop.crop(a, 1, model=fixed)
    assert isinstance(out, Image.Image) and out.size == (120, 120)
    assert np.array_equal(np.asarray(out), a[:, :120])
    assert gazecrop.crop_box(a, "1:1", model=fixed, strategy="centre") == CropBox(20, 0, 120, 120)


def test_crop_keeps_the_mode_of_the_input(tmp_path):
    rgba = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 80, 4), dtype=np.uint8), "RGBA")
    path = tmp_path / "a.png"
    rgba.save(path)
    fixed = FixedModel(peak_grid(4, 8, 2, 6))
    for src in (path, str(path), rgba):
        out = gazecrop.crop(src, "1:1", model=fixed)
        assert out.mode == "RGBA" and out.size == (40, 40)
        assert np.array_equal(np.asarray(out), np.asarray(rgba)[:, 40:])


def test_boxes_refer_to_the_displayed_image(tmp_path):
    stored = photo(60, 100)  # stored 100 wide, 60 high; orientation 6 displays it 60 wide, 100 high
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rot.jpg"
    Image.fromarray(stored).save(path, quality=95, exif=exif.tobytes())
    fixed = FixedModel(peak_grid(10, 6, 8, 3))  # grid over the displayed image: peak near the bottom
    res = gazecrop.crops(path, ["1:1"], model=fixed)[0]
    assert fixed.last_input_shape[:2] == (100, 60)
    assert res.box == CropBox(0, 40, 60, 60)
    out = gazecrop.crop(path, "1:1", model=fixed)
    with Image.open(path) as im:
        shown = ImageOps.exif_transpose(im)
        assert np.array_equal(np.asarray(out), np.asarray(shown.crop((0, 40, 60, 100))))
    assert gazecrop.saliency_map(path, model=fixed).shape == (100, 60)


def test_large_jpeg_is_decoded_small_for_the_model(tmp_path):
    path = tmp_path / "big.jpg"
    Image.fromarray(photo(1536, 2048)).save(path, quality=80)
    fixed = FixedModel(peak_grid(6, 8, 3, 4), long_side=64)
    res = gazecrop.crops(path, ["16:9"], model=fixed)[0]
    assert fixed.last_input_shape[:2] == (192, 256)  # 1/8 DCT scale
    assert res.box.width == 2048 and res.box.height == 1152


def test_bad_aspect_or_strategy_fails_before_the_model_runs():
    fixed = FixedModel(np.zeros((4, 4)))
    with pytest.raises(ValueError):
        gazecrop.crops(photo(), ["16:0"], model=fixed)
    with pytest.raises(ValueError):
        gazecrop.crop_box(photo(), "1:1", model=fixed, strategy="faces")
    with pytest.raises(ValueError, match="1e-300:1e300"):  # sides fine, quotient 0
        gazecrop.crops(photo(), ["1e-300:1e300"], model=fixed)
    with pytest.raises(TypeError, match="list of aspect ratios"):  # not read one character at a time
        gazecrop.crops(photo(), "16:9", model=fixed)
    assert fixed.calls == 0
    with pytest.raises(TypeError, match="list of aspect ratios"):
        gazecrop.predict(photo(), model=fixed).crops("16:9")


def test_bad_model_type():
    with pytest.raises(TypeError):
        gazecrop.saliency_map(photo(), model=42)


def test_default_model_is_loaded_once(monkeypatch):
    loads = []
    fixed = FixedModel(np.zeros((4, 4)))

    def fake_load(path=None):
        loads.append(path)
        return fixed

    monkeypatch.setattr(api, "load_model", fake_load)
    monkeypatch.setattr(api, "_MODELS", {})
    gazecrop.crop_box(photo(), "1:1")
    gazecrop.saliency_map(photo())
    assert loads == [None] and fixed.calls == 2
    gazecrop.crop_box(photo(), "1:1", model="some/model.gzw")
    assert len(loads) == 2 and loads[1].endswith("model.gzw")


def test_missing_bundled_model_is_a_clear_error(monkeypatch, tmp_path):
    def missing(path=None):
        raise FileNotFoundError("bundled model gazecrop-fast.gzw not found in the package")

    monkeypatch.setattr(api, "load_model", missing)
    monkeypatch.setattr(api, "_MODELS", {})
    with pytest.raises(FileNotFoundError, match="gazecrop-fast"):
        gazecrop.crop_box(photo(), "1:1")


def test_threads_share_one_model(model):
    from concurrent.futures import ThreadPoolExecutor

    imgs = [photo(60, 80, seed=s) for s in range(4)]
    serial = [gazecrop.crops(i, ["1:1", "16:9"], model=model) for i in imgs]
    with ThreadPoolExecutor(2) as pool:
        parallel = list(pool.map(lambda i: gazecrop.crops(i, ["1:1", "16:9"], model=model), imgs))
    assert serial == parallel
