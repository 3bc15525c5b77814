"""The head map (weights format version 3, docs/weights-format.md): a second output of the network that says
where heads are. The format (writer's version choice, round trips, every new corruption rejected by both
readers), the core's second output against the NumPy reference on every kernel set (fused, op by op, threads,
batches; the log-density bit for bit what the file without it gives), head boxes from the map, and the API
(Prediction.head_map / heads feed the placement's head rule)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

import gazecrop
from gazecrop import reference, weights
from gazecrop.crop import CropBox, head_box, heads_from_map
from gazecrop.train.face_map import attach_head_map, feature_value, head_coverage, without_head_map
from gazecrop._testing import inverted_residual_net, random_conv, random_network, with_head_map

from _native_helpers import core, fix_crc

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "weights" / "gazecrop-fast.gzw"


def _v3(seed: int = 0) -> weights.Network:
    return with_head_map(inverted_residual_net(np.random.default_rng(seed), stages=2, max_channels=9),
                         np.random.default_rng(100 + seed))


def _version(data: bytes) -> int:
    return struct.unpack_from("<I", data, 8)[0]


def test_writer_uses_version_3_only_with_a_head_map():
    net = _v3()
    data = weights.to_bytes(net)
    assert _version(data) == 3 and struct.unpack_from("<I", data, 40)[0] == net.head_output > 0
    back = weights.from_bytes(data)
    assert back.head_output == net.head_output and weights.to_bytes(back) == data
    stripped = without_head_map(back)
    assert stripped.head_output == 0 and _version(weights.to_bytes(stripped)) == 2
    assert weights.to_bytes(stripped) == weights.to_bytes(inverted_residual_net(np.random.default_rng(0), stages=2,
                                                                                max_channels=9))


@pytest.mark.parametrize("seed", range(4))
def test_core_head_map_matches_the_reference_on_every_kernel_set(seed):
    net = _v3(seed)
    plain = core.Model.from_bytes(weights.to_bytes(without_head_map(net)))
    m = core.Model.from_bytes(weights.to_bytes(net))
    assert m.has_head_map and not plain.has_head_map and m.format_version == 3
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    ref_ld, ref_hm = reference.run(net, img, head_map=True)
    before = core.kernel_set()
    try:
        for ks in core.supported_kernel_sets():
            core.set_kernel_set(ks)
            ld, hm = m.run(img, head_map=True)
            assert hm.dtype == np.float32 and hm.shape == ref_hm.shape
            np.testing.assert_allclose(hm, ref_hm, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(ref_hm).max()))
            assert np.array_equal(ld, plain.run(img)), ks  # the second output changes no bit of the first
            for fuse in (True, False):
                for threads in (1, 3):
                    a, h = m.run(img, head_map=True, fuse=fuse, threads=threads)
                    assert np.array_equal(a, ld) and np.array_equal(h, hm), (ks, fuse, threads)
            batch = np.stack([img, img[::-1].copy()])
            A, Hm = m.run(batch, head_map=True)
            assert np.array_equal(Hm[0], hm) and np.array_equal(Hm[1], m.run(batch[1], head_map=True)[1])
    finally:
        core.set_kernel_set(before)


def test_without_the_head_map_the_core_skips_its_ops(tmp_path):
    # GAZECROP_PROFILE prints one line per step run: the head map's own ops run only when it is asked for
    import subprocess
    import sys

    net = _v3(1)
    path = tmp_path / "v3.gzw"
    weights.write_weights(path, net)
    plain = len(without_head_map(net).ops)
    code = ("import sys, numpy as np; from gazecrop import _core; m = _core.Model(sys.argv[1]); "
            "img = np.zeros((37, 53, 3), np.uint8); m.run(img, fuse=False); print('--', file=sys.stderr); "
            "m.run(img, head_map=True, fuse=False)")
    err = subprocess.run([sys.executable, "-c", code, str(path)], env={**__import__("os").environ,
                         "GAZECROP_PROFILE": "1"}, capture_output=True, text=True, check=True).stderr
    without, with_heads = err.split("--\n")
    steps = [sum(1 for line in part.splitlines() if line.startswith("gazecrop: op ")) for part in (without, with_heads)]
    assert steps == [plain, len(net.ops)] and plain < len(net.ops), (steps, err)


def test_a_model_without_a_head_map_refuses_to_return_one():
    m = core.Model.from_bytes(weights.to_bytes(random_network(np.random.default_rng(0))))
    assert not m.has_head_map
    with pytest.raises(ValueError, match="no head map"):
        m.run(np.zeros((32, 32, 3), np.uint8), head_map=True)
    with pytest.raises(ValueError, match="no head map"):
        reference.run(weights.from_bytes(weights.to_bytes(random_network(np.random.default_rng(0)))),
                      np.zeros((32, 32, 3), np.uint8), head_map=True)


def _both_reject(data: bytes, match: str) -> None:
    with pytest.raises(weights.WeightsFormatError, match=match):
        weights.from_bytes(data)
    with pytest.raises(weights.WeightsFormatError, match=match):
        core.Model.from_bytes(data)


def test_corrupt_head_output_is_rejected_by_both_readers():
    net = _v3()
    data = weights.to_bytes(net)
    n_ops = len(net.ops)

    def with_head(v: int, version: int = 3) -> bytes:
        b = bytearray(data)
        struct.pack_into("<I", b, 40, v)
        struct.pack_into("<I", b, 8, version)
        return bytes(fix_crc(b))

    _both_reject(with_head(n_ops), "head_output")  # the log-density itself
    _both_reject(with_head(n_ops + 5), "head_output")
    _both_reject(with_head(0xFFFFFFFF), "head_output")
    _both_reject(with_head(net.head_output - 1), "head_output")  # the hidden layer: 3 channels and read by an op
    _both_reject(with_head(net.head_output, version=2), "reserved")  # version 2 has no head_output
    b = bytearray(data)
    b[50] = 1  # the rest of the header stays reserved in version 3
    _both_reject(bytes(fix_crc(b)), "reserved")
    # a one-channel value that an op reads: the map the final log-softmax reads
    read_by_last = net.ops[-1].inputs[0]
    assert net.channels(read_by_last) == 1
    _both_reject(with_head(read_by_last), "is read by op")
    # a version-3 file without a head map is valid (and is written back as version 2)
    zero = with_head(0)
    assert weights.from_bytes(zero).head_output == 0 and not core.Model.from_bytes(zero).has_head_map


def test_writer_refuses_a_bad_head_output():
    net = _v3()
    for bad in (len(net.ops), net.head_output - 1, -1, True):
        net.head_output = bad
        with pytest.raises(weights.WeightsFormatError, match="head_output"):
            weights.to_bytes(net)


def test_attach_head_map_on_the_shipped_model_keeps_its_log_density():
    net = weights.read_weights(SHIPPED)
    base = without_head_map(net)
    fv = feature_value(base)
    assert base.ops[fv].kind == "conv2d" and base.ops[fv].ip(2) == 1  # the readout's first 1x1 convolution
    rng = np.random.default_rng(0)
    c = base.channels(fv)
    layers = [random_conv(rng, 4, c, 1), random_conv(rng, 3, 4, 3), random_conv(rng, 1, 3, 1)]
    out = attach_head_map(base, layers)
    assert [op.kind for op in out.ops[-4:]] == ["conv2d"] * 3 + [base.ops[-1].kind]
    img = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    a, h = core.Model.from_bytes(weights.to_bytes(out)).run(img, head_map=True)
    assert np.array_equal(a, core.Model.from_bytes(weights.to_bytes(base)).run(img))
    # the head by hand: 1x1 + ReLU, 3x3 (zero padding 1) + ReLU, 1x1 on the feature maps
    f = reference.values(base, img, upto=fv)[fv].astype(np.float64)
    (w1, b1), (w2, b2), (w3, b3) = layers
    x = np.maximum(np.einsum("oc,chw->ohw", w1[:, :, 0, 0], f) + b1[:, None, None], 0)
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    y = sum(np.einsum("oc,chw->ohw", w2[:, :, u, v], xp[:, u:u + x.shape[1], v:v + x.shape[2]])
            for u in range(3) for v in range(3)) + b2[:, None, None]
    expect = np.einsum("oc,chw->ohw", w3[:, :, 0, 0], np.maximum(y, 0))[0] + b3[0]
    np.testing.assert_allclose(h, expect, rtol=1e-4, atol=1e-4)
    assert weights.to_bytes(without_head_map(out)) == weights.to_bytes(base)
    with pytest.raises(ValueError, match="at least one layer"):
        attach_head_map(base, [])


def test_head_coverage_is_the_exact_area_share():
    cov = head_coverage((100, 60), [(10, 0, 20, 30)], (3, 5))  # cells of 20 x 20 pixels
    expect = np.zeros((3, 5), np.float32)
    expect[0, 0], expect[0, 1] = 0.5, 0.5
    expect[1, 0], expect[1, 1] = 0.25, 0.25
    np.testing.assert_allclose(cov, expect, atol=1e-6)
    np.testing.assert_allclose(head_coverage((100, 60), [(0, 0, 100, 60)], (7, 9)), 1.0, atol=1e-6)


def test_heads_from_map_finds_each_region_with_interpolated_edges():
    a = np.full((6, 8), -4.0)
    a[1:3, 2:4] = 4.0  # a head over cells rows 1-2, cols 2-3: crossings half-way to the outside centres
    a[5, 7] = 2.0  # a second one in the corner: the border is its edge there
    heads = heads_from_map(a, (800, 600))  # cells of 100 x 100 pixels
    assert heads[0] == CropBox(200, 100, 200, 200)
    x0 = (7 + 0.5 - 2 / 6) * 100
    y0 = (5 + 0.5 - 2 / 6) * 100
    assert heads[1] == CropBox(int(np.floor(x0)), int(np.floor(y0)), 800 - int(np.floor(x0)), 600 - int(np.floor(y0)))
    small = np.full((30, 40), -4.0)
    small[10, 10] = 4.0  # one cell of 20 pixels in 800 x 600: 3 % of the short side, under MIN_HEAD
    assert heads_from_map(small, (800, 600)) == [] and len(heads_from_map(small, (800, 600), min_head=0.02)) == 1
    assert heads_from_map(np.full((3, 3), -1.0), (30, 30)) == []
    assert heads_from_map(np.full((3, 3), 1.0), (30, 30)) == [CropBox(0, 0, 30, 30)]
    with pytest.raises(ValueError, match="NaN"):
        heads_from_map(np.array([[np.nan]]), (10, 10))
    with pytest.raises(ValueError, match="grid"):
        heads_from_map(np.zeros(4), (10, 10))


class _Model:
    """A stand-in model: saliency spread evenly over the left 5 of 12 columns; with ``heads``, a head map with
    one head in column 4 (x 240-300 of a 720-pixel-wide image)."""

    def __init__(self, heads: bool) -> None:
        self.has_head_map = heads

    def input_size(self, height, width):
        return 64, 96

    def log_density(self, rgb, head_map=False):
        ld = np.full((8, 12), -9.0, np.float32)
        ld[:, 0:5] = 0.0
        ld -= np.log(np.exp(ld).sum())
        hm = np.full((8, 12), -3.0, np.float32)
        hm[3:5, 4] = 3.0
        return (ld, hm) if head_map else ld


def test_predictions_carry_the_head_map_and_crops_spare_the_head():
    img = np.zeros((480, 720, 3), np.uint8)
    pred = gazecrop.predict(img, model=_Model(heads=True))
    assert pred.head_map is not None and pred.head_map.shape == (8, 12)
    (head,) = pred.heads
    assert (head.left, head.right) == (240, 300), head
    aspect = "200:480"  # narrower than the salient band: some box inside it cuts the head
    b = pred.crops([aspect])[0].box
    assert b.right <= head.left or b.left >= head.right or (b.left <= head.left and b.right >= head.right), (b, head)
    plain = gazecrop.predict(img, model=_Model(heads=False))
    assert plain.head_map is None and plain.heads == []
    p = plain.crops([aspect])[0].box
    assert p.left < head.left < p.right < head.right, p  # without the map the best box cuts through the head
    sym = gazecrop.predict(img, model=_Model(heads=True), symmetric=True)
    mirrored = gazecrop.predict(np.ascontiguousarray(img[:, ::-1]), model=_Model(heads=True), symmetric=True)
    assert np.array_equal(sym.head_map, mirrored.head_map[:, ::-1])  # mirror-equivariant like the density


def test_head_box_and_heads_agree_on_a_drawn_grid():
    # a head map built from a face box gives back (about) the head box around it
    size = (640, 480)
    head = head_box((300, 200, 60, 60), size)
    cov = head_coverage(size, [tuple(head)], (30, 40))
    logits = np.log(np.clip(cov, 1e-4, 1 - 1e-4) / (1 - np.clip(cov, 1e-4, 1 - 1e-4)))
    (found,) = heads_from_map(logits, size)
    assert abs(found.left - head.left) <= 16 and abs(found.right - head.right) <= 16
    assert abs(found.top - head.top) <= 16 and abs(found.bottom - head.bottom) <= 16


def test_the_command_lists_the_heads_in_its_json(capsys):
    from gazecrop import cli

    photo = ROOT / "examples" / "photo.jpg"
    assert cli.main([str(photo), "--aspect", "16:9", "--json"]) == 0
    record = json.loads(capsys.readouterr().out.splitlines()[0])
    model = gazecrop.load_model(SHIPPED)
    if not model.has_head_map:
        assert "heads" not in record
        return
    heads = [CropBox(*h) for h in record["heads"]]
    assert heads == gazecrop.predict(photo, model=model).heads
    assert any(h.left < 220 < h.right and h.top < 110 < h.bottom for h in heads), heads  # the astronaut's face


def test_face_map_command_trains_and_writes_a_head_map(tmp_path, monkeypatch):
    """python -m gazecrop.train.face_map on a few photos: faces found and cached, a version-3 file written
    whose log-density is the input file's, bit for bit, and the val report."""
    pytest.importorskip("torch")
    pytest.importorskip("cv2")
    from gazecrop import datasets
    from gazecrop.train import face_map

    if not (datasets.default_root() / "splits.csv").is_file():
        pytest.skip("no eye-tracking data beside the project")
    monkeypatch.setenv("GAZECROP_CACHE", str(tmp_path / "cache"))
    base = tmp_path / "base.gzw"
    weights.write_weights(base, without_head_map(weights.read_weights(SHIPPED)))
    out, report = tmp_path / "heads.gzw", tmp_path / "report.json"
    assert face_map.main(["--weights", str(base), "--out", str(out), "--limit", "6", "--epochs", "1",
                          "--json", str(report)]) == 0
    assert (tmp_path / "cache" / "face_map" / "faces_haar_frontalface_default.json").is_file()
    rep = json.loads(report.read_text())
    assert rep["train_photos"] == 6 and rep["val_photos"] == 6
    assert rep["val_cell_auc"] is None or 0 <= rep["val_cell_auc"] <= 1
    m = core.Model(str(out))
    assert m.has_head_map and m.format_version == 3
    img = np.random.default_rng(0).integers(0, 256, (192, 256, 3), dtype=np.uint8)
    assert np.array_equal(m.run(img), core.Model(str(base)).run(img))


