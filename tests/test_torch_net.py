"""The PyTorch twin used by benchmarks/test_core_speed.py computes the same network (so the speed
comparison is fair); skipped without torch."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from gazecrop import reference
from gazecrop._testing import inverted_residual_net, random_network, student_like

torch = pytest.importorskip("torch")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
from torch_net import TorchNet  # noqa: E402


def _nets():
    yield "student_like-0", student_like(0), (96, 128)
    for seed in range(1, 6):
        yield f"random_network-{seed}", random_network(np.random.default_rng(seed)), (40, 36)
    for seed in range(4):  # format version 2: depthwise, add, ReLU6, every padding mode
        yield f"inverted_residual-{seed}", inverted_residual_net(np.random.default_rng(seed), stages=3), (45, 38)


@pytest.mark.parametrize("net,hw", [pytest.param(n, hw, id=i) for i, n, hw in _nets()])
def test_torch_twin_matches_reference(net, hw):
    img = np.random.default_rng(hw[0]).uniform(0, 255, (3, *hw)).astype(np.float32)
    try:
        ref = reference.run(net, img)
    except ValueError:
        pytest.skip("input too small for this random network")
    out = TorchNet(net)(torch.from_numpy(img)).numpy()
    assert np.max(np.abs(out - ref) / np.maximum(np.abs(ref), 1)) < 1e-4
