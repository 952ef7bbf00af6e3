"""Export MicKey's per-image network (backbone + four heads) to ONNX, with metadata and parity.

The graph maps one image batch to the four per-cell outputs the solver needs::

    image (B, 3, H, W) float32 RGB in [0, 1], H and W multiples of 14 (crop top-left first)
      -> kpts (B, N, 2), depth (B, N), scores (B, N), descriptors (B, N, D),  N = (H/14) * (W/14)

The matcher (a dual softmax over N0 x N1 similarities, a few milliseconds) is not in the graph: it
runs in torch beside the solver, from the temperature and dust-bin score stored in the metadata,
so one exported file serves the cached keyframe and pairs of different sizes.

Dynamic sizes: ``F.interpolate(scale_factor=(g + 0.1) / M)`` (the official DINOv2 position-table
resampling) freezes its scale at the traced size, so exporting it as-is gives a graph that is only
right at the export size. The export swaps in :func:`position_table_for_grid`, the same bicubic
resampling written as two (g, M) weight matrices computed from the input shape, and the heads' sine
table computed in the graph; a test checks both against the torch modules, so one file serves every
input size (and batch size).
"""

from __future__ import annotations

import json
import math
import os
import time
import types
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

import mickey_ros
from mickey_ros.model.attention import PositionEncodingSine, sine_position_table
from mickey_ros.model.mickey import MicKey
from mickey_ros.model.vit import INTERPOLATE_OFFSET, DinoVisionTransformer
from mickey_ros.utils.checks import check_file

ONNX_INPUT = "image"
ONNX_OUTPUTS = ("kpts", "depth", "scores", "descriptors")
OPSET = 18
# the int8 file is for CPUs (ONNX Runtime): opset 20 exports GELU as its one Gelu op, which ran
# 2.5-3.8x faster than opset 18's erf formula (five ops) on the ViT-L MLP here
INT8_OPSET = 20
META = "mickey_ros."  # metadata key prefix
NORMALISATION = "RGB float32 in [0, 1], (B, 3, H, W), no mean/std; H, W cropped top-left to x14"
PARITY_TOLERANCE = 1e-4  # max |onnx - torch| / max |torch| per output
BICUBIC_A = -0.75  # PyTorch's bicubic kernel constant (upsample_bicubic2d)
MAX_SIDE = 4096  # px; upper bound of the dynamic H and W


class ExportError(RuntimeError):
    """The export failed its parity check or cannot be built; the message says which output."""


class OnnxFileError(ExportError, ValueError):
    """A file given as an exported model is not one (empty, not ONNX, or not from mickey_ros)."""


def _size_tensor(n: int) -> Tensor:
    """``n`` as a 0-d float tensor built from a shape, so a traced graph stays dynamic in n."""
    return torch.ones(n).sum()


def _cubic_weights(t: Tensor) -> Tensor:
    """(g,) fractional offsets -> (g, 4) weights of samples floor-1 .. floor+2 (Keys, A = -0.75)."""
    A = BICUBIC_A

    def near(x: Tensor) -> Tensor:  # |x| <= 1
        return ((A + 2) * x - (A + 3)) * x * x + 1

    def far(x: Tensor) -> Tensor:  # 1 < |x| < 2
        return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A

    return torch.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], dim=-1)


def bicubic_matrix(M: int, g: int) -> Tensor:
    """(g, M) matrix of ``F.interpolate(bicubic, scale_factor=(g + 0.1) / M)`` along one axis.

    PyTorch maps output sample i to input ``(i + 0.5) * M / (g + 0.1) - 0.5`` and clamps the four
    taps to [0, M - 1]. The size ``g`` enters only through tensor ops, so a traced graph stays
    right for every g; ``g == M`` gives the identity when both axes are native (see caller).
    """
    out = torch.arange(g, dtype=torch.float32)
    src = (out + 0.5) * (M / (_size_tensor(g) + INTERPOLATE_OFFSET)) - 0.5
    floor = src.floor()
    taps = (floor[:, None].long() + torch.arange(-1, 3)[None]).clamp(0, M - 1)  # (g, 4)
    one_hot = (taps[..., None] == torch.arange(M)).float()  # (g, 4, M)
    return (one_hot * _cubic_weights(src - floor)[..., None]).sum(dim=1)


