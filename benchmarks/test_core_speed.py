"""Speed of the native core (pytest-benchmark; times only, checks nothing).

Network: ``student_like(0)`` (random weights) at a (3, 192, 256) float32 input, batch 1. Compared: the core
with the AVX-512, AVX2 and scalar kernel sets on one thread and AVX-512 / AVX2 on two threads (sets the CPU
lacks are skipped), PyTorch CPU on one thread
(``torch.set_num_threads(1)``, same weights, ``torch_net.TorchNet``) and the NumPy reference. Each result
carries ``gflops`` = 2 * Network.num_macs / median time in ``extra_info``. Per-layer shapes:
``test_layer`` times single-conv networks at the student's layer shapes. ``test_lite0_student``: the
EfficientNet-Lite0 student file, inverted residuals fused or op by op.

    python -m pytest benchmarks/test_core_speed.py --benchmark-columns=min,median,max,rounds
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gazecrop import reference, weights
from gazecrop._testing import random_conv, student_like

core = pytest.importorskip("gazecrop._core")

H, W = 192, 256


@pytest.fixture(scope="module")
def net():
    return student_like(0)


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).uniform(0, 255, (3, H, W)).astype(np.float32)


def _record(benchmark, flops):
    benchmark.extra_info["gflops_median"] = round(flops / benchmark.stats.stats.median / 1e9, 2)
    benchmark.extra_info["gflops_min"] = round(flops / benchmark.stats.stats.min / 1e9, 2)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("isa", ["avx512", "avx2", "scalar"])
def test_core(benchmark, net, image, isa, threads):
    if isa not in core.supported_kernel_sets():
        pytest.skip(f"{isa} not supported here")
    if isa == "scalar" and threads == 2:
        pytest.skip("scalar measured on one thread only")
    model = core.Model.from_bytes(weights.to_bytes(net))
    before = core.kernel_set()
    core.set_kernel_set(isa)
    try:
        for _ in range(3):
            model.run(image, threads=threads)
        benchmark.pedantic(model.run, args=(image,), kwargs={"threads": threads}, rounds=40, iterations=1)
    finally:
        core.set_kernel_set(before)
    _record(benchmark, 2 * net.num_macs(H, W))


LITE0 = Path(__file__).resolve().parents[1] / "weights" / "candidate-lite0" / "gazecrop-fast.gzw"


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "op-by-op"])
@pytest.mark.parametrize("isa", ["avx512", "avx2", "scalar"])
def test_lite0_student(benchmark, isa, fuse):
    """The EfficientNet-Lite0 student file at 192x256 (its input for a 4:3 photo), 1 thread, inverted residuals
    fused by the loader (the default) or op by op; interleaved ratios: ``benchmarks/kernel_sets.py``."""
    if isa not in core.supported_kernel_sets():
        pytest.skip(f"{isa} not supported here")
    if not LITE0.is_file():
        pytest.skip(f"{LITE0} is missing")
    model = core.Model(str(LITE0))
    img = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    before = core.kernel_set()
    core.set_kernel_set(isa)
    try:
        for _ in range(3):
            model.run(img, fuse=fuse)
        benchmark.pedantic(model.run, args=(img,), kwargs={"fuse": fuse}, rounds=40, iterations=1)
    finally:
        core.set_kernel_set(before)
    _record(benchmark, 2 * weights.read_weights(LITE0).num_macs(H, W))


def test_pytorch(benchmark, net, image):
    torch = pytest.importorskip("torch")
    from torch_net import TorchNet

    torch.set_num_threads(1)
    tnet = TorchNet(net).eval()
    x = torch.from_numpy(image)
    for _ in range(3):
        tnet(x)
    benchmark.pedantic(tnet, args=(x,), rounds=40, iterations=1)
    _record(benchmark, 2 * net.num_macs(H, W))


def test_numpy_reference(benchmark, net, image):
    benchmark.pedantic(reference.run, args=(net, image), rounds=5, iterations=1, warmup_rounds=1)
    _record(benchmark, 2 * net.num_macs(H, W))


# Layer shapes of student_like(0) at 192x256: (name, cin, cout, kernel, stride, h, w) of the conv's input grid.
LAYERS = [
    ("stem-3x3s2-3-24", 3, 24, 3, 2, 192, 256),
    ("block0-1x1-48-24", 48, 24, 1, 1, 48, 64),
    ("block0-3x3-24-12", 24, 12, 3, 1, 48, 64),
    ("trans1-1x1-72-36", 72, 36, 1, 1, 48, 64),
    ("block1-3x3-32-16", 32, 16, 3, 1, 24, 32),
    ("trans2-1x1-132-66", 132, 66, 1, 1, 24, 32),
    ("readout-1x1-318-16", 318, 16, 1, 1, 24, 32),
]


@pytest.mark.parametrize("isa", ["avx512", "avx2", "scalar"])
@pytest.mark.parametrize("layer", LAYERS, ids=[lay[0] for lay in LAYERS])
def test_layer(benchmark, layer, isa):
    """One conv layer (+ a 1x1 head to one channel, and for cin != 3 a 1x1 producing cin channels, both
    included in the FLOPs)."""
    if isa not in core.supported_kernel_sets():
        pytest.skip(f"{isa} not supported here")
    name, cin, cout, k, s, h, w = layer
    rng = np.random.default_rng(0)
    n = weights.Network()
    x = n.conv2d(0, *random_conv(rng, cin, 3, 1), name="pre") if cin != 3 else 0
    x = n.conv2d(x, *random_conv(rng, cout, cin, k), stride=s, name="op")
    n.conv2d(x, *random_conv(rng, 1, cout, 1), activation="none", name="head")
    model = core.Model.from_bytes(weights.to_bytes(n))
    img = np.random.default_rng(1).uniform(0, 255, (3, h, w)).astype(np.float32)
    before = core.kernel_set()
    core.set_kernel_set(isa)
    try:
        model.run(img)
        benchmark.pedantic(model.run, args=(img,), rounds=30, iterations=1)
    finally:
        core.set_kernel_set(before)
    _record(benchmark, 2 * reference.count_macs(n, h, w))
