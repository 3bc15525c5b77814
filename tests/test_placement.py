"""The "mass" placement rule (issue 11): the object rule, exact mirror equivariance, close choices and ranked
candidates, zoom, the clamped flag, the cut-through measure; all on synthetic log-density grids."""

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gazecrop.api import mirror_average
from gazecrop.crop import (CLOSE_RATIO, DISTINCT_IOU, DISTINCT_SHIFT, OBJECT_YIELD, ZOOM_DEFAULT, CropBox, box_mass,
                           choose_crop, choose_crops, cut_through, largest_box_size, object_box)


def mirror(box, W):
    return CropBox(W - box.left - box.width, box.top, box.width, box.height)


def iou(a, b):
    ow = max(0, min(a.right, b.right) - max(a.left, b.left))
    oh = max(0, min(a.bottom, b.bottom) - max(a.top, b.top))
    inter = ow * oh
    return inter / (a.width * a.height + b.width * b.height - inter)


def blobs(size, cells, spots, floor=-9.0):
    """Log-density grid (long side ``cells``) over a ``size`` image: Gaussian spots ``(x, y, sigma, amp)`` in
    pixels (a smooth map like the model's, not single cells)."""
    W, H = size
    s = cells / max(W, H)
    gw, gh = max(1, round(W * s)), max(1, round(H * s))
    yy, xx = np.mgrid[0:gh, 0:gw]
    px, py = (xx + 0.5) * W / gw, (yy + 0.5) * H / gh
    d = np.full((gh, gw), math.exp(floor))
    for x, y, sig, amp in spots:
        d += amp * np.exp(-((px - x) ** 2 + (py - y) ** 2) / (2 * sig ** 2))
    return np.log(d)


GRIDS = dict(gh=st.integers(1, 12), gw=st.integers(1, 12), W=st.integers(1, 400), H=st.integers(1, 400),
             aspect=st.sampled_from([0.3, 9 / 16, 1.0, 4 / 3, 16 / 9, 2.0, 3.0]), seed=st.integers(0, 2 ** 16),
             scale=st.floats(0.0, 12.0))


# ------------------------------------------------------------------------------------------- mirror symmetry

@settings(max_examples=80, deadline=None, derandomize=True)
@given(**GRIDS)
def test_placement_is_exactly_mirror_equivariant(gh, gw, W, H, aspect, seed, scale):
    grid = np.random.default_rng(seed).standard_normal((gh, gw)) * scale
    assume(not np.array_equal(grid, grid[:, ::-1]))  # symmetric maps: the next test
    a = choose_crop(grid, (W, H), aspect, candidates=4)
    b = choose_crop(grid[:, ::-1], (W, H), aspect, candidates=4)
    if b.box != mirror(a.box, W):  # only a tie (TIE_TOLERANCE) between a box and its mirror image may differ
        assert b.box == a.box and box_mass(grid, (W, H), mirror(a.box, W)) == pytest.approx(a.score, abs=2e-6)
        return
    assert b.score == a.score and b.close == a.close  # bit for bit
    scores = [c.score for c in a.candidates]
    if all(abs(x - y) > 2e-6 for i, x in enumerate(scores) for y in scores[:i]):  # no ties among candidates
        assert [c.score for c in b.candidates] == scores
        assert [c.box for c in b.candidates] == [mirror(c.box, W) for c in a.candidates]


@settings(max_examples=25, deadline=None, derandomize=True)
@given(**GRIDS)
def test_zoomed_placement_is_exactly_mirror_equivariant(gh, gw, W, H, aspect, seed, scale):
    grid = np.random.default_rng(seed).standard_normal((gh, gw)) * scale
    assume(not np.array_equal(grid, grid[:, ::-1]))
    a = choose_crop(grid, (W, H), aspect, zoom=(0.4, 0.6))
    b = choose_crop(grid[:, ::-1], (W, H), aspect, zoom=(0.4, 0.6))
    if b.box != mirror(a.box, W):  # a tie between a box and its mirror image
        assert b.box == a.box and box_mass(grid, (W, H), mirror(a.box, W)) == pytest.approx(a.score, abs=2e-6)
    else:
        assert b.score == a.score


