"""A keyframe library in memory: posed keyframes with their features on the estimator's device.

``KeyframeLibrary.open`` reads a library directory (``store``), checks that its features were made
by this estimator's network (checkpoint hash and input size, per file as well as in the
manifest) and recomputes them from the stored images when not, so features of another model are
never reused; a keyframe whose files are missing or corrupt is skipped with one line and stays in
the manifest (nothing is lost). ``add`` computes one keyframe's features and persists it (the
run-time capture).

Convention:
    ``T_map_camera`` (4, 4): keyframe camera (optical frame) -> map, metres.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from mickey_ros.estimator.relative_pose import (
    DEMO_CHECKPOINT,
    ImageFeatures,
    RelativePoseEstimator,
)
from mickey_ros.keyframes.descriptor import pooled_descriptor
from mickey_ros.keyframes.store import (
    FeatureSource,
    KeyframeEntry,
    LibraryError,
    Manifest,
    read_features,
    read_image,
    read_manifest,
    write_features,
    write_image,
    write_manifest,
)
from mickey_ros.model.mickey import MicKeyFeatures

Warn = Callable[[str], object]


def file_sha256(path: str | Path) -> str:
    """SHA-256 hex digest of a file (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_sha256(model: torch.nn.Module) -> str:
    """SHA-256 over a model's state dict (names and values): for weights without a file."""
    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode())
        if value.device.type != "meta":
            digest.update(value.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


def feature_source(
    estimator: RelativePoseEstimator, checkpoint: str | Path | None = None
) -> FeatureSource:
    """Which features ``estimator`` makes: its model name, the checkpoint's hash, input size.

    Args:
        estimator: the estimator that will localise against the library.
        checkpoint: its checkpoint file ('demo' = the bundled model); None: the ONNX file of an
            ONNX backend, else the weights in memory are hashed.
    """
    if checkpoint is not None and str(checkpoint) == "demo":
        checkpoint = DEMO_CHECKPOINT
    checkpoint = checkpoint or estimator.config.onnx_path  # an ONNX backend: its weights file
    if not checkpoint and any(p.is_meta for p in estimator.model.parameters()):
        raise ValueError("the estimator's weights are not in memory: name the checkpoint or "
                         "ONNX file that made them, so the library can tell its features apart")
    sha = file_sha256(checkpoint) if checkpoint else weights_sha256(estimator.model)
    return FeatureSource(estimator.model_name, sha, estimator.config.resize)


def _source_key(source: FeatureSource) -> str:
    size = f"{source.input_wh[0]}x{source.input_wh[1]}" if source.input_wh else "image"
    return f"{source.checkpoint_sha256}@{size}"


def features_to_arrays(f: ImageFeatures, source: FeatureSource) -> dict[str, np.ndarray]:
    """What a features file stores for one keyframe (float32, CPU)."""
    feats = f.feats
    return {
        "kpts": feats.kpts[0].float().cpu().numpy(),
        "depth": feats.depth[0].float().cpu().numpy(),
        "scores": feats.scores[0].float().cpu().numpy(),
        "descriptors": feats.descriptors[0].float().cpu().numpy(),
        "K_net": f.K.float().cpu().numpy(),
        "scale_xy": np.asarray(f.scale_xy, np.float64),
        "grid_hw": np.asarray(feats.grid_hw, np.int64),
        "global_descriptor": pooled_descriptor(feats.descriptors[0], feats.scores[0],
                                               feats.grid_hw),
        "source": np.asarray(_source_key(source)),
    }


def arrays_to_features(arrays: dict[str, np.ndarray], device: torch.device) -> ImageFeatures:
    """Inverse of ``features_to_arrays``: batch-1 features on ``device``."""
    def t(name: str) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(arrays[name])).to(device)[None]

    h, w = (int(v) for v in arrays["grid_hw"])
    feats = MicKeyFeatures(t("kpts"), t("depth"), t("scores"), t("descriptors"), (h, w))
    K = torch.from_numpy(arrays["K_net"]).float().to(device)
    return ImageFeatures(K, (float(arrays["scale_xy"][0]), float(arrays["scale_xy"][1])), feats)


def feature_bytes(f: ImageFeatures) -> int:
    """Bytes a keyframe's features hold in memory."""
    feats = f.feats
    return sum(int(x.numel() * x.element_size())
               for x in (feats.kpts, feats.depth, feats.scores, feats.descriptors, f.K))


