"""gazecrop.thumbor without a server: the focal points (aspect-independent, integer weights >= 1, centre of
mass at the mean of gazecrop's own box centres), thumbor's crop rule rewritten, the focal(...) filter string
and the CLI's ``focal`` field; the Detector's fall-through, settings and model cache on fake thumbor contexts
(those need thumbor installed: ``tests/test_thumbor_server.py`` runs them in CI's thumbor environment)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import types

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import gazecrop
import gazecrop.api as api
import gazecrop.thumbor as gt
from gazecrop.cli import main
from gazecrop.crop import largest_box_size

from _crop_helpers import FixedModel, peak_grid

HAVE_THUMBOR = importlib.util.find_spec("thumbor") is not None


def _prediction(seed: int, size=(480, 320), grid=(12, 18)) -> gazecrop.Prediction:
    rng = np.random.default_rng(seed)
    g = rng.normal(0.0, 1.5, grid).astype(np.float32)
    return gazecrop.Prediction(log_density=g, size=size)


# ------------------------------------------------------------------------------------------ focal filter

def test_focal_filter_string():
    assert gt.focal_filter(gazecrop.CropBox(10, 20, 300, 100)) == "focal(10x20:310x120)"
    assert gt.focal_filter((0, 0, 1, 1)) == "focal(0x0:1x1)"
    assert gt.focal_filter(np.array([3, 4, 5, 6])) == "focal(3x4:8x10)"


@pytest.mark.parametrize("box", [(-1, 0, 5, 5), (0, 0, 0, 5), (0, 0, 5, 0), (0, 0, 5), (0.5, 0, 5, 5),
                                 ("a", 0, 5, 5), None, (0, 0, 5, 5, 5)])
def test_focal_filter_rejects_bad_boxes(box):
    with pytest.raises(ValueError, match="box must be"):
        gt.focal_filter(box)


# ------------------------------------------------------------------------------------ thumbor's crop rule

def test_thumbor_crop_centres_on_the_weighted_centre_of_mass_and_clamps():
    # centre of mass floor((100 * 1 + 400 * 3) / 4) = 325, floor((50 + 750) / 4) = 200; 3:1 crops y only
    pts = [(100, 50, 1), (400, 250, 3)]
    assert gt.thumbor_crop(pts, (480, 320), (300, 100)) == gazecrop.CropBox(0, 120, 480, 160)  # 200 - 80
    assert gt.thumbor_crop(pts, (480, 320), (100, 300)) == gazecrop.CropBox(272, 0, 107, 320)  # ceil(106.67)
    assert gt.thumbor_crop([(470, 5, 1)], (480, 320), (100, 100)) == gazecrop.CropBox(160, 0, 320, 320)
    assert gt.thumbor_crop([], (480, 320), (100, 100)) == gazecrop.CropBox(80, 0, 320, 320)  # thumbor's centre
    assert gt.thumbor_crop(pts, (480, 320), (300, 200)) == gazecrop.CropBox(0, 0, 480, 320)  # same aspect
    with pytest.raises(ValueError, match="total weight"):
        gt.thumbor_crop([(1, 1, 0)], (480, 320), (100, 100))
    with pytest.raises(ValueError, match="positive"):
        gt.thumbor_crop(pts, (480, 0), (100, 100))


@settings(max_examples=200, deadline=None)
@given(W=st.integers(1, 3000), H=st.integers(1, 3000), tw=st.integers(1, 2000), th=st.integers(1, 2000),
       x=st.integers(0, 2999), y=st.integers(0, 2999))
def test_thumbor_crop_is_the_largest_box_inside_the_image(W, H, tw, th, x, y):
    b = gt.thumbor_crop([(min(x, W - 1), min(y, H - 1), 1)], (W, H), (tw, th))
    assert 0 <= b.left and b.right <= W and 0 <= b.top and b.bottom <= H
    if (b.width, b.height) != (W, H):
        assert b.width == W or b.height == H
        gw, gh = largest_box_size((W, H), tw / th)
        assert abs(b.width - gw) <= 1 and abs(b.height - gh) <= 1  # thumbor rounds with ceil, gazecrop rounds


# ------------------------------------------------------------------------------------------ focal points

@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("size", [(480, 320), (320, 480), (500, 500), (1200, 300)])
def test_points_are_integer_and_inside(seed, size):
    pts = gt.points_from_prediction(_prediction(seed, size))
    assert 1 <= len(pts) <= len(gt.DEFAULT_ASPECTS) + 2
    for p in pts:
        assert all(type(v) is int for v in p) and p.weight >= 1
        assert 0 <= p.x < size[0] and 0 <= p.y < size[1]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("size", [(480, 320), (320, 480), (500, 500)])
def test_centre_of_mass_is_the_mean_of_gazecrops_box_centres(seed, size):
    pred = _prediction(seed, size)
    W, H = size
    pts = gt.points_from_prediction(pred)
    total = sum(p.weight for p in pts)
    fx, fy = sum(p.x * p.weight for p in pts) / total, sum(p.y * p.weight for p in pts) / total
    res = pred.crops(list(gt.DEFAULT_ASPECTS))
    xs = [r.box.left + r.box.width // 2 for r in res if r.box.width < W]
    ys = [r.box.top + r.box.height // 2 for r in res if r.box.height < H]
    assert abs(fx - (np.mean(xs) if xs else W // 2)) <= 1
    assert abs(fy - (np.mean(ys) if ys else H // 2)) <= 1


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("aspect, target", [("16:9", (1600, 900)), ("9:16", (90, 160)), ("1:1", (300, 300)),
                                            ("3:1", (300, 100))])
def test_one_reference_aspect_reproduces_gazecrops_box(seed, aspect, target):
    """With GAZECROP_ASPECTS = [a], thumbor's crop for a request of aspect a is gazecrop's own box for a
    (to thumbor's rounding)."""
    pred = _prediction(seed)
    own = pred.crops([aspect])[0].box
    got = gt.thumbor_crop(gt.points_from_prediction(pred, [aspect]), pred.size, target)
    assert max(abs(a - b) for a, b in zip(got, own)) <= 1, (got, own)


def test_points_do_not_depend_on_anything_but_the_image():
    pred = _prediction(3)
    assert gt.points_from_prediction(pred) == gt.points_from_prediction(pred)
    # an aspect equal to the image's is not cropped by thumbor, so gives no point; stand-ins cover both axes
    pts = gt.points_from_prediction(pred, ["3:2"])
    assert len(pts) == 2 and gt.points_from_prediction(pred, [1.5, "3:2"]) == pts
    assert gt.points_from_prediction(gazecrop.Prediction(np.zeros((1, 1), np.float32), (1, 1))) == []


@pytest.mark.parametrize("aspects, err", [("16:9", TypeError), ([], ValueError), (["0:1"], ValueError),
                                          ([None], TypeError)])
def test_bad_reference_aspects(aspects, err):
    with pytest.raises(err):
        gt.points_from_prediction(_prediction(0), aspects)


def test_focal_points_runs_the_model_once(tmp_path):
    m = FixedModel(peak_grid(6, 8, 1, 6))
    rgb = np.zeros((120, 160, 3), np.uint8)
    pts = gt.focal_points(rgb, model=m)
    assert m.calls == 1
    assert pts == gt.points_from_prediction(gazecrop.predict(rgb, model=m))
    with pytest.raises(TypeError):
        gt.focal_points(rgb, model=m, aspects="1:1")
    assert m.calls == 2  # the bad aspect list failed before a model run


# ------------------------------------------------------------------------------------------------- CLI

def test_cli_json_carries_the_focal_filter(tmp_path, monkeypatch, capsys):
    m = FixedModel(peak_grid(6, 8, 1, 6))
    monkeypatch.setattr(api, "_model", lambda model: m)
    from PIL import Image

    Image.fromarray(np.zeros((120, 160, 3), np.uint8)).save(tmp_path / "a.png")
    assert main([str(tmp_path / "a.png"), "--aspect", "16:9", "--aspect", "1:1", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    for c in rec["crops"]:
        left, top, w, h = c["box"]
        assert c["focal"] == f"focal({left}x{top}:{left + w}x{top + h})"


# -------------------------------------------------------------------------------------------- Detector

@pytest.mark.skipif(HAVE_THUMBOR, reason="thumbor is installed")
def test_detector_without_thumbor_says_how_to_install():
    with pytest.raises(ImportError, match=r"gazecrop\[thumbor\]"):
        gt.Detector  # noqa: B018


def test_module_has_no_other_lazy_attributes():
    with pytest.raises(AttributeError):
        gt.NoSuchThing  # noqa: B018


class _Engine:
    def __init__(self, rgb: np.ndarray = None, fail: Exception = None):
        self.rgb, self.fail = rgb, fail

    @property
    def size(self):
        return (self.rgb.shape[1], self.rgb.shape[0])

    def image_data_as_rgb(self, update_image=True):
        assert update_image is False
        if self.fail:
            raise self.fail
        return "RGB", self.rgb.tobytes()


class _Pool:
    async def queue(self, operation, *args):
        return operation(*args)


def _context(engine, **settings):
    from thumbor.config import Config

    gt.Detector  # noqa: B018  (defines the settings)
    config = Config(**settings)
    return types.SimpleNamespace(config=config, modules=types.SimpleNamespace(engine=engine),
                                 request=types.SimpleNamespace(focal_points=[], image_url="x.png"),
                                 thread_pool=_Pool())


def _run(context):
    from thumbor.detectors import BaseDetector

    calls = []

    class Next(BaseDetector):
        async def detect(self):
            calls.append(True)

    asyncio.run(gt.Detector(context, 0, [gt.Detector, Next]).detect())
    return calls


@pytest.mark.skipif(not HAVE_THUMBOR, reason="thumbor is not installed (tests/test_thumbor_server.py, .ci/run)")
def test_detector_appends_the_points(monkeypatch):
    m = FixedModel(peak_grid(6, 8, 1, 6))
    monkeypatch.setattr(gt, "_model", lambda path, threads: m)
    rgb = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    ctx = _context(_Engine(rgb))
    assert _run(ctx) == []  # found points: the next detector is not asked
    got = [(p.x, p.y, p.weight, p.origin) for p in ctx.request.focal_points]
    assert got == [(p.x, p.y, p.weight, "gazecrop") for p in gt.focal_points(rgb, model=m)]


@pytest.mark.skipif(not HAVE_THUMBOR, reason="thumbor is not installed (tests/test_thumbor_server.py, .ci/run)")
@pytest.mark.parametrize("case", ["engine fails", "bad aspects setting", "bad threads", "missing model",
                                  "1x1 image"])
def test_detector_failures_fall_through(monkeypatch, case, tmp_path):
    rgb = np.zeros((40, 60, 3), np.uint8)
    settings = {}
    engine = _Engine(rgb)
    if case == "engine fails":
        engine = _Engine(rgb, fail=OSError("broken"))
        monkeypatch.setattr(gt, "_model", lambda path, threads: FixedModel(peak_grid(6, 8, 1, 6)))
    elif case == "1x1 image":  # no point to crop around
        engine = _Engine(np.zeros((1, 1, 3), np.uint8))
        monkeypatch.setattr(gt, "_model", lambda path, threads: FixedModel(peak_grid(6, 8, 1, 6)))
    elif case == "bad aspects setting":
        settings["GAZECROP_ASPECTS"] = ["wide"]
    elif case == "bad threads":
        settings["GAZECROP_THREADS"] = 0
    else:
        settings["GAZECROP_MODEL"] = str(tmp_path / "missing.gzw")
    ctx = _context(engine, **settings)
    assert _run(ctx) == [True]
    assert ctx.request.focal_points == []


@pytest.mark.skipif(not HAVE_THUMBOR, reason="thumbor is not installed (tests/test_thumbor_server.py, .ci/run)")
def test_detector_settings_and_model_cache(monkeypatch):
    loads = []

    def fake_load(path, threads=1):
        loads.append((path, threads))
        return FixedModel(peak_grid(6, 8, 1, 6))

    monkeypatch.setattr("gazecrop.model.load_model", fake_load)
    monkeypatch.setattr(gt, "_MODELS", {})
    rgb = np.zeros((40, 60, 3), np.uint8)
    for _ in range(3):
        ctx = _context(_Engine(rgb), GAZECROP_THREADS="2", GAZECROP_ASPECTS="16:9, 1:1")
        assert _run(ctx) == []
        assert len(ctx.request.focal_points) == 2  # one point per reference aspect
    assert loads == [(None, 2)]  # loaded once per process and setting
    assert len(gt._MODELS) == 1
