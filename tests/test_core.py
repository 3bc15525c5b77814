"""The native core (gazecrop._core) against the independent NumPy reference (gazecrop.reference), on both
kernel sets; thread safety; argument checking. Tolerance: max relative error 1e-4 on the log-density
(see _native_helpers.rel_err)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gazecrop
from gazecrop import reference, weights
from gazecrop._testing import inverted_residual_net, random_network, student_like

from _native_helpers import KERNEL_SETS, check_network, core, image, kernel_set, load, rel_err

TOL = 1e-4


def _cpu_flags() -> set:
    """The CPU flags Linux reports (it lists AVX2 / AVX-512 only when the OS also saves their state)."""
    try:
        with open("/proc/cpuinfo") as f:
            return set(next((line for line in f if line.startswith("flags")), ":").split(":", 1)[1].split())
    except OSError:
        return set()


def test_supported_kernel_sets_match_the_cpu():
    flags = _cpu_flags()
    if not flags:
        pytest.skip("no /proc/cpuinfo flags to compare with")
    sets = core.supported_kernel_sets()
    assert sets[0] == "scalar" and set(sets) <= set(KERNEL_SETS)
    is_x86 = platform.machine().lower() in ("x86_64", "amd64")
    assert ("avx2" in sets) == (is_x86 and {"avx2", "fma"} <= flags), (sets, sorted(flags & {"avx2", "fma"}))
    assert ("avx512" in sets) == (is_x86 and {"avx2", "fma", "avx512f"} <= flags), (sets, "avx512f" in flags)
    # AArch64 Linux lists Advanced SIMD as "asimd"
    is_arm64 = platform.machine().lower() in ("aarch64", "arm64")
    assert ("neon" in sets) == (is_arm64 and "asimd" in flags), (sets, "asimd" in flags)


@pytest.mark.skipif(bool(os.environ.get("GAZECROP_ISA")), reason="ISA forced by GAZECROP_ISA")
def test_best_kernel_set_is_the_default():
    """AVX-512 where the CPU and OS support it, else AVX2+FMA, NEON on AArch64, else scalar (kKernelSets
    order)."""
    out = subprocess.run([sys.executable, "-c", "import gazecrop._core as c; print(c.kernel_set())"],
                         capture_output=True, text=True, check=True, env={k: v for k, v in os.environ.items()
                                                                          if k != "GAZECROP_ISA"})
    assert out.stdout.strip() == core.supported_kernel_sets()[-1]


def test_unsupported_isa_request_falls_back_to_the_best_set():
    out = subprocess.run([sys.executable, "-c", "import gazecrop._core as c; print(c.kernel_set())"],
                         capture_output=True, text=True, check=True, env={**os.environ, "GAZECROP_ISA": "neon-9000"})
    assert out.stdout.strip() == core.supported_kernel_sets()[-1]


@pytest.mark.parametrize("isa", KERNEL_SETS)
def test_env_forces_kernel_set(isa):
    if isa not in core.supported_kernel_sets():
        pytest.skip(f"{isa} not supported here")
    out = subprocess.run([sys.executable, "-c", "import gazecrop._core as c; print(c.kernel_set())"],
                         capture_output=True, text=True, check=True, env={**os.environ, "GAZECROP_ISA": isa})
    assert out.stdout.strip() == isa


def test_set_kernel_set_rejects_unknown():
    with pytest.raises(ValueError, match="neon-9000"):
        core.set_kernel_set("neon-9000")


@pytest.mark.parametrize("isa", KERNEL_SETS)
@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), h=st.integers(16, 48), w=st.integers(16, 48),
       blocks=st.integers(1, 3), layers=st.integers(1, 4), max_channels=st.sampled_from([5, 13, 27, 40]),
       stride2=st.booleans(), kind=st.sampled_from(["uint8", "float32"]))
def test_random_networks_match_reference(isa, seed, h, w, blocks, layers, max_channels, stride2, kind):
    rng = np.random.default_rng(seed)
    net = random_network(rng, max_blocks=blocks, max_layers=layers, max_channels=max_channels, stride2=stride2)
    check_network(net, image(rng, h, w, kind), isa, f"seed={seed}")


@pytest.mark.parametrize("isa", KERNEL_SETS)
@pytest.mark.parametrize("hw", [(192, 256), (256, 192), (96, 160)], ids=lambda hw: f"{hw[0]}x{hw[1]}")
def test_student_like_matches_reference(isa, hw):
    net = student_like(1)
    img = image(np.random.default_rng(7), *hw, kind="float32")
    ref = reference.run(net, img)
    with kernel_set(isa):
        out = load(net).run(img)
    assert rel_err(out, ref) <= TOL


def test_uint8_and_float32_inputs_agree():
    net = random_network(np.random.default_rng(3))
    img = image(np.random.default_rng(4), 33, 29)
    model = load(net)
    a = model.run(img)
    b = model.run(np.ascontiguousarray(img.transpose(2, 0, 1).astype(np.float32)))
    np.testing.assert_array_equal(a, b)


def _without_softplus(net: weights.Network) -> weights.Network:
    """``net`` with every fused softplus (file code 2 of conv2d and add) replaced by ReLU (code 1)."""
    for op in net.ops:
        if op.kind == "conv2d" and op.iparams[5] == 2:
            op.iparams[5] = 1
        if op.kind == "add" and op.iparams[0] == 2:
            op.iparams[0] = 1
    return net


@pytest.mark.parametrize("seed", range(4))
def test_avx512_equals_avx2_bit_for_bit(seed):
    """The AVX-512 convolution and depthwise kernels run each output's FMAs in the AVX2 kernels' order
    (cpp/src/kernels/README.md), so outputs are identical. Softplus tails may differ in the last bit (AVX2
    runs them through the scalar formula), so the networks' softplus activations are replaced by ReLU."""
    for isa in ("avx2", "avx512"):
        if isa not in core.supported_kernel_sets():
            pytest.skip(f"kernel set {isa!r} not supported on this CPU/build")
    rng = np.random.default_rng(seed)
    nets = [student_like(seed)] + [inverted_residual_net(rng, stages=3, max_channels=40) for _ in range(2)]
    img = image(np.random.default_rng(100 + seed), 61 + 7 * seed, 83 + 5 * seed)
    for net in nets:
        model = load(_without_softplus(net))
        outs = {}
        for isa in ("avx2", "avx512"):
            with kernel_set(isa):
                outs[isa] = model.run(img)
        np.testing.assert_array_equal(outs["avx512"], outs["avx2"])


