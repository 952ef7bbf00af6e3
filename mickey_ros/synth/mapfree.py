"""Synthetic datasets in the exact Map-free layout: evaluation and training run on them unchanged.

Layout written (reference/mapfree_benchmark.md §1.1-1.2)::

    <out_dir>/<split>/sXXXXX/intrinsics.txt   frame_path fx fy cx cy W H (one line per frame)
    <out_dir>/<split>/sXXXXX/poses.txt        frame_path qw qx qy qz tx ty tz (world-to-camera)
    <out_dir>/<split>/sXXXXX/seq0/frame_00000.jpg ...
    <out_dir>/<split>/sXXXXX/seq1/frame_00000.jpg ...
    <out_dir>/train/sXXXXX/overlaps.npz       idxs (P, 4) [seqA, frameA, seqB, frameB],
                                              overlaps (P,)

Each scene is a courtyard with a monument (the "place of interest"); both scans orbit it like a
person filming with a phone held upright. The world frame is the camera of ``seq0/frame_00000``
(identity pose) in every split, so a query's pose in ``poses.txt`` is ``T_query_ref``. In ``val``
``seq0`` holds only that reference frame and ``seq1`` is the query scan.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mickey_ros.geometry.pose import relative_pose
from mickey_ros.mapfree.dataset import depth_name, frame_name
from mickey_ros.mapfree.files import CameraIntrinsics, PoseEntry, write_intrinsics, write_poses
from mickey_ros.synth.cameras import PairSamplingConfig, look_at, sample_intrinsics
from mickey_ros.synth.overlap import overlap_matrix, stride_for, subsample_depth
from mickey_ros.synth.pairs import random_exposure
from mickey_ros.synth.render import Exposure, Renderer
from mickey_ros.synth.scene import Scene, make_courtyard
from mickey_ros.synth.textures import load_texture_bank
from mickey_ros.utils.images import save_depth_png

SPLITS = ("train", "val")
_RADIUS_M = (2.8, 6.0)  # orbit radius around the monument
_OVERLAP_POINTS = 2000  # pixels per frame used for overlaps.npz


def pose_entry(name: str, T_cam_world: np.ndarray) -> PoseEntry:
    """A ``poses.txt`` entry for a world-to-camera (4, 4) pose: w-first quaternion, metres."""
    import torch

    from mickey_ros.geometry.pose import rotmat_to_quat_wxyz

    q_wxyz = rotmat_to_quat_wxyz(torch.from_numpy(np.asarray(T_cam_world[:3, :3], np.float64)))
    return PoseEntry(name, q_wxyz.numpy(), np.asarray(T_cam_world[:3, 3], np.float64))


def orbit_scan(
    rng: np.random.Generator,
    poi: np.ndarray,
    frames: int,
    start_rad: float,
    sweep_rad: float,
    radius_m: float,
) -> np.ndarray:
    """(frames, 4, 4) world-to-camera poses walking an arc around ``poi`` while filming it.

    Radius, height, aim point and roll wander smoothly (sinusoids with random phases), as a
    hand-held phone does.
    """
    t = np.linspace(0.0, 1.0, frames)
    phase = rng.uniform(0, 2 * np.pi, 6)
    angle = start_rad + sweep_rad * t
    radius = radius_m * (1 + 0.1 * np.sin(2 * np.pi * t + phase[0]))
    height = rng.uniform(1.3, 1.7) + 0.08 * np.sin(4 * np.pi * t + phase[1])
    eyes = np.stack([poi[0] + radius * np.cos(angle), poi[1] + radius * np.sin(angle), height], 1)
    aim = 0.35 * np.stack(
        [
            np.sin(3 * np.pi * t + phase[2]),
            np.sin(2 * np.pi * t + phase[3]),
            0.5 * np.sin(3 * np.pi * t + phase[4]),
        ],
        1,
    )
    roll = np.radians(3.0) * np.sin(2 * np.pi * t + phase[5])
    return np.stack([look_at(e, poi + a, r) for e, a, r in zip(eyes, aim, roll)])


def _plan_scans(rng: np.random.Generator, scene: Scene, split: str, frames: int):
    """Poses of seq0 and seq1, or None if a camera would stand inside an object."""
    start0 = rng.uniform(0, 2 * np.pi)
    n0 = 1 if split == "val" else frames
    seq0 = orbit_scan(
        rng,
        scene.poi,
        n0,
        start0,
        rng.choice([-1, 1]) * rng.uniform(1.0, 2.6),
        rng.uniform(*_RADIUS_M),
    )
    start1 = start0 + np.radians(rng.uniform(-40, 40))
    seq1 = orbit_scan(
        rng,
        scene.poi,
        frames,
        start1,
        rng.choice([-1, 1]) * rng.uniform(1.0, 2.6),
        rng.uniform(*_RADIUS_M),
    )
    centres = [np.linalg.inv(T)[:3, 3] for T in np.concatenate([seq0, seq1])]
    return (seq0, seq1) if scene.is_free(np.array(centres), margin=0.4).all() else None


def _render_scan(
    renderer: Renderer,
    rng: np.random.Generator,
    poses: np.ndarray,
    size_wh: tuple[int, int],
    cfg: PairSamplingConfig,
):
    """Render one scan: one phone (focal, exposure) with small per-frame changes."""
    K_scan = sample_intrinsics(rng, size_wh, cfg.focal_ratio)
    base = random_exposure(rng, cfg)
    for T in poses:
        K = K_scan.copy()
        K[:2, :2] *= 1 + rng.uniform(-0.003, 0.003)  # per-frame focal (autofocus breathing)
        gain = tuple(g * (1 + rng.uniform(-0.03, 0.03)) for g in base.gain)
        exposure = Exposure(gain, base.noise_sigma, int(rng.integers(2**32)))
        rgb, depth = renderer.render(T, K, size_wh, exposure)
        yield K, rgb, depth


def _write_overlaps(path: Path, depths: list, Ks: list, poses: np.ndarray, seq_frame: list) -> int:
    """overlaps.npz over all frame pairs (both scans), keeping pairs with overlap > 0."""
    directional = overlap_matrix(np.stack(depths), np.stack(Ks), poses)
    score = np.minimum(directional, directional.T)
    a, b = np.triu_indices(len(seq_frame), k=1)
    keep = score[a, b] > 0
    idxs = np.array([[*seq_frame[i], *seq_frame[j]] for i, j in zip(a[keep], b[keep])], np.int32)
    np.savez(path, idxs=idxs.reshape(-1, 4), overlaps=score[a, b][keep].astype(np.float32))
    return int(keep.sum())


@dataclass(frozen=True)
class MapfreeScenePlan:
    """Geometry of one synthetic Map-free scene, fixed by ``(seed, scene_id)``.

    Attributes:
        scene: the courtyard with its monument.
        seq0: (F0, 4, 4) world-to-camera poses of scan 0 (F0 = 1 in val).
        seq1: (F1, 4, 4) world-to-camera poses of scan 1.
    """

    scene: Scene
    seq0: np.ndarray
    seq1: np.ndarray

    @property
    def T_ref_world(self) -> np.ndarray:
        """(4, 4) pose of the reference camera ``seq0/frame_00000``: the dataset's world."""
        return self.seq0[0]


