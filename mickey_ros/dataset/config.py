"""Settings of ``mickey-ros dataset``: a frozen dataclass, each default with its reason."""

from __future__ import annotations

from dataclasses import dataclass


class DatasetError(ValueError):
    """The bags cannot give a dataset as asked; the message names the problem and the fix."""


@dataclass(frozen=True)
class DatasetConfig:
    """How bags become a Map-free-layout dataset (docs/datasets.md explains each choice)."""

    fixed_frame: str = "odom"  # poses are expressed in this frame (map, odom, a mocap world)
    image_topic: str | None = None  # None: the bag's only image topic
    camera_frame: str | None = None  # None: the images' header frame_id
    pose_topic: str | None = None  # PoseStamped / Odometry instead of /tf (motion capture)
    depth_topic: str | None = None  # registered depth (16UC1 mm / 32FC1 m): overlap from depth
    camera_convention: str = "auto"  # auto | optical (REP 103) | body (x forward, z up)
    max_tf_gap_s: float = 0.25  # refuse a frame whose TF samples around it are farther apart
    # keyframes: enough motion since the last kept frame that a pair teaches something
    min_translation_m: float = 0.15
    min_rotation_deg: float = 7.5
    blur_ratio: float = 0.4  # drop a frame sharper than this fraction of its recent neighbours'
    blur_window: int = 15  # frames in the running median of sharpness
    # a jump: faster than a ground robot or a hand-held camera; starts a new scene
    max_speed_mps: float = 5.0
    max_turn_dps: float = 360.0
    new_scene_gap_s: float = 2.0  # a hole in the images this long also starts a new scene
    # pairs (the same reprojected co-visibility from depth or from the prior)
    prior_depth_m: float = 4.0  # scene-depth prior without a depth topic: a plane this far
    max_baseline_m: float = 4.0  # candidate pairs: camera centres at most this far apart
    max_angle_deg: float = 60.0  # and viewing directions at most this far apart
    min_stored_overlap: float = 0.05  # overlaps.npz keeps pairs above this (Map-free: non-zero)
    depth_tolerance: float = 0.05  # relative depth agreement that counts as seen (with depth)
    overlap_points: int = 1200  # pixels sampled per frame for the overlap
    # splits: contiguous time blocks of every scene, in this order, with a guard between blocks
    split_fractions: tuple[float, ...] = (0.8, 0.2)  # train, val[, test]
    guard_s: float = 2.0  # frames this close to another split's block are left out
    eval_min_overlap: float = 0.2  # a held-out query shares at least this with its reference
    jpeg_quality: int = 95

    def check(self) -> None:
        """Raise DatasetError for values that cannot work."""
        if self.camera_convention not in ("auto", "optical", "body"):
            raise DatasetError(f"--camera-convention must be auto, optical or body, got "
                               f"{self.camera_convention!r}")
        fractions = self.split_fractions
        if not 2 <= len(fractions) <= 3 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-6:
            raise DatasetError(f"--split needs 2 or 3 positive fractions summing to 1 (train,val"
                               f"[,test]), got {','.join(str(f) for f in fractions)}")
        if self.prior_depth_m <= 0 or self.max_baseline_m <= 0 or self.max_tf_gap_s <= 0:
            raise DatasetError("--prior-depth, --max-baseline and --max-tf-gap must be > 0")

    @property
    def split_names(self) -> tuple[str, ...]:
        """('train', 'val') or ('train', 'val', 'test')."""
        return ("train", "val", "test")[: len(self.split_fractions)]
