"""The student's training code: export of pruned students, FLOP bookkeeping, the Fisher pruning signal and the
geometry of distillation augmentation (skipped without torch)."""

import random

import numpy as np
import pytest

torch = pytest.importorskip("torch")
S = pytest.importorskip("gazecrop.train.densenet_student")
D = pytest.importorskip("gazecrop.train.distill")
P = pytest.importorskip("gazecrop.train.prune")

import gazecrop  # noqa: E402
from gazecrop import reference  # noqa: E402
from gazecrop.weights import from_bytes, to_bytes  # noqa: E402

SMALL = dict(stem=8, blocks=[(2, 4, 8), (2, 6, 8), (2, 8, 8)], readout=[6], input_long_side=96,
             centre_bias_shape=(6, 8))


def small_student(seed: int, prune_fraction: float = 0.0) -> "S.Student":
    """A small student with random batch-norm statistics and a random ``prune_fraction`` of its prunable
    feature maps masked (at least one map alive per conv)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    m = S.Student(S.StudentConfig(**SMALL), rng.normal(size=(6, 8)).astype(np.float32))
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.normal_(0, 0.2)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.normal_(1.0, 0.2)
                mod.bias.normal_(0.0, 0.2)
        for c in m.prunable():
            keep = rng.random(len(c.mask)) >= prune_fraction
            keep[rng.integers(len(keep))] = True
            c.mask.copy_(torch.from_numpy(keep.astype(np.float32)))
    return m.eval()


def _image(seed: int, h: int = 64, w: int = 96) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _torch_log_density(m, image: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return m(torch.from_numpy(image).permute(2, 0, 1)[None].float())[0].numpy()


@pytest.mark.parametrize("seed,fraction", [(0, 0.0), (1, 0.3), (2, 0.7)])
def test_export_of_pruned_student_matches_pytorch(seed, fraction, tmp_path):
    m = small_student(seed, fraction)
    data = to_bytes(S.export_student(m))
    net = from_bytes(data)
    (tmp_path / "m.gzw").write_bytes(data)
    image = _image(seed)
    expect = _torch_log_density(m, image)
    assert expect.shape == (8, 12)
    np.testing.assert_allclose(reference.run(net, image), expect, atol=1e-4)
    np.testing.assert_allclose(gazecrop.load_model(tmp_path / "m.gzw").run(image), expect, atol=1e-4)
    # pruned maps are really gone from the file
    stem_weight = net.ops[0].tensors[0][1]
    assert stem_weight.shape[0] == m.stem.alive() < len(m.stem.mask) or fraction == 0


@pytest.mark.parametrize("seed,fraction", [(3, 0.0), (4, 0.5)])
def test_flops_match_exported_file_and_savings(seed, fraction):
    m = small_student(seed, fraction)
    assert m.flops(64, 96) == 2 * S.export_student(m).num_macs(64, 96)
    savings = m.flop_savings(64, 96)
    assert savings and all(v > 0 for v in savings.values())
    name = max(savings, key=savings.get)
    conv = m.convs()[name]
    base = m.flops(64, 96)
    conv.mask[int(torch.nonzero(conv.mask)[0])] = 0.0
    assert m.flops(64, 96) == base - savings[name]


def test_fisher_signal_is_the_papers_estimate():
    """Delta_k = 1/(2N) sum_n (sum_ij a_nkij g_nkij)^2 with per-image gradients, from one batched backward."""
    m = small_student(5)
    images = torch.from_numpy(np.stack([_image(10 + n) for n in range(3)])).permute(0, 3, 1, 2).float()
    cells = [torch.tensor([0, 17, 40]), torch.tensor([5]), torch.tensor([60, 61])]

    def per_image_loss(logd):
        return torch.stack([-logd[j].flatten()[c].mean() for j, c in enumerate(cells)])

    acc = P.FisherAccumulator(m)
    acc.batch = 3
    per_image_loss(m(images)).mean().backward()
    acc.count = 3
    got = acc.signals()
    acc.close()

    target = m.convs()["block1.l0.conv2"]
    saved = {}
    target.fisher_hook = lambda mod, y: (y.retain_grad(), saved.__setitem__("y", y))
    expect = torch.zeros(len(target.mask), dtype=torch.float64)
    for n in range(3):
        m.zero_grad()
        logd = m(images[n:n + 1])
        (-logd[0].flatten()[cells[n]].mean()).backward()
        y = saved["y"]
        expect += ((y * y.grad).sum((0, 2, 3)).detach().double()) ** 2
    target.fisher_hook = None
    np.testing.assert_allclose(got["block1.l0.conv2"].double().numpy(), (expect / 6).numpy(), rtol=1e-4,
                               atol=1e-12)


def _bump(h: int, w: int, cy: int, cx: int) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 1.0)


def test_augmentation_moves_image_fixations_targets_and_hints_together():
    """A fixation on a bright square, a teacher density and hints peaked at the same cell: after any flip /
    crop-and-rescale, all three still agree (within one grid cell) and the fixation is on the square."""
    h, w = 96, 128
    img = np.full((h, w, 3), 40, np.uint8)
    fx, fy = 84.0, 28.0
    img[24:33, 80:89] = 250
    item = dict(key="k", dataset="d", image=img, fx=np.array([fx], np.float32), fy=np.array([fy], np.float32))
    gh, gw = h // D.STRIDE, w // D.STRIDE
    cy, cx = int(fy) // D.STRIDE, int(fx) // D.STRIDE
    cx_m = gw - 1 - cx  # the cell in the mirrored image
    dens = _bump(gh, gw, cy, cx) + 1e-9
    dens_m = _bump(gh, gw, cy, cx_m) + 1e-9
    logd = np.log(dens / dens.sum()).astype(np.float32)
    hints = D.TeacherHints({"k": np.stack([dens, dens_m])[:, None].astype(np.float16)},
                           {"k": np.log(dens_m / dens_m.sum()).astype(np.float32)}, ["m"])
    for seed in range(40):
        for with_hints in (False, True):
            out_img, out_cells, tgt, hint = D.augment(item, logd, random.Random(seed), hints if with_hints else None)
            if not len(out_cells):
                continue
            c = int(out_cells[0])
            fy_cell, fx_cell = divmod(c, gw)
            ty, tx = np.unravel_index(int(torch.argmax(tgt)), tgt.shape)
            assert abs(ty - fy_cell) <= 1 and abs(tx - fx_cell) <= 1, (seed, with_hints)
            if with_hints:
                hy, hx = np.unravel_index(int(torch.argmax(hint[0])), hint.shape[1:])
                assert abs(hy - fy_cell) <= 1 and abs(hx - fx_cell) <= 1, seed
            # the fixated cell of the augmented image is bright (the square moved with the fixation)
            block = out_img[:, fy_cell * 8:(fy_cell + 1) * 8, fx_cell * 8:(fx_cell + 1) * 8].mean(0)
            assert float(block.max()) > 150, (seed, with_hints)


def test_hint_loss_trains_adapter_and_student():
    m = small_student(6)
    m.train()
    img = _image(20, 64, 96)
    items = [dict(key="a", dataset="d", image=img, fx=np.array([10.0], np.float32), fy=np.array([20.0], np.float32))]
    hint = np.random.default_rng(0).random((2, 5, 8, 12)).astype(np.float16)
    hints = D.TeacherHints({"a": hint}, {"a": np.full((8, 12), -np.log(96), np.float32)}, ["m"])
    assert hints.channels == 5
    st = hints.standardised("a", False).numpy()
    assert abs(st.mean()) < 0.5 and st.shape == (5, 8, 12)
    adapter = torch.nn.Conv2d(m.feature_channels, 5, 1)
    targets = {"a": np.full((8, 12), -np.log(96), np.float32)}
    without, _ = D.loss_on_batch(m, items, [0], targets, None, 0.9)
    with_h, _ = D.loss_on_batch(m, items, [0], targets, None, 0.9, hints, 2.0, adapter)
    mse = float((with_h - without).item()) / 2.0
    assert mse > 0
    with_h.sum().backward()
    assert adapter.weight.grad is not None and float(adapter.weight.grad.abs().sum()) > 0
    assert float(m.stem.conv.weight.grad.abs().sum()) > 0


def test_grown_student_keeps_the_function_and_exports(tmp_path):
    """A dense block added at stride 32 (readout over the last three blocks) starts as the trained student's
    function (Student.load_grown) and exports like any other student."""
    m = small_student(7, 0.3)
    cfg = dict(m.cfg, blocks=list(m.cfg["blocks"]) + [(2, 4, 8)], head_blocks=3)
    grown = S.Student(cfg)
    added = grown.load_grown(m.state_dict())
    assert added and all(k.startswith("blocks.3.") or k.startswith("transitions.2.") for k in added)
    grown.eval()
    image = _image(30)
    np.testing.assert_allclose(_torch_log_density(grown, image), _torch_log_density(m, image), atol=1e-6)
    with torch.no_grad():  # train the new block's readout weights a little: the function now differs
        grown.readout[0].conv.weight[:, -4:] += 0.5
    expect = _torch_log_density(grown, image)
    assert np.abs(expect - _torch_log_density(m, image)).max() > 1e-3
    net = S.export_student(grown)
    np.testing.assert_allclose(reference.run(net, image), expect, atol=1e-4)
    assert grown.flops(64, 96) == 2 * net.num_macs(64, 96)


def test_grow_rejects_other_shape_changes():
    m = small_student(8)
    wider = S.Student(dict(m.cfg, stem=10))
    with pytest.raises(ValueError, match="cannot grow"):
        wider.load_grown(m.state_dict())
    with pytest.raises(ValueError, match="head_blocks"):
        S.Student(dict(m.cfg, head_blocks=4))


A = pytest.importorskip("gazecrop.train.average")


def _save(m, path):
    torch.save(dict(cfg=dict(m.cfg), model=m.state_dict()), path)
    return path


def test_weight_average_is_the_mean_and_refuses_mixed_snapshots(tmp_path):
    a, b = small_student(3, 0.3), small_student(4, 0.0)
    with torch.no_grad():  # same pruned maps as a, other weights
        for ma, mb in zip(a.prunable(), b.prunable()):
            mb.mask.copy_(ma.mask)
    pa, pb = _save(a, tmp_path / "a.pt"), _save(b, tmp_path / "b.pt")
    avg = A.average_students([pa, pb])
    torch.testing.assert_close(avg.stem.conv.weight, (a.stem.conv.weight + b.stem.conv.weight) / 2)
    for mm, ma in zip(avg.prunable(), a.prunable()):
        assert torch.equal(mm.mask, ma.mask)
    # averaging copies of one model gives that model back
    same = A.average_students([pa, _save(a, tmp_path / "a2.pt")])
    np.testing.assert_allclose(_torch_log_density(same, _image(0)), _torch_log_density(a, _image(0)), atol=1e-5)
    with pytest.raises(ValueError, match="pruned feature maps differ"):
        A.average_students([pa, _save(small_student(5, 0.5), tmp_path / "c.pt")])
    other = S.Student(S.StudentConfig(**{**SMALL, "readout": [5]}), np.zeros((6, 8), np.float32))
    with pytest.raises(ValueError, match="configuration"):
        A.average_students([pa, _save(other, tmp_path / "d.pt")])
    with pytest.raises(ValueError, match="at least two"):
        A.average_students([pa])


def test_batch_norm_recalibration_uses_the_data_statistics():
    m = small_student(6)
    items = [{"image": _image(10 + i)} for i in range(8)]
    A.recalibrate_batch_norm(m, items, batch=4)
    assert not m.training
    x = torch.stack([torch.from_numpy(it["image"]).permute(2, 0, 1).float() for it in items])
    with torch.no_grad():
        z = m.stem.conv((x - S.Student.MEAN) / S.Student.STD)
    torch.testing.assert_close(m.stem.bn.running_mean, z.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)


def test_average_command_refuses_to_overwrite_a_snapshot_and_non_students(tmp_path):
    pa = _save(small_student(7), tmp_path / "a.pt")
    before = pa.read_bytes()
    with pytest.raises(SystemExit):
        A.main(["--out", str(pa), str(pa), str(_save(small_student(7), tmp_path / "b.pt"))])
    assert pa.read_bytes() == before
    torch.save({"spec": {}, "head": {}}, tmp_path / "teacher.pt")
    with pytest.raises(ValueError, match="not a student checkpoint"):
        A.average_students([pa, tmp_path / "teacher.pt"])


@pytest.mark.parametrize("case", ["single", "twice", "missing", "not_torch", "threads"])
def test_average_command_usage_errors(case, tmp_path, capsys):
    pa, pb = _save(small_student(8), tmp_path / "a.pt"), _save(small_student(8), tmp_path / "b.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    args = {"single": [pa], "twice": [pa, pa, pb], "missing": [pa, tmp_path / "none.pt"],
            "not_torch": [pa, tmp_path / "text.pt"], "threads": [pa, pb, "--threads", "0"]}[case]
    with pytest.raises(SystemExit) as e:
        A.main(["--out", str(tmp_path / "out.pt"), *map(str, args)])
    assert e.value.code == 2
    assert not (tmp_path / "out.pt").exists()
    assert "Traceback" not in capsys.readouterr().err
