"""The shipped model on the bundled sample photo (examples/photo.jpg, a NASA portrait of Eileen Collins,
512 x 512): the salient point is on her face and the 16:9 crop keeps her eyes and mouth. Skipped until
``weights/gazecrop-fast.gzw`` and the native core exist. Faces are the strongest cue of free-viewing
fixations, so any usable saliency model passes; when a new model changes the numbers, check the crops by
eye before widening the regions."""

from pathlib import Path

import numpy as np
import pytest

import gazecrop

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "examples" / "photo.jpg"
WEIGHTS = ROOT / "weights" / "gazecrop-fast.gzw"
FACE = (150, 10, 310, 190)      # left, top, right, bottom (hair to chin), pixels
EYES_MOUTH = (190, 80, 270, 150)


@pytest.fixture(scope="module")
def model():
    pytest.importorskip("gazecrop._core")
    if not WEIGHTS.is_file():
        pytest.skip("shipped model weights/gazecrop-fast.gzw not built yet")
    return gazecrop.load_model(WEIGHTS)


def test_salient_point_is_on_the_face(model):
    res = gazecrop.crops(PHOTO, ["16:9", "1:1", "9:16"], model=model)
    x, y = res[0].salient_point
    assert FACE[0] <= x < FACE[2] and FACE[1] <= y < FACE[3], (x, y)


@pytest.mark.parametrize("aspect", ["16:9", "2:1", "9:16", "4:5"])
def test_crops_keep_eyes_and_mouth(model, aspect):
    b = gazecrop.crop_box(PHOTO, aspect, model=model)
    assert b.left <= EYES_MOUTH[0] and b.right >= EYES_MOUTH[2], b
    assert b.top <= EYES_MOUTH[1] and b.bottom >= EYES_MOUTH[3], b


def test_saliency_map_of_the_photo(model):
    m = gazecrop.saliency_map(PHOTO, model=model)
    assert m.shape == (512, 512)
    a = m.astype(np.float64)
    assert abs(a.max() + np.log(np.exp(a - a.max()).sum())) < 1e-5
    l, t, r, b = FACE
    assert np.exp(a[t:b, l:r]).sum() > 1.5 * (r - l) * (b - t) / 512 ** 2  # face holds more than its area share
