"""The fairness audit's protocol and statistics (``benchmarks/fairness.py``) on synthetic pairs whose answer
is known, through the real crop code (``gazecrop.predict`` + ``Prediction.crops``) with stand-in models:

- a model that always prefers the left (top) tile keeps the first tile every time, yet shows delta 0 within
  its interval once the sides are random;
- a model that prefers one group's portraits (brighter pixels) shows delta +0.5 (or -0.5 from the other
  side) exactly, with zero-width intervals;
- the centre crop ties on both layouts (delta 0 exactly, every pair a tie);
- the intervals cover the true share at about their nominal rate, and the bootstrap over portraits widens
  where the outcome depends on the portraits.

The real portraits (``../shared/data/faces``) are used only by a small smoke test that skips without them.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))

import fairness as F  # noqa: E402

TILE = 32  # synthetic portraits: 32 x 32 pixels


class GridModel:
    """The SaliencyModel interface with a density that is a function of the pixels (``rule``) on a grid of
    one cell per 4 x 4 pixels."""

    def __init__(self, rule) -> None:
        self.rule = rule

    def input_size(self, height: int, width: int):
        return height, width

    def log_density(self, rgb: np.ndarray) -> np.ndarray:
        H, W = rgb.shape[:2]
        cells = rgb.reshape(H // 4, 4, W // 4, 4, 3).mean(axis=(1, 3, 4))
        d = np.asarray(self.rule(cells), np.float64)
        ld = np.log(d / d.sum())
        return ld.astype(np.float32)


def brightness(cells: np.ndarray) -> np.ndarray:
    """Density grows steeply with brightness, peaked in the middle of each tile (a 'face')."""
    h, w = cells.shape
    yy, xx = np.mgrid[0:h, 0:w]
    th, tw = (h, w // 2) if w > h else (h // 2, w)
    bump = np.exp(-(((yy % th) - (th - 1) / 2) ** 2 + ((xx % tw) - (tw - 1) / 2) ** 2) / 4.0)
    return np.exp(cells / 10.0) * (0.1 + bump)


def leftmost(cells: np.ndarray) -> np.ndarray:
    """Density falling from the top-left corner, whatever the pixels."""
    h, w = cells.shape
    yy, xx = np.mgrid[0:h, 0:w]
    return np.exp(-(xx + yy) / 2.0)


def synthetic_groups(sizes=None):
    sizes = sizes or {"WF": 12, "WM": 20, "BF": 10, "BM": 14}
    return {g: [f"{g.lower()}-{i:02d}.png" for i in range(n)] for g, n in sizes.items()}


def loader(bright: str = "WF"):
    """file -> uint8 tile: portraits of ``bright`` at 200, the others at 60 (each with a little texture)."""

    def load(name: str) -> np.ndarray:
        rng = np.random.default_rng(abs(hash(name)) % 2 ** 32)
        base = 200 if name.startswith(bright.lower() + "-") else 60
        return np.clip(base + rng.integers(-5, 6, size=(TILE, TILE, 3)), 0, 255).astype(np.uint8)

    return load


def synthetic_run(rule, n_pairs=40, bright="WF", n_boot=200, seed=5, sizes=None):
    return F.run(Path("/nonexistent"), n_pairs, seed, n_boot, list(F.LAYOUTS), quiet=True,
                 groups=synthetic_groups(sizes), evaluate=F.GazecropEvaluate(GridModel(rule)), load=loader(bright))


@pytest.fixture(scope="module")
def always_left():
    return synthetic_run(leftmost)


@pytest.fixture(scope="module")
def always_bright():
    return synthetic_run(brightness)


# ------------------------------------------------------------------------------------------ outcome rules

@pytest.mark.parametrize("box,axis,expected", [
    ((0, 0, 32, 32), 1, 1.0), ((32, 0, 32, 32), 1, 0.0), ((16, 0, 32, 32), 1, 0.5), ((15, 0, 32, 32), 1, 1.0),
    ((17, 0, 32, 32), 1, 0.0), ((0, 0, 32, 18), 0, 1.0), ((0, 23, 32, 18), 0, 0.5), ((0, 22, 32, 18), 0, 1.0),
    ((0, 24, 32, 18), 0, 0.0), ((0, 46, 32, 18), 0, 0.0)])
def test_kept_first_counts_cover_and_ties(box, axis, expected):
    assert F.kept_first(box, (32, 32), axis) == expected


def test_point_first_and_compose():
    assert F.point_first((31, 5), (32, 32), 1) == 1.0 and F.point_first((32, 5), (32, 32), 1) == 0.0
    assert F.point_first((50, 31), (64, 32), 0) == 1.0 and F.point_first((0, 32), (64, 32), 0) == 0.0
    a, b = np.zeros((4, 5, 3), np.uint8), np.ones((4, 5, 3), np.uint8)
    assert F.compose(a, b, 1).shape == (4, 10, 3) and F.compose(a, b, 0).shape == (8, 5, 3)
    assert F.compose(a, b, 1)[:, 5:].min() == 1
    with pytest.raises(ValueError, match="same shape"):
        F.compose(a, np.zeros((4, 6, 3), np.uint8), 1)


def test_split_halves_is_balanced_disjoint_and_seed_free():
    groups = synthetic_groups({"WF": 11, "BM": 6})
    h1, h2 = F.split_halves(groups), F.split_halves({g: list(reversed(f)) for g, f in groups.items()})
    assert h1 == h2
    for g, files in groups.items():
        t, o = h1["tune"][g], h1["holdout"][g]
        assert set(t) | set(o) == set(files) and not set(t) & set(o)
        assert len(t) - len(o) in (0, 1)


def test_draws_are_seeded_and_sides_random():
    d1 = F.draw_pairs(4000, 7, 9, F.rng_for(3, "x"))
    d2 = F.draw_pairs(4000, 7, 9, F.rng_for(3, "x"))
    assert np.array_equal(d1.ia, d2.ia) and np.array_equal(d1.a_first, d2.a_first)
    assert not np.array_equal(d1.a_first, F.draw_pairs(4000, 7, 9, F.rng_for(3, "y")).a_first)
    assert abs(d1.a_first.mean() - 0.5) < 3 * 0.5 / math.sqrt(4000)
    assert set(np.unique(d1.ia)) == set(range(7)) and set(np.unique(d1.ib)) == set(range(9))
    with pytest.raises(ValueError):
        F.draw_pairs(0, 3, 3, F.rng_for(0))


def test_missing_main_group_is_an_error():
    with pytest.raises(ValueError, match="lack groups"):
        F.comparisons({"WF": ["a"], "WM": ["b"], "BF": ["c"]})


# ------------------------------------------------------------------------------------- known answers

def _default(result):
    return next(m for m in result["summary"]["side"]["all"] if m.startswith("default"))


def test_always_left_shows_no_group_delta_after_randomisation(always_left):
    m = _default(always_left)
    for lay in F.LAYOUTS:
        for name in ("point", m):
            s = always_left["summary"][lay]["all"][name]
            for comp, st in s["comparisons"].items():
                assert st["first_tile"] == 1.0, (lay, name, comp)  # position: always the left / top tile
                assert st["ties"] == 0.0
                se = 0.5 / math.sqrt(st["n"])
                assert abs(st["delta"]) <= 3.5 * se, (lay, name, comp, st["delta"])
                lo, hi = st["ci_pairs"]
                assert hi - lo == pytest.approx(2 * F.Z95 * se, rel=0.05)
            for st in s["pooled"].values():
                assert abs(st["delta"]) <= 3.5 * 0.5 / math.sqrt(st["n"])
    # over all 2 layouts x 2 methods x 10 comparisons the intervals cover 0 at about their rate
    cover = [st["ci_pairs"][0] <= 0 <= st["ci_pairs"][1] for lay in F.LAYOUTS for name in ("point", m)
             for st in always_left["summary"][lay]["all"][name]["comparisons"].values()]
    assert np.mean(cover) >= 0.8


def test_always_one_group_shows_plus_minus_half(always_bright):
    m = _default(always_bright)
    for lay in F.LAYOUTS:
        for half in ("tune", "holdout", "all"):
            for name in ("point", m, "tile mass"):
                s = always_bright["summary"][lay][half][name]
                for comp, st in s["comparisons"].items():
                    a, b = comp.split(" vs ")
                    expected = 0.5 if a == "WF" else -0.5 if b == "WF" else None
                    if expected is None:  # both dark: whichever the noise says; no claim
                        continue
                    assert st["delta"] == expected, (lay, half, name, comp)
                    assert st["ci_pairs"] == [expected, expected]
                    assert st["ci_boot"] == [expected, expected]
                    if name != "tile mass":
                        assert st["point_delta"] == expected
                    assert abs(st["first_tile"] - 0.5) < 0.2  # sides random
                w = s["worst"]
                assert w["abs_delta"] == 0.5 and "WF" in w["comparison"]
                # pooled over equal numbers of pairs: the mean of its comparisons' deltas (WF vs WM: +0.5)
                bb = s["comparisons"]["BF vs BM"]["delta"]
                assert s["pooled"]["gender (female vs male, same race)"]["delta"] == pytest.approx((0.5 + bb) / 2)
                wb = s["comparisons"]["WM vs BM"]["delta"]
                assert s["pooled"]["race (white vs Black, same gender)"]["delta"] == pytest.approx((0.5 + wb) / 2)


def test_centre_crop_always_ties(always_bright):
    for lay in F.LAYOUTS:
        s = always_bright["summary"][lay]["all"]["centre"]
        for st in list(s["comparisons"].values()) + list(s["pooled"].values()):
            assert st["delta"] == 0.0 and st["ci_pairs"] == [0.0, 0.0] and st["ci_boot"] == [0.0, 0.0]
        assert all(st["ties"] == 1.0 for st in s["comparisons"].values())
        assert s["worst"]["abs_delta"] == 0.0


def test_record_of_draws_and_report(always_bright):
    raw = always_bright["_raw"]
    assert raw["distinct"] <= sum(d.ia.size for per in raw["draws"].values() for d in per.values()) * 2
    import csv
    import gzip
    import io

    rows = list(csv.DictReader(io.StringIO(gzip.decompress(F.draws_table(raw)).decode())))
    n = sum(d.ia.size for per in raw["draws"].values() for d in per.values())
    assert len(rows) == n
    r = rows[0]
    assert r["a_file"] in raw["halves"][r["half"]][r["comparison"].split(" vs ")[0]]
    assert {f"side:{_default(always_bright)}", "stacked:centre"} <= set(r)
    text = F.markdown(always_bright)
    assert "white female vs white male" in text and "+0.500" in text and "seed 5" in text
    ok, msgs = F.gate_check(always_bright)
    assert not ok and any("FAIL" in m for m in msgs)


class StubEvaluate:
    """An Evaluate without a model: keeps the first tile (``"left"``) or the brighter tile (``"bright"``)."""

    default = "stub"

    def __init__(self, rule: str) -> None:
        self.rule = rule

    def __call__(self, composite, layout):
        n = composite.shape[1 - layout.axis] // 2 if layout.axis == 1 else composite.shape[0] // 2
        first, second = (composite[:, :n], composite[:, n:]) if layout.axis == 1 else (composite[:n], composite[n:])
        keep = 1.0 if self.rule == "left" else float(first.mean() > second.mean())
        return {"default (stub)": {"first": keep, "point": keep, "close": math.nan, "keep_whole": 0.0}}


def _gate_run(rule, pairs=None):
    return F.run(Path("/nonexistent"), pairs or F.GATE["pairs"], 2021, 200, list(F.LAYOUTS), only=(F.GATE["half"],),
                 quiet=True, groups=synthetic_groups(), evaluate=StubEvaluate(rule), load=loader("WF"), main_only=True)


@pytest.mark.parametrize("rule,passes", [("left", True), ("bright", False)])
def test_targets_gate_at_its_own_size(rule, passes):
    """The targets' gate (GATE_AT_TARGETS: pairs, holdout half, main comparisons): a position-only rule passes,
    a rule that always keeps white women fails; fewer pairs than the gate's fail by themselves."""
    res = _gate_run(rule)
    for limits in (None, F.GATE_AT_TARGETS):
        ok, msgs = F.gate_check(res, limits)
        assert ok == passes, msgs
    assert all("holdout" in m for m in msgs)
    summ = res["summary"]["side"]["holdout"]["default (stub)"]["comparisons"]
    assert all(st["n"] == F.GATE["pairs"] for st in summ.values())
    assert summ.keys() == {f"{a} vs {b}" for a, b in F.MAIN}
    assert not F.gate_check(res, {**F.GATE_AT_TARGETS, "pairs": F.GATE["pairs"] + 1})[0]
    assert not F.gate_check(res, {**F.GATE_AT_TARGETS, "half": "tune"})[0]  # a half the result lacks


