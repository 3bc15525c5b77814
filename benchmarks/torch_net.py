"""The PyTorch equivalent of a ``.gzw`` network (same weights, same ops) for the speed comparison in
``test_core_speed.py`` and the gates: what a straightforward PyTorch implementation runs (dense blocks
concatenate with ``torch.cat``; depthwise convolutions are ``groups = C`` convolutions; per-side and "same"
padding an ``F.pad`` before the convolution, as EfficientNet's PyTorch port does). float32 throughout, CPU,
inference mode."""

from __future__ import annotations

import math
from typing import List

import numpy as np
import torch
import torch.nn.functional as F

from gazecrop.weights import Network, op_padding


def _act(y: torch.Tensor, code: int) -> torch.Tensor:
    """The weights format's activation codes: 0 none, 1 ReLU, 2 softplus, 3 ReLU6."""
    if code == 1:
        return F.relu(y)
    if code == 2:
        return F.softplus(y)
    if code == 3:
        return F.relu6(y)
    return y


def _padded_conv(x: torch.Tensor, op, w: torch.Tensor, b: torch.Tensor, groups: int = 1) -> torch.Tensor:
    # int(): constants when traced for the ONNX export (the file's padding at this input size)
    pt, pb, pl, pr = op_padding(op, int(x.shape[2]), int(x.shape[3]))
    if pt == pb == pl == pr:
        return F.conv2d(x, w, b, stride=op.ip(3), padding=pt, groups=groups)
    return F.conv2d(F.pad(x, (pl, pr, pt, pb)), w, b, stride=op.ip(3), groups=groups)


class TorchNet(torch.nn.Module):
    def __init__(self, net: Network) -> None:
        super().__init__()
        self.net = net
        self.mean = torch.tensor(net.mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(net.std, dtype=torch.float32).view(1, 3, 1, 1)
        self.params: List[List[torch.Tensor]] = [[torch.from_numpy(np.ascontiguousarray(a)) for _, a in op.tensors]
                                                 for op in net.ops]
        self.blur = {}
        for i, op in enumerate(net.ops):
            if op.kind == "gaussian_blur":
                sigma, trunc = op.fp(0), op.fp(1)
                r = int(math.ceil(trunc * sigma))
                t = torch.arange(-r, r + 1, dtype=torch.float64)
                k = torch.exp(-t * t / (2 * sigma * sigma))
                self.blur[i] = ((k / k.sum()).float(), r)

    @torch.inference_mode()
    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """image: float32 (3, H, W) pixel values -> (h, w) log-density."""
        vals = [((image[None] - self.mean) / self.std)]
        for i, op in enumerate(self.net.ops):
            x = vals[op.inputs[0]]
            t = self.params[i]
            if op.kind == "conv2d":
                y = _act(_padded_conv(x, op, t[0], t[1]), op.ip(5))
            elif op.kind == "depthwise_conv2d":
                y = _act(_padded_conv(x, op, t[0], t[1], groups=op.ip(0)), op.ip(5))
            elif op.kind == "add":
                y = _act(x + vals[op.inputs[1]], op.ip(0))
            elif op.kind == "dense_block":
                feats = [x]
                for li in range(op.ip(1)):
                    cat = torch.cat(feats, 1)
                    mid = F.relu(F.conv2d(cat, t[4 * li], t[4 * li + 1]))
                    feats.append(F.relu(F.conv2d(mid, t[4 * li + 2], t[4 * li + 3], padding=1)))
                y = torch.cat(feats, 1)
            elif op.kind == "avg_pool":
                y = F.avg_pool2d(x, op.ip(0), op.ip(1))
            elif op.kind == "max_pool":
                y = F.max_pool2d(x, op.ip(0), op.ip(1), op.ip(2))
            elif op.kind == "resize_bilinear":
                like = vals[op.inputs[1]]
                y = F.interpolate(x, size=like.shape[2:], mode="bilinear", align_corners=False)
            elif op.kind == "concat":
                y = torch.cat([vals[v] for v in op.inputs], 1)
            elif op.kind == "gaussian_blur":
                k, r = self.blur[i]
                mode = {0: "constant", 1: "replicate", 2: "reflect"}[op.ip(0)]
                c = int(x.shape[1])
                y = F.conv2d(F.pad(x, (r, r, 0, 0), mode=mode), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
                y = F.conv2d(F.pad(y, (0, 0, r, r), mode=mode), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
            elif op.kind == "centre_bias":
                m = F.interpolate(t[0][None, None], size=x.shape[2:], mode="bilinear", align_corners=False)
                m = m - torch.logsumexp(m.flatten(), 0)
                y = x + op.fp(0) * m
            elif op.kind == "log_softmax":
                y = x - torch.logsumexp(x.flatten(), 0)
            else:  # pragma: no cover
                raise ValueError(op.kind)
            vals.append(y)
        return vals[-1][0, 0]
