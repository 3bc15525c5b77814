"""Golden check of the shipped model: the NumPy reference and the native core, running
``weights/gazecrop-fast.gzw``, reproduce the PyTorch student's log-density (stored by
``python -m gazecrop.train.export --golden``) on synthetic images, max abs error 1e-3."""

from pathlib import Path

import numpy as np
import pytest

import gazecrop
from gazecrop import reference
from gazecrop.weights import read_weights

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "data" / "golden_fast.npz"
WEIGHTS = ROOT / "weights" / "gazecrop-fast.gzw"
TOL = 1e-3


def _cases():
    with np.load(GOLDEN) as z:
        n = len([k for k in z.files if k.startswith("image")])
        return [(z[f"image{i}"], z[f"log_density{i}"]) for i in range(n)]


@pytest.fixture(scope="module")
def cases():
    return _cases()


def test_golden_files_exist():
    assert GOLDEN.is_file() and WEIGHTS.is_file()


def test_reference_matches_pytorch(cases):
    net = read_weights(WEIGHTS)
    for image, expect in cases:
        got = reference.run(net, image)
        assert got.shape == expect.shape
        assert np.abs(got - expect).max() < TOL


def test_core_matches_pytorch(cases):
    model = gazecrop.load_model(WEIGHTS)
    for image, expect in cases:
        got = model.run(image)
        assert got.shape == expect.shape
        assert np.abs(got - expect).max() < TOL


def test_default_model_is_the_shipped_file(cases):
    model = gazecrop.load_model()
    image, expect = cases[0]
    np.testing.assert_allclose(model.run(image), expect, atol=TOL)


CANDIDATE = ROOT / "weights" / "candidate-lite0" / "gazecrop-fast.gzw"
CANDIDATE_GOLDEN = ROOT / "tests" / "data" / "golden_candidate_lite0.npz"


def test_candidate_lite0_matches_pytorch():
    """The EfficientNet-Lite0 candidate (weights/candidate-lite0, issue 13; depthwise convolutions, "same"
    padding, ReLU6, residual adds): the reference and every kernel set of the core reproduce the PyTorch
    student's log-density (``python -m gazecrop.train.convert_backbone --from <checkpoint> --golden``)."""
    core = pytest.importorskip("gazecrop._core")
    net = read_weights(CANDIDATE)
    model = gazecrop.load_model(CANDIDATE)
    before = core.kernel_set()
    with np.load(CANDIDATE_GOLDEN) as z:
        n = len([k for k in z.files if k.startswith("image")])
        cases = [(z[f"image{i}"], z[f"log_density{i}"]) for i in range(n)]
    assert len(cases) == 4
    try:
        for ks in core.supported_kernel_sets():
            core.set_kernel_set(ks)
            for image, expect in cases:
                assert np.abs(model.run(image) - expect).max() < TOL, ks
    finally:
        core.set_kernel_set(before)
    for image, expect in cases:
        assert np.abs(reference.run(net, image) - expect).max() < TOL
