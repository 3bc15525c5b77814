"""Suite 3, end to end: the crop box for 1024x768 JPEGs read from disk (decode included), aspect 16:9, one
thread: gazecrop (pruned student, ``mass``), libvips ``smartcrop`` with ``interesting=attention`` (pyvips),
OpenCV spectral-residual saliency (+ gazecrop's mass crop on its map), smartcrop.py, the centre crop, and for
reference the vanilla teacher cropping through gazecrop's API (not gated). Each
round crops the next of a few MIT1003 stimuli (read in place). Gate (interleaved in one run): gazecrop at
most as slow as libvips attention."""

from __future__ import annotations

import pytest

import harness as H
import methods as M
from conftest import run_gate

ROUNDS = {M.TEACHER_CROP: 8, M.GAZECROP: 80, M.GAZECROP_SYMMETRIC: 40, M.GAZECROP_SHIPPED: 80, M.VIPS: 80, M.SPECTRAL: 80, M.SMARTCROP: 20, M.CENTRE: 200}


@pytest.fixture(scope="module")
def photos():
    return H.photo_paths(4)


@pytest.mark.parametrize("method", list(M.CROPPERS) + [M.TEACHER_CROP])
def test_end_to_end(benchmark, photos, method):
    paths, desc = photos
    crs, skipped = M.croppers([method])
    if method not in crs:
        pytest.skip(skipped.get(method, "no interim model: the shipped default is the pruned student"))
    benchmark.group = f"3 end to end: crop box, {desc}, aspect {H.END_TO_END_ASPECT}, 1 thread"
    benchmark.extra_info.update(photos=desc, model=H.student_paths()["pruned"].label if method == M.GAZECROP else "")
    if method == M.GAZECROP_SHIPPED:
        benchmark.extra_info["model"] = H.student_paths()["shipped"].label
    benchmark.pedantic(M.cycling(crs[method], paths, H.END_TO_END_ASPECT), rounds=ROUNDS[method],
                       warmup_rounds=len(paths))


def test_gate_gazecrop_at_most_as_slow_as_libvips_attention():
    run_gate("end_to_end")
