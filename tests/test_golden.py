"""Golden check of the bundled models: the NumPy reference and every kernel set of the native core (float32)
reproduce the PyTorch student's log-density (stored by the exporter's ``--golden``) on synthetic images, max abs
error 1e-3; a file's int8 trunk (the default's, weights format version 3) reproduces the exact integer reference
:func:`gazecrop.int8.run` on them, and stays near the float32 map.

- ``weights/gazecrop-fast.gzw``: the default (the DenseNet student, ``python -m gazecrop.train.export --golden``);
- ``weights/candidate-lite0/gazecrop-fast.gzw``: the first EfficientNet-Lite0 candidate;
- ``weights/candidate-fair/gazecrop-fast.gzw``: the Lite0 student fine-tuned for demographic parity
  (``python -m gazecrop.train.convert_backbone --from weights/candidate-fair/gazecrop-fast.pt --golden ...``)."""

from pathlib import Path

import numpy as np
import pytest

import gazecrop
from gazecrop import reference
from gazecrop.weights import read_weights

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-3
MODELS = {
    "default": (ROOT / "weights" / "gazecrop-fast.gzw", ROOT / "tests" / "data" / "golden_fast.npz"),
    "first Lite0 candidate": (ROOT / "weights" / "candidate-lite0" / "gazecrop-fast.gzw",
                              ROOT / "tests" / "data" / "golden_candidate_lite0.npz"),
    "fair Lite0 candidate": (ROOT / "weights" / "candidate-fair" / "gazecrop-fast.gzw",
                             ROOT / "tests" / "data" / "golden_candidate_fair.npz"),
}


def _cases(golden: Path):
    with np.load(golden) as z:
        n = len([k for k in z.files if k.startswith("image")])
        return [(z[f"image{i}"], z[f"log_density{i}"]) for i in range(n)]


@pytest.mark.parametrize("name", list(MODELS))
def test_golden_files_exist(name):
    weights, golden = MODELS[name]
    assert weights.is_file() and golden.is_file()
    assert len(_cases(golden)) >= 3


@pytest.mark.parametrize("name", list(MODELS))
def test_reference_matches_pytorch(name):
    weights, golden = MODELS[name]
    net = read_weights(weights)
    for image, expect in _cases(golden):
        got = reference.run(net, image)
        assert got.shape == expect.shape
        assert np.abs(got - expect).max() < TOL


def _each_kernel_set():
    """Switch the core to each supported kernel set in turn (yielding its name); the set in use is restored."""
    core = pytest.importorskip("gazecrop._core")
    before = core.kernel_set()
    try:
        for ks in core.supported_kernel_sets():
            core.set_kernel_set(ks)
            yield ks
    finally:
        core.set_kernel_set(before)


@pytest.mark.parametrize("name", list(MODELS))
def test_core_matches_pytorch_on_every_kernel_set(name):
    weights, golden = MODELS[name]
    model = gazecrop.load_model(weights, precision="fp32")
    for ks in _each_kernel_set():
        for image, expect in _cases(golden):
            got = model.run(image)
            assert got.shape == expect.shape
            assert np.abs(got - expect).max() < TOL, ks


@pytest.mark.parametrize("name", [n for n, (w, _) in MODELS.items() if read_weights(w).int8 is not None])
def test_int8_trunk_matches_the_exact_reference(name):
    from gazecrop import int8

    weights, golden = MODELS[name]
    net = read_weights(weights)
    model = gazecrop.load_model(weights, precision="int8")
    for ks in _each_kernel_set():
        for image, expect in _cases(golden):
            want = int8.run(net, net.int8, image)
            np.testing.assert_allclose(model.run(image), want, rtol=0, atol=2e-5, err_msg=ks)
            # int8 moves the map a little: within 0.2 of the float32 log-density on these images
            assert np.abs(want - expect).max() < 0.2


def test_default_model_is_the_shipped_file():
    weights, golden = MODELS["default"]
    model = gazecrop.load_model(precision="fp32")
    image, expect = _cases(golden)[0]
    np.testing.assert_allclose(model.run(image), expect, atol=TOL)
    assert Path(model.path).read_bytes() == weights.read_bytes()  # the packaged copy is the repository's file
    assert read_weights(weights).precision == "int8"  # calibrated: int8 where the int8 kernels beat float32
