"""Feature backends of the estimator: what runs the per-image network and the matcher.

``torch`` (default) runs the ``MicKey`` module, optionally under fp16/bf16 autocast and
``torch.compile``. ``onnxruntime`` runs a file written by :mod:`mickey_ros.estimator.export` with
the CPU or CUDA execution provider; ``tensorrt`` is the same file through ONNX Runtime's TensorRT
execution provider (fp16 engines with ``precision='fp16'``). Every backend returns the same
``MicKeyFeatures`` (fp32, on the estimator's device) and matches in torch, so the cached keyframe
and the solver do not depend on the backend.

Each speed path is a flag with the plain path as reference (``test/unit/estimator``): a path that
needs hardware this machine lacks refuses with one line naming what to install or change.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from mickey_ros.estimator.export import (
    ONNX_INPUT,
    ONNX_OUTPUTS,
    export_onnx,
    read_metadata,
)
from mickey_ros.model.config import MickeyConfig
from mickey_ros.model.matching import DualSoftmaxMatcher, correspondence_probabilities
from mickey_ros.model.mickey import PRECISION_DTYPES, MicKey, MicKeyFeatures
from mickey_ros.utils.images import crop_to_multiple

BACKENDS = ("torch", "onnxruntime", "tensorrt")
AUTOCAST = ("", "fp16", "bf16")  # '' = off
# EstimatorConfig fields of the backend and speed paths (same names in BenchConfig, the CLI
# flags and the node's model.* parameters)
SPEED_FIELDS = ("backend", "onnx_path", "autocast", "compile", "io_binding", "pin_memory",
                "threads")
ORT_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
                 "tensorrt": "TensorrtExecutionProvider"}

Timer = Callable[[str], AbstractContextManager]  # timer(stage) times the block under ``stage``


class FeatureBackend(Protocol):
    """Backbone + heads on an image batch, and the matcher; used by ``RelativePoseEstimator``."""

    name: str

    def extract(self, images: Tensor, timer: Timer) -> MicKeyFeatures:
        """(B, 3, H, W) float [0, 1] on the device -> fp32 features on the device."""

    def match(self, ref: MicKeyFeatures, query: MicKeyFeatures) -> Tensor:
        """Correspondence probabilities (B, N0, N1)."""


def features_from_outputs(kpts: Tensor, depth: Tensor, scores: Tensor, descriptors: Tensor,
                          grid_hw: tuple[int, int]) -> MicKeyFeatures:
    """The four per-cell outputs (any float dtype) -> fp32 ``MicKeyFeatures`` with maps.

    Args:
        kpts: (B, N, 2) pixels, N = h * w.
        depth: (B, N) metres.
        scores: (B, N) keypoint probabilities.
        descriptors: (B, N, D).
        grid_hw: (h, w).
    """
    B, (h, w) = kpts.shape[0], grid_hw
    depth, scores = depth.float(), scores.float()
    return MicKeyFeatures(kpts=kpts.float(), depth=depth, scores=scores,
                          descriptors=descriptors.float(), grid_hw=(h, w),
                          depth_map=depth.reshape(B, h, w), score_map=scores.reshape(B, h, w))


class TorchBackend:
    """The ``MicKey`` module; ``autocast`` ('fp16'/'bf16') wraps backbone and heads."""

    name = "torch"

    def __init__(self, model: MicKey, device: torch.device, autocast: str = "",
                 compile: bool = False) -> None:
        if autocast not in AUTOCAST:
            raise ValueError(f"autocast must be one of {AUTOCAST} ('' = off), got {autocast!r}")
        self.model, self.device, self.autocast = model, device, autocast
        # compiled per input shape (static): a deployment sees one or two shapes
        self._encode = torch.compile(model.encode) if compile else model.encode
        self._decode = torch.compile(model.decode) if compile else model.decode

    def _autocast(self) -> AbstractContextManager:
        if not self.autocast:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=PRECISION_DTYPES[self.autocast])

    def extract(self, images: Tensor, timer: Timer) -> MicKeyFeatures:
        """(B, 3, H, W) -> features; autocast outputs are cast back to fp32 for the solver."""
        with timer("backbone"), self._autocast():
            feature_map = self._encode(images)
        with timer("heads"), self._autocast():
            feats = self._decode(feature_map)
        if not self.autocast:
            return feats
        return features_from_outputs(feats.kpts, feats.depth, feats.scores, feats.descriptors,
                                     feats.grid_hw)

    def match(self, ref: MicKeyFeatures, query: MicKeyFeatures) -> Tensor:
        """``MicKey.match``."""
        return self.model.match(ref, query)


def ort_providers(backend: str, device: torch.device, precision: str,
                  available: list[str]) -> list[Any]:
    """ONNX Runtime provider list for ``backend`` on ``device``, or a ValueError saying why not.

    Args:
        backend: 'onnxruntime' or 'tensorrt'.
        device: the estimator's device (cpu or cuda[:i]).
        precision: 'fp32'; 'fp16' only with 'tensorrt' (fp16 engines from the fp32 file).
        available: ``onnxruntime.get_available_providers()``.
    """
    if precision == "bf16" or (precision == "fp16" and backend != "tensorrt"):
        raise ValueError(f"backend {backend!r} runs the fp32 graph: precision {precision!r} needs "
                         "backend 'tensorrt' (fp16) or 'torch' (fp16/bf16); set precision 'fp32'")
    if backend == "onnxruntime" and device.type == "cpu":
        return [ORT_PROVIDERS["cpu"]]
    wanted = ORT_PROVIDERS["tensorrt" if backend == "tensorrt" else "cuda"]
    if device.type != "cuda" or wanted not in available:
        raise ValueError(
            f"backend {backend!r} on device {str(device)!r} needs ONNX Runtime's {wanted}, but "
            f"this onnxruntime has {available}; install onnxruntime-gpu (TensorRT: its TensorRT "
            "build, e.g. JetPack's wheel) and use a cuda device, or use backend 'torch'"
        )
    cuda = (ORT_PROVIDERS["cuda"], {"device_id": device.index or 0})
    if backend == "onnxruntime":
        return [cuda]
    trt = {"device_id": device.index or 0, "trt_fp16_enable": precision == "fp16",
           "trt_engine_cache_enable": True,
           "trt_engine_cache_path": str(Path(tempfile.gettempdir()) / "mickey_ros_trt")}
    return [(wanted, trt), cuda]


def import_onnxruntime() -> Any:
    """``onnxruntime``, or an ImportError saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise ImportError("the ONNX backends need onnxruntime: pip install 'mickey_ros[onnx]' "
                          "(onnxruntime-gpu for CUDA/TensorRT), or use backend 'torch'") from None
    return onnxruntime


