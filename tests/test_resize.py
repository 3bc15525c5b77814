"""The native image resize (gazecrop.model.resize_rgb, cpp/src/image_resize.cpp): every model input goes
through it, so it must equal Pillow's antialiased bilinear resize byte for byte (the golden arrays, the
training scripts and earlier releases resized with Pillow), on every kernel set, for every size and shape."""

from __future__ import annotations

import numpy as np
import PIL
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from _native_helpers import KERNEL_SETS, core, kernel_set
from gazecrop.model import resize_rgb

# Pillow 13 runs the vertical pass first when the height loses more than twice the pixels the width loses
# (python-pillow/Pillow#9549); the core follows it. Earlier Pillow releases always ran the horizontal pass first.
PILLOW_13 = int(PIL.__version__.split(".")[0]) >= 13


def pillow(a: np.ndarray, h: int, w: int) -> np.ndarray:
    im = Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a)
    return np.asarray(im.resize((w, h), Image.BILINEAR, reducing_gap=None)).reshape(h, w, a.shape[2])


def comparable(H: int, W: int, h: int, w: int) -> bool:
    """Sizes for which the installed Pillow uses the core's pass order."""
    return PILLOW_13 or not (h < H and H - h > 2 * (W - w) and w != W)


sizes = st.integers(1, 160)


@pytest.mark.parametrize("name", KERNEL_SETS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(H=sizes, W=sizes, h=sizes, w=sizes, channels=st.sampled_from([1, 3]), seed=st.integers(0, 2**31))
def test_equals_pillow_byte_for_byte(name, H, W, h, w, channels, seed):
    if not comparable(H, W, h, w):
        return
    a = np.random.default_rng(seed).integers(0, 256, (H, W, channels), dtype=np.uint8)
    with kernel_set(name):
        got = resize_rgb(a, h, w)
    assert got.dtype == np.uint8 and got.shape == (h, w, channels)
    np.testing.assert_array_equal(got, pillow(a, h, w))


@pytest.mark.parametrize("name", KERNEL_SETS)
@pytest.mark.parametrize("src, dst", [
    ((378, 504), (192, 256)),    # a 12 MP JPEG drafted at 1/8, to the model input
    ((768, 1024), (192, 256)),   # a 1024x768 PNG
    ((1080, 1920), (144, 256)),  # a 16:9 photo
    ((3, 5000), (1, 256)),       # a strip: many taps on one axis, one row out
    ((9, 7), (300, 41)),         # upscaling: every output pixel between two input pixels
    ((301, 3), (224, 224)),      # tall: the vertical pass first under Pillow 13
    ((300, 3), (224, 224)),      # the other side of that boundary
    ((1, 1), (17, 13)),
])
def test_typical_and_edge_shapes(name, src, dst):
    a = np.random.default_rng(sum(src) + sum(dst)).integers(0, 256, (*src, 3), dtype=np.uint8)
    a[::7] = 255  # saturated rows: the rounding and clamping near 255
    a[:, ::5] = 0
    if not comparable(*src, *dst):
        pytest.skip(f"Pillow {PIL.__version__} orders the passes differently for this size")
    with kernel_set(name):
        np.testing.assert_array_equal(resize_rgb(a, *dst), pillow(a, *dst))


def test_views_same_size_and_errors():
    a = np.random.default_rng(1).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    np.testing.assert_array_equal(resize_rgb(a[:, ::-1], 20, 30), pillow(np.ascontiguousarray(a[:, ::-1]), 20, 30))
    same = resize_rgb(a, 40, 60)
    assert np.array_equal(same, a) and not np.shares_memory(same, a)
    with pytest.raises(TypeError, match="uint8"):
        resize_rgb(a.astype(np.float32), 10, 10)
    with pytest.raises(TypeError, match="array"):
        resize_rgb([[1, 2, 3]], 10, 10)
    with pytest.raises(ValueError, match="shape"):
        resize_rgb(a[:, :, 0], 10, 10)
    with pytest.raises(ValueError, match="shape"):
        resize_rgb(np.zeros((4, 4, 5), np.uint8), 2, 2)
    with pytest.raises(ValueError, match="output height 0"):
        resize_rgb(a, 0, 10)
    with pytest.raises(ValueError, match="output width 70000"):
        resize_rgb(a, 10, 70000)
    with pytest.raises(ValueError, match="output width 1099511627776"):
        resize_rgb(a, 10, 2**40)
    with pytest.raises(ValueError, match="image size"):
        resize_rgb(np.zeros((0, 4, 3), np.uint8), 2, 2)
    with pytest.raises(ValueError, match=r"shape \(\)"):
        resize_rgb(np.zeros((), np.uint8), 3, 3)
    for bad in (5.7, np.float32(5.0), "5", True, np.True_, None):
        with pytest.raises(TypeError, match="height must be an int"):
            resize_rgb(a, bad, 10)
    assert resize_rgb(a, np.int64(5), np.uint16(7)).shape == (5, 7, 3)


def test_model_inputs_are_resized_by_the_core(monkeypatch):
    """Model.log_density resizes through resize_rgb (one way to resize a model input)."""
    import gazecrop.model as gm

    calls = []
    real = gm.resize_rgb
    monkeypatch.setattr(gm, "resize_rgb", lambda rgb, h, w: calls.append((rgb.shape, h, w)) or real(rgb, h, w))
    model = gm.load_model()
    a = np.random.default_rng(2).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    out = model.log_density(a)
    assert calls == [((300, 400, 3), *model.input_size(300, 400))]
    assert np.array_equal(out, model.run(pillow(a, *model.input_size(300, 400))))
    assert core.kernel_set() in core.supported_kernel_sets()
