"""Image input (gazecrop._image): every Pillow mode to RGB, EXIF orientation, draft-mode JPEG decoding,
decompression bombs, unreadable and truncated files, tiny and extreme shapes."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageOps

from gazecrop import ImageError, ImageTooLargeError
from gazecrop._image import BACKGROUND, _prepare, open_image, to_rgb


def png_bytes(width, height, bit_depth, colour_type, raw_rows):
    """A minimal PNG (no Pillow) so we can write 16-bit RGB / RGBA and lying headers."""
    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    idat = zlib.compress(b"".join(b"\x00" + r for r in raw_rows))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def save(im, path, **kw):
    im.save(path, **kw)
    return path


# ---------------------------------------------------------------------------------------------- every mode

def test_rgb_array_passes_through():
    a = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    p = _prepare(a)
    assert p.size == (7, 5) and np.array_equal(p.rgb, a)


@pytest.mark.parametrize("mode", ["L", "1", "P", "RGB", "YCbCr", "HSV", "I", "F", "I;16"])
def test_opaque_modes(mode):
    grey = Image.new("L", (6, 4), 255 if mode == "1" else 200)
    im = grey.convert(mode) if mode not in ("I", "F", "I;16") else grey.convert("I" if mode == "I" else "F")
    if mode == "I;16":
        im = Image.fromarray(np.full((4, 6), 200 * 257, np.uint16))
        assert im.mode.startswith("I;16")
    rgb = _prepare(im).rgb
    assert rgb.shape == (4, 6, 3) and rgb.dtype == np.uint8
    expected = 255 if mode == "1" else 200
    assert np.abs(rgb.astype(int) - expected).max() <= 2, mode


@pytest.mark.parametrize("mode", ["RGBA", "LA", "La", "RGBa", "PA"])
def test_alpha_is_composited_on_the_background(mode):
    a = np.zeros((2, 3, 4), np.uint8)
    a[..., :3] = (200, 200, 200)
    a[0, :, 3] = 0      # transparent row -> background
    a[1, :, 3] = 255    # opaque row -> the colour
    im = Image.fromarray(a, "RGBA")
    im = im.convert("LA").convert(mode) if mode in ("LA", "La") else im.convert(mode)
    rgb = _prepare(im).rgb
    assert np.array_equal(rgb[0], np.tile(BACKGROUND, (3, 1)))
    assert np.abs(rgb[1].astype(int) - 200).max() <= 2


def test_half_transparent_rgba():
    a = np.zeros((1, 1, 4), np.uint8)
    a[0, 0] = (0, 0, 0, 128)
    rgb = _prepare(Image.fromarray(a, "RGBA")).rgb
    assert abs(int(rgb[0, 0, 0]) - 127) <= 1


def test_palette_with_transparency(tmp_path):
    im = Image.new("P", (4, 2))
    im.putpalette([10, 20, 30, 250, 0, 0] + [0] * 762)
    im.putpixel((0, 0), 1)
    im.info["transparency"] = 0
    path = save(im, tmp_path / "t.png", transparency=0)
    rgb = _prepare(path).rgb
    assert tuple(rgb[0, 0]) == (250, 0, 0)
    assert tuple(rgb[1, 3]) == BACKGROUND


def test_cmyk_jpeg_and_tiff(tmp_path):
    a = np.zeros((8, 8, 4), np.uint8)
    a[:4, :, 3] = 255  # top half black, bottom half white (no ink)
    im = Image.fromarray(a, "CMYK")
    for path in (save(im, tmp_path / "c.jpg", quality=95), save(im, tmp_path / "c.tif")):
        rgb = _prepare(path).rgb.astype(int)
        assert rgb[:3].max() < 20 and rgb[5:].min() > 235, path


def test_16bit_grey_png(tmp_path):
    a = np.array([[0, 257 * 100, 65535]], np.uint16)
    path = save(Image.fromarray(a), tmp_path / "g16.png")
    with Image.open(path) as im:
        assert im.mode in ("I;16", "I")
    assert _prepare(path).rgb[0, :, 0].tolist() == [0, 100, 255]


@pytest.mark.parametrize("colour_type,channels", [(2, 3), (6, 4)])
def test_16bit_rgb_and_rgba_png(tmp_path, colour_type, channels):
    px = [257 * 10, 257 * 100, 257 * 250, 65535][:channels]
    row = struct.pack(">" + "H" * channels * 2, *(px + px))
    path = tmp_path / "c16.png"
    path.write_bytes(png_bytes(2, 1, 16, colour_type, [row]))
    rgb = _prepare(path).rgb
    assert rgb.shape == (1, 2, 3)
    assert np.abs(rgb[0, 0].astype(int) - [10, 100, 250]).max() <= 1


def test_32bit_int_modes_are_scaled():
    wide = Image.fromarray(np.array([[0, 65535]], np.int32))
    assert _prepare(wide).rgb[0, :, 0].tolist() == [0, 255]
    small = Image.fromarray(np.array([[3, 200]], np.int32))
    assert _prepare(small).rgb[0, :, 0].tolist() == [3, 200]
    unit = Image.fromarray(np.array([[0.0, 1.0]], np.float32))
    assert _prepare(unit).rgb[0, :, 0].tolist() == [0, 255]


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_first_frame_of_animations(tmp_path, fmt):
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    path = tmp_path / f"anim.{fmt.lower()}"
    frames[0].save(path, format=fmt, save_all=True, append_images=frames[1:], duration=100, loop=0,
                   **({"lossless": True} if fmt == "WEBP" else {}))
    with Image.open(path) as im:
        assert getattr(im, "n_frames", 1) == 3
    rgb = _prepare(path).rgb.astype(int)
    assert rgb[..., 0].min() > 240 and rgb[..., 2].max() < 15


# -------------------------------------------------------------------------------------- EXIF orientation

def _oriented_jpeg(path, orientation, size=(40, 20)):
    a = np.full((size[1], size[0], 3), 40, np.uint8)
    a[:5, :5] = 250  # bright marker in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(a).save(path, quality=95, exif=exif.tobytes())
    return path


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_gives_the_displayed_image(tmp_path, orientation):
    path = _oriented_jpeg(tmp_path / f"o{orientation}.jpg", orientation)
    p = _prepare(path)
    with Image.open(path) as im:
        shown = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    swapped = orientation in (5, 6, 7, 8)
    assert p.size == ((20, 40) if swapped else (40, 20))
    assert p.rgb.shape == shown.shape and np.array_equal(p.rgb, shown)
    full = open_image(path)
    assert full.size == p.size
    if orientation == 6:  # rotate 90 degrees clockwise to display: stored top-left goes to the top-right
        assert p.rgb[:5, -5:].mean() > 200 and p.rgb[:5, :5].mean() < 100


def test_exif_orientation_of_pil_input(tmp_path):
    path = _oriented_jpeg(tmp_path / "o.jpg", 8)
    with Image.open(path) as im:
        p = _prepare(im)
        assert im.size == (40, 20)  # the caller's image is not transposed in place
    assert p.size == (20, 40)


# -------------------------------------------------------------------------------------------- draft mode

def _big_jpeg(path, size=(2048, 1536), orientation=None):
    yy, xx = np.mgrid[0:size[1], 0:size[0]]
    a = np.stack([(xx % 256), (yy % 256), ((xx + yy) % 256)], -1).astype(np.uint8)
    kw = {}
    if orientation:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kw["exif"] = exif.tobytes()
    Image.fromarray(a).save(path, quality=85, **kw)
    return path


def test_large_jpeg_decodes_in_draft_mode(tmp_path):
    path = _big_jpeg(tmp_path / "big.jpg")
    p = _prepare(path, input_size=lambda h, w: (96, 128))
    assert p.size == (2048, 1536)  # full-resolution displayed size
    assert p.rgb.shape == (192, 256, 3)  # DCT scale 1/8, still >= the model's input size
    assert _prepare(path).rgb.shape == (1536, 2048, 3)


def test_draft_mode_with_orientation(tmp_path):
    path = _big_jpeg(tmp_path / "big6.jpg", orientation=6)
    p = _prepare(path, input_size=lambda h, w: (128, 96))
    assert p.size == (1536, 2048)
    assert p.rgb.shape == (256, 192, 3)


# ------------------------------------------------------------------------------------------ bad inputs

def test_decompression_bomb_header_is_refused(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_bytes(100_000, 100_000, 8, 0, [b"\x00" * 10]))
    with pytest.raises(ImageTooLargeError, match="pixels"):
        _prepare(path)


def test_pixel_limit_is_configurable(tmp_path):
    path = save(Image.new("RGB", (50, 40)), tmp_path / "x.png")
    with pytest.raises(ImageTooLargeError, match="2000 pixels exceeds the limit of 1999"):
        _prepare(path, max_pixels=1999)
    assert _prepare(path, max_pixels=2000).size == (50, 40)
    with pytest.raises(ImageTooLargeError):
        open_image(path, max_pixels=100)


@pytest.mark.parametrize("fmt,kw", [("JPEG", {"quality": 90}), ("PNG", {}), ("WEBP", {"quality": 80})])
def test_truncated_files_are_refused(tmp_path, fmt, kw):
    a = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format=fmt, **kw)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageError):
        _prepare(path)


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20,
                                     b"\xff\xd8\xff\xe0garbage"])
def test_unreadable_files_are_refused(tmp_path, content):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageError):
        _prepare(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        _prepare(tmp_path / "nope.jpg")
    with pytest.raises(OSError):
        _prepare(tmp_path)


@pytest.mark.parametrize("bad,exc", [(np.zeros((4, 4, 3), np.float32), TypeError),
                                     (np.zeros((4, 4), np.uint8), ValueError),
                                     (np.zeros((4, 4, 4), np.uint8), ValueError),
                                     (np.zeros((0, 4, 3), np.uint8), ValueError),
                                     (123, TypeError), (b"bytes", ImageError), (io.StringIO("x"), TypeError)])
def test_bad_arguments(bad, exc):
    with pytest.raises(exc):
        _prepare(bad)


# -------------------------------------------------------------------------------------- extreme shapes

@pytest.mark.parametrize("size", [(1, 1), (1, 10000), (10000, 1)])
def test_tiny_and_extreme_shapes(tmp_path, size):
    im = Image.new("RGB", size, (1, 2, 3))
    for src in (im, save(im, tmp_path / "x.png"), save(im, tmp_path / "x.jpg")):
        p = _prepare(src, input_size=lambda h, w: (32, 32))
        assert p.size == size
        assert p.rgb.shape[2] == 3 and p.rgb.dtype == np.uint8


def test_to_rgb_rejects_unconvertible_modes():
    class Odd:
        mode = "XYZ"
        info = {}

        def convert(self, mode):
            raise ValueError("conversion not supported")

    with pytest.raises(ImageError, match="XYZ"):
        to_rgb(Odd())


def test_open_image_of_an_animation_is_detached_from_the_file(tmp_path):
    frames = [Image.new("P", (8, 8), i) for i in (1, 2)]
    for f in frames:
        f.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * 759)
    path = tmp_path / "a.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50)
    im = open_image(path)
    assert im.size == (8, 8) and im.convert("RGB").getpixel((0, 0)) == (255, 0, 0)
    path.unlink()  # no file handle kept (Windows would refuse; here: no ResourceWarning either)
    assert im.copy().size == (8, 8)