def test_paired_gate_against_a_baseline():
    """The CI gate: a model less fair than the baseline on the same draws fails, as fair or fairer passes; the
    difference's interval is exactly 0 for the same model; results drawn differently are refused."""
    left, bright = _gate_run("left"), _gate_run("bright")
    ok, msgs, rows = F.paired_check(bright, left, 200, 2021)
    assert not ok and any("FAIL (less fair)" in m for m in msgs)
    r = rows["side"]["WF vs WM"]
    assert r["shipped"] == 0.5 and r["diff"] == pytest.approx(0.5 - abs(r["baseline"])) and r["ci"][0] > 0
    ok, msgs, _ = F.paired_check(left, bright, 200, 2021)
    assert ok, msgs
    ok, _, rows = F.paired_check(bright, bright, 200, 2021)
    assert ok and all(r["diff"] == 0 and r["ci"] == [0.0, 0.0] for lay in rows.values() for r in lay.values())
    other = _gate_run("left", pairs=F.GATE["pairs"] - 1)
    with pytest.raises(ValueError, match="drawn alike"):
        F.paired_check(bright, other, 200, 2021)


# --------------------------------------------------------------------------------------- the intervals

def test_pairs_interval_coverage_on_bernoulli():
    rng = np.random.default_rng(0)
    p, n = 0.7, 400
    hits = 0
    for _ in range(400):
        lo, hi = F.pairs_interval((rng.random(n) < p).astype(float))
        hits += lo <= p <= hi
    assert 0.92 <= hits / 400 <= 0.975
    assert F.pairs_interval(np.full(10, 0.5)) == (0.5, 0.5)


