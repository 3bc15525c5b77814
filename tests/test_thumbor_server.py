"""gazecrop.thumbor against a running thumbor server (README "In an image server").

A thumbor server on 127.0.0.1 (a listening socket on a free port handed over with ``--fd``, so no port race;
``NON_BLOCKING_SOCKETS = True`` as thumbor needs for ``--fd``) with README.md's configuration exactly as
written (the gazecrop detector, a thread pool, EXIF orientation applied), plus the file loader over a
temporary folder and file storage and file result storage in temporary folders. Requests
``/unsafe/meta/WxH/smart/<img>`` for several sizes of one image in one order and of an identical copy in the
other order (thumbor caches the detector's points per image for every later size), and checks that thumbor's
crop is what its own centre-of-mass rule (:func:`gazecrop.thumbor.thumbor_crop`) gives for the detector's
points, identical in both orders; an EXIF-rotated photo; a bad image; the ``focal(...)`` batch path.

thumbor pins ``Pillow<13``, so this runs in a virtual environment of its own in CI (``.ci/run``); the main
suite skips it when thumbor is not installed.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("thumbor", reason="thumbor is not installed (pip install '.[thumbor]'; .ci/run runs this "
                                      "in a virtual environment of its own, since thumbor pins Pillow<13)")
pytest.importorskip("gazecrop._core")

from PIL import Image, ImageOps  # noqa: E402

import gazecrop  # noqa: E402
from gazecrop.thumbor import focal_filter, focal_points, thumbor_crop  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "examples" / "photo.jpg"
SIZES = [(300, 100), (100, 300), (200, 200), (160, 90), (90, 160), (400, 200), (110, 300)]  # 110x300: ceil != round

SERVER_CONF = """
LOADER = 'thumbor.loaders.file_loader'
FILE_LOADER_ROOT_PATH = {images!r}
STORAGE = 'thumbor.storages.file_storage'
FILE_STORAGE_ROOT_PATH = {storage!r}
RESULT_STORAGE = 'thumbor.result_storages.file_storage'
RESULT_STORAGE_FILE_STORAGE_ROOT_PATH = {result!r}
NON_BLOCKING_SOCKETS = True
"""


def readme_conf() -> str:
    """The thumbor configuration of README.md, exactly as written (between the thumbor-conf markers)."""
    text = (ROOT / "README.md").read_text()
    begin, end = "<!-- thumbor-conf:begin -->", "<!-- thumbor-conf:end -->"
    assert begin in text and end in text, "README.md lost its thumbor-conf markers"
    block = text[text.index(begin) + len(begin):text.index(end)]
    return "\n".join(line for line in block.splitlines() if not line.startswith("```")) + "\n"


def _landscape() -> Image.Image:
    """A 480 x 320 landscape cut of the sample photo with the face off-centre (so both axes get cropped)."""
    with Image.open(PHOTO) as im:
        return im.convert("RGB").crop((20, 40, 500, 360))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(base URL, images folder); the server is stopped at the end."""
    top = tmp_path_factory.mktemp("thumbor")
    images = top / "images"
    images.mkdir()
    conf = top / "thumbor.conf"
    conf.write_text(readme_conf() + SERVER_CONF.format(images=str(images), storage=str(top / "storage"),
                                                       result=str(top / "result")))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    log = open(top / "thumbor.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from thumbor.server import main; sys.exit(main())",
         "--fd", str(sock.fileno()), "--conf", str(conf), "--log-level", "warning"],
        pass_fds=[sock.fileno()], stdout=log, stderr=subprocess.STDOUT, cwd=str(top))
    sock.close()  # the server holds its own copy
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(base + "/healthcheck", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:  # exited, or hung
                log.flush()
                pytest.fail("thumbor did not start:\n" + (top / "thumbor.log").read_text(errors="replace")[-3000:])
            time.sleep(0.1)
        yield base, images
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _get(base: str, path: str):
    try:
        with urllib.request.urlopen(base + path, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _meta(base: str, name: str, size) -> dict:
    status, body = _get(base, f"/unsafe/meta/{size[0]}x{size[1]}/smart/{name}")
    assert status == 200, body[:500]
    return json.loads(body)["thumbor"]


def _crop(meta: dict, size):
    """thumbor's crop from its meta operations as a CropBox; the whole image when it did not crop."""
    crops = [op for op in meta["operations"] if op["type"] == "crop"]
    if not crops:
        return gazecrop.CropBox(0, 0, *size)
    (c,) = crops
    return gazecrop.CropBox(c["left"], c["top"], c["right"] - c["left"], c["bottom"] - c["top"])


def _points(meta: dict):
    return [(p["x"], p["y"], p["z"]) for p in meta["focal_points"]]


def _displayed_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


def test_crops_follow_thumbors_rule_in_both_orders(server):
    base, images = server
    _landscape().save(images / "first.png")
    shutil.copy(images / "first.png", images / "second.png")  # same pixels, its own cache entry
    expected = [tuple(p) for p in focal_points(_displayed_rgb(images / "first.png"))]
    assert expected and all(isinstance(w, int) and w >= 1 for _, _, w in expected)
    forward = {s: _meta(base, "first.png", s) for s in SIZES}
    backward = {s: _meta(base, "second.png", s) for s in reversed(SIZES)}
    boxes = set()
    for s in SIZES:
        for meta in (forward[s], backward[s]):
            assert _points(meta) == expected, s  # the detector's points, the same from the cache
            assert all(p["origin"] == "gazecrop" for p in meta["focal_points"])
            assert _crop(meta, (480, 320)) == thumbor_crop(expected, (480, 320), s), s
            assert meta["target"] == {"width": s[0], "height": s[1]}
        assert forward[s]["operations"] == backward[s]["operations"], s
        boxes.add(_crop(forward[s], (480, 320)))
    assert len(boxes) >= 4  # the sizes really crop differently


def test_exif_rotated_photo_is_cropped_as_displayed(server):
    """RESPECT_ORIENTATION = True: thumbor turns the photo upright first, so the detector sees (and thumbor
    crops) the displayed image, exactly as gazecrop does for the file."""
    base, images = server
    upright = _landscape()
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed = stored rotated 90 degrees clockwise
    upright.transpose(Image.Transpose.ROTATE_90).save(images / "rotated.jpg", quality=95, exif=exif)
    displayed = _displayed_rgb(images / "rotated.jpg")
    assert displayed.shape[:2] == (320, 480)
    expected = [tuple(p) for p in focal_points(displayed)]
    for s in ((300, 100), (100, 300)):
        meta = _meta(base, "rotated.jpg", s)
        assert _points(meta) == expected, s
        assert _crop(meta, (480, 320)) == thumbor_crop(expected, (480, 320), s), s
    # the same photo stored upright gets nearly the same points (JPEG noise aside)
    upright.save(images / "upright.jpg", quality=95)
    ref = np.array([p[:2] for p in _points(_meta(base, "upright.jpg", (300, 100)))], float)
    got = np.array([p[:2] for p in expected], float)
    assert ref.shape == got.shape and np.abs(ref - got).max() <= 0.05 * 480


@pytest.mark.parametrize("mode", ["RGBA", "L", "P"])
def test_other_modes(server, mode):
    """thumbor hands RGB or RGBA bytes to the detector; gazecrop composites transparency over white, as it
    does for the file itself."""
    base, images = server
    im = _landscape()
    if mode == "RGBA":
        im = im.convert("RGBA")
        alpha = np.full((320, 480), 255, np.uint8)
        alpha[:, :160] = 0  # left third transparent
        im.putalpha(Image.fromarray(alpha))
    else:
        im = im.convert(mode)
    im.save(images / f"mode_{mode}.png")
    with Image.open(images / f"mode_{mode}.png") as f:
        expected = [tuple(p) for p in focal_points(f)]
    meta = _meta(base, f"mode_{mode}.png", (300, 100))
    assert _points(meta) == expected
    assert _crop(meta, (480, 320)) == thumbor_crop(expected, (480, 320), (300, 100))


def test_bad_image_gives_thumbors_normal_error(server):
    base, images = server
    (images / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    (images / "noise.png").write_bytes(os.urandom(2000))
    for name in ("bad.jpg", "noise.png"):
        plain, _ = _get(base, f"/unsafe/300x100/{name}")  # no detector involved
        smart, _ = _get(base, f"/unsafe/300x100/smart/{name}")
        assert plain >= 400 and smart == plain, (name, plain, smart)
    assert _get(base, "/healthcheck")[0] == 200  # the worker survived
    _landscape().save(images / "after.png")
    assert _points(_meta(base, "after.png", (300, 100)))


def test_focal_filter_serves_a_batch_box(server):
    """The batch path: a box computed by gazecrop, served by thumbor with filters:focal(...)."""
    base, images = server
    _landscape().save(images / "batch.png")
    rgb = _displayed_rgb(images / "batch.png")
    for aspect, size in (("3:1", (300, 100)), ("1:2", (100, 200)), ("16:9", (160, 90))):
        box = gazecrop.crop_box(rgb, aspect)
        status, body = _get(base, f"/unsafe/meta/{size[0]}x{size[1]}/filters:{focal_filter(box)}/batch.png")
        assert status == 200, body[:300]
        got = _crop(json.loads(body)["thumbor"], (480, 320))
        assert max(abs(a - b) for a, b in zip(got, box)) <= 1, (aspect, got, box)  # thumbor's rounding
