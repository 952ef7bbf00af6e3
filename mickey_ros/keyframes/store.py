"""The keyframe library on disk: manifest, keyframe files and atomic writes (no torch, no model).

Layout of a library directory ``LIB``::

    LIB/manifest.json            format, feature source (model, checkpoint hash, input size),
                                 one entry per keyframe: id, K, T_map_camera, file names
    LIB/images/<id>.png          the keyframe image (RGB), to recompute features for a new model
    LIB/features/<id>.npz        the model's per-image features and the global descriptor

A keyframe belongs to the library only once the manifest names it, and the manifest is replaced
atomically (temp file + ``os.replace``) after its files are complete: an interrupted capture
leaves the library as it was (at most an orphan file that the next load ignores). A whole build
is written to a staging directory beside it (``utils.outputs.staging_path``) and renamed into
place (``publish_directory``).

Convention:
    ``T_map_camera`` (4, 4) is the keyframe camera's pose in the map frame (maps optical-frame
    points into the map: OpenCV axes, z forward, metres).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mickey_ros.utils import outputs
from mickey_ros.utils.outputs import atomic_write_bytes

FORMAT = "mickey_ros.keyframes"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
FEATURE_KEYS = ("kpts", "depth", "scores", "descriptors", "K_net", "scale_xy", "grid_hw",
                "global_descriptor", "source")  # source: checkpoint hash @ input size


class LibraryError(ValueError):
    """A library that cannot be used as it is (one line: what, where, the fix)."""


@dataclass(frozen=True)
class FeatureSource:
    """Which network made the stored features; features of another source are recomputed.

    Attributes:
        model: the estimator's model name (file name of the checkpoint, or the config name).
        checkpoint_sha256: SHA-256 of the checkpoint file (or of the weights when no file).
        input_wh: (W, H) network input the features were computed at; None = the image size.
    """

    model: str
    checkpoint_sha256: str
    input_wh: tuple[int, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form (the manifest's ``features`` entry)."""
        return {"model": self.model, "checkpoint_sha256": self.checkpoint_sha256,
                "input_wh": list(self.input_wh) if self.input_wh else None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSource:
        """Inverse of ``to_dict``."""
        wh = data.get("input_wh")
        return cls(str(data["model"]), str(data["checkpoint_sha256"]),
                   (int(wh[0]), int(wh[1])) if wh else None)

    def describe(self) -> str:
        """'demo_model.ckpt (sha256 1a2b3c4d5e6f) at 320x240' for messages."""
        size = f"{self.input_wh[0]}x{self.input_wh[1]}" if self.input_wh else "image size"
        return f"{self.model} (sha256 {self.checkpoint_sha256[:12]}) at {size}"


@dataclass
class KeyframeEntry:
    """One manifest entry.

    Attributes:
        id: unique name, also the stem of its files.
        K: (3, 3) intrinsics of the stored image.
        T_map_camera: (4, 4) camera pose in the map frame.
        stamp_ns: capture time (0 when unknown).
        source: where it came from (image file, bag and topic, 'capture').
    """

    id: str
    K: np.ndarray
    T_map_camera: np.ndarray
    stamp_ns: int = 0
    source: str = ""

    @property
    def image_file(self) -> str:
        """Path of the image, relative to the library root."""
        return f"images/{self.id}.png"

    @property
    def features_file(self) -> str:
        """Path of the features, relative to the library root."""
        return f"features/{self.id}.npz"

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"id": self.id, "K": np.asarray(self.K).tolist(),
                "T_map_camera": np.asarray(self.T_map_camera).tolist(),
                "stamp_ns": int(self.stamp_ns), "source": self.source}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KeyframeEntry:
        """Inverse of ``to_dict``; a malformed entry raises ``LibraryError``."""
        try:
            K = np.asarray(data["K"], np.float64)
            T = np.asarray(data["T_map_camera"], np.float64)
            entry = cls(str(data["id"]), K, T, int(data.get("stamp_ns", 0)),
                        str(data.get("source", "")))
        except (KeyError, TypeError, ValueError) as err:
            raise LibraryError(f"malformed keyframe entry {data!r:.80}: {err}") from None
        if K.shape != (3, 3) or T.shape != (4, 4) or not (np.isfinite(K).all()
                                                          and np.isfinite(T).all()):
            raise LibraryError(f"keyframe {entry.id!r}: K must be 3x3 and T_map_camera 4x4, finite")
        return entry


