"""The native crop placement (``gazecrop._core.place``, cpp/src/placement.cpp): with the default options,
:func:`gazecrop.crop.choose_crops` runs the ``"mass"`` rule in the core, which must give exactly (bit for bit,
every field of every :class:`CropResult`) what the Python reference in ``gazecrop.crop`` gives
(``GAZECROP_PLACEMENT=python``); the options it does not run stay on the reference; bad arguments to the
binding raise, never crash."""

from __future__ import annotations

import importlib
import math
import os
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gazecrop import _core

crop = importlib.import_module("gazecrop.crop")  # the module (gazecrop.crop is the function)

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def placement(which: str):
    with mock.patch.dict(os.environ, {"GAZECROP_PLACEMENT": which}):
        yield


def both(*args, **kwargs):
    """choose_crops on the reference and on the core (a ValueError stands for its message)."""
    out = []
    for which in ("python", "native"):
        with placement(which):
            try:
                out.append(crop.choose_crops(*args, **kwargs))
            except ValueError as e:
                out.append(f"ValueError: {e}")
    return tuple(out)


def grid_from(kind: str, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "smooth":  # a few Gaussian bumps, like a model's map
        yy, xx = np.mgrid[0:h, 0:w]
        g = np.full((h, w), -8.0)
        for _ in range(rng.integers(1, 4)):
            cy, cx, s = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0.5, max(h, w) / 3 + 1)
            g = np.logaddexp(g, rng.uniform(-1, 1) - ((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
        return g
    if kind == "plateaus":  # rounded values: equal cells, flat maxima, ties
        return np.round(rng.normal(size=(h, w)))
    if kind == "mirror":  # its own mirror image: ties between a box and its mirror
        g = rng.normal(size=(h, w)) * 2
        return g + g[:, ::-1]
    if kind == "flat":
        return np.zeros((h, w))
    if kind == "holes":  # cells without mass
        g = rng.normal(size=(h, w))
        g[rng.random((h, w)) < 0.3] = -np.inf
        g.flat[rng.integers(0, h * w)] = 0.0
        return g
    return rng.normal(size=(h, w)) * rng.uniform(0.1, 5)


aspect = st.one_of(st.floats(0.2, 5.0), st.sampled_from(["1:1", "16:9", "9:16", "2:1", "4:5", "3:2"]))


@settings(max_examples=400, deadline=None)
@given(kind=st.sampled_from(["smooth", "plateaus", "mirror", "flat", "holes", "noise"]),
       h=st.integers(1, 40), w=st.integers(1, 40), W=st.integers(1, 2500), H=st.integers(1, 2500),
       aspects=st.lists(aspect, min_size=1, max_size=4), n_heads=st.integers(0, 3),
       candidates=st.integers(1, 5), object_yield=st.sampled_from([None, 0.0, 0.1, 0.5, math.inf]),
       focal=st.booleans(), seed=st.integers(0, 2**31))
def test_the_core_gives_the_reference_results_bit_for_bit(kind, h, w, W, H, aspects, n_heads, candidates,
                                                          object_yield, focal, seed):
    rng = np.random.default_rng(seed)
    g = grid_from(kind, h, w, rng)
    heads = []
    for _ in range(n_heads):
        left, top = int(rng.integers(0, W)), int(rng.integers(0, H))
        heads.append((left, top, int(rng.integers(1, W - left + 1)), int(rng.integers(1, H - top + 1))))
    point = (float(rng.uniform(0, W - 1)), float(rng.uniform(0, H - 1))) if focal else None
    ref, nat = both(g, (W, H), aspects, heads=heads, candidates=candidates, object_yield=object_yield,
                    focal=point)
    assert nat == ref  # every field, floats compared exactly


@pytest.mark.parametrize("size", [(1024, 768), (768, 1024), (4032, 3024), (1, 1), (5000, 7)])
def test_the_shipped_model_on_the_sample_photo_places_alike_at_every_size(size):
    import gazecrop

    pred = gazecrop.predict(str(ROOT / "examples" / "photo.jpg"))
    assert pred.head_map is not None  # the default model has a head map: the head rule runs
    heads = crop.heads_from_map(pred.head_map, size)
    aspects = ["16:9", "1:1", "4:5", "2:1", "9:16", "3:2", size[0] / size[1]]
    ref, nat = both(pred.log_density, size, aspects, heads=heads, candidates=3)
    assert nat == ref
    mirrored = crop.heads_from_map(pred.head_map[:, ::-1], size)
    flipped = crop.choose_crops(pred.log_density[:, ::-1], size, aspects, heads=mirrored, candidates=3)
    if sorted(mirrored) == sorted(crop.CropBox(size[0] - b.right, b.top, b.width, b.height) for b in heads):
        for a, b in zip(nat, flipped):  # the core keeps the rule's exact mirror equivariance
            assert b.box == crop.CropBox(size[0] - a.box.right, a.box.top, a.box.width, a.box.height)
            assert b.score == a.score


@pytest.mark.parametrize("which", ["python", "native"])
def test_a_map_without_mass_at_the_pixels_is_refused(which):
    # a 1-pixel-wide image interpolates the two middle cells of a 4-cell row: both -inf, so no pixel has mass
    with placement(which), pytest.raises(ValueError, match="no mass at the image's pixels"):
        crop.choose_crop(np.array([[0.0, -np.inf, -np.inf, 0.0]]), (1, 1), "1:1")


def test_maps_the_core_does_not_take_as_they_are_still_place_alike():
    # (review findings) a transposed map (Fortran order after exp), a huge candidates count, and a grid too big
    # for the core's profiles (runs in Python): the same results as the reference
    g = grid_from("smooth", 24, 32, np.random.default_rng(3))
    for args, kwargs in [((np.rot90(g), (768, 1024), ["16:9", "1:1"]), {}),
                         ((g.T, (30, 40), ["2:1"]), dict(candidates=2**40)),
                         ((np.ones((64, 512)), (1 << 14, 1 << 12), ["1:1"]), {})]:
        ref, nat = both(*args, **kwargs)
        assert isinstance(ref, list) and nat == ref
    opts = crop.check_options()
    assert crop._native(opts, (24, 32), (4032, 3024))
    assert not crop._native(opts, (1, 1 << 14), (1, 1 << 15))  # 2^29 interpolations: Python's numpy


def test_grids_and_images_beyond_the_core_run_in_python_alike(monkeypatch):
    # (new-user findings) a full-resolution map over 2^22 cells, and images beyond the core's limits
    opts = crop.check_options()
    assert not crop._native(opts, (1800, 2400), (2400, 1800))  # 4.3 M cells
    assert crop._native(opts, (2048, 2048), (2048, 2048))
    g = np.zeros((2049, 2048))
    ref, nat = both(g, (4, 3), ["1:1"])
    assert isinstance(ref, list) and nat == ref
    with pytest.raises(ValueError, match="1 to 1048576 pixels a side"):
        crop.choose_crop(np.zeros((2, 2)), ((1 << 20) + 1, 2), "1:1")


@pytest.mark.parametrize("size, error", [
    ((320.9, 240), TypeError), (("320", "240"), TypeError), ("32", TypeError), (b"\x20\x18", TypeError),
    ({320: 1, 240: 2}, TypeError), ((True, 240), TypeError), ((320,), TypeError), ((float("inf"), 240), TypeError),
    ((0, 240), ValueError), ((2**40, 2**40), ValueError), ((np.int64(320), np.int32(240)), None),
])
def test_image_sizes_are_ints_within_range(size, error):
    if error is None:
        assert crop.choose_crop(np.zeros((3, 4)), size, "1:1").box.height == 240
        return
    with pytest.raises(error):
        crop.choose_crop(np.zeros((3, 4)), size, "1:1")


@pytest.mark.parametrize("grid", [np.zeros((3, 4), bool), np.array([["a", "b"]]), np.zeros((2, 2), "datetime64[s]"),
                                  np.zeros((2, 2), [("a", "f8")]), np.zeros((2, 2), complex),
                                  np.ma.masked_array(np.zeros((2, 2)), [[1, 0], [0, 0]]),
                                  np.array([[None, 1.0]], object)])
def test_grids_that_are_not_real_numbers_are_refused(grid):
    with pytest.raises(TypeError, match="log_density"):
        crop.choose_crop(grid, (40, 30), "1:1")


def test_huge_numbers_give_value_errors_or_their_limit():
    g = np.zeros((3, 4))
    with pytest.raises(ValueError, match="aspect"):
        crop.choose_crop(g, (40, 30), 10**400)
    with pytest.raises(ValueError, match="at most"):
        crop.choose_crop(g, (40, 30), "9:16", boost=[((0, 0, 10, 10), 1e305)])
    assert crop.choose_crop(g, (40, 30), "1:1", object_yield=10**400) == crop.choose_crop(g, (40, 30), "1:1",
                                                                                           object_yield=math.inf)
    crop.choose_crop(g, (40, 30), "9:16", boost=[((0, 0, 10, 10), crop.MAX_BOOST)] * 3)  # finite masses


@pytest.mark.parametrize("value, native, warns", [("python", False, False), (" PYTHON ", False, False),
                                                  ("", True, False), ("Native", True, False),
                                                  ("garbage", True, True)])
def test_the_placement_switch(monkeypatch, value, native, warns):
    import warnings

    monkeypatch.setenv("GAZECROP_PLACEMENT", value)
    monkeypatch.setattr(crop, "_WARNED", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert crop._native(crop.check_options(), (24, 32), (1024, 768)) == native
    assert bool(caught) == warns and all("GAZECROP_PLACEMENT" in str(w.message) for w in caught)


def test_the_binding_copies_unaligned_and_huge_grids_safely():
    raw = np.zeros(4 * 5 * 8 + 1, np.uint8)
    d = raw[1:].view(np.float64).reshape(4, 5)  # misaligned by one byte
    d[...] = unit()
    assert not d.flags.aligned
    assert _core.place(d, 50, 40, [(50, 20)], [], 0.1, 1) == _core.place(unit(), 50, 40, [(50, 20)], [], 0.1, 1)
    with pytest.raises(ValueError, match="too large"):
        _core.place(np.ones((1 << 12, (1 << 10) + 1)), 10, 10, [(10, 5)], [], 0.1, 1)
    with pytest.raises(ValueError, match="too much work"):
        _core.place(np.ones((1, 1 << 20)), 1, 1 << 20, [(1, 1)], [], 0.1, 1)


def test_only_the_default_options_go_to_the_core(monkeypatch):
    calls = []
    real = _core.place
    monkeypatch.setattr(_core, "place", lambda *a: calls.append(a) or real(*a))
    g = grid_from("smooth", 12, 16, np.random.default_rng(1))
    crop.choose_crops(g, (640, 480), ["16:9", "1:1"], candidates=2, heads=[(10, 10, 50, 60)])
    crop.choose_crop(g, (640, 480), "16:9", object_yield=None, focal=(100.0, 200.0))
    assert len(calls) == 2
    for options in (dict(zoom=True), dict(keep=[(0, 0, 10, 10)]), dict(boost=[((0, 0, 10, 10), 1.0)]),
                    dict(margin=0.25), dict(strategy="point"), dict(strategy="centre")):
        crop.choose_crop(g, (640, 480), "16:9", **options)
    assert len(calls) == 2
    with placement("python"):
        crop.choose_crop(g, (640, 480), "16:9")
    assert len(calls) == 2


def unit(h=4, w=5):
    d = np.random.default_rng(0).random((h, w))
    return d / d.max()


@pytest.mark.parametrize("args, error, match", [
    ((unit().astype(np.float32), 10, 10, [(10, 5)], [], 0.1, 1), TypeError, "float64"),
    ((unit()[None], 10, 10, [(10, 5)], [], 0.1, 1), ValueError, "2-D"),
    ((np.asfortranarray(unit()), 10, 10, [(10, 5)], [], 0.1, 1), ValueError, "C-contiguous"),
    ((np.zeros((0, 3)), 10, 10, [(10, 5)], [], 0.1, 1), ValueError, "grid"),
    ((unit() * 0.5, 10, 10, [(10, 5)], [], 0.1, 1), ValueError, "maximum must be 1"),
    ((np.where(unit() < 0.5, np.nan, unit()), 10, 10, [(10, 5)], [], 0.1, 1), ValueError, "finite"),
    ((unit() - 0.5, 10, 10, [(10, 5)], [], 0.1, 1), ValueError, ">= 0"),
    ((unit(), 0, 10, [(1, 1)], [], 0.1, 1), ValueError, "image size"),
    ((unit(), 10, (1 << 20) + 1, [(10, 5)], [], 0.1, 1), ValueError, "image size"),
    ((unit(), 10, 10, [(5, 5)], [], 0.1, 1), ValueError, "largest box"),
    ((unit(), 10, 10, [(11, 10)], [], 0.1, 1), ValueError, "largest box"),
    ((unit(), 10, 10, [(0, 10)], [], 0.1, 1), ValueError, "largest box"),
    ((unit(), 10, 10, [(10, 5)], [(0, 0, 11, 5)], 0.1, 1), ValueError, "head"),
    ((unit(), 10, 10, [(10, 5)], [(3, 3, 3, 5)], 0.1, 1), ValueError, "head"),
    ((unit(), 10, 10, [(10, 5)], [(-1, 0, 3, 5)], 0.1, 1), ValueError, "head"),
    ((unit(), 10, 10, [(10, 5)], [], -0.1, 1), ValueError, "object_yield"),
    ((unit(), 10, 10, [(10, 5)], [], math.nan, 1), ValueError, "object_yield"),
    ((unit(), 10, 10, [(10, 5)], [], 0.1, 0), ValueError, "candidates"),
    ((unit(), 10, 10, [(10, 5, 1)], [], 0.1, 1), TypeError, "incompatible function arguments"),
    ((unit(), 10, 10, [(10, 5)], [(1, 2)], 0.1, 1), TypeError, "incompatible function arguments"),
    ((unit(), 10, 10, "16:9", [], 0.1, 1), TypeError, "incompatible function arguments"),
])
def test_the_binding_refuses_bad_arguments(args, error, match):
    with pytest.raises(error, match=match):
        _core.place(*args)


def test_the_binding_returns_plain_python_values():
    point, peaks, placed = _core.place(unit(6, 8), 80, 60, [(80, 45), (60, 60)], [], 0.1, 3)
    assert isinstance(point, tuple) and all(isinstance(v, int) for v in point)
    assert all(isinstance(x, int) and isinstance(y, int) and 0 < s <= 1 for x, y, s in peaks)
    assert len(placed) == 2
    for (ranked, cut), (bw, bh) in zip(placed, [(80, 45), (60, 60)]):
        assert 1 <= len(ranked) <= 3 and 0 <= cut <= 1
        for left, top, score in ranked:
            assert 0 <= left <= 80 - bw and 0 <= top <= 60 - bh and 0 <= score <= 1 + 1e-12
