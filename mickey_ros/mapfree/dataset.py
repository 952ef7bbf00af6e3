"""Reading a dataset in the Map-free layout (``<root>/<split>/sXXXXX/``): evaluation and training.

Layout (reference/mapfree_benchmark.md §1.1-1.3):
    ``intrinsics.txt``  ``frame_path fx fy cx cy W H`` per frame (W, H of the last line apply).
    ``poses.txt``       ``frame_path qw qx qy qz tx ty tz`` world-to-camera; in val/test the world
                        is the reference camera ``seq0/frame_00000.jpg``; test poses are all zero.
    ``overlaps.npz``    (train) ``idxs`` rows ``(seqA, frameA, seqB, frameB)`` and ``overlaps``.
    ``seq0/``, ``seq1/`` ``frame_XXXXX.jpg`` images (numbers may skip).

The single-frame track evaluates every 5th query line of ``poses.txt`` by *line position*, not by
frame number; ``MapFreeScene.query_frames`` implements exactly that sampling.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from mickey_ros.geometry.pose import pose_from_quat_wxyz
from mickey_ros.mapfree.files import (
    CameraIntrinsics,
    ParseReport,
    PoseEntry,
    read_intrinsics,
    read_poses,
)
from mickey_ros.utils.images import DEPTH_PNG_METRES_PER_UNIT, load_depth_png, load_rgb

REFERENCE_FRAME = "seq0/frame_00000.jpg"  # identity pose in val/test scenes
QUERY_SEQUENCE = "seq1"
SAMPLE_STEP = 5  # official single-frame track: every 5th query line


def frame_number(name: str) -> int:
    """Frame number of ``seqN/frame_XXXXX.jpg`` from the 5 characters before the extension.

    Raises:
        ValueError: if those characters are not digits (the name breaks the Map-free pattern).
    """
    digits = name[-9:-4]
    if len(digits) != 5 or not (digits.isascii() and digits.isdigit()):
        raise ValueError(f"frame name {name!r} does not follow the 'seqN/frame_XXXXX.jpg' pattern")
    return int(digits)


def frame_name(seq: int, frame: int) -> str:
    """``frame_name(1, 7) == 'seq1/frame_00007.jpg'``."""
    return f"seq{seq}/frame_{frame:05d}.jpg"


def depth_name(frame: str, suffix: str) -> str:
    """The depth file next to a frame: its extension replaced by ``suffix``.

    >>> depth_name("seq0/frame_00000.jpg", ".depth.png")
    'seq0/frame_00000.depth.png'
    """
    path = PurePosixPath(frame)
    return str(path.with_name(path.stem + suffix))


@dataclass(frozen=True)
class OverlapPair:
    """A training pair from ``overlaps.npz``: two frame paths and their co-visibility in [0, 1]."""

    frame_a: str
    frame_b: str
    overlap: float


def _pose_matrix(entry: PoseEntry) -> np.ndarray:
    q_wxyz, t = torch.from_numpy(entry.q_wxyz), torch.from_numpy(entry.t)
    return pose_from_quat_wxyz(q_wxyz.double(), t.double()).numpy()


def _is_nonzero_pose_line(line: str) -> bool:
    tokens = line.split()
    if len(tokens) != 8 or "#" in line:
        return False
    try:
        return any(float(v) != 0 for v in tokens[1:5])
    except ValueError:
        return False


class MapFreeScene:
    """One scene folder of a Map-free-layout dataset; files are read lazily and cached.

    Args:
        root: the scene folder (``.../val/s00460``).
        report: collects skipped lines of the text files; a fresh one when None.
    """

    def __init__(self, root: str | Path, report: ParseReport | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"scene folder {self.root} does not exist")
        self.report = ParseReport() if report is None else report

    @property
    def name(self) -> str:
        """Scene id, e.g. ``s00460``."""
        return self.root.name

    def __repr__(self) -> str:
        return f"MapFreeScene({str(self.root)!r})"

    @property
    def reference_frame(self) -> str:
        """The reference image path of a val/test scene (its pose is the identity)."""
        return REFERENCE_FRAME

    @cached_property
    def intrinsics(self) -> dict[str, CameraIntrinsics]:
        """``{frame_path: CameraIntrinsics}`` in file order."""
        return read_intrinsics(self._file("intrinsics.txt"), self.report)

    @property
    def image_size(self) -> tuple[int, int]:
        """(W, H) from the last intrinsics line: the official evaluator uses it for every frame."""
        if not self.intrinsics:
            raise ValueError(f"{self.root / 'intrinsics.txt'} has no valid line")
        last = next(reversed(self.intrinsics.values()))
        return last.width, last.height

    def K(self, frame: str) -> np.ndarray:
        """(3, 3) intrinsics of ``frame`` at its original resolution."""
        if frame not in self.intrinsics:
            raise ValueError(f"scene {self.name}: no intrinsics for {frame!r} in intrinsics.txt")
        return self.intrinsics[frame].K

    @cached_property
    def poses(self) -> list[PoseEntry]:
        """Valid lines of ``poses.txt`` in line order (empty for the test split: GT withheld)."""
        if not self.has_ground_truth:
            return []
        return read_poses(self._file("poses.txt"), self.report)

    @cached_property
    def has_ground_truth(self) -> bool:
        """False when every pose line is all zeros (the test split)."""
        lines = self._file("poses.txt").read_text(encoding="utf-8").splitlines()
        return any(_is_nonzero_pose_line(line) for line in lines)

    @cached_property
    def _poses_by_name(self) -> dict[str, PoseEntry]:
        return {entry.name: entry for entry in self.poses}

    def pose(self, frame: str) -> PoseEntry:
        """World-to-camera pose of ``frame`` from ``poses.txt``."""
        if frame not in self._poses_by_name:
            raise ValueError(f"scene {self.name}: no valid pose for {frame!r} in poses.txt")
        return self._poses_by_name[frame]

    def T_cam_world(self, frame: str) -> np.ndarray:
        """(4, 4) world-to-camera transform of ``frame``."""
        return _pose_matrix(self.pose(frame))

    def T_query_ref(self, ref_frame: str, query_frame: str) -> np.ndarray:
        """(4, 4) ground-truth relative pose: ``X_query = T @ X_ref`` (metres)."""
        return self.T_cam_world(query_frame) @ np.linalg.inv(self.T_cam_world(ref_frame))

    def frames(self, seq: str) -> list[str]:
        """Frame paths of scan ``seq`` (``"seq0"`` or ``"seq1"``) listed in intrinsics.txt."""
        return [name for name in self.intrinsics if name.startswith(f"{seq}/")]

    def query_frames(self, sample_step: int = SAMPLE_STEP) -> list[str]:
        """Evaluated query frames: every ``sample_step``-th ``seq1`` line of poses.txt, by position.

        Lines of the reference scan are left out before sampling, so a ``poses.txt`` that also
        lists ``seq0/frame_00000.jpg`` samples the same query frames as one that does not.
        """
        if sample_step < 1:
            raise ValueError(f"sample_step must be >= 1, got {sample_step}")
        names = []
        for line in self._file("poses.txt").read_text(encoding="utf-8").splitlines():
            tokens = line.split()
            if tokens and "#" not in line and tokens[0].startswith(f"{QUERY_SEQUENCE}/"):
                names.append(tokens[0])
        return names[::sample_step]

    def image_path(self, frame: str) -> Path:
        """Absolute path of a frame image."""
        return self.root / frame

    def load_rgb(self, frame: str) -> np.ndarray:
        """RGB uint8 (H, W, 3) image of ``frame``."""
        return load_rgb(self.image_path(frame))

    def load_depth(
        self, frame: str, suffix: str, metres_per_unit: float = DEPTH_PNG_METRES_PER_UNIT
    ) -> np.ndarray:
        """Depth of ``frame`` in metres (H, W) from its 16-bit PNG ``depth_name(frame, suffix)``."""
        return load_depth_png(self.root / depth_name(frame, suffix), metres_per_unit)

    def overlap_pairs(
        self, min_overlap: float = 0.0, max_overlap: float = 1.0
    ) -> list[OverlapPair]:
        """Pairs of ``overlaps.npz`` with ``min_overlap < overlap < max_overlap`` (open interval).

        Raises:
            FileNotFoundError: without ``overlaps.npz`` (only training scenes have one).
            ValueError: if the arrays are malformed.
        """
        path = self._file("overlaps.npz")
        with np.load(path, allow_pickle=False) as data:
            if "idxs" not in data or "overlaps" not in data:
                raise ValueError(f"{path} must hold arrays 'idxs' and 'overlaps', has {data.files}")
            idxs, overlaps = (
                np.asarray(data["idxs"]),
                np.asarray(data["overlaps"], dtype=np.float64),
            )
        if idxs.ndim != 2 or idxs.shape[1] != 4 or overlaps.shape != (idxs.shape[0],):
            raise ValueError(
                f"{path}: 'idxs' must be (M, 4) rows (seqA, frameA, seqB, frameB) and 'overlaps' "
                f"(M,), got {idxs.shape} and {overlaps.shape}"
            )
        keep = np.flatnonzero((overlaps > min_overlap) & (overlaps < max_overlap))
        return [
            OverlapPair(
                frame_name(int(idxs[i, 0]), int(idxs[i, 1])),
                frame_name(int(idxs[i, 2]), int(idxs[i, 3])),
                float(overlaps[i]),
            )
            for i in keep
        ]

    def _file(self, name: str) -> Path:
        path = self.root / name
        if not path.is_file():
            raise FileNotFoundError(f"scene {self.name}: {path} does not exist")
        return path


def list_scenes(
    data_root: str | Path, split: str, scenes: list[str] | tuple[str, ...] | None = None
) -> list[MapFreeScene]:
    """Scenes of ``data_root/split`` sorted by name, optionally only the ``scenes`` named.

    Raises:
        FileNotFoundError: if the split folder or a requested scene is missing.
    """
    data_root = Path(data_root)
    split_dir = data_root / split
    if not split_dir.is_dir():
        found = (
            sorted(p.name for p in data_root.iterdir() if p.is_dir()) if data_root.is_dir() else []
        )
        raise FileNotFoundError(
            f"split folder {split_dir} does not exist (found splits: {found or 'none'}); "
            "--data must point at the folder holding train/ val/ test/"
        )
    available = sorted(p.name for p in split_dir.iterdir() if (p / "intrinsics.txt").is_file())
    if scenes is None:
        return [MapFreeScene(split_dir / name) for name in available]
    missing = [s for s in scenes if s not in available]
    if missing:
        raise FileNotFoundError(
            f"scenes {missing} are not in {split_dir} (it has {len(available)})"
        )
    return [MapFreeScene(split_dir / name) for name in sorted(scenes)]