@dataclass
class Manifest:
    """The library's index: feature source and keyframe entries, in insertion order."""

    source: FeatureSource
    keyframes: list[KeyframeEntry] = field(default_factory=list)

    def to_json(self) -> str:
        """The file content."""
        return json.dumps({"format": FORMAT, "version": FORMAT_VERSION,
                           "features": self.source.to_dict(),
                           "keyframes": [k.to_dict() for k in self.keyframes]}, indent=1)


def read_manifest(root: Path) -> Manifest:
    """The manifest of library ``root``; ``LibraryError`` naming the problem and the fix."""
    path = root / MANIFEST
    if not path.is_file():
        what = "does not exist" if not root.exists() else f"has no {MANIFEST}"
        raise LibraryError(f"keyframe library {root} {what}; build one with `mickey-ros keyframes "
                           "build --images DIR --poses poses.txt --out LIB`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != FORMAT:
            raise LibraryError(f"{path} is not a keyframe library manifest (format "
                               f"{data.get('format')!r})")
        if data.get("version") != FORMAT_VERSION:
            raise LibraryError(f"{path} has format version {data.get('version')}, this mickey_ros "
                               f"reads {FORMAT_VERSION}; rebuild the library")
        source = FeatureSource.from_dict(data["features"])
        entries = [KeyframeEntry.from_dict(k) for k in data["keyframes"]]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as err:
        raise LibraryError(f"{path} is corrupt ({type(err).__name__}: {err}); rebuild the "
                           "library or restore the file") from None
    return Manifest(source, entries)


def write_manifest(root: Path, manifest: Manifest) -> None:
    """Replace the manifest atomically (the commit point of every change)."""
    atomic_write_bytes(root / MANIFEST, manifest.to_json().encode("utf-8"))


def write_image(root: Path, entry: KeyframeEntry, rgb: np.ndarray) -> None:
    """PNG of ``rgb`` (H, W, 3) uint8, written atomically."""
    import cv2

    ok, png = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise LibraryError(f"cannot encode the image of keyframe {entry.id!r} as PNG")
    (root / "images").mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(root / entry.image_file, png.tobytes())


def read_image(root: Path, entry: KeyframeEntry) -> np.ndarray:
    """RGB uint8 (H, W, 3) of a keyframe; ``LibraryError`` if missing or undecodable."""
    import cv2

    path = root / entry.image_file
    raw = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None
    if raw is None:
        state = "is missing" if not path.is_file() else "cannot be decoded"
        raise LibraryError(f"keyframe {entry.id!r}: image {path} {state}")
    return raw[..., ::-1].copy()


def write_features(root: Path, entry: KeyframeEntry, arrays: dict[str, np.ndarray]) -> None:
    """The features npz (``FEATURE_KEYS``), written atomically."""
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **{k: arrays[k] for k in FEATURE_KEYS})
    (root / "features").mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(root / entry.features_file, buffer.getvalue())


def read_features(root: Path, entry: KeyframeEntry) -> dict[str, np.ndarray]:
    """The stored features of a keyframe; ``LibraryError`` if missing, truncated or malformed."""
    path = root / entry.features_file
    if not path.is_file():
        raise LibraryError(f"keyframe {entry.id!r}: features {path} are missing")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in FEATURE_KEYS}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
        raise LibraryError(f"keyframe {entry.id!r}: features {path} are unreadable "
                           f"({type(err).__name__}: {err})") from None
    N = arrays["kpts"].shape[0]
    h, w = (int(v) for v in arrays["grid_hw"])
    if (arrays["kpts"].shape != (N, 2) or arrays["depth"].shape != (N,) or N != h * w
            or arrays["descriptors"].shape[0] != N or arrays["K_net"].shape != (3, 3)):
        raise LibraryError(f"keyframe {entry.id!r}: features {path} have inconsistent shapes")
    return arrays


def publish_directory(staging: Path, root: Path, overwrite: bool) -> None:
    """Move a complete ``staging`` library to ``root`` (the old one, if any, only at the end),
    through ``utils.outputs.publish_directory``; only a keyframe library is ever replaced."""
    if root.exists() and not overwrite:
        raise FileExistsError(f"{root} exists; pass --overwrite to replace it, or --append to "
                              "add keyframes to it")
    if root.exists() and not (root / MANIFEST).is_file():
        raise FileExistsError(f"{root} exists and is not a keyframe library; not replacing it")
    outputs.publish_directory(staging, root, replace=True,
                              replaceable=lambda path: (path / MANIFEST).is_file())