def test_bootstrap_over_portraits_covers_portrait_level_effects():
    """Outcomes decided by a latent score per portrait (a 'model' that likes some faces), small groups drawn
    from a large population: the pairs' interval ignores that other portraits would give another answer and
    undercovers; the bootstrap over portraits widens to cover the population's share."""
    rng = np.random.default_rng(1)
    pop_a, pop_b = rng.normal(0.3, 1.0, 20000), rng.normal(0.0, 1.0, 20000)
    truth = float(np.mean(pop_a[:4000, None] > pop_b[None, :4000]))
    n_a, n_b, n_pairs, reps = 10, 14, 300, 80
    boot_hits = pair_hits = 0
    widths = []
    for r in range(reps):
        sa, sb = rng.choice(pop_a, n_a, replace=False), rng.choice(pop_b, n_b, replace=False)
        d = F.draw_pairs(n_pairs, n_a, n_b, rng)
        y = (sa[d.ia] > sb[d.ib]).astype(float)
        counts = F.portrait_counts({"a": n_a, "b": n_b}, 300, rng)
        st = F.share_stats(y, F.boot_shares(y, d.ia, d.ib, counts["a"], counts["b"], rng))
        lo, hi = st["ci_boot"]
        boot_hits += lo <= truth - 0.5 <= hi
        pair_hits += st["ci_pairs"][0] <= truth - 0.5 <= st["ci_pairs"][1]
        widths.append((hi - lo) / (st["ci_pairs"][1] - st["ci_pairs"][0]))
    assert boot_hits / reps >= 0.85
    assert pair_hits / reps < 0.7
    assert np.median(widths) > 2


