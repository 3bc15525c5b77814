"""``python -m gazecrop.train.calibrate`` (issue 22): the int8 trunk written with its verdict, and bad arguments."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gazecrop import int8, weights
from gazecrop._testing import random_conv
from gazecrop.train import calibrate

from _native_helpers import core

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "eyetracking"
LITE0 = ROOT / "weights" / "candidate-lite0" / "gazecrop-fast.gzw"
CENTRE_BIAS = ROOT / "weights" / "teacher" / "centre_bias.npz"
needs_data = pytest.mark.skipif(not (SHARED.is_dir() and LITE0.is_file() and CENTRE_BIAS.is_file()),
                                reason="the eye-tracking data, the Lite0 candidate or the centre bias is absent")


@needs_data
def test_calibrate_writes_the_trunk_and_the_verdict(tmp_path):
    out, rep = tmp_path / "lite0-int8.gzw", tmp_path / "report.json"
    before = LITE0.read_bytes()
    rc = calibrate.main([str(LITE0), "--out", str(out), "--images", "2", "--val", "2", "--data", str(SHARED),
                         "--centre-bias", str(CENTRE_BIAS), "--json", str(rep)])
    assert rc == 0 and LITE0.read_bytes() == before  # the input is never touched
    net = weights.read_weights(out)
    report = json.loads(rep.read_text())
    assert net.int8.n_ops == report["trunk_ops"] == 39 and report["calibration_images"] == 2
    assert report["val_images"] == 2 and report["crops"] == 8
    met = report["passes"]
    assert net.int8_verdict == (1 if met else 2) and net.precision == ("int8" if met else "fp32")
    assert report["verdict"] == weights.INT8_VERDICTS[net.int8_verdict]
    for key in ("ig_drop", "auc_drop", "crops_within_1pct"):
        assert np.isfinite(report[key])
    m = core.Model.from_bytes(out.read_bytes())
    assert m.int8_ops == 39 and m.default_precision == net.precision
    # the float32 network is unchanged: the same float tensors as the input
    src = weights.read_weights(LITE0)
    for a, b in zip(src.ops, net.ops):
        assert all(np.array_equal(x, y) for (_, x), (_, y) in zip(a.tensors, b.tensors))


@needs_data
def test_no_val_means_not_evaluated(tmp_path):
    out = tmp_path / "x.gzw"
    assert calibrate.main([str(LITE0), "--out", str(out), "--images", "1", "--val", "0", "--data", str(SHARED),
                           "--no-bias-correction", "--precision", "int8"]) == 0
    net = weights.read_weights(out)
    assert (net.int8_verdict, net.precision) == (0, "int8")
    # without bias correction the int8 path's biases are the float ones
    for i, b in net.int8.biases.items():
        np.testing.assert_array_equal(b, net.ops[i].tensors[1][1])


def test_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        calibrate.main([str(LITE0), "--out", str(LITE0)])
    assert e.value.code == 2 and "never overwritten" in capsys.readouterr().err
    for bad in (["--images", "0"], ["--val", "-1"]):
        with pytest.raises(SystemExit) as e:
            calibrate.main([str(LITE0), "--out", str(tmp_path / "o.gzw"), *bad])
        assert e.value.code == 2
    # a network without a trunk int8 can run (no depthwise convolution, no dense block): a clear message, nothing
    # written
    plain = weights.Network()
    plain.log_softmax(plain.conv2d(0, *random_conv(np.random.default_rng(0), 1, 3, 1), activation="none"))
    src, out = tmp_path / "plain.gzw", tmp_path / "plain-int8.gzw"
    weights.write_weights(src, plain)
    assert calibrate.main([str(src), "--out", str(out), "--val", "0"]) == 2
    assert "no depthwise convolution or dense block" in capsys.readouterr().err and not out.exists()
    assert calibrate.main([str(tmp_path / "missing.gzw"), "--out", str(out), "--val", "0"]) == 2
    assert not out.exists()


def test_outputs_are_checked_before_the_work(tmp_path, capsys):
    src = tmp_path / "in.gzw"
    src.write_bytes(LITE0.read_bytes() if LITE0.is_file() else b"x")
    before = src.read_bytes()
    (tmp_path / "folder").mkdir()
    cases = [["--out", str(tmp_path / "o.gzw"), "--json", str(src)],          # the report over the input
             ["--out", str(tmp_path / "o.gzw"), "--json", str(tmp_path / "o.gzw")],  # the report over the weights
             ["--out", str(tmp_path / "folder")],
             ["--out", str(tmp_path / "missing" / "o.gzw")],
             ["--out", str(tmp_path / "o.gzw"), "--json", str(tmp_path / "missing" / "r.json")]]
    for extra in cases:
        with pytest.raises(SystemExit) as e:
            calibrate.main([str(src), "--val", "0", *extra])
        assert e.value.code == 2, extra
    assert src.read_bytes() == before and not (tmp_path / "o.gzw").exists()


@needs_data
def test_a_failed_report_write_leaves_no_weights(tmp_path, monkeypatch, capsys):
    out, rep = tmp_path / "o.gzw", tmp_path / "r.json"

    def fail(path, data):
        raise PermissionError(13, "denied", str(path))

    monkeypatch.setattr(calibrate, "write_bytes", fail)
    assert calibrate.main([str(LITE0), "--out", str(out), "--images", "1", "--val", "0", "--data", str(SHARED),
                           "--json", str(rep)]) == 2
    assert not out.exists() and not rep.exists() and "nothing written" in capsys.readouterr().err


def test_trunk_end_of_the_lite0_candidate():
    if not LITE0.is_file():
        pytest.skip("the Lite0 candidate is absent")
    net = weights.read_weights(LITE0)
    assert int8.trunk_end(net) == 39 and net.ops[38].kind == "add"