@settings(max_examples=60, deadline=None, derandomize=True)
@given(**GRIDS)
def test_symmetric_maps_get_symmetric_boxes_or_a_reported_tie(gh, gw, W, H, aspect, seed, scale):
    g = np.random.default_rng(seed).standard_normal((gh, gw)) * scale
    grid = np.logaddexp(g, g[:, ::-1])  # its own mirror, bit for bit
    assert np.array_equal(grid, grid[:, ::-1])
    r = choose_crop(grid, (W, H), aspect, candidates=W)
    m = mirror(r.box, W)
    if abs(m.left - r.box.left) > 1 and iou(m, r.box) < DISTINCT_IOU:  # not centred: the mirror box ties exactly
        assert any(c.box == m and c.score == r.score for c in r.candidates[1:])
        if r.candidates[1].box == m and box_mass(grid, (W, H), CropBox(
                max(m.left, r.box.left), m.top, max(0, min(m.right, r.box.right) - max(m.left, r.box.left)) or 1,
                m.height)) < 0.5 * r.score:
            assert r.close


def test_mirror_average_is_exactly_equivariant():
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((9, 13)).astype(np.float32), rng.standard_normal((9, 13)).astype(np.float32)
    s = mirror_average(a, b)
    assert s.dtype == np.float32
    assert np.array_equal(mirror_average(b, a), s[:, ::-1])
    lse = float(np.log(np.exp(s.astype(np.float64)).sum()))
    ref = float(np.log(0.5 * (np.exp(a.astype(np.float64)).sum() + np.exp(b.astype(np.float64)).sum())))
    assert lse == pytest.approx(ref, abs=1e-5)
    with pytest.raises(ValueError):
        mirror_average(a, b[:, :5])


# ------------------------------------------------------------------------------------------ the object rule

def test_two_equal_faces_far_apart_are_a_close_choice():
    # a tall image with two identical faces; a 16:9 box cannot hold both
    size = (600, 1800)
    g = blobs(size, 48, [(300, 350, 45, 1.0), (300, 1450, 45, 1.0)])
    r = choose_crop(g, size, "16:9", candidates=2)
    assert (r.box.width, r.box.height) == (600, 338)
    assert r.close
    assert len(r.candidates) == 2 and iou(r.candidates[0].box, r.candidates[1].box) < DISTINCT_IOU
    tops = sorted(c.box.top for c in r.candidates)
    assert tops[0] <= 350 - 90 and tops[0] + 338 >= 350 + 90  # each candidate holds one whole face
    assert tops[1] <= 1450 - 90 and tops[1] + 338 >= 1450 + 90
    assert r.candidates[1].score >= CLOSE_RATIO * r.candidates[0].score
    assert r.to_dict()["close"] is True and len(r.to_dict()["candidates"]) == 2
    # one clearly stronger face: not close, and the box holds it
    g2 = blobs(size, 48, [(300, 350, 45, 1.0), (300, 1450, 45, 0.6)])
    r2 = choose_crop(g2, size, "16:9", candidates=2)
    assert not r2.close and r2.box.top <= 260 and r2.box.bottom >= 440


def test_a_single_subject_is_not_a_close_choice_however_wide_the_margin():
    size = (2000, 1000)
    r = choose_crop(blobs(size, 40, [(1000, 500, 60, 1.0)]), size, "9:16", candidates=3)
    assert not r.close  # the other candidates hold the same subject with other margins


