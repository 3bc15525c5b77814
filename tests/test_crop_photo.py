"""The shipped model on the bundled sample photo (examples/photo.jpg, a NASA portrait of Eileen Collins,
512 x 512): the salient point is on her face, no crop cuts through it, and the crops keep her eyes and
mouth (not yet at 16:9 and 2:1 with today's model: see WIDE). Skipped until
``weights/gazecrop-fast.gzw`` and the native core exist. Faces are the strongest cue of free-viewing
fixations, so any usable saliency model passes; when a new model changes the numbers, check the crops by
eye before widening the regions."""

from pathlib import Path

import numpy as np
import pytest

import gazecrop
from gazecrop.crop import object_box

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


WIDE = pytest.mark.xfail(strict=True, reason=(
    "the shipped model's face density peaks on the nose and mouth (its half-maximum region is y 108-155; the "
    "eyes, y 80-112, are at 0.10-0.24 of the peak), and a 16:9 / 2:1 box keeps most mass when it also takes "
    "the body and mission patch below: the default holds that region whole but starts at y 108. Keeping the "
    "eyes costs 3-10 % of the map's mass here, and every rule that would force it costs more than the issue's "
    "0.02 of normalised gain on train and val (benchmarks/crop_quality.md: the salient-point anchor, context "
    "margins, lower object levels). strict: passes again -> remove this mark"))


@pytest.mark.parametrize("aspect", [pytest.param("16:9", marks=WIDE), pytest.param("2:1", marks=WIDE), "9:16",
                                    "4:5", "1:1", "3:2", "4:3"])
def test_crops_keep_eyes_and_mouth(model, aspect):
    b = gazecrop.crop_box(PHOTO, aspect, model=model)
    assert b.left <= EYES_MOUTH[0] and b.right >= EYES_MOUTH[2], b
    assert b.top <= EYES_MOUTH[1] and b.bottom >= EYES_MOUTH[3], b


@pytest.mark.parametrize("aspect", ["16:9", "2:1", "3:1", "9:16", "4:5", "1:1"])
def test_crops_never_cut_through_the_face(model, aspect):
    # what the default rule promises: the most salient object (here the face's half-maximum region, which
    # holds the mouth) is held whole in every aspect that can hold it
    pred = gazecrop.predict(PHOTO, model=model)
    (xa, xb), (ya, yb) = object_box(pred.log_density, pred.size)
    assert FACE[0] <= xa and xb < FACE[2] and FACE[1] <= ya and yb < FACE[3]
    b = pred.crops([aspect])[0].box
    assert b.left <= xa and b.right > xb and b.top <= ya and b.bottom > yb, b
    assert b.top <= 130 and b.bottom >= EYES_MOUTH[3], b  # the mouth


def test_saliency_map_of_the_photo(model):
    m = gazecrop.saliency_map(PHOTO, model=model)
    assert m.shape == (512, 512)
    a = m.astype(np.float64)
    assert abs(a.max() + np.log(np.exp(a - a.max()).sum())) < 1e-5
    l, t, r, b = FACE
    assert np.exp(a[t:b, l:r]).sum() > 1.5 * (r - l) * (b - t) / 512 ** 2  # face holds more than its area share
