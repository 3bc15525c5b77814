"""User control of the placement (issue 23): ``keep`` regions the box must contain, ``boost`` regions added to
the density, a manual ``focal`` point; on synthetic log-density grids (the crop layer alone)."""

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gazecrop.crop import (FOCAL_SIGMA, HEAD_YIELD, CropBox, box_mass, check_regions, choose_crop, choose_crops,
                           focal_log_density, head_box, largest_box_size, resample_log_density)

from test_placement import GRIDS, blobs, mirror


def holds(box, region):
    l, t, w, h = region
    return box.left <= l and box.top <= t and box.right >= l + w and box.bottom >= t + h


def region_in(data, W, H, max_w=None, max_h=None):
    """A random (left, top, width, height) inside a W x H image (sides up to max_w, max_h)."""
    w = data.draw(st.integers(1, min(W, max_w or W)))
    h = data.draw(st.integers(1, min(H, max_h or H)))
    return (data.draw(st.integers(0, W - w)), data.draw(st.integers(0, H - h)), w, h)


def mirror_region(r, W):
    return (W - r[0] - r[2], r[1], r[2], r[3])


# ------------------------------------------------------------------------------------------------- keep

@settings(max_examples=80, deadline=None, derandomize=True)
@given(**GRIDS, strategy=st.sampled_from(["mass", "point", "centre"]), data=st.data())
def test_keep_regions_are_held_whenever_a_box_of_that_size_can(gh, gw, W, H, aspect, seed, scale, strategy, data):
    grid = np.random.default_rng(seed).standard_normal((gh, gw)) * scale
    bw, bh = largest_box_size((W, H), aspect)
    keep = [region_in(data, W, H, bw, bh)]
    if data.draw(st.booleans()):  # a second region; both fit only when their union does
        keep.append(region_in(data, W, H, bw, bh))
    r = choose_crop(grid, (W, H), aspect, keep=keep, strategy=strategy, candidates=3)
    ux = max(k[0] + k[2] for k in keep) - min(k[0] for k in keep)
    uy = max(k[1] + k[3] for k in keep) - min(k[1] for k in keep)
    if ux <= bw and uy <= bh:
        assert all(holds(r.box, k) for k in keep) and r.kept == 1.0
        assert all(holds(c.box, k) for c in r.candidates for k in keep)
    else:  # as much of their area as any box of this size holds, and the result says so
        mask = np.zeros((H, W), bool)
        for l, t, w, h in keep:
            mask[t:t + h, l:l + w] = True
        c = np.pad(mask.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        best = max(c[t + bh, l + bw] - c[t, l + bw] - c[t + bh, l] + c[t, l]
                   for t in range(H - bh + 1) for l in range(W - bw + 1))
        assert r.kept == pytest.approx(best / mask.sum(), abs=1e-12) and r.kept < 1.0 and r.pad


@settings(max_examples=60, deadline=None, derandomize=True)
@given(**GRIDS, data=st.data())
def test_keep_and_boost_keep_the_placement_exactly_mirror_equivariant(gh, gw, W, H, aspect, seed, scale, data):
    grid = np.random.default_rng(seed).standard_normal((gh, gw)) * scale
    assume(not np.array_equal(grid, grid[:, ::-1]))
    bw, bh = largest_box_size((W, H), aspect)
    keep = [region_in(data, W, H, bw, bh)] if data.draw(st.booleans()) else []
    boost = [(region_in(data, W, H), data.draw(st.floats(0.05, 5.0)))]
    a = choose_crop(grid, (W, H), aspect, keep=keep, boost=boost, candidates=3)
    b = choose_crop(grid[:, ::-1], (W, H), aspect, keep=[mirror_region(k, W) for k in keep],
                    boost=[(mirror_region(k, W), w) for k, w in boost], candidates=3)
    if b.box != mirror(a.box, W):  # only a tie between a box and its mirror image may differ
        assert b.box == a.box and abs(a.score - b.score) <= 2e-6
        return
    assert b.score == a.score and b.close == a.close and b.kept == a.kept  # bit for bit


def test_keep_wins_over_the_most_salient_object_and_the_rule_still_applies_beside_it():
    size = (1600, 900)
    g = blobs(size, 48, [(300, 450, 60, 1.0), (1300, 450, 60, 0.3)])
    free = choose_crop(g, size, "1:1")
    assert free.box.left <= 300 - 120 and free.box.right >= 300 + 120  # the strong subject
    r = choose_crop(g, size, "1:1", keep=[(1250, 400, 100, 100)])
    assert holds(r.box, (1250, 400, 100, 100)) and r.kept == 1.0 and not r.pad
    # a small region beside the strong subject: the box holds both, the subject whole
    r2 = choose_crop(g, size, "1:1", keep=[(600, 100, 50, 50)])
    assert holds(r2.box, (600, 100, 50, 50)) and r2.box.left <= 300 - 120


def test_zoom_never_shrinks_the_box_below_the_keep_regions():
    size = (1200, 800)
    g = blobs(size, 48, [(600, 400, 40, 1.0)])
    tight = choose_crop(g, size, "1:1", zoom=(0.2, 0.5))
    assert tight.scale < 0.5
    r = choose_crop(g, size, "1:1", zoom=(0.2, 0.5), keep=[(100, 100, 500, 300)])
    assert holds(r.box, (100, 100, 500, 300)) and r.kept == 1.0 and r.box.width >= 500


def test_no_regions_is_exactly_the_default():
    g = np.random.default_rng(3).standard_normal((9, 12)) * 4
    a = choose_crops(g, (500, 300), ["1:1", "9:16", "2:1"], candidates=3)
    b = choose_crops(g, (500, 300), ["1:1", "9:16", "2:1"], candidates=3, keep=[], boost=[], focal=None)
    assert a == b and all(r.kept is None for r in a)


# ------------------------------------------------------------------------------------------------ boost

@settings(max_examples=40, deadline=None, derandomize=True)
@given(gh=st.integers(1, 8), gw=st.integers(1, 8), W=st.integers(1, 60), H=st.integers(1, 60),
       aspect=st.sampled_from([0.5, 1.0, 16 / 9]), seed=st.integers(0, 2 ** 16), data=st.data())
def test_boost_adds_weight_times_the_whole_mass_evenly_over_its_box_then_renormalises(gh, gw, W, H, aspect,
                                                                                      seed, data):
    grid = np.random.default_rng(seed).standard_normal((gh, gw)) * 3
    boost = [(region_in(data, W, H), data.draw(st.floats(0.1, 4.0))) for _ in range(data.draw(st.integers(1, 2)))]
    r = choose_crop(grid, (W, H), aspect, boost=boost, object_yield=None)
    p = np.exp(resample_log_density(grid, (W, H)).astype(np.float64))
    p /= p.sum()
    for (l, t, w, h), wt in boost:  # the definition, at full resolution
        p[t:t + h, l:l + w] += wt / (w * h)
    p /= p.sum()
    b = r.box
    assert r.score == pytest.approx(p[b.top:b.bottom, b.left:b.right].sum(), abs=1e-5)
    bw, bh = b.width, b.height
    best = max(p[t:t + bh, l:l + bw].sum() for t in range(H - bh + 1) for l in range(W - bw + 1))
    assert r.score >= best - 1e-5  # pure mass (object_yield None): the best box of the boosted density


def test_boost_pulls_the_box_to_a_region_the_model_misses():
    size = (1600, 900)
    g = blobs(size, 48, [(300, 450, 60, 1.0)])
    plain = choose_crop(g, size, "1:1")
    assert plain.box.left <= 180
    r = choose_crop(g, size, "1:1", boost=[((1200, 300, 200, 200), 2.0)])
    assert r.box.right >= 1400 and r.box.left <= 1200
    assert r.salient_point == plain.salient_point  # the map's own point
    weak = choose_crop(g, size, "1:1", boost=[((1200, 300, 200, 200), 0.05)])
    assert weak.box == plain.box and weak.score < plain.score  # renormalised: a share of more mass


# ------------------------------------------------------------------------------------------------ focal

@settings(max_examples=60, deadline=None, derandomize=True)
@given(W=st.integers(1, 900), H=st.integers(1, 900), aspect=st.sampled_from([0.3, 9 / 16, 1.0, 16 / 9, 3.0]),
       fx=st.floats(0, 1, exclude_max=True), fy=st.floats(0, 1, exclude_max=True))
def test_focal_centres_the_box_on_the_point_as_far_as_the_image_allows(W, H, aspect, fx, fy):
    x, y = fx * W, fy * H
    grid = np.random.default_rng(0).standard_normal((7, 9)) * 5  # ignored
    r = choose_crop(grid, (W, H), aspect, focal=(x, y))
    assert r == choose_crop(None, (W, H), aspect, focal=(x, y))
    assert r.salient_point == (min(W - 1, math.floor(x + 0.5)), min(H - 1, math.floor(y + 0.5)))
    assert r.peaks[0][:2] == r.salient_point and len(r.peaks) == 1
    b = r.box
    for lo, n, N, c in ((b.left, b.width, W, x + 0.5), (b.top, b.height, H, y + 0.5)):
        ideal = min(max(c - n / 2, 0), N - n)  # the centred start, clamped into the image
        assert abs(lo - ideal) <= max(1.0, 0.02 * N)
    assert r.advice is None or "aspect" in r.advice  # no mass advice for a manual point


def test_focal_map_is_narrow_and_keep_applies_with_it():
    size = (1000, 600)
    d = np.exp(resample_log_density(focal_log_density(size, (700, 300)), size).astype(np.float64))
    d /= d.sum()
    sig = FOCAL_SIGMA * 1000
    assert d[int(300 - 2 * sig):int(300 + 2 * sig), int(700 - 2 * sig):int(700 + 2 * sig)].sum() > 0.8
    r = choose_crop(None, size, "1:1", focal=(700, 300), keep=[(50, 50, 100, 100)])
    assert holds(r.box, (50, 50, 100, 100)) and r.box.left == 50 and r.salient_point == (700, 300)


# ------------------------------------------------------------------------------------------- validation

@pytest.mark.parametrize("kw,exc,match", [
    (dict(keep=(0, 0, 10, 10)), TypeError, "for one box"),
    (dict(keep=[(0, 0, 10)]), TypeError, "four ints"),
    (dict(keep=[(0, 0, 10.5, 10)]), TypeError, "four ints"),
    (dict(keep=[(-1, 0, 10, 10)]), ValueError, ">= 0"),
    (dict(keep=[(0, 0, 0, 10)]), ValueError, ">= 1"),
    (dict(keep="0,0,10,10"), TypeError, "list"),
    (dict(boost=[(0, 0, 10, 10)]), TypeError, "pairs"),
    (dict(boost=((0, 0, 10, 10), 2.0)), TypeError, "for one, pass"),
    (dict(boost=[((0, 0, 10, 10),)]), TypeError, "pairs"),
    (dict(boost=[((0, 0, 10, 10), 0)]), ValueError, "> 0"),
    (dict(boost=[((0, 0, 10, 10), float("inf"))]), ValueError, r"at most 1e\+09"),
    (dict(boost=[((0, 0, 10, 10), "1")]), TypeError, "number"),
    (dict(focal=5), TypeError, "point"),
    (dict(focal=(1, float("nan"))), ValueError, "finite"),
    (dict(focal=(-1, 2)), ValueError, ">= 0"),
    (dict(focal=(True, 2)), TypeError, "numbers"),
])
def test_bad_regions_are_rejected_before_any_model_run(kw, exc, match):
    with pytest.raises(exc, match=match):
        check_regions(**kw)
    with pytest.raises(exc, match=match):
        choose_crop(np.zeros((3, 3)), (100, 100), 1.0, **kw)


@pytest.mark.parametrize("kw", [dict(keep=[(90, 0, 20, 10)]), dict(boost=[((0, 95, 10, 10), 1.0)]),
                                dict(focal=(100, 5)), dict(focal=(5, 100.5))])
def test_regions_outside_the_image_are_refused_with_the_size(kw):
    with pytest.raises(ValueError, match="not inside the 100x100 image"):
        choose_crop(np.zeros((3, 3)), (100, 100), 1.0, **kw)


def test_a_grid_is_needed_without_focal():
    with pytest.raises(ValueError, match="unless focal"):
        choose_crop(None, (10, 10), 1.0)
    assert box_mass(focal_log_density((10, 10), (5, 5)), (10, 10), CropBox(0, 0, 10, 10)) == pytest.approx(1.0)


# ------------------------------------------------------------------------------------- heads (face boxes)

def cuts(box, head):
    l, t, w, h = head
    overlap = box.left < l + w and box.right > l and box.top < t + h and box.bottom > t
    return overlap and not holds(box, head)


@settings(max_examples=80, deadline=None, derandomize=True)
@given(**GRIDS, data=st.data())
def test_no_edge_through_a_head_when_it_costs_under_two_percent(gh, gw, W, H, aspect, seed, scale, data):
    grid = np.random.default_rng(seed).standard_normal((gh, gw)) * scale
    bw, bh = largest_box_size((W, H), aspect)
    head = region_in(data, W, H, bw, bh)
    plain = choose_crop(grid, (W, H), aspect)
    r = choose_crop(grid, (W, H), aspect, heads=[head])
    if r.box != plain.box:
        assert not cuts(r.box, head) and r.score >= HEAD_YIELD * plain.score - 1e-12
    elif cuts(plain.box, head):  # the rule yielded: every box sparing the head keeps less than 98 %
        spare = [CropBox(l, t, bw, bh) for t in range(H - bh + 1) for l in range(W - bw + 1)
                 if not cuts(CropBox(l, t, bw, bh), head)]
        assert all(box_mass(grid, (W, H), b) < HEAD_YIELD * plain.score + 2e-6 for b in spare)
    m = choose_crop(grid[:, ::-1], (W, H), aspect, heads=[mirror_region(head, W)])
    if not np.array_equal(grid, grid[:, ::-1]) and m.box != mirror(r.box, W):
        assert m.box == r.box and abs(m.score - r.score) <= 2e-6  # a tie between a box and its mirror image
    elif not np.array_equal(grid, grid[:, ::-1]):
        assert m.score == r.score


def test_a_figure_cropped_wide_keeps_its_whole_head():
    size = (800, 800)
    face = (350, 150, 100, 110)  # the face; the hair above it is not salient, the torso below is
    g = blobs(size, 48, [(400, 200, 40, 1.0), (400, 440, 100, 0.15)])
    plain = choose_crop(g, size, "16:9")
    head = head_box(face, size)
    assert head == (350, 95, 100, 176) and cuts(plain.box, head)  # the mass box takes the forehead off
    r = choose_crop(g, size, "16:9", heads=[head])
    assert holds(r.box, head) and r.score >= HEAD_YIELD * plain.score
    for z in ((0.5, 0.5), (0.8, 0.8), (0.8, 0.95)):  # zoom too: the head spared, or the box without heads
        zr = choose_crop(g, size, "16:9", heads=[head], zoom=z)
        assert not cuts(zr.box, head) or zr == choose_crop(g, size, "16:9", zoom=z)
    far = choose_crop(g, size, "16:9", heads=[(350, 500, 100, 150)])  # sparing it would cost too much
    assert cuts(plain.box, (350, 500, 100, 150)) and far.box == plain.box
    both = choose_crop(g, size, "16:9", heads=[(350, 500, 100, 150), head])  # the one it can spare
    assert both.box == r.box
    with pytest.raises(ValueError, match="head box"):
        choose_crop(g, size, "16:9", heads=[(700, 0, 200, 20)])
    assert choose_crop(g, size, "16:9", heads=[head], zoom=(0.8, 0.95)).box == (0, 95, 800, 450)
