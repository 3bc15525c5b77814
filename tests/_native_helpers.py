"""Shared helpers for the native-core tests (test_core.py, test_ops.py, test_weights.py, test_fuzz_weights.py)."""

from __future__ import annotations

import zlib
from contextlib import contextmanager

import numpy as np
import pytest

from gazecrop import weights

core = pytest.importorskip("gazecrop._core")

# Every kernel set the core knows (kernels.h kKernelSets); tests parametrised over it skip the ones this CPU or
# build lacks (kernel_set() below), and test_core.py checks that the CPU's flags and the supported sets agree.
KERNEL_SETS = ["avx512", "avx2", "neon", "scalar"]


@contextmanager
def kernel_set(name: str):
    """Force a kernel set for the block; a set this CPU or build lacks is a skip, never a pass."""
    if name not in core.supported_kernel_sets():
        pytest.skip(f"kernel set {name!r} not supported on this CPU/build")
    before = core.kernel_set()
    core.set_kernel_set(name)
    try:
        yield
    finally:
        core.set_kernel_set(before)


def load(net: weights.Network):
    """The native model of ``net`` (via the bytes the Python writer produces)."""
    return core.Model.from_bytes(weights.to_bytes(net))


def rel_err(out: np.ndarray, ref: np.ndarray) -> float:
    """Max over pixels of |out - ref| / max(|ref|, 1): relative error on the log-density (the floor of 1 only
    matters for near-zero log-densities, i.e. grids of a few pixels)."""
    assert out.shape == ref.shape, (out.shape, ref.shape)
    assert out.dtype == np.float32
    return float(np.max(np.abs(out.astype(np.float64) - ref) / np.maximum(np.abs(ref.astype(np.float64)), 1.0)))


def fix_crc(buf: bytearray) -> bytearray:
    """Recompute the trailer CRC of a (mutated) .gzw image so that a test reaches the check it targets."""
    n = len(buf)
    crc = zlib.crc32(bytes(buf[: n - 16])) & 0xFFFFFFFF
    buf[n - 16: n - 12] = crc.to_bytes(4, "little")
    return buf


def image(rng: np.random.Generator, h: int, w: int, kind: str = "uint8") -> np.ndarray:
    if kind == "uint8":
        return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return rng.uniform(0, 255, (3, h, w)).astype(np.float32)


def run_both(net: weights.Network, img: np.ndarray, isa: str):
    """``(core output, reference output)`` for ``img``, or None when the input is too small for ``net``:
    then the reference raised ValueError and this checks that the core refuses it too."""
    from gazecrop import reference

    model = load(net)
    try:
        ref = reference.run(net, img)
    except ValueError:  # input too small for this network: the core must refuse it too
        with kernel_set(isa), pytest.raises(ValueError):
            model.run(img)
        return None
    with kernel_set(isa):
        out = model.run(img)
    assert out.shape == ref.shape
    return out, ref


def check_network(net: weights.Network, img: np.ndarray, isa: str, what: str = "", tol: float = 1e-4) -> None:
    """The core's log-density of ``img`` within max relative error ``tol`` of the reference (an input too
    small for ``net`` must be refused by both), and normalised (``logsumexp == 0``)."""
    both = run_both(net, img, isa)
    if both is None:
        return
    out, ref = both
    err = rel_err(out, ref)
    assert err <= tol, f"{what} {img.shape} ops={[op.kind for op in net.ops]} rel err {err:.3g}"
    assert abs(np.logaddexp.reduce(out.astype(np.float64).ravel())) < 1e-4
