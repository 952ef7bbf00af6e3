"""``RelativePoseEstimator``: the one API every front-end uses (CLI, node, replay, evaluation).

Owns a MicKey network, a device, a backbone precision and the pose solver; caches the reference
keyframe's features so each live frame costs one backbone pass; reports per-stage timings. The
network runs on a backend (``backends.py``: torch, ONNX Runtime or TensorRT); matching, the solver
and the cache are the same for all.

Convention:
    ``estimate(query)`` returns ``T_query_ref`` (``X_query = R X_ref + t``, metres), the same as
    MicKey's output and Map-free's world-to-camera pose with the reference as world.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mickey_ros.estimator.backends import build_backend
from mickey_ros.estimator.export import read_metadata
from mickey_ros.estimator.result import PoseEstimate
from mickey_ros.estimator.runtime import apply_threads, logger, resolve_run_settings
from mickey_ros.geometry.camera import backproject
from mickey_ros.geometry.ransac import PoseSolution, SolverConfig, solve_pose
from mickey_ros.model.checkpoint import DEMO_CHECKPOINT, DEMO_NAME, load_checkpoint
from mickey_ros.model.config import MickeyConfig
from mickey_ros.model.mickey import MicKey, MicKeyFeatures
from mickey_ros.utils.images import (
    check_network_input,
    check_rgb_image,
    resize_with_intrinsics,
    to_tensor,
)

DEMO_MODEL_NOTE = "demo model: for trying the tool, not for real use"
PRECISIONS = ("fp32", "fp16", "bf16", "auto")  # auto: estimator/runtime.py choose_precision
EXPORT_SIZE_WH = (224, 168)  # example size of an export at start-up (the graph is dynamic)
ASPECT_TOLERANCE = 0.01  # relative: 1920x1080 vs 1918x1080 is the same camera, 4:3 vs 16:9 not


def aspect_differs(a_wh: tuple[int, int], b_wh: tuple[int, int]) -> bool:
    """Whether two (W, H) sizes have another aspect ratio (beyond ``ASPECT_TOLERANCE``)."""
    return abs(a_wh[0] * b_wh[1] / (a_wh[1] * b_wh[0]) - 1) > ASPECT_TOLERANCE


def check_torch_device(device: str, name: str = "device") -> torch.device:
    """``device`` as a ``torch.device`` if this torch can use it, else a ValueError naming the fix.

    Args:
        device: 'cpu', 'cuda', 'cuda:1', ...
        name: how the message names the setting: ``'device'`` (Python) or a CLI flag
            (``'--device'``), spelled as the user would write it.
    """
    said = (lambda v: f"{name} {v}") if name.startswith("-") else (lambda v: f"{name}={v!r}")
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise ValueError(f"{said(device)} is not a torch device; use cpu, cuda or cuda:1"
                         ) from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{said(device)} but torch {torch.__version__} sees no CUDA GPU; "
                             f"pass {said('cpu')}, or install the torch build for your GPU")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(f"{said(device)} but torch sees {torch.cuda.device_count()} "
                             "CUDA GPU(s); pick one of them")
    elif parsed.type != "cpu":
        raise ValueError(f"{said(device)} is not supported; use cpu or cuda[:N]")
    return parsed


def model_label(checkpoint: str | Path | None) -> str:
    """How every output names the weights a pose came from (CLI, replay, eval, node log).

    The checkpoint's file name; for the bundled demo model (``None`` or ``'demo'``) with the note
    that it is not for real use.
    """
    if checkpoint is None or str(checkpoint) == DEMO_NAME or (
        Path(checkpoint).resolve() == DEMO_CHECKPOINT.resolve()
    ):
        return f"{DEMO_CHECKPOINT.name} ({DEMO_MODEL_NOTE})"
    return Path(checkpoint).name


def onnx_model_label(onnx_path: str | Path, metadata: dict[str, str]) -> str:
    """An exported file's label: its name and the weights it came from (demo note kept)."""
    source = metadata.get("source", "")
    if source == DEMO_CHECKPOINT.name:  # files exported before the label was stored
        source = model_label(DEMO_NAME)
    return f"{Path(onnx_path).name}, exported from {source}" if source else Path(onnx_path).name