def test_bad_arguments_are_refused_clearly():
    with pytest.raises(ValueError, match="threshold"):
        heads_from_map(np.zeros((3, 3)), (30, 30), threshold=float("nan"))
    for bad in (float("nan"), -0.1):
        with pytest.raises(ValueError, match="min_head"):
            heads_from_map(np.zeros((3, 3)), (30, 30), min_head=bad)
    with pytest.raises(ValueError, match="real"):
        heads_from_map(np.zeros((3, 3), complex), (30, 30))
    m = gazecrop.load_model(SHIPPED)
    img = np.zeros((64, 64, 3), np.uint8)
    for bad in ("no", 1.5, [0], None):
        with pytest.raises(TypeError, match="head_map"):
            m.run(img, head_map=bad)
    base = without_head_map(weights.read_weights(SHIPPED))
    rng = np.random.default_rng(0)
    with pytest.raises(TypeError, match="value"):
        attach_head_map(base, [random_conv(rng, 1, 3, 1)], value=True)
    with pytest.raises(ValueError, match="layer 0"):
        attach_head_map(base, [(np.zeros(3), np.zeros(1))])


def test_a_huge_head_map_is_labelled_quickly_on_block_maxima():
    import time

    a = np.full((2000, 1500), -1.0)
    a[::2, ::2] = 1.0  # a checkerboard of one-cell heads: 750,000 regions at full resolution
    t = time.perf_counter()
    heads = heads_from_map(a, (1500, 2000))
    assert time.perf_counter() - t < 5.0
    assert heads == [CropBox(0, 0, 1500, 2000)]  # the block maxima join them into one region


class _InfModel(_Model):
    """Head logits of +inf on the left half and -inf on the right: the photo and its mirror disagree fully."""

    def log_density(self, rgb, head_map=False):
        ld = _Model.log_density(self, rgb)
        hm = np.full((8, 12), -np.inf, np.float32)
        hm[:, :6] = np.inf
        hm[0, 0] = np.nan  # a broken cell: no head
        return (ld, hm) if head_map else ld


def test_non_finite_head_logits_never_break_a_crop():
    img = np.zeros((480, 720, 3), np.uint8)
    for symmetric in (False, True):
        pred = gazecrop.predict(img, model=_InfModel(heads=True), symmetric=symmetric)
        assert np.isfinite(pred.head_map).all()
        assert pred.crops(["1:1", "16:9"])  # no NaN error
    assert gazecrop.predict(img, model=_InfModel(heads=True)).heads[0].left == 0