@pytest.mark.parametrize("isa", KERNEL_SETS)
def test_intra_op_threads_identical(isa):
    net = student_like(2)
    img = image(np.random.default_rng(5), 96, 128)
    with kernel_set(isa):
        model = load(net)
        serial = model.run(img, threads=1)
        for t in (2, 3, 4, 7):
            np.testing.assert_array_equal(model.run(img, threads=t), serial)


def test_many_threads_one_model_identical_to_serial():
    net = student_like(3)
    model = load(net)
    rng = np.random.default_rng(6)
    imgs = [image(rng, 64 + 32 * (i % 3), 96, "uint8" if i % 2 else "float32") for i in range(12)]
    serial = [model.run(im) for im in imgs]
    with ThreadPoolExecutor(max_workers=8) as ex:
        for _ in range(2):
            outs = list(ex.map(lambda a: model.run(a[1], threads=1 + a[0] % 3), enumerate(imgs)))
            for o, s in zip(outs, serial):
                np.testing.assert_array_equal(o, s)


def test_python_model_wrapper(tmp_path):
    net = random_network(np.random.default_rng(8))
    path = tmp_path / "net.gzw"
    weights.write_weights(path, net)
    model = gazecrop.load_model(path)
    img = image(np.random.default_rng(9), 40, 40)
    out = model.run(img)
    assert out.dtype == np.float32
    assert rel_err(out, reference.run(net, img)) <= TOL
    assert abs(np.logaddexp.reduce(out.astype(np.float64).ravel())) < 1e-4
    assert core.Model(str(path)).output_size(40, 40) == out.shape


@pytest.fixture(scope="module")
def small_model():
    return load(random_network(np.random.default_rng(10), stride2=False))


@pytest.mark.parametrize("bad", [
    pytest.param(np.zeros((20, 20, 3), np.float64), id="float64"),
    pytest.param(np.zeros((20, 20, 3), np.int32), id="int32"),
    pytest.param(np.zeros((20, 20, 3), np.int8), id="int8"),
    pytest.param(np.zeros((3, 20, 20), np.float16), id="float16"),
    pytest.param(np.zeros((3, 20, 20), ">f4"), id="float32-big-endian"),
    pytest.param([[[0, 0, 0]]], id="list"),
    pytest.param(None, id="None"),
])
def test_bad_dtype_raises_type_error(small_model, bad):
    with pytest.raises(TypeError):
        small_model.run(bad)


@pytest.mark.parametrize("bad,expected", [
    pytest.param(np.zeros((20, 20, 4), np.uint8), r"uint8 \(H, W, 3\), got shape \(20, 20, 4\)", id="uint8-4ch"),
    pytest.param(np.zeros((3, 20, 20), np.uint8), r"uint8 \(H, W, 3\), got shape \(3, 20, 20\)", id="uint8-chw"),
    pytest.param(np.zeros((20, 20, 3), np.float32), r"float32 \(3, H, W\), got shape \(20, 20, 3\)", id="f32-hwc"),
    pytest.param(np.zeros((20, 20), np.uint8), r"got shape \(20, 20\)", id="rank2"),
    pytest.param(np.zeros((1, 1, 20, 20, 3), np.uint8), r"got shape \(1, 1, 20, 20, 3\)", id="rank5"),
    pytest.param(np.zeros((2, 20, 20, 4), np.uint8), r"uint8 \(N, H, W, 3\) for a batch", id="batch-4ch"),
    pytest.param(np.zeros((0, 20, 20, 3), np.uint8), "batch size 0", id="batch-empty"),
    pytest.param(np.zeros((20, 0, 3), np.uint8), "0", id="empty"),
    pytest.param(np.zeros((40, 40, 3), np.uint8)[::2, ::2], "C-contiguous", id="strided"),
    pytest.param(np.zeros((2, 2, 3), np.uint8), "too small", id="too-small"),
])
def test_bad_shape_raises_value_error(small_model, bad, expected):
    with pytest.raises(ValueError, match=expected):
        small_model.run(bad)