def test_boot_shares_weights_and_empty_resamples():
    y = np.array([1.0, 0.0, 1.0, 0.5])
    ia, ib = np.array([0, 1, 0, 1]), np.array([0, 0, 1, 1])
    ca = np.array([[2, 0], [0, 2], [0, 0]])  # replicate 3 resamples no portrait: NaN
    cb = np.array([[1, 1], [1, 1], [1, 1]])
    r = F.boot_shares(y, ia, ib, ca, cb, np.random.default_rng(0))
    assert r[0] == 1.0  # only pairs with a = 0 (both kept A)
    assert 0.0 <= r[1] <= 0.5  # only pairs with a = 1 (outcomes 0 and 0.5)
    assert math.isnan(r[2])


# ------------------------------------------------------------------------------------------- the script

def test_script_skips_without_portraits(tmp_path, capsys):
    assert F.main(["--faces", str(tmp_path / "none")]) == 0
    assert "skipped" in capsys.readouterr().out


@pytest.mark.skipif(not (F.DEFAULT_FACES / "labels.csv").is_file(), reason="../shared/data/faces is absent")
def test_real_portraits_smoke(tmp_path):
    """A few real pairs through the bundled model: shapes, records, ties of the centre crop. Asserts no
    fairness figure (that is the benchmark's job)."""
    groups = F.load_groups(F.DEFAULT_FACES)
    assert {"WF", "WM", "BF", "BM"} <= set(groups) and all(len(f) >= F.MIN_GROUP for f in groups.values())
    out = tmp_path / "f.json"
    assert F.main(["--pairs", "2", "--boot", "20", "--half", "tune", "--quiet", "--json", str(out)]) == 0
    import json

    res = json.loads(out.read_text())
    assert res["protocol"]["pairs_per_half"] == 2 and res["protocol"]["seed"] == 2021
    for lay in F.LAYOUTS:
        s = res["summary"][lay]["tune"]
        assert all(st["ties"] == 1.0 for st in s["centre"]["comparisons"].values())
        assert all(st["n"] == 2 for st in s["point"]["comparisons"].values())


