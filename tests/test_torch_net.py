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


@pytest.mark.parametrize("seed", range(6))
def test_torch_twin_matches_reference(seed):
    net = student_like(seed) if seed == 0 else random_network(np.random.default_rng(seed))
    h, w = (96, 128) if seed == 0 else (40, 36)
    img = np.random.default_rng(seed).uniform(0, 255, (3, h, w)).astype(np.float32)
    try:
        ref = reference.run(net, img)
    except ValueError:
        pytest.skip("input too small for this random network")
    out = TorchNet(net)(torch.from_numpy(img)).numpy()
    assert np.max(np.abs(out - ref) / np.maximum(np.abs(ref), 1)) < 1e-4


@pytest.mark.parametrize("seed", range(4))
def test_torch_twin_runs_the_version_2_ops(seed):
    net = inverted_residual_net(np.random.default_rng(seed), stages=3)
    img = np.random.default_rng(seed).uniform(0, 255, (3, 45, 38)).astype(np.float32)
    try:
        ref = reference.run(net, img)
    except ValueError:
        pytest.skip("input too small for this random network")
    out = TorchNet(net)(torch.from_numpy(img)).numpy()
    assert np.max(np.abs(out - ref) / np.maximum(np.abs(ref), 1)) < 1e-4
