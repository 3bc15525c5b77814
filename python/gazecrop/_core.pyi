"""Typed stub of the native core module ``gazecrop._core`` (cpp/bindings/module.cpp)."""

from typing import List, Optional, Sequence, Tuple

import numpy as np
import numpy.typing as npt

class Model:
    """A ``.gzw`` network loaded and validated by the native core; immutable, usable from many threads."""

    def __init__(self, path: str) -> None:
        """Load and validate a file. Raises WeightsFormatError (a ValueError) or OSError."""
    @staticmethod
    def from_bytes(data: bytes) -> "Model":
        """Load and validate the bytes of a ``.gzw`` file."""
    def run(self, image: npt.NDArray[np.uint8] | npt.NDArray[np.float32], threads: int = 1,
            fuse: bool = True, head_map: bool = False,
            precision: Optional[str] = None) -> npt.NDArray[np.float32]:
        """uint8 (H, W, 3) RGB or float32 (3, H, W), pixel values 0..255, C-contiguous, no conversion ->
        float32 (h, w) log-density; a batch uint8 (N, H, W, 3) / float32 (N, 3, H, W) -> (N, h, w). TypeError
        on another dtype, ValueError on a wrong rank/shape or an image too small for the network. fuse=False
        runs inverted residuals op by op instead of fused in row bands (bitwise the same result). The GIL is
        released during the run; the model keeps one thread pool between calls. head_map=True also returns the
        head map (format version 3). precision: None (the default: GAZECROP_PRECISION, else the file's, int8 only
        on AVX-512 VNNI), 'fp32', or 'int8' (the int8 trunk; uint8 images only)."""
    def output_size(self, height: int, width: int) -> Tuple[int, int]:
        """Output grid (h, w) for an input of height x width."""
    @property
    def num_ops(self) -> int: ...
    def steps(self, fuse: bool = True) -> List[str]:
        """Labels of the steps run(fuse=fuse) executes: 'op 7 (conv2d)' per file op, 'ops 3-6
        (inverted_residual)' per fused inverted residual."""
    @property
    def name(self) -> str:
        """model_name of the header ('' in version-1 files)."""
    @property
    def model_version(self) -> str:
        """model_version of the header ('' in version-1 files)."""
    @property
    def format_version(self) -> int:
        """The file's format version (1, 2 or 3)."""
    @property
    def int8_ops(self) -> int:
        """Ops in the file's int8 trunk (format version 3; 0 = none). Read and validated; this release runs every
        file in float32."""
    @property
    def default_precision(self) -> str:
        """The precision the file asks for by default: 'fp32' or 'int8' (format version 3); what a run takes
        here: runs_int8()."""
    def runs_int8(self, precision: Optional[str] = None) -> bool:
        """Whether run(uint8 image, precision=precision) takes the int8 trunk in this process."""
    def int8_values(self, image: np.ndarray) -> List[np.ndarray]:
        """The int8 trunk's values for a uint8 (H, W, 3) image: value v's int8 (C, h, w) bytes, flattened."""

def kernel_set() -> str:
    """'avx512', 'avx2', 'neon' (AArch64) or 'scalar': the kernel set in use, the best this CPU and OS support
    (GAZECROP_ISA=scalar|avx2|avx512|neon forces one at import)."""

def int8_kernel_set() -> str:
    """The int8 kernels that go with the kernel set in use: 'avx512vnni' (a file's int8 default runs only on these:
    faster than float32), 'avx2' or 'scalar' (exact, slower: int8 only when asked for)."""

def set_kernel_set(name: str) -> None:
    """Switch the process-wide kernel set (tests, benchmarks); ValueError when unsupported here."""

def supported_kernel_sets() -> List[str]:
    """Kernel sets this build and CPU can run, best last: e.g. ['scalar', 'avx2', 'avx512'] on x86-64,
    ['scalar', 'neon'] on AArch64."""

def resize(image: npt.NDArray[np.uint8], height: int, width: int) -> npt.NDArray[np.uint8]:
    """uint8 (H, W, C) (C 1..4, C-contiguous) -> uint8 (height, width, C): antialiased bilinear, bit for bit
    Pillow 13's Image.resize((width, height), Image.BILINEAR, reducing_gap=None) for C 1 and 3; GIL released.
    TypeError for another dtype, ValueError for another shape or a side outside 1..65536. Checks its size
    arguments less strictly than gazecrop.model.resize_rgb (use that)."""

def place(density: npt.NDArray[np.float64], width: int, height: int, boxes: Sequence[Tuple[int, int]],
          heads: Sequence[Tuple[int, int, int, int]], object_yield: Optional[float], candidates: int
          ) -> Tuple[Tuple[int, int], List[Tuple[int, int, float]],
                     List[Tuple[List[Tuple[int, int, float]], float]]]:
    """The default crop placement for the largest box of each size (gazecrop.crop's 'mass' rule, bit for bit):
    density float64 (h, w), C-contiguous, finite, >= 0, maximum exactly 1; boxes (width, height) spanning the
    image's width or height; heads (left, top, right, bottom); object_yield >= 0 or None. Returns ((x, y)
    salient point, [(x, y, strength)] peaks, per box ([(left, top, score)] ranked boxes, cut)). TypeError /
    ValueError for bad arguments; GIL released. Called by gazecrop.crop.choose_crops (use that)."""

def version() -> str: ...

def _peak_gflops(name: str) -> float:
    """Benchmark hook: single-thread peak GFLOP/s of kernel set ``name`` from its FMA-throughput loop
    (measured once per process); ValueError when unsupported here."""

def _kernel_self_test() -> List[Tuple[str, str]]:
    """Test hook: each kernels.def kernel checked against a naive loop: (name, 'ok' | 'skipped: ...' | failure)."""
