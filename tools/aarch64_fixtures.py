"""Fixtures for tools/aarch64_check.cpp (run by tools/test_aarch64.sh): ``python tools/aarch64_fixtures.py OUTDIR``.

Writes, as raw little-endian files the C++ program reads without NumPy:

- every op of docs/weights-format.md in small networks over kernel, stride, padding, channel counts and sizes
  at the kernels' tile edges (the cases of tests/test_ops.py and tests/test_inverted_residual.py, thinned),
  plus whole random networks (``random_network``, ``inverted_residual_net``, ``student_like``), each with a
  seeded input image and the NumPy reference's output (``gazecrop.reference``) and the tests' tolerance:
  absolute ``tol(K, max |ref|)`` for the per-op networks (tests/test_ops.py), max relative error 1e-4 on the
  log-density for whole networks (tests/_native_helpers.check_network);
- the shipped model's golden cases (tests/data/golden_fast.npz and the EfficientNet-Lite0 candidate's
  golden_candidate_lite0.npz: PyTorch's log-density, max abs error 1e-3 as in tests/test_golden.py);
- ``manifest.txt``, one case per line: ``name model input_kind h w out_h out_w mode bound`` (model relative to
  OUTDIR; input ``name.in``: float32 (3, h, w) for ``f32``, uint8 (h, w, 3) for ``u8``; expected output
  ``name.ref``: float32 (out_h, out_w); mode ``abs``, ``rel`` or ``golden``);
- ``seeds/``: the .gzw files the loader fuzzing starts from;
- ``placement.txt``: crop placements (``gazecrop.crop.choose_crops`` with the default options, run by its Python
  reference, ``GAZECROP_PLACEMENT=python``) on random grids, one per line (:func:`placement_cases`), which the
  core's ``place_crops`` must give bit for bit (floats written as hex).

Needs NumPy and the gazecrop sources (``PYTHONPATH=python``), not the native core.
"""

from __future__ import annotations

import importlib
import math
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from gazecrop import reference, weights
from gazecrop._testing import inverted_residual_net, random_conv, random_depthwise, random_network, student_like, tol

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = [("fast", ROOT / "weights" / "gazecrop-fast.gzw", ROOT / "tests" / "data" / "golden_fast.npz"),
          ("lite0", ROOT / "weights" / "candidate-lite0" / "gazecrop-fast.gzw",
           ROOT / "tests" / "data" / "golden_candidate_lite0.npz")]


def _head(net, x, rng):
    """1x1 conv to one channel, no activation: the raw values are compared (as tests/test_ops.py does)."""
    return net.conv2d(x, *random_conv(rng, 1, net.channels(x), 1), activation="none", name="head")


