"""The shipped model on the bundled sample photo (examples/photo.jpg, a NASA portrait of Eileen Collins,
512 x 512): the salient point is on her face, no crop cuts through it, and the crops keep her eyes and
mouth (not yet at 16:9 and 2:1 with today's model: see WIDE). Skipped until
``weights/gazecrop-fast.gzw`` and the native core exist. Faces are the strongest cue of free-viewing
fixations, so any usable saliency model passes; when a new model changes the numbers, check the crops by
eye before widening the regions. The regions come from the photo, not from a model: FACE by eye (hair to
chin), EYES_MOUTH from OpenCV's Haar cascades (``gazecrop.train.faces.face_parts``: eyes at (188, 86, 28, 28)
and (233, 90, 27, 27), face box (176, 65, 96, 96), its mouth band ending at row 155)."""

from pathlib import Path

import numpy as np
import pytest

import gazecrop
from gazecrop.crop import CLOSE_RATIO, object_box

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "examples" / "photo.jpg"
WEIGHTS = ROOT / "weights" / "gazecrop-fast.gzw"
FACE = (150, 10, 310, 190)      # left, top, right, bottom (hair to chin), pixels
EYES_MOUTH = (188, 86, 260, 155)  # left, top, right, bottom: the detected eyes to the bottom of the mouth band


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


# The shipped model's face density peaks on the nose and mouth (its half-maximum region is y 108-155; the eyes,
# y 86-117, average 0.24 of the peak), and a 16:9 / 2:1 box keeps most mass when it also takes the body
# and mission patch below: the default holds that region whole but starts at y 108. Keeping the eyes costs
# 3-10 % of the map's mass on this photo, and the rules that would force it cost more than issue 11 allows
# on train and val (benchmarks/crop_quality.md). strict: when a model sees the eyes, remove the mark.
WIDE = pytest.mark.xfail(strict=True, reason="today's model puts the face's density below the eyes "
                                             "(see the comment above WIDE)")


@pytest.mark.parametrize("aspect", [pytest.param("16:9", marks=WIDE), pytest.param("2:1", marks=WIDE), "9:16",
                                    "4:5", "1:1", "3:2", "4:3"])
def test_crops_keep_eyes_and_mouth(model, aspect):
    b = gazecrop.crop_box(PHOTO, aspect, model=model)
    assert b.left <= EYES_MOUTH[0] and b.right >= EYES_MOUTH[2], b
    assert b.top <= EYES_MOUTH[1] and b.bottom >= EYES_MOUTH[3], b


@pytest.mark.parametrize("aspect", ["16:9", "2:1", "3:1", "4:1", "9:16", "4:5", "1:1"])
def test_crops_never_cut_through_the_face(model, aspect):
    # what the default rule promises: the most salient object (here the face's half-maximum region, which
    # holds the mouth) is never cut: held whole, or (when a box without it keeps more than 1 + OBJECT_YIELD
    # times the mass: from 3:1 on, the body and mission patch) left out whole; up to 2:1 it is held
    pred = gazecrop.predict(PHOTO, model=model)
    (xa, xb), (ya, yb) = object_box(pred.log_density, pred.size)
    assert FACE[0] <= xa and xb < FACE[2] and FACE[1] <= ya and yb < FACE[3]
    b = pred.crops([aspect])[0].box
    whole = b.left <= xa and b.right > xb and b.top <= ya and b.bottom > yb
    assert whole or b.top > yb or b.bottom <= ya, b
    if gazecrop.parse_aspect(aspect) <= 2:
        assert whole and b.top <= 130 and b.bottom >= EYES_MOUTH[3], b  # the mouth


def test_saliency_map_of_the_photo(model):
    m = gazecrop.saliency_map(PHOTO, model=model)
    assert m.shape == (512, 512)
    a = m.astype(np.float64)
    assert abs(a.max() + np.log(np.exp(a - a.max()).sum())) < 1e-5
    l, t, r, b = FACE
    assert np.exp(a[t:b, l:r]).sum() > 1.5 * (r - l) * (b - t) / 512 ** 2  # face holds more than its area share


# ------------------------------------------------- synthetic pictures through the shipped model (end to end)

def _cartoon_face(draw, cx, cy, r):
    """A drawn face (skin, hair, eyes, nose, mouth): no real person."""
    draw.ellipse([cx - r, cy - 1.25 * r, cx + r, cy + 1.25 * r], fill=(224, 172, 140))
    draw.ellipse([cx - 0.75 * r, cy - 1.45 * r, cx + 0.75 * r, cy - 0.7 * r], fill=(60, 40, 30))
    for ex in (-0.4, 0.4):
        draw.ellipse([cx + (ex - 0.17) * r, cy - 0.35 * r, cx + (ex + 0.17) * r, cy - 0.15 * r], fill=(255, 255, 255))
        draw.ellipse([cx + (ex - 0.08) * r, cy - 0.33 * r, cx + (ex + 0.08) * r, cy - 0.17 * r], fill=(40, 30, 20))
    draw.polygon([(cx, cy - 0.1 * r), (cx - 0.1 * r, cy + 0.25 * r), (cx + 0.1 * r, cy + 0.25 * r)],
                 fill=(200, 140, 110))
    draw.chord([cx - 0.35 * r, cy + 0.35 * r, cx + 0.35 * r, cy + 0.75 * r], 0, 180, fill=(170, 40, 50))


def _canvas(W, H, seed=0):
    from PIL import Image, ImageDraw, ImageFilter

    a = np.random.default_rng(seed).normal(0, 6, (H, W, 3)) + np.array([96, 110, 100])
    img = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(2))
    return img, ImageDraw.Draw(img)


def test_two_drawn_faces_far_apart_are_both_candidates(model):
    img, draw = _canvas(600, 1800)
    for cy in (350, 1450):
        _cartoon_face(draw, 300, cy, 90)
    r = gazecrop.crops(img, ["16:9"], model=model, candidates=2)[0]
    assert len(r.candidates) == 2
    faces = sorted((c.box.top, c.box.bottom) for c in (r.candidates[0], r.candidates[1]))
    assert faces[0][0] <= 350 - 90 and faces[0][1] >= 350 + 90  # one candidate holds each face
    assert faces[1][0] <= 1450 - 90 and faces[1][1] >= 1450 + 90
    # close exactly when the model rates them within CLOSE_RATIO (its centre bias prefers the upper face)
    assert r.close == (r.candidates[1].score >= CLOSE_RATIO * r.candidates[0].score)


def test_a_drawn_tall_figure_cropped_to_3_to_1_keeps_the_head(model):
    img, draw = _canvas(400, 1200)
    _cartoon_face(draw, 200, 150, 70)  # head: y 62-238
    for y in range(260, 1150, 40):  # a striped torso
        draw.rectangle([80, y, 320, y + 20], fill=(30, 30, 160))
        draw.rectangle([80, y + 20, 320, y + 40], fill=(240, 220, 40))
    b = gazecrop.crop_box(img, "3:1", model=model)
    assert (b.width, b.height) == (400, 133)
    assert b.top <= 150 - 0.35 * 70 and b.bottom >= 150 + 0.75 * 70, b  # eyes to mouth
