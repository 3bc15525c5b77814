"""gazecrop.datasets: loading, split, fixation scaling, errors (numpy + Pillow, fast)."""

from pathlib import Path

import numpy as np
import pytest

from gazecrop import datasets as D

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "eyetracking"


def _write_fake(root: Path, with_empty: bool = True) -> Path:
    from PIL import Image

    ds = root / "scene500"
    (ds / "stimuli").mkdir(parents=True)
    Image.new("RGB", (8, 6), (10, 20, 30)).save(ds / "stimuli" / "a.png")
    Image.new("RGB", (4, 4), (0, 0, 0)).save(ds / "stimuli" / "b.png")
    Image.new("RGB", (4, 4), (0, 0, 0)).save(ds / "stimuli" / "c.png")
    (ds / "fixations.csv").write_text(
        "image,subject,idx,x,y,t_start_s,duration_s\n"
        "a.png,s1,0,1.0,2.0,0.1,0.2\n"
        "a.png,s2,0,7.0,5.0,,0.3\n"
        "b.png,s1,0,0.0,3.0,0.1,\n")
    rows = ["dataset,image,split", "scene500,a.png,train", "scene500,b.png,val"]
    if with_empty:
        rows.append("scene500,c.png,train")  # no fixations
    (root / "splits.csv").write_text("\n".join(rows) + "\n")
    return root


def test_load_fake_dataset(tmp_path):
    root = _write_fake(tmp_path)
    with pytest.warns(UserWarning, match="without fixations"):
        allsamples = D.load_dataset("scene500", root=root)
    assert [s.image for s in allsamples] == ["a.png", "b.png"]
    a = allsamples[0]
    assert (a.width, a.height, a.split, a.n_fixations) == (8, 6, "train", 2)
    np.testing.assert_allclose(a.x, [1.0, 7.0])
    np.testing.assert_allclose(a.y, [2.0, 5.0])
    assert a.x.dtype == np.float64 and a.key == "scene500/a.png"
    np.testing.assert_allclose(a.duration_s, [0.2, 0.3])
    assert np.isnan(allsamples[1].duration_s[0])
    val = D.load_dataset("scene500", split="val", root=root)  # c.png is a train image: no warning here
    assert [s.image for s in val] == ["b.png"]


def test_env_var_root(tmp_path, monkeypatch):
    root = _write_fake(tmp_path, with_empty=False)
    monkeypatch.setenv(D.ENV_VAR, str(root))
    assert D.default_root() == root
    assert len(D.load_dataset("scene500", split="train")) == 1


def test_load_image_resized(tmp_path):
    root = _write_fake(tmp_path, with_empty=False)
    s = D.load_dataset("scene500", split="train", root=root)[0]
    img = D.load_image(s)
    assert img.shape == (6, 8, 3) and img.dtype == np.uint8
    assert tuple(img[0, 0]) == (10, 20, 30)
    small = D.load_image(s, size=(4, 3))
    assert small.shape == (3, 4, 3)
    x2, y2 = s.fixations_at(4, 3)
    np.testing.assert_allclose(x2, [(1.0 + 0.5) / 2 - 0.5, (7.0 + 0.5) / 2 - 0.5])


def test_scale_fixations_hand_computed():
    x2, y2 = D.scale_fixations([0.0, 9.0], [0.0, 4.0], (10, 5), (20, 10))
    np.testing.assert_allclose(x2, [0.5, 18.5])  # pixel 0 of 10 -> centre of pixels 0..1 of 20
    np.testing.assert_allclose(y2, [0.5, 8.5])
    xb, yb = D.scale_fixations(x2, y2, (20, 10), (10, 5))
    np.testing.assert_allclose(xb, [0.0, 9.0])
    u, v = D.normalised_fixations([0.0, 9.0], [0.0, 4.0], (10, 5))
    np.testing.assert_allclose(u, [0.05, 0.95])
    np.testing.assert_allclose(v, [0.1, 0.9])
    with pytest.raises(ValueError):
        D.scale_fixations([0.0], [0.0], (0, 5), (1, 1))


def test_errors(tmp_path):
    with pytest.raises(D.DatasetError, match="data root not found"):
        D.load_dataset("mit1003", root=tmp_path / "nope")
    with pytest.raises(ValueError, match="unknown dataset"):
        D.load_dataset("cat2000", root=tmp_path)
    with pytest.raises(ValueError, match="unknown split"):
        D.load_dataset("osie", split="test", root=tmp_path)
    root = _write_fake(tmp_path / "r", with_empty=False)
    with pytest.raises(D.DatasetError, match="dataset folder not found"):
        D.load_dataset("osie", root=root)
    (root / "scene500" / "stimuli" / "a.png").unlink()
    with pytest.raises(D.DatasetError, match="image file not found"):
        D.load_dataset("scene500", root=root)
    (root / "scene500" / "fixations.csv").unlink()
    with pytest.raises(D.DatasetError, match="fixations file not found"):
        D.load_dataset("scene500", root=root)
    with pytest.raises(D.DatasetError, match="image file not found"):
        D.load_image(tmp_path / "missing.jpg")


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared eye-tracking data not present")
def test_real_scene500_val():
    s = D.load_dataset("scene500", split="val", root=SHARED)
    assert len(s) == 44
    for smp in s:
        assert smp.split == "val" and smp.n_fixations > 0
        assert (smp.x >= -0.5).all() and (smp.x < smp.width).all()
        assert (smp.y >= -0.5).all() and (smp.y < smp.height).all()