class KeyframeLibrary:
    """Posed keyframes, their features on the device and their global descriptors.

    Attributes:
        root: the library directory.
        source: the estimator's feature source (what the stored features must match).
        manifest: every keyframe on disk, usable or not (what ``add`` rewrites).
        entries: the usable keyframes, in manifest order; ``features`` and ``descriptors``
            (M, G) are aligned with them.
        problems: one line per keyframe that was skipped (missing or corrupt files).
    """

    def __init__(self, root: Path, estimator: RelativePoseEstimator, source: FeatureSource,
                 manifest: Manifest) -> None:
        self.root, self.estimator, self.source, self.manifest = root, estimator, source, manifest
        self.entries: list[KeyframeEntry] = []
        self.features: list[ImageFeatures] = []
        self._descriptors: list[np.ndarray] = []
        self.problems: list[str] = []
        self.recomputed = 0

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(cls, root: str | Path, estimator: RelativePoseEstimator,
               source: FeatureSource) -> KeyframeLibrary:
        """A new empty library at ``root`` (which must not hold a library yet)."""
        root = Path(root)
        if (root / "manifest.json").exists():
            raise FileExistsError(f"{root} already holds a keyframe library")
        root.mkdir(parents=True, exist_ok=True)
        manifest = Manifest(source)
        write_manifest(root, manifest)
        return cls(root, estimator, source, manifest)

    @classmethod
    def open(cls, root: str | Path, estimator: RelativePoseEstimator, source: FeatureSource,
             warn: Warn = print, persist: bool = True) -> KeyframeLibrary:
        """Load a library; features of another model are recomputed (and, with ``persist``,
        saved with the new source), bad keyframes are skipped with one ``warn`` line each.

        Raises:
            LibraryError: no library at ``root``, or its manifest is corrupt.
        """
        root = Path(root)
        manifest = read_manifest(root)
        lib = cls(root, estimator, source, manifest)
        stale = manifest.source != source
        if stale and manifest.keyframes:
            warn(f"keyframe library {root} was built with {manifest.source.describe()}, not "
                 f"{source.describe()}: recomputing the features of {len(manifest.keyframes)} "
                 "keyframes from their images")
        for entry in manifest.keyframes:
            lib._load_entry(entry, persist, warn)
        if stale and persist:
            manifest.source = source
            write_manifest(root, manifest)
        if lib.problems:
            warn(f"keyframe library {root}: {len(lib.problems)} of {len(manifest.keyframes)} "
                 "keyframes skipped (their manifest entries are kept)")
        return lib

    def _load_entry(self, entry: KeyframeEntry, persist: bool, warn: Warn) -> None:
        try:
            arrays = read_features(self.root, entry)
            if str(arrays["source"]) != _source_key(self.source):
                raise LibraryError("made by another model")
        except LibraryError as err:
            try:
                arrays = self._compute(read_image(self.root, entry), entry.K)
            except (LibraryError, ValueError) as image_err:  # ImageError is a ValueError
                self.problems.append(f"{image_err}; features: {err}")
                warn(f"keyframe {entry.id!r} skipped: {image_err} (and {err})")
                return
            self.recomputed += 1
            if persist:
                write_features(self.root, entry, arrays)
        self._append(entry, arrays)

    def _compute(self, rgb: np.ndarray, K: np.ndarray) -> dict[str, np.ndarray]:
        return features_to_arrays(self.estimator.extract_features(rgb, K), self.source)

    def _append(self, entry: KeyframeEntry, arrays: dict[str, np.ndarray]) -> None:
        self.entries.append(entry)
        self.features.append(arrays_to_features(arrays, self.estimator.device))
        self._descriptors.append(arrays["global_descriptor"].astype(np.float32))

    # ------------------------------------------------------------------ capture
    def add(self, rgb: np.ndarray, K: np.ndarray, T_map_camera: np.ndarray, stamp_ns: int = 0,
            source: str = "", keyframe_id: str | None = None) -> KeyframeEntry:
        """Compute one keyframe's features and persist it (files first, then the manifest).

        Raises:
            ValueError / ImageError: unusable image, K or pose (the library is unchanged).
        """
        T = np.asarray(T_map_camera, np.float64)
        if T.shape != (4, 4) or not np.isfinite(T).all():
            raise ValueError(f"T_map_camera must be a finite 4x4 transform, got shape {T.shape}")
        ids = {e.id for e in self.manifest.keyframes}
        keyframe_id = keyframe_id or _next_id(ids)
        if keyframe_id in ids:
            raise ValueError(f"keyframe id {keyframe_id!r} is already in {self.root}")
        entry = KeyframeEntry(keyframe_id, np.asarray(K, np.float64), T, int(stamp_ns), source)
        arrays = self._compute(rgb, entry.K)  # before any write: a refused image leaves no file
        write_image(self.root, entry, rgb)
        write_features(self.root, entry, arrays)
        self.manifest.keyframes.append(entry)
        write_manifest(self.root, self.manifest)
        self._append(entry, arrays)
        return entry

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self.entries)

    @property
    def poses(self) -> np.ndarray:
        """(M, 4, 4) ``T_map_camera`` of the usable keyframes."""
        return np.stack([e.T_map_camera for e in self.entries]) if self.entries else \
            np.zeros((0, 4, 4))

    @property
    def descriptors(self) -> np.ndarray:
        """(M, G) global descriptors of the usable keyframes."""
        return np.stack(self._descriptors) if self._descriptors else np.zeros((0, 0), np.float32)

    def image(self, index: int) -> np.ndarray:
        """RGB uint8 (H, W, 3) of usable keyframe ``index`` (read from disk)."""
        return read_image(self.root, self.entries[index])

    def memory_bytes(self) -> int:
        """Bytes the keyframes' features and descriptors hold in memory."""
        return sum(feature_bytes(f) for f in self.features) + sum(
            d.nbytes for d in self._descriptors)


def _next_id(ids: set[str]) -> str:
    n = len(ids)
    while f"kf{n:05d}" in ids:
        n += 1
    return f"kf{n:05d}"