@pytest.mark.parametrize("threads", [0, -1, 1000])
def test_bad_threads(small_model, threads):
    with pytest.raises(ValueError, match="threads"):
        small_model.run(np.zeros((20, 20, 3), np.uint8), threads=threads)


def test_missing_file():
    with pytest.raises(FileNotFoundError):
        core.Model("/nonexistent/dir/model.gzw")


def test_directory_is_os_error(tmp_path):
    with pytest.raises(OSError):
        core.Model(str(tmp_path))


def test_format_error_is_weights_format_error(tmp_path):
    p = tmp_path / "bad.gzw"
    p.write_bytes(b"\x00" * 200)
    with pytest.raises(gazecrop.WeightsFormatError, match="magic"):
        core.Model(str(p))
    assert issubclass(gazecrop.WeightsFormatError, ValueError)


@pytest.mark.parametrize("isa", KERNEL_SETS)
@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), stem=st.integers(1, 29),
       growth=st.lists(st.integers(1, 27), min_size=3, max_size=3), bottleneck=st.integers(1, 40),
       layers=st.integers(1, 4), hw=st.sampled_from([(64, 96), (96, 64), (80, 112), (64, 64)]),
       readout=st.lists(st.integers(1, 19), min_size=0, max_size=2))
def test_pruned_student_shapes_match_reference(isa, seed, stem, growth, bottleneck, layers, hw, readout):
    """The student architecture with pruned-looking (odd) channel counts everywhere."""
    blocks = tuple(((g, max(1, bottleneck - 3 * i)),) * layers for i, g in enumerate(growth))
    net = student_like(seed % 1000, stem=stem, blocks=blocks, readout=tuple(readout))
    img = image(np.random.default_rng(seed), *hw, kind="uint8")
    ref = reference.run(net, img)
    with kernel_set(isa):
        out = load(net).run(img)
    assert rel_err(out, ref) <= TOL


_STEADY_STATE = r"""
import resource, sys
import numpy as np
import gazecrop._core as core
path, precision, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
model = core.Model(path)
rng = np.random.default_rng(0)
big, small = (rng.integers(0, 256, s, dtype=np.uint8) for s in ((192, 256, 3), (160, 224, 3)))
run = lambda im: model.run(im, threads=threads, precision=None if precision == "default" else precision)
for im in (big, small, big):  # the workspace grows to the larger size once, then serves both
    run(im)
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
before = faults()
for i in range(20):
    out = run(big if i % 2 else small)
# the returned array is new on every run: numpy maps it afresh when it is above the threshold
print((faults() - before) / 20, out.nbytes)
"""


def _random_full_resolution_net(tmp_path) -> str:
    """A random DenseNet-style network (gazecrop._testing.random_network, seed 35): a stride-2 3x3 stem (im2col),
    both pools, dense blocks, resizes, a concatenation and its head at half resolution (the head ops'
    temporaries well above 64 KiB)."""
    path = tmp_path / "random35.gzw"
    weights.write_weights(path, random_network(np.random.default_rng(35)))
    return str(path)


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc"
                    or "asan" in os.environ.get("LD_PRELOAD", ""),
                    reason="counts page faults under glibc's malloc (not a sanitizer's)")
@pytest.mark.parametrize("name,precision,threads", [
    ("gazecrop-fast.gzw", "default", 1),
    ("gazecrop-fast.gzw", "default", 2),
    ("candidate-lite0/gazecrop-fast-int8.gzw", "fp32", 1),
    ("candidate-lite0/gazecrop-fast-int8.gzw", "int8", 2),
    ("random", "default", 3),
])
def test_steady_state_runs_touch_no_fresh_memory(tmp_path, name, precision, threads):
    """Runs at sizes seen before reuse the model's workspace: no fresh pages but the returned array's. glibc is
    told to serve every block above 64 KiB with mmap (its dynamic threshold otherwise hides per-run allocations
    in some allocator states): a run that allocated its values afresh took about 2,000 (DenseNet) to 3,600
    (Lite0) page faults, a random full-resolution network's temporaries about 4,000."""
    path = _random_full_resolution_net(tmp_path) if name == "random" else \
        str(Path(__file__).resolve().parents[1] / "weights" / name)
    env = {**os.environ, "GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"}
    out = subprocess.run([sys.executable, "-c", _STEADY_STATE, path, precision, str(threads)], env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    faults, out_bytes = float(out[0]), int(out[1])
    out_pages = -(-out_bytes // 4096) if out_bytes >= 65536 else 0
    assert faults < out_pages + 2, f"{faults} page faults per run (the returned array: {out_pages} pages)"