@dataclass(frozen=True)
class EstimatorConfig:
    """Run-time settings of the estimator (the model architecture lives in ``MickeyConfig``)."""

    device: str = "cpu"  # 'cpu', 'cuda', 'cuda:1', ...
    precision: str = "fp32"  # backbone; official GPU inference used 'fp16'; 'auto': see runtime.py
    threads: int = 0  # torch and ONNX Runtime CPU threads (process-wide); 0 = auto (runtime.py)
    resize: tuple[int, int] | None = None  # (W, H) network input size; None keeps the image size
    seed: int = 0  # solver seed: the same inputs and seed give the same pose
    cache_reference: bool = True  # speed trick: reuse the keyframe's features across frames
    keep_matches: bool = False  # attach inlier keypoints and depth maps for visualisation
    solver: SolverConfig = field(default_factory=SolverConfig)
    # speed paths (docs/deployment.md); each is compared with the plain path in
    # test/unit/estimator/test_backends.py
    backend: str = "torch"  # 'torch' | 'onnxruntime' (CPU/CUDA EP) | 'tensorrt' (ORT TensorRT EP)
    onnx_path: str = ""  # file from `mickey-ros export` for the ONNX backends; '' exports at start
    autocast: str = ""  # torch backend: '' (off), 'fp16' or 'bf16' autocast of backbone + heads
    compile: bool = False  # torch backend: torch.compile backbone and heads (per input shape)
    pin_memory: bool = False  # CUDA only: copy the live image from pinned memory, asynchronously
    io_binding: bool = False  # ONNX backends: outputs written in place into device tensors


@dataclass
class _Prepared:
    """One image ready for the network: tensor, K of the network input, resize factors."""

    image: Tensor  # (3, H, W) float [0, 1] on the device
    K: Tensor  # (3, 3) float32 on the device, for the network-input image
    scale_xy: tuple[float, float]  # network-input px per original px


@dataclass
class ImageFeatures:
    """One image's network outputs: all ``estimate_against`` needs (the image is not kept)."""

    K: Tensor  # (3, 3) float32 of the network-input image
    scale_xy: tuple[float, float]  # network-input px per original px
    feats: MicKeyFeatures  # batch 1, on the device
    timings_ms: dict[str, float] = field(default_factory=dict)  # of the extraction


def _check_intrinsics(K: np.ndarray, name: str) -> np.ndarray:
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f"{name} must be a (3, 3) intrinsics matrix, got shape {K.shape}")
    if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(
            f"{name} needs finite values and positive fx, fy (got fx={K[0, 0]}, fy={K[1, 1]}); "
            "check the camera calibration / CameraInfo.k"
        )
    return K


def _stack_features(feats: MicKeyFeatures, batch: int) -> MicKeyFeatures:
    """Expand batch-1 features (the cached keyframe) to ``batch`` without copying memory."""
    values = {}
    for f in dataclasses.fields(feats):
        value = getattr(feats, f.name)
        if isinstance(value, Tensor) and value.shape[:1] == (1,):
            value = value.expand(batch, *value.shape[1:])
        values[f.name] = value
    return type(feats)(**values)