class OnnxRuntimeBackend:
    """An exported file run by ONNX Runtime; the matcher comes from the file's metadata.

    ``io_binding`` binds the input and output tensors in place (outputs are written straight into
    torch tensors on the device: no host round trip on CUDA, no copy on CPU).
    """

    def __init__(self, path: str | Path, device: torch.device, backend: str = "onnxruntime",
                 precision: str = "fp32", io_binding: bool = False) -> None:
        ort = import_onnxruntime()
        self.name, self.device, self.io_binding = backend, device, io_binding
        self.metadata = read_metadata(path)
        self.model_config = MickeyConfig.from_dict(json.loads(self.metadata["model_config"]))
        self.patch_size = int(self.metadata["patch_size"])
        self.descriptor_dim = int(self.metadata["descriptor_dim"])
        options = ort.SessionOptions()
        # the estimator's thread setting (EstimatorConfig.threads), applied to torch before this
        options.intra_op_num_threads = torch.get_num_threads()
        providers = ort_providers(backend, device, precision, ort.get_available_providers())
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        matcher = json.loads(self.metadata["matcher"])
        self.matcher = DualSoftmaxMatcher(matcher["temperature"], matcher["use_dustbin"],
                                          matcher["dustbin_score"]).to(device)

    def _output_shapes(self, B: int, N: int) -> dict[str, tuple[int, ...]]:
        return {"kpts": (B, N, 2), "depth": (B, N), "scores": (B, N),
                "descriptors": (B, N, self.descriptor_dim)}

    def _run_bound(self, image: Tensor, N: int) -> list[Tensor]:
        kind, index = self.device.type, self.device.index or 0
        binding = self.session.io_binding()
        binding.bind_input(ONNX_INPUT, kind, index, np.float32, tuple(image.shape),
                           image.data_ptr())
        outputs = []
        for name, shape in self._output_shapes(image.shape[0], N).items():
            out = torch.empty(shape, dtype=torch.float32, device=self.device)
            binding.bind_output(name, kind, index, np.float32, shape, out.data_ptr())
            outputs.append(out)
        self.session.run_with_iobinding(binding)
        return outputs

    def _run_host(self, image: Tensor) -> list[Tensor]:
        outs = self.session.run(list(ONNX_OUTPUTS), {ONNX_INPUT: image.cpu().numpy()})
        return [torch.from_numpy(o).to(self.device) for o in outs]

    def extract(self, images: Tensor, timer: Timer) -> MicKeyFeatures:
        """(B, 3, H, W) -> features; one graph, timed as the stage ``network``."""
        image = crop_to_multiple(images, self.patch_size).float().contiguous()
        h, w = image.shape[-2] // self.patch_size, image.shape[-1] // self.patch_size
        with timer("network"):
            outs = self._run_bound(image, h * w) if self.io_binding else self._run_host(image)
        return features_from_outputs(*outs, grid_hw=(h, w))

    def match(self, ref: MicKeyFeatures, query: MicKeyFeatures) -> Tensor:
        """Dual softmax x keypoint scores, in torch (same code as ``MicKey.match``)."""
        match_probs = self.matcher(ref.descriptors, query.descriptors)
        return correspondence_probabilities(match_probs, ref.scores, query.scores)