def plan_mapfree_scene(
    seed: int, scene_id: int, split: str, frames_per_seq: int
) -> MapfreeScenePlan:
    """Scene and scan poses of ``s<scene_id>`` (in the scene's own world frame, z up)."""
    rng = np.random.default_rng([seed, scene_id])
    bank = load_texture_bank()
    for _ in range(50):
        scene = make_courtyard(rng, bank, keep_clear=((0.0, 0.0, 1.8, 7.2),), monument=True)
        scans = _plan_scans(rng, scene, split, frames_per_seq)
        if scans is not None:
            return MapfreeScenePlan(scene, *scans)
    raise RuntimeError(f"could not plan collision-free scans for scene {scene_id}")


def _write_scene(
    scene_dir: Path,
    renderer: Renderer,
    plan: MapfreeScenePlan,
    rng: np.random.Generator,
    split: str,
    size_wh: tuple[int, int],
    depth_suffix: str,
) -> None:
    import cv2

    renderer.set_scene(plan.scene)
    intrinsics, poses, depths, Ks, seq_frame = {}, [], [], [], []
    stride = stride_for(size_wh, _OVERLAP_POINTS)
    cfg = PairSamplingConfig()
    for seq, scan in enumerate((plan.seq0, plan.seq1)):
        (scene_dir / f"seq{seq}").mkdir(parents=True)
        for frame, (K, rgb, depth) in enumerate(_render_scan(renderer, rng, scan, size_wh, cfg)):
            name = frame_name(seq, frame)
            cv2.imwrite(str(scene_dir / name), rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
            if depth_suffix:  # millimetres, 0 = sky
                save_depth_png(scene_dir / depth_name(name, depth_suffix), depth)
            intrinsics[name] = CameraIntrinsics(K, *size_wh)
            is_ref = seq == 0 and frame == 0  # exactly the identity, by definition
            T_cam_ref = np.eye(4) if is_ref else relative_pose(plan.T_ref_world, scan[frame])
            poses.append(pose_entry(name, T_cam_ref))
            if split == "train":
                depth_sub, K_sub = subsample_depth(depth, K, stride)
                depths.append(depth_sub)
                Ks.append(K_sub)
                seq_frame.append((seq, frame))
    write_intrinsics(scene_dir / "intrinsics.txt", intrinsics)
    write_poses(scene_dir / "poses.txt", poses)
    if split == "train":
        T_all = np.concatenate([plan.seq0, plan.seq1])
        _write_overlaps(scene_dir / "overlaps.npz", depths, Ks, T_all, seq_frame)


def write_mapfree_dataset(
    out_dir: str | Path,
    num_scenes: int,
    frames_per_seq: int,
    split: str = "val",
    size_wh: tuple[int, int] = (540, 720),
    seed: int = 0,
    first_scene_id: int = 0,
    progress: bool = True,
    depth_suffix: str = "",
) -> Path:
    """Render ``num_scenes`` scenes into ``out_dir/<split>/sXXXXX`` and return ``out_dir/<split>``.

    Args:
        out_dir: dataset root (the folder holding ``train/``, ``val/``).
        num_scenes: number of scenes to write.
        frames_per_seq: frames in each scan (``val``: the query scan ``seq1``; ``seq0`` has 1).
        split: ``"train"`` (two scans + overlaps.npz) or ``"val"`` (reference + query scan).
        size_wh: image size (W, H); Map-free uses 540 x 720 (portrait).
        seed: scene ``i`` is ``plan_mapfree_scene(seed, first_scene_id + i, ...)``.
        first_scene_id: id of the first scene folder (``s00000`` by default).
        progress: show a tqdm bar.
        depth_suffix: also write each frame's exact depth as a 16-bit millimetre PNG
            ``<frame stem><depth_suffix>`` (e.g. ``.depth.png``; "" = none), which
            ``mickey-train`` reads with ``data.depth_suffix``.

    Raises:
        ValueError: bad split or counts. FileExistsError: a scene folder already exists.
    """
    from tqdm import tqdm

    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if num_scenes < 1 or frames_per_seq < 1 or first_scene_id < 0:
        raise ValueError(
            "num_scenes and frames_per_seq must be >= 1 and first_scene_id >= 0, "
            f"got {num_scenes}, {frames_per_seq}, {first_scene_id}"
        )
    if split == "train" and frames_per_seq < 2:
        raise ValueError("train scenes need frames_per_seq >= 2 to form training pairs")
    split_dir = Path(out_dir) / split
    ids = range(first_scene_id, first_scene_id + num_scenes)
    existing = [f"s{i:05d}" for i in ids if (split_dir / f"s{i:05d}").exists()]
    if existing:
        raise FileExistsError(
            f"{split_dir} already holds {existing[:3]}; choose another --out "
            "or a --first-scene-id past them"
        )
    renderer = Renderer(load_texture_bank())
    try:
        for scene_id in tqdm(
            ids, desc=f"map-free {split} scenes", unit="scene", disable=not progress
        ):
            plan = plan_mapfree_scene(seed, scene_id, split, frames_per_seq)
            rng = np.random.default_rng([seed, scene_id, 1])  # photometry: intrinsics, exposure
            _write_scene(
                split_dir / f"s{scene_id:05d}", renderer, plan, rng, split, size_wh, depth_suffix
            )
    finally:
        renderer.release()
    return split_dir