class RelativePoseEstimator:
    """Metric relative pose of query images with respect to a reference keyframe.

    Example:
        >>> from mickey_ros.model.config import mickey_tiny
        >>> est = RelativePoseEstimator.from_model_config(mickey_tiny())
        >>> rgb = np.zeros((168, 224, 3), np.uint8)
        >>> K = np.array([[200.0, 0, 112], [0, 200, 84], [0, 0, 1]])
        >>> est.set_reference(rgb, K)
        >>> est.estimate(rgb, K).R.shape
        (3, 3)
    """

    def __init__(
        self, model: MicKey, config: EstimatorConfig = EstimatorConfig(), model_name: str = ""
    ) -> None:
        if config.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {config.precision!r}")
        self.device = check_torch_device(config.device)
        # 'auto' precision and threads=0 become the measured choice (runtime.py), kept in config
        self.run_settings = resolve_run_settings(
            config.threads, config.precision, config.autocast, self.device, config.backend,
            sum(p.numel() for p in model.parameters()))
        apply_threads(self.run_settings.threads)
        logger.info("estimator runs with %s", self.run_settings.note)
        config = dataclasses.replace(config, threads=self.run_settings.threads,
                                     precision=self.run_settings.precision,
                                     autocast=self.run_settings.autocast)
        self.config = config
        # what every output names as the source of a pose (file name, demo note, random weights)
        self.model_name = model_name or "MicKey (weights of unknown origin)"
        self.model = model.eval()
        if config.backend == "torch":
            self.model.to(self.device).set_backbone_precision(config.precision)
        size_wh = config.resize or EXPORT_SIZE_WH
        self.backend = build_backend(
            self.model, self.device, config.backend, config.precision, config.onnx_path, size_wh,
            config.autocast, config.compile, config.io_binding,
        )
        if config.backend != "torch":
            with torch.device("meta"):  # the session holds the weights; keep the architecture
                self.model = MicKey(model.config)
        self._pin_memory = config.pin_memory and self.device.type == "cuda"
        if config.pin_memory and not self._pin_memory:
            warnings.warn(f"pin_memory needs a CUDA device, not {config.device!r}: the live image "
                          "is copied as usual (set pin_memory False to silence this)", stacklevel=2)
        self._reference: tuple[_Prepared, MicKeyFeatures | None] | None = None

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | Path,
        dinov2_weights: str | Path | None = None,
        config: EstimatorConfig = EstimatorConfig(),
        model_config: MickeyConfig | None = None,
    ) -> RelativePoseEstimator:
        """Load an official ``mickey.ckpt`` (+ DINOv2 weight file), one of ours, or ``'demo'``."""
        model, _ = load_checkpoint(checkpoint, dinov2_weights, model_config=model_config)
        return cls(model, config, model_label(checkpoint))

    @classmethod
    def from_model_config(
        cls, model_config: MickeyConfig, config: EstimatorConfig = EstimatorConfig()
    ) -> RelativePoseEstimator:
        """A randomly initialised network (tests, benchmarks, launch tests)."""
        torch.manual_seed(config.seed)
        name = f"{model_config.name} (RANDOM weights: poses are meaningless)"
        return cls(MicKey(model_config), config, name)

    @classmethod
    def from_onnx(
        cls, onnx_path: str | Path, config: EstimatorConfig = EstimatorConfig(backend="onnxruntime")
    ) -> RelativePoseEstimator:
        """Only an exported file (``mickey-ros export``): no checkpoint, no torch weights."""
        if config.backend == "torch":
            raise ValueError("from_onnx needs EstimatorConfig.backend 'onnxruntime' or 'tensorrt'")
        metadata = read_metadata(onnx_path)
        model_config = MickeyConfig.from_dict(json.loads(metadata["model_config"]))
        with torch.device("meta"):  # architecture only: the weights live in the file
            model = MicKey(model_config)
        config = dataclasses.replace(config, onnx_path=str(onnx_path))
        return cls(model, config, onnx_model_label(onnx_path, metadata))

    @classmethod
    def from_demo(cls, config: EstimatorConfig = EstimatorConfig()) -> RelativePoseEstimator:
        """The small model bundled with the package; the same as ``from_checkpoint('demo')``."""
        return cls.from_checkpoint(DEMO_NAME, config=config)

    # ----------------------------------------------------------------- helpers
    @contextmanager
    def _timed(self, timings: dict[str, float], stage: str) -> Iterator[None]:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        yield
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        timings[stage] = timings.get(stage, 0.0) + (time.perf_counter() - start) * 1e3

    def _prepare(self, image: np.ndarray, K: np.ndarray, name: str) -> _Prepared:
        check_rgb_image(image, name)
        K = _check_intrinsics(K, f"K of {name}")
        resized, K_net = resize_with_intrinsics(image, K, self.config.resize)
        if self.config.resize and aspect_differs(self.config.resize, image.shape[1::-1]):
            W, (h, w) = self.config.resize[0], image.shape[:2]
            warnings.warn(f"network input {W}x{self.config.resize[1]} (resize, --size) changes "
                          f"the aspect of the {name} ({w}x{h}): it is stretched, and the poses "
                          f"with it; {W}x{round(W * h / w)} keeps it", stacklevel=3)
        min_side = self.model.config.min_input_side
        check_network_input(resized.shape[1], resized.shape[0], min_side, name)
        tensor = to_tensor(resized)
        if self._pin_memory:  # lets the copy below run asynchronously
            tensor = tensor.pin_memory()
        tensor = tensor.to(self.device, non_blocking=True)
        scale = (resized.shape[1] / image.shape[1], resized.shape[0] / image.shape[0])
        return _Prepared(
            tensor, torch.as_tensor(K_net, dtype=torch.float32, device=self.device), scale
        )

    def _extract(self, images: list[Tensor], timings: dict[str, float]) -> MicKeyFeatures:
        batch = torch.stack(images)  # (B, 3, H, W)
        return self.backend.extract(batch, lambda stage: self._timed(timings, stage))

    def _generator(self) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(self.config.seed)

    # ----------------------------------------------------------------- reference
    def set_reference(self, image: np.ndarray, K: np.ndarray) -> None:
        """Set the keyframe (RGB uint8 (H, W, 3), K (3, 3)); its features are cached."""
        prepared = self._prepare(image, K, "reference image")
        feats = None
        if self.config.cache_reference:
            with torch.inference_mode():
                feats = self._extract([prepared.image], {})
        self._reference = (prepared, feats)

    def clear_reference(self) -> None:
        """Forget the keyframe (e.g. after a clock jump)."""
        self._reference = None

    @property
    def has_reference(self) -> bool:
        """Whether a keyframe is set."""
        return self._reference is not None

    # ----------------------------------------------------------------- estimation
    def estimate(self, image: np.ndarray, K: np.ndarray) -> PoseEstimate:
        """Pose of one query image relative to the keyframe; invalid (with reason) if none set."""
        return self.estimate_batch([image], [K])[0]

    def estimate_batch(self, images: list[np.ndarray], Ks: list[np.ndarray]) -> list[PoseEstimate]:
        """Poses of several query images (batched on the device; images of one size per batch)."""
        if len(images) != len(Ks):
            raise ValueError(f"got {len(images)} images but {len(Ks)} intrinsics")
        if self._reference is None:
            reason = "no reference keyframe set: call set_reference() (or publish reference/image)"
            return [PoseEstimate.invalid(reason) for _ in images]
        timings: dict[str, float] = {}
        with self._timed(timings, "preprocess"):
            queries = [
                self._prepare(im, K, f"query image {i}")
                for i, (im, K) in enumerate(zip(images, Ks))
            ]
        shapes = {tuple(q.image.shape) for q in queries}
        if len(shapes) > 1:
            raise ValueError(
                f"query images of one batch must share a size after resizing, "
                f"got {sorted(shapes)}; "
                "set EstimatorConfig.resize or call estimate() per image"
            )
        reference, ref_feats = self._reference
        with torch.inference_mode():
            if ref_feats is None:
                ref_feats = self._extract([reference.image], timings)
            query_feats = self._extract([q.image for q in queries], timings)
            return self._solve(
                reference, _stack_features(ref_feats, len(queries)), queries, query_feats, timings
            )

    def estimate_pair(
        self, ref_image: np.ndarray, ref_K: np.ndarray, query_image: np.ndarray, query_K: np.ndarray
    ) -> PoseEstimate:
        """Pair mode: pose of ``query`` relative to ``ref`` without touching the cached keyframe."""
        timings: dict[str, float] = {}
        with self._timed(timings, "preprocess"):
            ref = self._prepare(ref_image, ref_K, "reference image")
            query = self._prepare(query_image, query_K, "query image")
        with torch.inference_mode():
            if ref.image.shape == query.image.shape:
                feats = self._extract([ref.image, query.image], timings)
                ref_feats, query_feats = (_slice_features(feats, i) for i in (0, 1))
            else:
                ref_feats = self._extract([ref.image], timings)
                query_feats = self._extract([query.image], timings)
            return self._solve(ref, ref_feats, [query], query_feats, timings)[0]

    def _solve(
        self,
        reference: _Prepared,
        ref_feats: MicKeyFeatures,
        queries: list[_Prepared],
        query_feats: MicKeyFeatures,
        timings: dict[str, float],
    ) -> list[PoseEstimate]:
        B = len(queries)
        with self._timed(timings, "matching"):
            P = self.backend.match(ref_feats, query_feats)  # (B, N0, N1)
        with self._timed(timings, "solver"):
            K_ref = reference.K.expand(B, 3, 3)
            K_query = torch.stack([q.K for q in queries])
            X_ref = backproject(ref_feats.kpts, ref_feats.depth, K_ref)
            X_query = backproject(query_feats.kpts, query_feats.depth, K_query)
            # One solve and one freshly seeded generator per pair, so a pose depends only on its
            # inputs and the seed, never on the batch it was computed in (resumable evaluation).
            solutions = [
                solve_pose(
                    P[i : i + 1],
                    X_ref[i : i + 1],
                    X_query[i : i + 1],
                    self.config.solver,
                    self._generator(),
                )
                for i in range(B)
            ]
        timings["total"] = sum(timings.values())
        return [
            self._to_estimate(
                solutions[i], reference, ref_feats, queries[i], query_feats, i, timings
            )
            for i in range(B)
        ]

    def _to_estimate(
        self,
        solution: PoseSolution,
        reference: _Prepared,
        ref_feats: MicKeyFeatures,
        query: _Prepared,
        query_feats: MicKeyFeatures,
        i: int,
        timings: dict[str, float],
    ) -> PoseEstimate:
        """Convert pair ``i``'s single-pair ``solution`` into a ``PoseEstimate``."""
        common = {"num_samples": solution.num_samples, "timings_ms": dict(timings)}
        if not bool(solution.valid[0]):
            return PoseEstimate(valid=False, reason=solution.reasons[0], **common)
        estimate = PoseEstimate(
            valid=True,
            R=solution.R[0].double().cpu().numpy(),
            t=solution.t[0].double().cpu().numpy(),
            confidence=float(solution.confidence[0]),
            num_inliers=int(solution.num_inliers[0]),
            **common,
        )
        if self.config.keep_matches:
            estimate.matches = _visualisation_data(
                solution, i, reference, ref_feats, query, query_feats
            )
        return estimate

    # ----------------------------------------------------------------- many keyframes
    def extract_features(self, image: np.ndarray, K: np.ndarray) -> ImageFeatures:
        """Features of one image (keyframe or query; batch 1, on the device)."""
        timings: dict[str, float] = {}
        with self._timed(timings, "preprocess"):
            prepared = self._prepare(image, K, "image")
        with torch.inference_mode():
            feats = self._extract([prepared.image], timings)
        return ImageFeatures(prepared.K, prepared.scale_xy, feats, timings)

    def estimate_against(
        self, query: ImageFeatures, refs: list[ImageFeatures]
    ) -> list[PoseEstimate]:
        """Pose ``T_query_ref`` of one query relative to each keyframe of ``refs``.

        All features come from ``extract_features`` (computed once, e.g. stored in a keyframe
        library); matching and solving run as one batch (keyframes of one feature-grid size).
        The ``set_reference`` keyframe is untouched.
        """
        if not refs:
            return []
        if len({r.feats.grid_hw for r in refs}) > 1:
            raise ValueError("keyframes of one estimate_against call must share a network input "
                             f"size, got grids {sorted({r.feats.grid_hw for r in refs})}")
        B, timings = len(refs), dict(query.timings_ms)
        with torch.inference_mode():
            ref_feats = _concat_features([r.feats for r in refs])
            K_refs = torch.stack([r.K.to(self.device) for r in refs])  # (B, 3, 3)
            dummy = torch.empty(0, device=self.device)  # _solve reads K and scale only
            reference = _Prepared(dummy, K_refs, refs[0].scale_xy)
            q = _Prepared(dummy, query.K.to(self.device), query.scale_xy)
            query_feats = _stack_features(query.feats, B)
            return self._solve(reference, ref_feats, [q] * B, query_feats, timings)

    def warmup(self, size_wh: tuple[int, int] = (540, 720), iterations: int = 2) -> None:
        """Run a few dummy estimates so the first real frame is not slow (kernels, allocator)."""
        W, H = size_wh
        rgb = np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8)
        K = np.array([[W, 0, W / 2], [0, W, H / 2], [0, 0, 1]], dtype=np.float64)
        saved = self._reference
        self.set_reference(rgb, K)
        for _ in range(iterations):
            self.estimate(rgb, K)
        self._reference = saved