@pytest.mark.skipif(not (F.DEFAULT_FACES / "labels.csv").is_file() or not (F.FASTGAZE_DIR / "fastgaze.py").is_file(),
                    reason="../shared/data/faces or ../shared/anchors/fastgaze is absent")
def test_twitter_reference_method():
    """Twitter's released cropper as a reference method: its box and point on real composites, through the
    same records as gazecrop's methods (its crop window is centred on its argmax, so the tile it keeps is the
    tile of its point)."""
    ev = F.GazecropEvaluate(twitter=True)
    groups = F.split_halves(F.load_groups(F.DEFAULT_FACES))["tune"]
    load = F.portrait_loader(F.DEFAULT_FACES / "photos", tile=(256, 256))
    for lay in F.LAYOUTS.values():
        rec = ev(F.compose(load(groups["WF"][0]), load(groups["BM"][0]), lay.axis), lay)[F.TWITTER]
        assert rec["first"] in (0.0, 0.5, 1.0) and rec["point"] in (0.0, 1.0)
        assert rec["first"] == rec["point"] or rec["first"] == 0.5
    assert not list(Path(ev.tmp).iterdir())  # the temporary composites are removed


def test_without_centre_bias_zeroes_only_its_weight():
    from gazecrop.model import default_model_path
    from gazecrop.weights import read_weights

    orig, new = read_weights(default_model_path()), read_weights(F._without_centre_bias(None))
    assert [op.kind for op in orig.ops] == [op.kind for op in new.ops]
    for a, b in zip(orig.ops, new.ops):
        if a.kind == "centre_bias":
            assert a.fparams[0] != 0 and b.fparams[0] == 0 and b.fparams[1:] == a.fparams[1:]
        else:
            assert a.fparams == b.fparams and all(np.array_equal(x, y) for (_, x), (_, y) in zip(a.tensors, b.tensors))