def export_for_backend(model: MicKey, size_wh: tuple[int, int], directory: Path) -> Path:
    """Export ``model`` (dynamic sizes, parity-checked) into ``directory`` for a session."""
    p = model.config.backbone.patch_size
    W, H = (max(s - s % p, model.config.min_input_side) for s in size_wh)
    return export_onnx(model, directory / f"{model.config.name}.onnx", (W, H),
                       source=model.config.name).path


def build_backend(model: MicKey | None, device: torch.device, backend: str, precision: str,
                  onnx_path: str | None, size_wh: tuple[int, int], autocast: str = "",
                  compile: bool = False, io_binding: bool = False) -> FeatureBackend:
    """The backend an ``EstimatorConfig`` names (see ``EstimatorConfig`` for the fields).

    Without ``onnx_path`` an ONNX backend exports ``model`` first (seconds for the small models,
    minutes for ViT-L: export once with ``mickey-ros export`` and pass the file instead).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch":
        if model is None:
            raise ValueError("backend 'torch' needs a checkpoint or model config, not only an "
                             "ONNX file; set backend 'onnxruntime' to run the file")
        if io_binding:
            raise ValueError("io_binding is an ONNX-backend path (the torch backend keeps its "
                             "tensors on the device already): unset it or pick onnxruntime")
        return TorchBackend(model, device, autocast, compile)
    if autocast or compile:
        raise ValueError(f"autocast and compile are torch-backend paths; backend {backend!r} "
                         "takes precision ('fp16' with 'tensorrt') instead: unset them")
    # refuse an impossible provider/precision before a minutes-long export
    ort_providers(backend, device, precision, import_onnxruntime().get_available_providers())
    if onnx_path:
        return OnnxRuntimeBackend(onnx_path, device, backend, precision, io_binding)
    if model is None:
        raise ValueError(f"backend {backend!r} needs onnx_path or a model to export")
    with tempfile.TemporaryDirectory(prefix="mickey_ros_onnx_") as tmp:
        path = export_for_backend(model.cpu(), size_wh, Path(tmp))
        return OnnxRuntimeBackend(path, device, backend, precision, io_binding)