def tall_figure(size=(400, 1200)):
    """A standing figure: a compact head (peak density 1) over a long patterned torso (stripes of density
    0.15 and 0.35 of the head's peak): a 3:1 slice of the torso keeps 1.05 times the mass of the head's."""
    W, H = size
    g = blobs(size, 64, [(200, 150, 38, 1.0)])
    d = np.exp(g)
    gh, gw = d.shape
    yy, xx = np.mgrid[0:gh, 0:gw]
    px, py = (xx + 0.5) * W / gw, (yy + 0.5) * H / gh
    torso = (px > 70) & (px < 330) & (py > 300) & (py < 1150)
    d[torso] += np.where((py[torso] // 60) % 2 == 0, 0.35, 0.15)
    return np.log(d)


def test_a_tall_figure_cropped_to_3_to_1_keeps_the_whole_head():
    size = (400, 1200)
    g = tall_figure(size)
    (xa, xb), (ya, yb) = object_box(g, size)
    assert 80 <= ya <= 150 <= yb <= 220  # the object is the head
    free = choose_crop(g, size, "3:1", object_yield=None)
    assert free.box.top > 300  # pure mass goes for a slice of the torso ...
    r = choose_crop(g, size, "3:1")
    assert (r.box.width, r.box.height) == (400, 133)
    assert r.box.top <= ya and r.box.bottom > yb  # ... the default keeps the whole head
    assert free.score <= (1 + OBJECT_YIELD) * r.score  # (the torso slice keeps less than that)
    assert r.cut < free.cut  # and its edges run through less density


def test_the_most_salient_object_is_never_cut_when_a_box_could_hold_it():
    # a face-like blob near the top and a larger region below that pure mass prefers, cutting the face
    size = (1000, 1000)
    g = blobs(size, 40, [(500, 200, 40, 1.0), (500, 550, 150, 0.5)])
    (xa, xb), (ya, yb) = object_box(g, size)
    free = choose_crop(g, size, "16:9", object_yield=None)
    assert ya < free.box.top <= yb  # pure mass cuts through the object
    for y in (0.0, OBJECT_YIELD, math.inf):
        b = choose_crop(g, size, "16:9", object_yield=y).box
        assert (b.top <= ya and b.bottom > yb) or b.top > yb or b.bottom <= ya, y
    r = choose_crop(g, size, "16:9")
    assert r.box.top <= ya and r.box.bottom > yb
    assert r.cut < free.cut


@settings(max_examples=60, deadline=None, derandomize=True)
@given(**GRIDS)
def test_the_default_never_cuts_the_object_and_candidates_are_distinct(gh, gw, W, H, aspect, seed, scale):
    grid = np.random.default_rng(seed).standard_normal((gh, gw)) * scale
    r = choose_crop(grid, (W, H), aspect, candidates=5)
    (xa, xb), (ya, yb) = object_box(grid, (W, H))
    bw, bh = largest_box_size((W, H), aspect)
    cands = [c.box for c in r.candidates]
    assert 1 <= len(cands) <= 5 and cands[0] == r.box and r.candidates[0].score == r.score
    for i, b in enumerate(cands):
        assert (b.width, b.height) == (bw, bh) and 0 <= b.left <= W - bw and 0 <= b.top <= H - bh
        if xb - xa + 1 <= bw and yb - ya + 1 <= bh:
            overlaps = b.left <= xb and b.right > xa and b.top <= yb and b.bottom > ya
            assert not overlaps or (b.left <= xa and b.right > xb and b.top <= ya and b.bottom > yb)
        for c in cands[:i]:
            assert iou(b, c) < DISTINCT_IOU
    scores = [c.score for c in r.candidates[1:]]
    assert all(a >= b - 2e-6 for a, b in zip(scores, scores[1:]))  # best first (ties: TIE_TOLERANCE)
    for c in r.candidates:
        assert c.score == pytest.approx(box_mass(grid, (W, H), c.box), abs=1e-9)


# ---------------------------------------------------------------------------------------------------- zoom

@settings(max_examples=40, deadline=None, derandomize=True)
@given(**GRIDS, min_scale=st.floats(0.05, 1.0), mass=st.floats(0.05, 1.0))
def test_zoom_stays_within_its_bounds(gh, gw, W, H, aspect, seed, scale, min_scale, mass):
    grid = np.random.default_rng(seed).standard_normal((gh, gw)) * scale
    big = choose_crop(grid, (W, H), aspect)
    r = choose_crop(grid, (W, H), aspect, zoom=(min_scale, mass))
    k0 = max(big.box.width, big.box.height)
    k = max(r.box.width, r.box.height)
    assert math.ceil(min_scale * k0 - 1e-9) <= k <= k0
    assert r.box.width <= big.box.width and r.box.height <= big.box.height
    assert 0 <= r.box.left <= W - r.box.width and 0 <= r.box.top <= H - r.box.height
    assert r.score >= mass or r.box == CropBox(r.box.left, r.box.top, big.box.width, big.box.height)
    assert r.scale == pytest.approx(k / k0)


def test_zoom_tightens_around_a_compact_subject_and_is_off_by_default():
    size = (1600, 1200)
    g = blobs(size, 48, [(1100, 500, 60, 1.0)])
    big = choose_crop(g, size, "16:9")
    assert big.scale == 1.0 and (big.box.width, big.box.height) == (1600, 900)
    r = choose_crop(g, size, "16:9", zoom=True)
    assert r.box.width == math.ceil(ZOOM_DEFAULT.min_scale * 1600)  # the subject is small: down to the bound
    assert r.score >= ZOOM_DEFAULT.mass and r.box.left <= 1100 <= r.box.right and r.box.top <= 500 <= r.box.bottom
    r = choose_crop(g, size, "16:9", zoom=(0.1, 0.99))
    assert 160 <= r.box.width < 1600 and r.score >= 0.99


@pytest.mark.parametrize("bad,exc", [((0, 0.9), ValueError), ((0.5, 1.5), ValueError), ((0.5,), TypeError),
                                     ("0.5", TypeError), (0.5, TypeError), ((True, 0.9), TypeError)])
def test_bad_zoom_is_rejected(bad, exc):
    with pytest.raises(exc):
        choose_crop(np.zeros((2, 2)), (10, 10), 1, zoom=bad)


@pytest.mark.parametrize("bad,exc", [(0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError)])
def test_bad_candidates_are_rejected(bad, exc):
    with pytest.raises(exc):
        choose_crop(np.zeros((2, 2)), (10, 10), 1, candidates=bad)


@pytest.mark.parametrize("bad,exc", [(-0.1, ValueError), (float("nan"), ValueError), ("1", TypeError)])
def test_bad_object_yield_is_rejected(bad, exc):
    with pytest.raises(exc):
        choose_crop(np.zeros((2, 2)), (10, 10), 1, object_yield=bad)


# --------------------------------------------------------------------------------- clamped flag, cut measure

@pytest.mark.parametrize("size,aspect,clamped,box_size", [
    ((640, 480), 1e-9, True, (1, 480)), ((640, 480), 1e9, True, (640, 1)), ((640, 480), "1:4000", True, (1, 480)),
    ((640, 480), 1 / 800, False, (1, 480)), ((640, 480), "16:9", False, (640, 360)), ((1, 1), "1:1", False, (1, 1)),
    ((1, 4000), "4000:1", True, (1, 1)), ((1, 4000), "1:4000", False, (1, 4000))])
@pytest.mark.parametrize("strategy", ["mass", "point", "centre"])
def test_clamped_flag(size, aspect, clamped, box_size, strategy):
    r = choose_crop(np.random.default_rng(1).standard_normal((6, 8)), size, aspect, strategy=strategy)
    assert r.clamped is clamped and (r.box.width, r.box.height) == box_size
    assert r.to_dict()["clamped"] is clamped


def test_cut_through_measures_the_density_on_inner_edges():
    size = (1000, 500)
    g = blobs(size, 40, [(500, 250, 50, 1.0)])
    assert cut_through(g, size, (0, 0, 1000, 500)) == 0.0  # the whole image: no inner edge
    assert cut_through(g, size, (500, 0, 500, 500)) > 0.95  # the left edge crosses the peak
    assert cut_through(g, size, (0, 0, 200, 500)) < 0.01  # the right edge runs through background
    r = choose_crop(g, size, "1:1")
    assert r.cut == pytest.approx(cut_through(g, size, r.box)) and r.cut < 0.01
    with pytest.raises(ValueError):
        cut_through(g, size, (900, 0, 200, 500))


def test_results_serialise_the_new_fields():
    r = choose_crops(np.random.default_rng(2).standard_normal((6, 8)), (160, 120), ["1:1"], candidates=3)[0]
    d = r.to_dict()
    assert set(d) >= {"close", "candidates", "clamped", "cut", "scale"}
    assert d["candidates"][0] == {"box": list(r.box), "score": r.score}


def test_thin_boxes_a_pixel_apart_are_not_alternatives():
    g = np.random.default_rng(4).standard_normal((16, 16)) * 0.1  # nearly flat
    r = choose_crop(g, (512, 512), 1e-9, candidates=4)
    assert r.clamped and r.box.width == 1
    lefts = [c.box.left for c in r.candidates]
    assert len(lefts) > 1 and all(abs(a - b) >= DISTINCT_SHIFT * 512 for i, a in enumerate(lefts) for b in lefts[:i])