def position_table_for_grid(pos_embed: Tensor, grid_hw: tuple[int, int]) -> Tensor:
    """``DinoVisionTransformer.pos_embed_for`` in traceable form: (1, 1 + gh*gw, C) fp32.

    Args:
        pos_embed: (1, 1 + M*M, C) stored table, CLS entry first.
        grid_hw: (gh, gw) token grid.
    """
    table = pos_embed.float()
    M = math.isqrt(table.shape[1] - 1)
    gh, gw = grid_hw
    A_h, A_w = bicubic_matrix(M, gh), bicubic_matrix(M, gw)
    # official rule: the stored table is used unchanged on the native square grid
    native = (_size_tensor(gh) == M) & (_size_tensor(gw) == M)
    A_h = torch.where(native, torch.eye(gh, M), A_h)
    A_w = torch.where(native, torch.eye(gw, M), A_w)
    patch = table[0, 1:].reshape(M, M, -1)  # (M, M, C)
    resized = torch.einsum("im,mnc,jn->ijc", A_h, patch, A_w).reshape(1, gh * gw, -1)
    return torch.cat([table[:, :1], resized], dim=1)


def _traceable_pos_embed_for(self: DinoVisionTransformer, grid_hw: tuple[int, int],
                             dtype: torch.dtype) -> Tensor:
    return position_table_for_grid(self.pos_embed, grid_hw).to(dtype)


def _traceable_sine_forward(self: PositionEncodingSine, x: Tensor) -> Tensor:
    return x + sine_position_table(self.d_model, x.shape[2], x.shape[3]).to(x)[None]


@contextmanager
def traceable_position_tables(model: MicKey) -> Iterator[None]:
    """Swap the size-cached position tables for shape-driven ones while exporting."""
    patched = [(m, "pos_embed_for", _traceable_pos_embed_for) for m in model.modules()
               if isinstance(m, DinoVisionTransformer)]
    patched += [(m, "forward", _traceable_sine_forward) for m in model.modules()
                if isinstance(m, PositionEncodingSine)]
    for module, name, fn in patched:
        setattr(module, name, types.MethodType(fn, module))
    try:
        yield
    finally:
        for module, name, _ in patched:
            delattr(module, name)  # back to the class method


class ConvAsMatMul(nn.Module):
    """A stride-1 ``nn.Conv2d`` written as gathered taps times one weight matrix (im2col).

    ONNX Runtime's dynamic quantisation turns a MatMul with a constant weight into its fast int8
    kernel but a Conv into ConvInteger, 3.7x slower than the fp32 Conv on this machine
    (docs/performance.md); written as a MatMul, the heads' convolutions get the int8 kernel too.
    The taps are gathered channels-last, so no tap matrix is transposed.
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        kh, kw = conv.kernel_size
        self.taps = [(i * conv.dilation[0], j * conv.dilation[1])
                     for i in range(kh) for j in range(kw)]
        self.pad = (0, 0, conv.padding[1], conv.padding[1], conv.padding[0], conv.padding[0])
        # (C_out, C_in, kh, kw) -> (kh * kw * C_in, C_out), rows in tap-major order like the taps
        self.register_buffer("weight", conv.weight.detach().permute(2, 3, 1, 0)
                             .reshape(-1, conv.out_channels).contiguous())
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> (B, C_out, H, W) (the convolution's zero padding keeps H, W)."""
        H, W = x.shape[-2:]
        x = x.permute(0, 2, 3, 1)
        if len(self.taps) > 1:
            x = nn.functional.pad(x, self.pad)
            x = torch.cat([x[:, i: i + H, j: j + W] for i, j in self.taps], dim=-1)
        out = x @ self.weight
        if self.bias is not None:
            out = out + self.bias
        return out.permute(0, 3, 1, 2)


def _matmul_friendly(conv: nn.Conv2d) -> bool:
    """Stride 1, one group, numeric padding that keeps the size: ``ConvAsMatMul`` computes it."""
    kh, kw = conv.kernel_size
    keeps_size = all(isinstance(p, int) and 2 * p == d * (k - 1)
                     for p, d, k in zip(conv.padding, conv.dilation, (kh, kw)))
    return conv.stride == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros" \
        and keeps_size


@contextmanager
def convolutions_as_matmuls(model: nn.Module) -> Iterator[int]:
    """Swap every stride-1 convolution of ``model`` for a :class:`ConvAsMatMul` while exporting.

    Yields the number swapped; the original modules are back afterwards.
    """
    swapped = [(parent, name, child) for parent in model.modules()
               for name, child in parent.named_children()
               if isinstance(child, nn.Conv2d) and _matmul_friendly(child)]
    for parent, name, child in swapped:
        setattr(parent, name, ConvAsMatMul(child))
    try:
        yield len(swapped)
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)