def _slice_features(feats: MicKeyFeatures, i: int) -> MicKeyFeatures:
    values = {}
    for f in dataclasses.fields(feats):
        value = getattr(feats, f.name)
        values[f.name] = value[i : i + 1] if isinstance(value, Tensor) else value
    return type(feats)(**values)


def _concat_features(feats: list[MicKeyFeatures]) -> MicKeyFeatures:
    """Batch-1 features of several images (one grid size) -> one batch; maps dropped."""
    first = feats[0]
    return type(first)(*(torch.cat([getattr(f, n) for f in feats]) for n in
                         ("kpts", "depth", "scores", "descriptors")), grid_hw=first.grid_hw)


def _to_original_px(kpts: Tensor, scale_xy: tuple[float, float]) -> np.ndarray:
    """Network-input pixel coordinates -> original image pixels (inverse pixel-centre resize)."""
    scale = kpts.new_tensor(scale_xy)
    return ((kpts + 0.5) / scale - 0.5).double().cpu().numpy()


def _visualisation_data(
    solution: PoseSolution,
    i: int,
    reference: _Prepared,
    ref_feats: MicKeyFeatures,
    query: _Prepared,
    query_feats: MicKeyFeatures,
) -> dict[str, np.ndarray]:
    h0, w0 = ref_feats.grid_hw
    h1, w1 = query_feats.grid_hw
    return {
        "kpts_ref": _to_original_px(ref_feats.kpts[i, solution.inliers_ref[0]], reference.scale_xy),
        "kpts_query": _to_original_px(
            query_feats.kpts[i, solution.inliers_query[0]], query.scale_xy
        ),
        "depth_ref": ref_feats.depth[i].reshape(h0, w0).float().cpu().numpy(),
        "depth_query": query_feats.depth[i].reshape(h1, w1).float().cpu().numpy(),
    }
