"""The from-scratch DenseNet-style student (the shipped default, ``weights/gazecrop-fast.gzw``, learned from the
2,000 training images alone), its Fisher-pruning bookkeeping and its export to ``.gzw``; the comparison
baseline of the EfficientNet-Lite0 student (:class:`gazecrop.train.student.PretrainedStudent`).

Every module maps to one op of the native core (``docs/weights-format.md``):

- :class:`ConvBN` (conv + batch norm + ReLU/softplus) -> ``conv2d`` with the batch norm folded in;
- :class:`DenseBlock` (Huang et al. 2017, post-activation layers: 1x1 bottleneck -> 3x3 conv producing
  ``growth`` new feature maps, concatenated) -> ``dense_block``;
- transitions (1x1 ConvBN + 2x2 average pool) -> ``conv2d`` + ``avg_pool``;
- the DeepGaze II-style head (Kuemmerer et al. 2016/2017): features of the last ``head_blocks`` (2 or more)
  dense blocks at the grid of the first of them -> ``resize_bilinear`` + ``concat``; 1x1 softplus readout -> ``conv2d``;
  Gaussian blur with learned sigma -> ``gaussian_blur``; learned log centre bias -> ``centre_bias``;
  softmax over pixels -> ``log_softmax``.

Each prunable feature map sits behind a 0/1 ``mask`` entry. Fisher pruning (Theis et al. 2018,
arXiv:1801.05787) estimates the loss increase of zeroing feature map k as
``Delta_k = 1/(2N) sum_n (sum_ij a_nkij g_nkij)^2`` from activations ``a`` and gradients ``g``; the FLOP
cost of each map comes from :meth:`Student.flops`, recomputed from the current alive counts. Export drops
masked maps from their producers and consumers, so the exported file is really smaller.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..weights import Network

__all__ = ["ConvBN", "DenseBlock", "Student", "export_student", "StudentConfig"]

IMAGE = "image"


class ConvBN(nn.Module):
    """Conv (no bias) + batch norm + activation, then a 0/1 pruning mask over the output feature maps.

    ``inputs`` names the producers whose (masked) feature maps, concatenated in order, form this conv's
    input; ``hw_div`` is the input grid's stride relative to the network input (for FLOP counting).
    """

    def __init__(self, name: str, cin: int, cout: int, k: int, stride: int = 1, act: str = "relu",
                 bn: bool = True, prunable: bool = True) -> None:
        super().__init__()
        self.name = name
        self.conv = nn.Conv2d(cin, cout, k, stride, k // 2, bias=not bn)
        self.bn = nn.BatchNorm2d(cout) if bn else None
        self.act = act
        self.prunable = prunable
        self.register_buffer("mask", torch.ones(cout))
        self.inputs: List[str] = []
        self.in_stride = 1
        self.out_stride = stride
        self.fisher_hook: Optional[callable] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if self.bn is not None:
            y = self.bn(y)
        if self.act == "relu":
            y = F.relu(y)
        elif self.act == "softplus":
            y = F.softplus(y)
        y = y * self.mask[None, :, None, None]
        if self.fisher_hook is not None and y.requires_grad:
            self.fisher_hook(self, y)
        return y

    def alive(self) -> int:
        return int(self.mask.sum().item())

    def folded(self) -> Tuple[np.ndarray, np.ndarray]:
        """Batch norm folded into the conv: float32 weight (cout, cin, k, k), bias (cout,)."""
        w = self.conv.weight.detach().double()
        b = self.conv.bias.detach().double() if self.conv.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
        if self.bn is not None:
            s = self.bn.weight.detach().double() / torch.sqrt(self.bn.running_var.double() + self.bn.eps)
            w = w * s[:, None, None, None]
            b = (b - self.bn.running_mean.double()) * s + self.bn.bias.detach().double()
        return w.float().numpy(), b.float().numpy()


class DenseBlock(nn.Module):
    """Dense block: layer l maps the concatenation of the block input and all earlier layers' new feature
    maps through a 1x1 bottleneck (``bottleneck`` maps) and a 3x3 conv (``growth`` new maps)."""

    def __init__(self, name: str, cin: int, num_layers: int, growth: int, bottleneck: int) -> None:
        super().__init__()
        self.name = name
        self.cin = cin
        self.layers = nn.ModuleList()
        c = cin
        for li in range(num_layers):
            c1 = ConvBN(f"{name}.l{li}.conv1", c, bottleneck, 1)
            c2 = ConvBN(f"{name}.l{li}.conv2", bottleneck, growth, 3)
            self.layers.append(nn.ModuleList([c1, c2]))
            c += growth
        self.cout = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for c1, c2 in self.layers:
            feats.append(c2(c1(torch.cat(feats, 1))))
        return torch.cat(feats, 1)


class GaussianBlur(nn.Module):
    """Separable Gaussian blur with a learned sigma (in output-grid cells), edge-replicated border, radius
    ``ceil(truncate * sigma)``: the ``gaussian_blur`` op of the weights format."""

    def __init__(self, sigma: float = 1.5, truncate: float = 3.0) -> None:
        super().__init__()
        self.log_sigma = nn.Parameter(torch.tensor(math.log(sigma)))
        self.truncate = truncate

    @property
    def sigma(self) -> float:
        return float(self.log_sigma.exp().item())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sigma = self.log_sigma.exp()
        r = int(math.ceil(self.truncate * float(sigma.item())))
        t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
        k = torch.exp(-t * t / (2 * sigma * sigma))
        k = k / k.sum()
        n, c, h, w = x.shape
        y = F.pad(x, (r, r, 0, 0), mode="replicate")
        y = F.conv2d(y.reshape(n * c, 1, h, w + 2 * r), k.view(1, 1, 1, -1)).reshape(n, c, h, w)
        y = F.pad(y, (0, 0, r, r), mode="replicate")
        return F.conv2d(y.reshape(n * c, 1, h + 2 * r, w), k.view(1, 1, -1, 1)).reshape(n, c, h, w)


class StudentConfig(dict):
    """Architecture hyper-parameters (a dict, stored in checkpoints): ``stem``, ``blocks`` (list of
    (num_layers, growth, bottleneck)), ``transition`` (compression), ``readout`` (hidden widths),
    ``input_long_side``, ``centre_bias_shape``, ``head_blocks`` (how many of the deepest dense blocks the
    readout combines; the first of them sets the output grid, which the training code expects at stride 8)."""

    DEFAULT = dict(stem=32, blocks=[(4, 16, 48), (6, 24, 64), (6, 32, 96)], transition=0.5, readout=[24],
                   input_long_side=256, size_multiple=32, centre_bias_shape=(24, 32), sigma=1.5, head_blocks=2)

    def __init__(self, **kw) -> None:
        super().__init__({**self.DEFAULT, **kw})


class Student(nn.Module):
    """DenseNet-style saliency student. Input: float (N, 3, H, W) RGB pixel values in 0..255 (H, W multiples
    of 32); output: (N, H/8, W/8) log-densities (``logsumexp`` over each map is 0)."""

    MEAN = 127.0
    STD = 128.0

    def __init__(self, cfg: Optional[StudentConfig] = None, log_centre_bias: Optional[np.ndarray] = None) -> None:
        super().__init__()
        cfg = StudentConfig(**(cfg or {}))
        self.cfg = cfg
        self.stem = ConvBN("stem", 3, cfg["stem"], 3, stride=2)
        self.stem.inputs = [IMAGE]
        self.blocks = nn.ModuleList()
        self.transitions = nn.ModuleList()
        c = cfg["stem"]
        prev = "stem"
        stride = 4  # stem /2 + max pool /2
        self.stem.out_stride = 2
        self.block_strides = []
        for bi, (nl, g, b) in enumerate(cfg["blocks"]):
            if bi > 0:
                t = ConvBN(f"trans{bi}", c, max(1, int(c * cfg["transition"])), 1)
                t.inputs = self._block_outputs(bi - 1, prev_in)  # noqa: F821 (set below)
                t.in_stride = t.out_stride = stride
                self.transitions.append(t)
                c = t.conv.out_channels
                prev = t.name
                stride *= 2
            blk = DenseBlock(f"block{bi}", c, nl, g, b)
            prev_in = prev
            for li, (c1, c2) in enumerate(blk.layers):
                c1.inputs = [prev] + [f"block{bi}.l{j}.conv2" for j in range(li)]
                c1.in_stride = c1.out_stride = c2.in_stride = c2.out_stride = stride
                c2.inputs = [c1.name]
            self.blocks.append(blk)
            self.block_strides.append(stride)
            c = blk.cout
        self.readout = nn.ModuleList()
        k = int(cfg["head_blocks"])
        if not 2 <= k <= len(self.blocks):
            raise ValueError(f"head_blocks must be in 2..{len(self.blocks)}, got {k}")
        head = range(len(self.blocks) - k, len(self.blocks))
        feats_in = [n for bi in head for n in self._block_outputs(bi, self._block_input(bi))]
        c = self.feature_channels = sum(self.blocks[bi].cout for bi in head)
        self.out_stride = self.block_strides[-k]
        inputs = feats_in
        for i, width in enumerate(cfg["readout"]):
            r = ConvBN(f"readout{i}", c, width, 1, act="softplus", bn=False)
            r.inputs, r.in_stride, r.out_stride = inputs, self.out_stride, self.out_stride
            self.readout.append(r)
            inputs, c = [r.name], width
        self.readout_out = ConvBN("readout_out", c, 1, 1, act="none", bn=False, prunable=False)
        self.readout_out.inputs, self.readout_out.in_stride = inputs, self.out_stride
        self.readout_out.out_stride = self.out_stride
        self.blur = GaussianBlur(cfg["sigma"])
        if log_centre_bias is None:
            h, w = cfg["centre_bias_shape"]
            log_centre_bias = np.full((h, w), -math.log(h * w))
        self.log_centre_bias = nn.Parameter(torch.tensor(np.asarray(log_centre_bias), dtype=torch.float32))
        self.register_buffer("centre_bias_weight", torch.tensor(1.0))
        self._convs: Dict[str, ConvBN] = {m.name: m for m in self.modules() if isinstance(m, ConvBN)}

    def _block_input(self, bi: int) -> str:
        return "stem" if bi == 0 else f"trans{bi}"

    def _block_outputs(self, bi: int, block_input: str) -> List[str]:
        nl = self.cfg["blocks"][bi][0]
        return [block_input] + [f"block{bi}.l{j}.conv2" for j in range(nl)]

    # ------------------------------------------------------------------ forward
    def block_outputs(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Every dense block's output: (N, 3, H, W) -> list of (N, ``blocks[i].cout``, H/s_i, W/s_i), strides
        :attr:`block_strides` (4, 8, 16 by default)."""
        x = (x - self.MEAN) / self.STD
        x = F.max_pool2d(self.stem(x), 3, 2, 1)
        outs = []
        for bi, blk in enumerate(self.blocks):
            if bi > 0:
                x = F.avg_pool2d(self.transitions[bi - 1](x), 2, 2)
            x = blk(x)
            outs.append(x)
        return outs

    def features(self, x: torch.Tensor, outs: Optional[List[torch.Tensor]] = None) -> torch.Tensor:
        """The feature maps the readout sees: the last ``head_blocks`` dense blocks' outputs at the grid of the
        first of them, concatenated: (N, 3, H, W) -> (N, :attr:`feature_channels`, H/8, W/8). ``outs``: the
        :meth:`block_outputs` of ``x`` when already computed."""
        outs = self.block_outputs(x) if outs is None else outs
        k = int(self.cfg["head_blocks"])
        base = outs[-k]
        deep = [F.interpolate(o, size=base.shape[-2:], mode="bilinear", align_corners=False) for o in outs[-k + 1:]]
        return torch.cat([base, *deep], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def head(self, y: torch.Tensor) -> torch.Tensor:
        """Readout, blur, centre bias and log-softmax of :meth:`features`' output: (N, C, H/8, W/8) ->
        (N, H/8, W/8) log-densities."""
        for r in self.readout:
            y = r(y)
        y = self.blur(self.readout_out(y))[:, 0]
        cb = F.interpolate(self.log_centre_bias[None, None], size=y.shape[-2:], mode="bilinear",
                           align_corners=False)[0, 0]
        cb = cb - torch.logsumexp(cb.flatten(), 0)
        y = y + self.centre_bias_weight * cb
        return y - torch.logsumexp(y.flatten(1), 1)[:, None, None]

    def load_grown(self, state: Dict[str, torch.Tensor]) -> List[str]:
        """Load a trained student's ``state`` into this deeper one, preserving its function (Net2Net-style
        growth, Chen et al. 2016): every tensor of ``state`` must exist here with the same shape, except the
        readout's first conv, whose extra input channels (the feature maps of dense blocks appended after the
        last one, with ``head_blocks`` raised to take them in) start at zero weight. Added modules keep their
        initialisation, so the grown student computes the same log-density as the trained one until it is
        trained further. Returns the names of the added tensors.

        Raises ``ValueError`` when ``state`` does not fit (other shape changes, tensors missing here)."""
        own = self.state_dict()
        first = (self.readout[0] if len(self.readout) else self.readout_out).conv.weight
        first_key = next(k for k, v in self.named_parameters() if v is first)
        extra = sorted(set(state) - set(own))
        if extra:
            raise ValueError(f"tensors of the trained student missing in the grown one: {extra[:5]}")
        with torch.no_grad():
            for k, v in state.items():
                if own[k].shape == v.shape:
                    own[k].copy_(v)
                elif k == first_key and own[k].shape[0] == v.shape[0] and own[k].shape[1] > v.shape[1]:
                    own[k].zero_()
                    own[k][:, :v.shape[1]].copy_(v)
                else:
                    raise ValueError(f"{k}: shape {tuple(v.shape)} cannot grow into {tuple(own[k].shape)}")
        return sorted(set(own) - set(state))

    # ------------------------------------------------------------------ pruning bookkeeping
    def convs(self) -> Dict[str, ConvBN]:
        """All ConvBN modules by name, in execution order."""
        return self._convs

    def prunable(self) -> List[ConvBN]:
        return [m for m in self._convs.values() if m.prunable]

    def flops(self, height: int, width: int, alive: Optional[Dict[str, int]] = None) -> int:
        """FLOPs (2 x multiply-accumulates) of all convolutions for a (height, width) input, counting only
        alive feature maps (``alive`` overrides the masks' counts per conv name)."""
        alive = alive or {}
        count = lambda n: 3 if n == IMAGE else alive.get(n, self._convs[n].alive())  # noqa: E731
        total = 0
        for m in self._convs.values():
            cin = sum(count(n) for n in m.inputs)
            s = m.in_stride * m.conv.stride[0]
            ho, wo = math.ceil(height / s), math.ceil(width / s)
            k = m.conv.kernel_size[0]
            total += 2 * count(m.name) * cin * k * k * ho * wo
        return total

    def flop_savings(self, height: int, width: int) -> Dict[str, int]:
        """FLOPs saved by removing one more feature map of each prunable conv, given the current masks
        (recomputed each call, so costs follow as neighbours shrink)."""
        base = self.flops(height, width)
        out = {}
        for m in self.prunable():
            a = m.alive()
            if a > 1:
                out[m.name] = base - self.flops(height, width, {m.name: a - 1})
        return out


def _alive_idx(m: ConvBN) -> np.ndarray:
    return np.nonzero(m.mask.detach().cpu().numpy() > 0.5)[0]


def export_student(model: Student) -> Network:
    """Fold batch norm, drop pruned feature maps and build the ``.gzw`` :class:`Network` of ``model``.

    The exported network computes the same log-density as ``model.eval()`` (the golden test checks 1e-3).
    """
    model = model.eval()
    cfg = model.cfg
    convs = model.convs()
    width = {n: (3 if n == IMAGE else convs[n].conv.out_channels) for n in [IMAGE, *convs]}

    def in_index(m: ConvBN) -> np.ndarray:
        """Indices of m's alive input channels within its full (torch) input."""
        idx, off = [], 0
        for n in m.inputs:
            idx.append(off + (np.arange(3) if n == IMAGE else _alive_idx(convs[n])))
            off += width[n]
        return np.concatenate(idx)

    def conv_params(m: ConvBN) -> Tuple[np.ndarray, np.ndarray]:
        w, b = m.folded()
        o = _alive_idx(m)
        return w[o][:, in_index(m)], b[o]

    net = Network(mean=(model.MEAN,) * 3, std=(model.STD,) * 3, input_long_side=int(cfg["input_long_side"]),
                  size_multiple=int(cfg["size_multiple"]))
    x = net.conv2d(0, *conv_params(model.stem), stride=2, padding=1, activation="relu", name="stem")
    x = net.max_pool(x, 3, 2, 1)
    outs = []
    for bi, blk in enumerate(model.blocks):
        if bi > 0:
            t = model.transitions[bi - 1]
            x = net.conv2d(x, *conv_params(t), activation="relu", name=t.name)
            x = net.avg_pool(x, 2, 2)
        layers = []
        for c1, c2 in blk.layers:
            layers.append((*conv_params(c1), *conv_params(c2)))
        x = net.dense_block(x, layers, name=blk.name)
        outs.append(x)
    k = int(cfg["head_blocks"])
    x = net.concat(outs[-k], *(net.resize_bilinear(o, outs[-k]) for o in outs[-k + 1:]))
    for r in model.readout:
        x = net.conv2d(x, *conv_params(r), activation="softplus", name=r.name)
    x = net.conv2d(x, *conv_params(model.readout_out), activation="none", name="readout_out")
    x = net.gaussian_blur(x, model.blur.sigma, model.blur.truncate, "nearest")
    x = net.centre_bias(x, model.log_centre_bias.detach().numpy(), float(model.centre_bias_weight))
    net.log_softmax(x)
    net.validate()
    return net