def op_cases():
    """(name, network, (h, w), K) per-op cases; K = the reduction length that scales the tolerance."""
    out = []
    for k, s, p in [(1, 1, 0), (1, 2, 0), (3, 1, 1), (3, 1, 0), (3, 2, 1), (3, 2, 0)]:
        for cin, cout in [(1, 1), (3, 13), (27, 3), (64, 64), (13, 27)]:
            for hw in [(1, 1), (1, 17), (5, 7), (9, 33)]:
                rng = np.random.default_rng(cin * 1000 + cout * 10 + k + s)
                net = weights.Network()
                x = net.conv2d(0, *random_conv(rng, cin, 3, 1), activation="none", name="pre") if cin != 3 else 0
                act = ["none", "relu", "softplus"][(cin + cout + k + s + p) % 3]
                x = net.conv2d(x, *random_conv(rng, cout, cin, k), stride=s, padding=p, activation=act, name="op")
                _head(net, x, rng)
                out.append((f"conv2d_k{k}s{s}p{p}_c{cin}-{cout}_{hw[0]}x{hw[1]}", net, hw, cin * k * k + cout))
    for act in ["none", "relu", "softplus"]:  # large values: softplus far into both tails
        rng = np.random.default_rng(5)
        net = weights.Network()
        w, b = random_conv(rng, 13, 3, 3)
        _head(net, net.conv2d(0, w * 4, b, activation=act, name="op"), rng)
        out.append((f"conv2d_act_{act}", net, (11, 13), 27 + 13))
    for layers in [((1, 1),), ((13, 27),), ((27, 13), (1, 64), (16, 32))]:
        for cin in [1, 13, 64]:
            for hw in [(1, 1), (5, 7), (24, 33)]:
                rng = np.random.default_rng(cin + len(layers))
                net = weights.Network()
                x = net.conv2d(0, *random_conv(rng, cin, 3, 1), name="pre")
                c, block = cin, []
                for g, b in layers:
                    block.append((*random_conv(rng, b, c, 1), *random_conv(rng, g, b, 3)))
                    c += g
                _head(net, net.dense_block(x, block), rng)
                name = "-".join(f"g{g}b{b}" for g, b in layers)
                out.append((f"dense_{name}_c{cin}_{hw[0]}x{hw[1]}", net, hw, max(c, 64 * 9) + c))
    for kind, k, s, p in [("avg", 2, 2, 0), ("avg", 3, 1, 0), ("avg", 8, 8, 0), ("max", 3, 2, 1), ("max", 8, 8, 4),
                          ("max", 5, 3, 2)]:
        for hw in [(2, 2), (16, 17), (33, 9)]:
            rng = np.random.default_rng(k * 10 + s)
            net = weights.Network()
            x = net.conv2d(0, *random_conv(rng, 13, 3, 3), activation="none", name="pre")
            x = net.avg_pool(x, k, s) if kind == "avg" else net.max_pool(x, k, s, p)
            _head(net, x, rng)
            out.append((f"{kind}pool_k{k}s{s}p{p}_{hw[0]}x{hw[1]}", net, hw, 27 + 13))
    for direction in ["up", "down"]:
        for c, hw in [(1, (5, 7)), (27, (16, 17)), (3, (24, 32))]:
            rng = np.random.default_rng(c)
            net = weights.Network()
            full = net.conv2d(0, *random_conv(rng, c, 3, 1), activation="none", name="pre")
            small = net.avg_pool(full, 2, 2)
            _head(net, net.resize_bilinear(small, full) if direction == "up" else net.resize_bilinear(full, small),
                  rng)
            out.append((f"resize_{direction}_c{c}_{hw[0]}x{hw[1]}", net, hw, 3 + c))
    for chans in [(1, 1), (3, 13, 27), (64, 1, 13, 3)]:
        rng = np.random.default_rng(len(chans))
        net = weights.Network()
        _head(net, net.concat(*[net.conv2d(0, *random_conv(rng, c, 3, 1), activation="none", name=f"p{i}")
                                for i, c in enumerate(chans)]), rng)
        out.append((f"concat_{'-'.join(map(str, chans))}", net, (9, 33), 3 + sum(chans)))
    for border in ["zeros", "nearest", "reflect"]:
        for sigma, truncate in [(0.3, 1.0), (2.5, 4.0)]:
            rng = np.random.default_rng(1)
            net = weights.Network()
            x = net.conv2d(0, *random_conv(rng, 1, 3, 3), activation="none", name="pre")
            net.log_softmax(net.gaussian_blur(x, sigma, truncate, border))
            out.append((f"blur_{border}_s{sigma}_t{truncate}", net, (9, 33), 27))
    for weight, map_hw in [(0.0, (3, 5)), (0.7, (12, 16)), (-2.0, (40, 50))]:
        rng = np.random.default_rng(2)
        net = weights.Network()
        x = net.conv2d(0, *random_conv(rng, 1, 3, 3), activation="none", name="pre")
        net.centre_bias(x, rng.standard_normal(map_hw).astype(np.float32), weight)
        out.append((f"centre_bias_w{weight}_{map_hw[0]}x{map_hw[1]}", net, (5, 7), 27))
    for hw in [(1, 17), (31, 29)]:
        rng = np.random.default_rng(3)
        net = weights.Network()
        w, b = random_conv(rng, 1, 3, 3)
        net.log_softmax(net.conv2d(0, 20 * w, b, activation="none", name="pre"))  # wide range of logits
        out.append((f"log_softmax_{hw[0]}x{hw[1]}", net, hw, 27))
    # depthwise 3x3 / 5x5 (the dwconv kernels), both strides, symmetric / "same" / explicit paddings, every
    # activation, widths around the 4-, 8- and 16-pixel vectors; then an add of two branches
    acts = ["none", "relu", "relu6"]
    for k in (3, 5):
        for s in (1, 2):
            for pi, pad in enumerate([k // 2, "same", (0, 1, 1, 0), (k // 2, 0, 0, k // 2)]):
                for hw in [(1, 1), (3, 9), (7, 17), (12, 35)]:
                    rng = np.random.default_rng(k * 100 + s * 10 + pi)
                    net = weights.Network()
                    x = net.conv2d(0, *random_conv(rng, 13, 3, 1), activation="none", name="pre")
                    x = net.depthwise_conv2d(x, *random_depthwise(rng, 13, k), stride=s, padding=pad,
                                             activation=acts[(pi + s) % 3])
                    _head(net, x, rng)
                    out.append((f"dwconv_k{k}s{s}p{pi}_{hw[0]}x{hw[1]}", net, hw, k * k + 13))
    for act in ["none", "relu6", "softplus"]:
        rng = np.random.default_rng(9)
        net = weights.Network()
        a = net.conv2d(0, *random_conv(rng, 13, 3, 1), activation="none", name="a")
        b = net.depthwise_conv2d(a, *random_depthwise(rng, 13, 3), padding=1, activation="relu6")
        _head(net, net.add(a, b, activation=act), rng)
        out.append((f"add_{act}", net, (9, 21), 9 + 13))
    return out


def network_cases():
    """(name, network, (h, w)) whole random networks (log-densities, max relative error 1e-4)."""
    out = []
    for seed in range(8):
        rng = np.random.default_rng(1000 + seed)
        h, w = (int(v) for v in rng.integers(16, 49, 2))
        out.append((f"net_random{seed}", random_network(rng, max_channels=[5, 13, 27, 40][seed % 4]), (h, w)))
    for seed in range(8):
        rng = np.random.default_rng(2000 + seed)
        h, w = (int(v) for v in rng.integers(16, 65, 2))
        out.append((f"net_ir{seed}", inverted_residual_net(rng, max_channels=[13, 27][seed % 2]), (h, w)))
    out.append(("net_student", student_like(0), (96, 128)))
    return out


def placement_cases(out: Path, n: int = 60) -> int:
    """``placement.txt`` and its ``placement{i}.grid`` files (float64 (h, w) density, maximum 1): per line
    ``i gh gw W H candidates object_yield nbox (bw bh)* nhead (l t r b)* | px py npeak (x y strength)* |
    (nrank (left top score)* cut)*`` with object_yield ``none`` or a hex float, scores and strengths as hex
    floats, the scores clamped into [0, 1] and the ranked boxes cut to ``candidates``, as ``CropResult`` has
    them. Returns the number of cases."""
    crop = importlib.import_module("gazecrop.crop")  # the module (gazecrop.crop is the function)
    os.environ["GAZECROP_PLACEMENT"] = "python"
    rng = np.random.default_rng(7)
    lines = []
    for i in range(n):
        gh, gw = (int(v) for v in rng.integers(1, 33, 2))
        ld = rng.normal(size=(gh, gw)) * rng.uniform(0.2, 4)
        if i % 4 == 1:
            ld = np.round(ld)  # plateaus and ties
        if i % 4 == 2:
            ld = ld + ld[:, ::-1]  # its own mirror image
        W, H = (int(v) for v in rng.integers(1, 1400, 2))
        aspects = [float(np.exp(rng.uniform(-1.5, 1.5))) for _ in range(int(rng.integers(1, 4)))]
        heads = []
        for _ in range(int(rng.integers(0, 3))):
            left, top = int(rng.integers(0, W)), int(rng.integers(0, H))
            heads.append((left, top, int(rng.integers(1, W - left + 1)), int(rng.integers(1, H - top + 1))))
        k = int(rng.integers(1, 4))
        oy = [None, 0.0, 0.1, math.inf][i % 4]
        res = crop.choose_crops(ld, (W, H), aspects, heads=heads, candidates=k, object_yield=oy)
        _, d = crop._unit_density(ld)
        d.tofile(out / f"placement{i}.grid")
        fields = [i, gh, gw, W, H, k, "none" if oy is None else float(oy).hex(), len(res)]
        fields += [v for r in res for v in (r.box.width, r.box.height)]
        fields += [len(heads)] + [v for h in heads for v in (h[0], h[1], h[0] + h[2], h[1] + h[3])]
        fields += ["|", *res[0].salient_point, len(res[0].peaks)]
        fields += [v for p in res[0].peaks for v in (p.x, p.y, float(p.strength).hex())]
        fields += ["|"]
        for r in res:
            fields += [len(r.candidates)] + [v for c in r.candidates for v in (c.box.left, c.box.top, c.score.hex())]
            fields += [float(r.cut).hex()]
        lines.append(" ".join(str(v) for v in fields))
    del os.environ["GAZECROP_PLACEMENT"]
    (out / "placement.txt").write_text("\n".join(lines) + "\n")
    return len(lines)


def int8_cases(out: Path, n: int = 8) -> int:
    """Random inverted-residual networks and DenseNets (every other case: pools and dense blocks) with calibrated
    int8 trunks (gazecrop._testing.with_int8_trunk) and uint8 images: ``int8{i}.gzw``, ``int8{i}.in`` (H, W, 3)
    and ``int8{i}.q``, every trunk value's int8 bytes from the exact reference (gazecrop.int8.run_trunk),
    concatenated; one line ``i h w bytes`` per case in int8.txt."""
    from gazecrop import int8
    from gazecrop._testing import inverted_residual_net, student_like, with_int8_trunk

    lines = []
    for i in range(n):
        rng = np.random.default_rng(300 + i)
        if i % 2:
            net = student_like(300 + i, stem=int(rng.integers(3, 12)), blocks=(((5, 7), (3, 9)), ((4, 6),) * 2),
                               readout=(4,), input_long_side=64)
        else:
            net = inverted_residual_net(rng, stages=2, max_channels=19)
        net = with_int8_trunk(net, rng)
        h, w = int(rng.integers(8, 70)), int(rng.integers(8, 70))
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        try:
            q = np.concatenate([v.reshape(-1) for v in int8.run_trunk(net, net.int8, img)])
        except ValueError:  # too small for this network
            continue
        weights.write_weights(out / f"int8{i}.gzw", net)
        img.tofile(out / f"int8{i}.in")
        q.astype(np.int8).tofile(out / f"int8{i}.q")
        lines.append(f"{i} {h} {w} {q.size}")
    (out / "int8.txt").write_text("\n".join(lines) + "\n")
    return len(lines)


def main(outdir: str) -> None:
    out = Path(outdir)
    (out / "seeds").mkdir(parents=True, exist_ok=True)
    lines = []

    def case(name, model, img, ref, mode, bound):
        kind = "u8" if img.dtype == np.uint8 else "f32"
        h, w = img.shape[:2] if kind == "u8" else img.shape[1:]
        img.tofile(out / f"{name}.in")
        np.ascontiguousarray(ref, np.float32).tofile(out / f"{name}.ref")
        lines.append(f"{name} {model} {kind} {h} {w} {ref.shape[0]} {ref.shape[1]} {mode} {bound:.6g}")

    for i, (name, net, hw, k) in enumerate(op_cases()):
        img = np.random.default_rng(i).uniform(0, 255, (3, *hw)).astype(np.float32)
        try:
            ref = reference.run(net, img)
        except ValueError:  # input too small for this network: the pytest suite checks refusals
            continue
        weights.write_weights(out / f"{name}.gzw", net)
        case(name, f"{name}.gzw", img, ref, "abs", tol(k, float(np.max(np.abs(ref)))))
    for i, (name, net, hw) in enumerate(network_cases()):
        img = np.random.default_rng(i).integers(0, 256, (*hw, 3), dtype=np.uint8)
        weights.write_weights(out / "seeds" / f"{name}.gzw", net)  # a fuzz seed even when too small to run
        try:
            ref = reference.run(net, img)
        except ValueError:
            continue
        shutil.copy(out / "seeds" / f"{name}.gzw", out / f"{name}.gzw")
        case(name, f"{name}.gzw", img, ref, "rel", 1e-4)
    for tag, model, golden in GOLDEN:
        shutil.copy(model, out / f"golden_{tag}.gzw")
        shutil.copy(model, out / "seeds" / f"golden_{tag}.gzw")
        with np.load(golden) as z:
            for i in range(len([f for f in z.files if f.startswith("image")])):
                case(f"golden_{tag}{i}", f"golden_{tag}.gzw", z[f"image{i}"], z[f"log_density{i}"], "golden", 1e-3)
    for f in sorted((ROOT / "tests" / "data").glob("*.gzw")):
        shutil.copy(f, out / "seeds" / f.name)
    (out / "manifest.txt").write_text("\n".join(lines) + "\n")
    placements = placement_cases(out)
    n8 = int8_cases(out)
    print(f"aarch64 fixtures: {len(lines)} cases, {placements} crop placements, {n8} int8 trunks, "
          f"{len(list((out / 'seeds').iterdir()))} fuzz seeds in {out}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.split("\n\n")[0])
    main(sys.argv[1])