class FeatureGraph(nn.Module):
    """The exported function: image -> (kpts, depth, scores, descriptors), fp32."""

    def __init__(self, model: MicKey) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(B, 3, H, W) float [0, 1], H and W multiples of 14 -> the four ``ONNX_OUTPUTS``."""
        feats = self.model.decode(self.model.backbone(image).float())
        return feats.kpts, feats.depth, feats.scores, feats.descriptors


@dataclass(frozen=True)
class ExportResult:
    """What ``export_onnx`` wrote and how well the file matches torch."""

    path: Path
    size_wh: tuple[int, int]  # the export (and first parity) size
    dynamic: bool
    parity: dict[str, dict[str, float]]  # "WxH" -> output name -> max |diff| / max |torch|
    export_s: float


def metadata_for(model: MicKey, size_wh: tuple[int, int], dynamic: bool,
                 source: str, convs_as_matmuls: bool = False) -> dict[str, str]:
    """The metadata a loader needs, as ONNX ``metadata_props`` (all strings)."""
    m = model.config.matcher
    return {
        META + "version": mickey_ros.__version__,
        META + "model_name": model.config.name,
        META + "model_config": json.dumps(model.config.to_dict()),
        META + "source": source,
        META + "input_size": f"{size_wh[0]}x{size_wh[1]}",
        META + "dynamic_size": json.dumps(dynamic),
        META + "normalisation": NORMALISATION,
        META + "patch_size": str(model.config.backbone.patch_size),
        META + "descriptor_dim": str(model.config.heads.blocks_dim[2]),
        META + "matcher": json.dumps({"temperature": m.temperature, "use_dustbin": m.use_dustbin,
                                      "dustbin_score": model.matcher.dustbin_score.item()}),
        META + "outputs": ",".join(ONNX_OUTPUTS),
        META + "convs_as_matmuls": json.dumps(convs_as_matmuls),
    }


def read_metadata(path: str | Path) -> dict[str, str]:
    """The ``mickey_ros.*`` metadata of an exported file (prefix stripped).

    Raises:
        FileNotFoundError: no such file.
        OnnxFileError: empty, not ONNX, or without our metadata (one line naming the fix).
    """
    import onnx
    from google.protobuf.message import DecodeError

    path = check_file(path, "ONNX file", (".onnx",))
    fix = "write one with `mickey-ros export --out FILE.onnx`"
    if path.stat().st_size == 0:
        raise OnnxFileError(f"{path} is empty, not an exported model; {fix}")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except DecodeError:
        raise OnnxFileError(f"{path} is not an ONNX file (it does not parse); {fix}") from None
    found = {p.key[len(META):]: p.value for p in proto.metadata_props if p.key.startswith(META)}
    if "model_config" not in found:
        raise OnnxFileError(f"{path} has no mickey_ros metadata; {fix}")
    return found


def relative_errors(expected: tuple[Tensor, ...], got: tuple[Tensor, ...]) -> dict[str, float]:
    """Per output: max |got - expected| / max |expected| (the issue's 'of scale' measure)."""
    errors = {}
    for name, e, g in zip(ONNX_OUTPUTS, expected, got):
        e, g = e.detach().float(), g.detach().float()
        errors[name] = float((g - e).abs().max() / e.abs().max().clamp_min(1e-30))
    return errors


def parity_check(model: MicKey, path: str | Path, sizes_wh: list[tuple[int, int]],
                 batch: int = 2, seed: int = 0) -> dict[str, dict[str, float]]:
    """Run the file with ONNX Runtime (CPU) and torch on seeded random images; relative errors."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(seed)
    graph = FeatureGraph(model).eval()
    report = {}
    for W, H in sizes_wh:
        image = torch.rand(batch, 3, H, W, generator=generator)
        with torch.inference_mode():
            expected = graph(image)
        got = session.run(list(ONNX_OUTPUTS), {ONNX_INPUT: image.numpy()})
        report[f"{W}x{H}"] = relative_errors(expected, tuple(torch.from_numpy(g) for g in got))
    return report


def _check_size(model: MicKey, size_wh: tuple[int, int]) -> None:
    p, min_side = model.config.backbone.patch_size, model.config.min_input_side
    W, H = size_wh
    if W % p or H % p or min(W, H) < min_side or max(W, H) > MAX_SIDE:
        raise ValueError(f"export size {W}x{H} must be multiples of {p} px between "
                         f"{min_side} and {MAX_SIDE} per side (e.g. 532x714 for "
                         "Map-free's 540x720 after the top-left crop)")


def export_onnx(model: MicKey, path: str | Path, size_wh: tuple[int, int], dynamic: bool = True,
                parity_sizes_wh: list[tuple[int, int]] | None = None, source: str = "",
                tolerance: float = PARITY_TOLERANCE, convs_as_matmuls: bool = False,
                opset: int = OPSET) -> ExportResult:
    """Write ``model``'s per-image network to ``path`` (fp32) and check it against torch.

    Args:
        model: the network; its backbone is cast to fp32 for the export (kept afterwards).
        path: output ``.onnx`` file (weights over 1.8 GB go to ``<path>.data`` beside it).
        size_wh: (W, H) example input size, multiples of the patch size.
        dynamic: batch, H and W symbolic (one file for every size); False fixes all three.
        parity_sizes_wh: sizes of the parity check; default the export size, plus a second size
            for a dynamic export.
        source: the checkpoint or config name, stored in the metadata.
        tolerance: largest accepted relative error per output.
        convs_as_matmuls: the stride-1 convolutions written as MatMuls (``ConvAsMatMul``): the
            same function, for a file that ``quantize_linear_layers`` quantises whole.
        opset: ONNX opset (18 runs on every runtime the backends support, TensorRT included).

    Returns:
        The written path, parity figures and export time.

    Raises:
        ExportError: when an output differs from torch by more than ``tolerance``.
    """
    _check_size(model, size_wh)
    model = model.eval()
    model.set_backbone_precision("fp32")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    W, H = size_wh
    p = model.config.backbone.patch_size
    example = torch.rand(2, 3, H, W)  # batch 2: a traced batch of 1 would be frozen at 1
    dynamic_shapes = None
    if dynamic:
        rows = torch.export.Dim("rows", min=2 * model.config.heads.border_cells + 1,
                                max=MAX_SIDE // p)
        cols = torch.export.Dim("cols", min=2 * model.config.heads.border_cells + 1,
                                max=MAX_SIDE // p)
        dynamic_shapes = {"image": {0: torch.export.Dim("batch", min=1, max=1024),
                                    2: p * rows, 3: p * cols}}
    start = time.perf_counter()
    with (torch.inference_mode(False), torch.no_grad(), traceable_position_tables(model),
          convolutions_as_matmuls(model) if convs_as_matmuls else nullcontext()):
        program = torch.onnx.export(
            FeatureGraph(model).eval(), (example,), input_names=[ONNX_INPUT],
            output_names=list(ONNX_OUTPUTS), opset_version=opset, dynamo=True,
            dynamic_shapes=dynamic_shapes, verbose=False,
        )
    program.model.metadata_props.update(
        metadata_for(model, size_wh, dynamic, source, convs_as_matmuls))
    weight_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    program.save(str(path), external_data=weight_bytes > 1.8e9)
    export_s = time.perf_counter() - start
    if parity_sizes_wh is None:
        parity_sizes_wh = [size_wh] + ([(W + 2 * p, H + p)] if dynamic else [])
    parity = parity_check(model, path, parity_sizes_wh)
    for size, errors in parity.items():
        bad = {k: v for k, v in errors.items() if not v <= tolerance}
        if bad:
            raise ExportError(f"{path} differs from torch at {size}: {bad} (relative, tolerance "
                              f"{tolerance}); report this with the model config and torch/onnx "
                              "versions")
    return ExportResult(path, size_wh, dynamic, parity, export_s)


def quantize_linear_layers(src: str | Path, dst: str | Path) -> Path:
    """Dynamically quantised copy of an exported file: int8 weights of its MatMuls with a weight.

    ONNX Runtime's dynamic quantisation (per-tensor int8 weights, activations quantised per
    call) of every MatMul/Gemm with a constant weight: the linear layers, and the heads'
    convolutions in a file exported with ``convs_as_matmuls`` (``export_int8``); attention
    products, the patch embedding and the position tables stay fp32. The metadata is kept.
    Measure the effect on the outputs (``parity_check``) before deploying it: the issue-16
    tolerance does not apply to it.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dst = Path(dst)
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8,
                     op_types_to_quantize=["MatMul", "Gemm"],
                     extra_options={"MatMulConstBOnly": True})
    return dst


def export_int8(model: MicKey, path: str | Path, size_wh: tuple[int, int], dynamic: bool = True,
                source: str = "") -> Path:
    """Write the int8 file of ``model`` to ``path``, for ONNX Runtime on CPUs.

    An fp32 export with the convolutions as MatMuls, at opset ``INT8_OPSET`` (one Gelu op),
    parity-checked against torch at ``size_wh``, then quantised by ``quantize_linear_layers``;
    the fp32 intermediate is deleted.
    """
    path = Path(path)
    fp32 = path.with_name(f".{path.stem}.fp32-{os.getpid()}.onnx")
    int8 = path.with_name(f".{path.stem}.int8-{os.getpid()}.onnx")
    try:
        export_onnx(model, fp32, size_wh, dynamic, parity_sizes_wh=[size_wh], source=source,
                    convs_as_matmuls=True, opset=INT8_OPSET)
        os.replace(quantize_linear_layers(fp32, int8), path)  # complete or absent
        return path
    finally:
        for leftover in [*path.parent.glob(fp32.name + "*"), int8]:  # external data, if any
            leftover.unlink(missing_ok=True)
