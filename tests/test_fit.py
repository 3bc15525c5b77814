"""Issue 23 in the public API: ``keep`` / ``boost`` / ``focal`` on every crop call, and ``thumbnail(fit=...)``
(pad instead of cut: letterboxing on a colour or a blurred fill; ``auto`` pads when the crop is close)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import gazecrop
import gazecrop.api as api
from gazecrop.crop import ASPECT_TOLERANCE

from _crop_helpers import FixedModel, peak_grid
from test_placement import blobs


def photo(w, h, seed=0, mode="RGB"):
    a = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return Image.fromarray(a).convert(mode)


def two_portraits(size=(1600, 800), right=1.0):
    """Two people side by side (a wide photo, heads of equal saliency unless ``right`` says otherwise)."""
    return FixedModel(blobs(size, 48, [(400, 330, 70, 1.0), (1200, 330, 70, right)]), long_side=48)


# ------------------------------------------------------------------------------------ regions in the API

def test_keep_boost_focal_reach_every_crop_call():
    img = photo(800, 400)
    model = FixedModel(peak_grid(8, 16, 4, 2))  # a peak on the left
    assert gazecrop.crop_box(img, 1.0, model=model).left == 0
    keep = [(700, 100, 80, 80)]
    box = gazecrop.crop_box(img, 1.0, model=model, keep=keep)
    assert box.left <= 700 and box.right >= 780
    r = gazecrop.crops(img, [1.0, "2:1"], model=model, keep=keep, boost=[((0, 0, 100, 100), 0.5)])
    assert r[0].box == box and r[0].kept == 1.0 and r[1].kept == 1.0
    assert gazecrop.crop(img, 1.0, model=model, keep=keep).size == (400, 400)
    assert gazecrop.crop(img, 1.0, model=model, keep=keep).tobytes() == img.crop(box.to_pil()).tobytes()
    out = gazecrop.thumbnail(img, (100, 100), model=model, keep=keep)
    ref = api.resize_crop(img, box, (100, 100))
    assert out.tobytes() == ref.tobytes()
    boosted = gazecrop.crop_box(img, 1.0, model=model, boost=[((600, 0, 200, 400), 3.0)])
    assert boosted.right == 800


def test_focal_does_not_run_the_model():
    img = photo(800, 400)
    model = FixedModel(peak_grid(8, 16, 4, 2))
    r = gazecrop.crops(img, ["1:1"], model=model, focal=(600, 200))[0]
    assert model.calls == 0 and r.salient_point == (600, 200)
    assert r.box.left == 400 and r.box.right == 800  # centred on x = 600 as far as the image allows
    assert gazecrop.crop_box(img, "1:2", focal=(99.5, 50), model="no/such/model.gzw") == (0, 0, 200, 400)
    pred = gazecrop.predict(img, focal=(600, 200))
    assert pred.focal == (600.0, 200.0) and pred.crops(["1:1"])[0] == r
    with pytest.raises(ValueError, match="not inside the 800x400 image"):
        gazecrop.crop_box(img, 1.0, focal=(800, 10))


def test_bad_regions_fail_before_the_model_runs():
    model = FixedModel(peak_grid(4, 4, 1, 1))
    with pytest.raises(TypeError, match="for one box"):
        gazecrop.crops(photo(50, 50), ["1:1"], model=model, keep=(1, 2, 3, 4))
    with pytest.raises(ValueError, match="> 0"):
        gazecrop.thumbnail(photo(50, 50), (10, 10), model=model, boost=[((0, 0, 5, 5), -1)])
    with pytest.raises(TypeError, match="for one box"):
        gazecrop.thumbnail(photo(50, 50), (10, 10), model=model, keep=(1, 2, 3, 4), fit="pad")
    assert model.calls == 0
    with pytest.raises(ValueError, match="not inside the 50x50 image"):
        gazecrop.crop_box(photo(50, 50), 1.0, model=model, keep=[(40, 40, 20, 5)])


# ---------------------------------------------------------------------------------------------------- fit

@pytest.mark.parametrize("image_size", [(640, 480), (1, 1), (1, 300), (300, 1), (7, 5)])
@pytest.mark.parametrize("size", [(1, 1), (320, 180), (180, 320), (64, 64), (1000, 7)])
@pytest.mark.parametrize("fit", ["pad", "auto"])
def test_padded_thumbnails_have_exactly_the_size_asked_for(image_size, size, fit):
    model = FixedModel(peak_grid(6, 8, 1, 6))
    out = gazecrop.thumbnail(photo(*image_size), size, model=model, fit=fit, background="black")
    assert out.size == size and out.mode == "RGB"
    if fit == "pad":
        assert model.calls == 0


def test_pad_letterboxes_the_whole_image_centred():
    img = Image.new("RGB", (400, 200), (250, 250, 250))
    out = gazecrop.thumbnail(img, (100, 100), fit="pad", background=(0, 0, 255))
    a = np.asarray(out)
    assert out.size == (100, 100)
    assert (a[:25] == (0, 0, 255)).all() and (a[75:] == (0, 0, 255)).all()  # bars above and below
    assert (np.abs(a[26:74].astype(int) - 250) <= 1).all()  # the whole image, 100 x 50, in the middle
    blur = np.asarray(gazecrop.thumbnail(img, (100, 100), fit="pad"))  # default: the image blurred, darkened
    assert (np.abs(blur[:20].astype(int) - 150) <= 2).all() and (np.abs(blur[40:60].astype(int) - 250) <= 1).all()
    small = gazecrop.thumbnail(img, (1000, 1000), fit="pad", upscale=False, background="#101010")
    b = np.asarray(small)
    assert small.size == (1000, 1000) and (b[400:600, 300:700] >= 249).all() and (b[:390] == 16).all()


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "1", "CMYK", "LA", "I;16"])
@pytest.mark.parametrize("background", ["blur", "white"])
def test_pad_of_other_modes(mode, background):
    img = photo(200, 100).convert("L").convert(mode) if mode == "I;16" else photo(200, 100, mode=mode)
    out = gazecrop.thumbnail(img, (50, 40), fit="pad", background=background)
    assert out.size == (50, 40) and out.mode in ("RGB", "RGBA", "L")


def test_auto_pads_two_portraits_side_by_side_whenever_the_crop_is_close():
    img = photo(1600, 800)
    for right in (1.0, 0.97, 0.9, 0.5):
        model = two_portraits(right=right)
        r = gazecrop.crops(img, ["1:1"], model=model)[0]
        out = gazecrop.thumbnail(img, (200, 200), model=model, fit="auto", background="black")
        cropped = gazecrop.thumbnail(img, (200, 200), model=model, fit="crop")
        padded = gazecrop.thumbnail(img, (200, 200), model=model, fit="pad", background="black")
        assert r.pad == r.close
        assert out.tobytes() == (padded if r.close else cropped).tobytes()
        if right >= 0.97:
            assert r.close  # near-equal heads: nobody is cut out
        if right == 0.5:
            assert not r.close  # one clear subject: cropped to it


@settings(max_examples=30, deadline=None, derandomize=True)
@given(left=st.floats(0.05, 1.0), right=st.floats(0.05, 1.0), gap=st.integers(300, 1100))
def test_auto_never_cuts_out_a_near_equal_subject(left, right, gap):
    size = (1600, 800)
    x0 = (1600 - gap) // 2
    model = FixedModel(blobs(size, 48, [(x0, 330, 70, left), (x0 + gap, 330, 70, right)]), long_side=48)
    img = photo(*size)
    r = gazecrop.crops(img, ["1:1"], model=model)[0]
    out = gazecrop.thumbnail(img, (100, 100), model=model, fit="auto", background="black")
    padded = gazecrop.thumbnail(img, (100, 100), model=model, fit="pad", background="black")
    assert (out.tobytes() == padded.tobytes()) == r.pad
    if r.close:
        assert out.tobytes() == padded.tobytes()


def test_auto_pads_when_the_aspect_is_near_the_images_or_keep_cannot_fit():
    img = photo(1000, 500)
    model = FixedModel(peak_grid(6, 12, 3, 3))
    near = 2.0 * (1 + ASPECT_TOLERANCE / 2)
    r = gazecrop.crops(img, [near], model=model)[0]
    assert r.pad and not r.close
    assert gazecrop.thumbnail(img, (round(100 * near), 100), model=model, fit="auto").tobytes() == \
        gazecrop.thumbnail(img, (round(100 * near), 100), model=model, fit="pad").tobytes()
    wide_keep = [(0, 100, 900, 50)]
    r = gazecrop.crops(img, ["1:1"], model=model, keep=wide_keep)[0]
    assert r.kept < 1 and r.pad
    far = gazecrop.crops(img, ["1:1"], model=model)[0]
    assert not far.pad


@pytest.mark.parametrize("kw,exc", [(dict(fit="fill"), ValueError), (dict(background="nocolour"), ValueError),
                                    (dict(background=(0, 0)), TypeError), (dict(background=(0, 0, 256)), TypeError),
                                    (dict(background=3), TypeError)])
def test_bad_fit_or_background_is_rejected(kw, exc):
    model = FixedModel(peak_grid(4, 4, 1, 1))
    with pytest.raises(exc):
        gazecrop.thumbnail(photo(50, 50), (10, 10), model=model, **kw)
    assert model.calls == 0
    assert api.check_background("#ff0000") == (255, 0, 0)


def test_the_readmes_examples_on_the_sample_photo():
    import os

    photo_path = os.path.join(os.path.dirname(__file__), "..", "examples", "photo.jpg")
    head = (150, 15, 150, 170)  # hair to chin
    plain = gazecrop.crop_box(photo_path, "16:9")
    kept = gazecrop.crop_box(photo_path, "16:9", keep=[head])
    assert kept.top <= 15 and kept.bottom >= 185 and kept != plain
    shuttle = (355, 0, 110, 280)
    assert gazecrop.crop_box(photo_path, "9:16").right < 465
    assert gazecrop.crop_box(photo_path, "9:16", boost=[(shuttle, 1.0)]).right >= 465
    assert gazecrop.crop_box(photo_path, "9:16", focal=(410, 150)) == (224, 0, 288, 512)
