"""Small model objects for the cropping-layer tests (no trained model needed).

- :class:`ReferenceModel`: the ``Model`` interface (``input_size``, ``log_density``) backed by the NumPy
  reference forward pass of a tiny random ``student_like`` network; :func:`tiny_model` returns the real
  native ``gazecrop.Model`` of the same network once ``gazecrop._core`` is built.
- :class:`FixedModel`: returns a given log-density grid whatever the image (exact crop boxes).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from gazecrop import reference
from gazecrop._testing import student_like


def tiny_network(seed: int = 0):
    """A student-shaped random network small enough for the NumPy reference (64 px long side)."""
    return student_like(seed, stem=8, blocks=(((4, 8),) * 2, ((4, 8),) * 2, ((4, 8),) * 2), readout=(4,),
                        input_long_side=64)


class ReferenceModel:
    """``gazecrop.Model``'s ``input_size`` / ``log_density`` on the NumPy reference; counts calls."""

    def __init__(self, net) -> None:
        self.network = net
        self.calls = 0
        self.last_input_shape = None

    def input_size(self, height: int, width: int):
        return self.network.input_size(height, width)

    def log_density(self, rgb: np.ndarray) -> np.ndarray:
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
        self.calls += 1
        self.last_input_shape = rgb.shape
        h, w = self.input_size(rgb.shape[0], rgb.shape[1])
        if (h, w) != rgb.shape[:2]:
            rgb = np.asarray(Image.fromarray(rgb).resize((w, h), Image.BILINEAR, reducing_gap=None))
        return reference.run(self.network, rgb)


class FixedModel:
    """Returns ``grid`` (a log-density over a grid covering the image) for any image; counts calls."""

    def __init__(self, grid: np.ndarray, long_side: int = 64) -> None:
        self.grid = np.asarray(grid, np.float32)
        self.long_side = long_side
        self.calls = 0
        self.last_input_shape = None

    def input_size(self, height: int, width: int):
        s = self.long_side / max(height, width)
        return max(1, round(height * s)), max(1, round(width * s))

    def log_density(self, rgb: np.ndarray) -> np.ndarray:
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
        self.calls += 1
        self.last_input_shape = rgb.shape
        return self.grid.copy()


def peak_grid(h: int, w: int, row: int, col: int, floor: float = -12.0) -> np.ndarray:
    """A log-density grid with one clear peak at (row, col)."""
    g = np.full((h, w), floor, np.float64)
    g[row, col] = 0.0
    return g - np.log(np.exp(g).sum())


def tiny_model(tmp_path=None, seed: int = 0):
    """The native ``gazecrop.Model`` of :func:`tiny_network` when ``gazecrop._core`` is built (and
    ``tmp_path`` given), else a :class:`ReferenceModel` of the same network."""
    net = tiny_network(seed)
    if tmp_path is not None:
        try:
            from gazecrop import _core  # noqa: F401
        except ImportError:
            pass
        else:
            from gazecrop import Model
            from gazecrop.weights import write_weights

            path = tmp_path / f"tiny{seed}.gzw"
            write_weights(path, net)
            return Model(path)
    return ReferenceModel(net)
