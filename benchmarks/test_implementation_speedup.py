"""Suite 2, implementation speed-up: the pruned student's weights (192x256 input, batch 1) in the native core
(1 and 2 threads), in PyTorch (``benchmarks/torch_net.py``, 1 thread), in ONNX Runtime (the torch module
exported to ONNX, 1 intra-op thread) and in the NumPy reference (1 BLAS thread). Gate (interleaved in one run):
the core on 1 thread is faster than PyTorch and ONNX Runtime."""

from __future__ import annotations

import pytest

import harness as H
import methods as M
from conftest import run_gate

METHODS = [M.CORE1, M.CORE2, M.ORT, M.TORCH, M.NUMPY]
ROUNDS = {M.CORE1: 200, M.CORE2: 200, M.ORT: 200, M.TORCH: 100, M.NUMPY: 5}


@pytest.fixture(scope="module")
def suite():
    paths, _ = H.photo_paths(1)
    return M.implementation_methods(paths[0], with_numpy=True)


@pytest.mark.parametrize("method", METHODS)
def test_implementation_speed(benchmark, suite, method):
    fns, skipped, info = suite
    if method not in fns:
        pytest.skip(skipped[method])
    benchmark.group = f"2 implementation: {info['label']}, {info['input'][0]}x{info['input'][1]}, batch 1"
    benchmark.extra_info.update(model=info["label"], standin=info["standin"], macs=info["macs"],
                                kernel_set=info.get("kernel_set"))
    benchmark.pedantic(fns[method], rounds=ROUNDS[method], warmup_rounds=2 if method != M.NUMPY else 1)


def test_gate_core_faster_than_pytorch_and_onnxruntime():
    run_gate("implementation")
