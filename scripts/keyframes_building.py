"""Measure the keyframe library in a synthetic building (the figures of docs/keyframes.md).

A building of ``--rooms`` furnished rooms side by side (the project's renderer, one room scene
per room, placed ``SPACING_M`` apart along the map's x axis), a mapping drive (one loop per
room, written as a Map-free directory and built into a library with `mickey-ros keyframes
build`) and a different test drive (a smaller loop, other phase and height). With the bundled
demo model it reports: the share of test frames with a gated pose within 0.5 m / 5 deg for the
library against the best single keyframe, retrieval recall@k, kidnapped-robot recovery, latency
per live frame against k, memory per keyframe and the load time of a 500-keyframe library.

    OMP_NUM_THREADS=1 python scripts/keyframes_building.py --workdir /tmp/kf_building
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

SPACING_M = 14.0  # room centres along x (rooms are at most 10 m long)
ROOM_HALF = (4.5, 3.2)  # half extent (x, y) of every room, metres
SIZE_WH = (320, 240)  # the demo model's training size
EYE_Z = 1.0  # camera height of the mapping drive, metres
GOOD_M, GOOD_DEG = 0.5, 5.0  # a correct pose
RIGHT_M, RIGHT_DEG = 2.0, 45.0  # a "right" keyframe for recall@k: same room, this near


def loop_poses(centre: np.ndarray, radii: tuple[float, float], n: int, phase: float,
               z: float, yaw_offset_deg: float) -> list[np.ndarray]:
    """``T_map_camera`` of ``n`` cameras on an ellipse, looking along it (+ an offset)."""
    from mickey_ros.synth.cameras import look_at

    poses = []
    for s in phase + np.arange(n) * 2 * np.pi / n:
        eye = centre + np.array([radii[0] * np.cos(s), radii[1] * np.sin(s), z])
        tangent = np.array([-radii[0] * np.sin(s), radii[1] * np.cos(s)])
        yaw = np.arctan2(tangent[1], tangent[0]) + np.radians(yaw_offset_deg)
        target = eye + np.array([np.cos(yaw), np.sin(yaw), -0.08])
        poses.append(np.linalg.inv(look_at(eye, target)))
    return poses


def plan(rooms: int, map_per_room: int, test_per_room: int) -> dict:
    """Room centres and both drives (room index per pose)."""
    centres = [np.array([i * SPACING_M, 0.0, 0.0]) for i in range(rooms)]
    drives = {"map": [], "test": []}
    for r, c in enumerate(centres):
        for T in loop_poses(c, (2.4, 1.5), map_per_room, 0.0, EYE_Z, 0.0):
            drives["map"].append((r, T))
        # another loop: 0.2 m inside, half a mapping step out of phase, higher, turned 8 deg
        phase = np.pi / map_per_room
        for T in loop_poses(c, (2.2, 1.3), test_per_room, phase, EYE_Z + 0.1, 8.0):
            drives["test"].append((r, T))
    return {"centres": centres, **drives}


def render_drives(layout: dict, seed: int) -> tuple[dict, np.ndarray]:
    """RGB images of both drives; the rooms are rendered one at a time (they never see each
    other: each is a closed box)."""
    from mickey_ros.synth.cameras import PairSamplingConfig, sample_intrinsics
    from mickey_ros.synth.pairs import random_exposure
    from mickey_ros.synth.render import Exposure, Renderer
    from mickey_ros.synth.scene import make_room
    from mickey_ros.synth.textures import load_texture_bank

    bank = load_texture_bank()
    renderer = Renderer(bank)
    rng = np.random.default_rng([seed, 29])
    K = sample_intrinsics(rng, SIZE_WH, PairSamplingConfig().focal_ratio)
    images: dict = {"map": [], "test": []}
    for r, centre in enumerate(layout["centres"]):
        path = [T[:3, 3] - centre for kind in ("map", "test") for rr, T in layout[kind] if rr == r]
        keep_clear = tuple((p[0], p[1], 0.0, 0.8) for p in path)
        room = make_room(np.random.default_rng([seed, r]), bank, keep_clear, half_extent=ROOM_HALF)
        renderer.set_scene(room)
        base = random_exposure(rng, PairSamplingConfig())
        T_room_map = np.eye(4)
        T_room_map[:3, 3] = -centre
        for kind in ("map", "test"):
            for rr, T_map_cam in layout[kind]:
                if rr != r:
                    continue
                exposure = Exposure(base.gain, base.noise_sigma, int(rng.integers(2**31)))
                T_cam_room = np.linalg.inv(T_room_map @ T_map_cam)
                images[kind].append(renderer.render(T_cam_room, K, SIZE_WH, exposure)[0])
    renderer.release()
    return images, K


def write_mapping_directory(out: Path, layout: dict, images: list, K: np.ndarray) -> None:
    """Map-free layout: images/*.png, poses.txt (world-to-camera), intrinsics.txt."""
    import cv2
    import torch

    from mickey_ros.geometry.pose import rotmat_to_quat_wxyz
    from mickey_ros.mapfree.files import format_pose_line

    (out / "images").mkdir(parents=True, exist_ok=True)
    poses, intr = [], []
    for i, ((_, T_map_cam), rgb) in enumerate(zip(layout["map"], images)):
        name = f"images/map_{i:04d}.png"
        cv2.imwrite(str(out / name), rgb[..., ::-1])
        T_cam_map = np.linalg.inv(T_map_cam)
        q = rotmat_to_quat_wxyz(torch.from_numpy(T_cam_map[:3, :3])).numpy()
        poses.append(format_pose_line(name, q, T_cam_map[:3, 3]))
        intr.append(f"{name} {K[0, 0]} {K[1, 1]} {K[0, 2]} {K[1, 2]} {SIZE_WH[0]} {SIZE_WH[1]}")
    (out / "poses.txt").write_text("\n".join(poses) + "\n")
    (out / "intrinsics.txt").write_text("\n".join(intr) + "\n")


def pose_error(T_est: np.ndarray, T_gt: np.ndarray) -> tuple[float, float]:
    """(metres, degrees) between two camera poses."""
    from mickey_ros.geometry.pose import rotation_angle_deg

    dt = float(np.linalg.norm(T_est[:3, 3] - T_gt[:3, 3]))
    return dt, rotation_angle_deg(T_est[:3, :3].T @ T_gt[:3, :3])


def correct(fix_T: np.ndarray | None, ok: bool, T_gt: np.ndarray) -> bool:
    """A gated pose within GOOD_M / GOOD_DEG."""
    if not ok or fix_T is None:
        return False
    dt, dr = pose_error(fix_T, T_gt)
    return dt <= GOOD_M and dr <= GOOD_DEG


def run_drive(localizer, images: list, K: np.ndarray, truth: list, gate: float,
              odometry: bool, good: np.ndarray) -> list[dict]:
    """The test drive in order, no prior at the start: one record per frame.

    With ``odometry`` the prior of each frame is the last accepted fix moved on by the ground-truth
    camera motion since (what ``LibrarySession`` builds from TF map -> odom -> camera); rooms are
    joined by a jump that odometry does not see (a kidnapping with a stale prior).
    """
    records, last = [], None  # last: (fix T_map_camera, T_gt of that frame)
    index = {e.id: m for m, e in enumerate(localizer.library.entries)}
    for i, (rgb, (room, T_gt)) in enumerate(zip(images, truth)):
        prior = None
        if odometry and last is not None:
            T_gt_prev = truth[i - 1][1] if truth[i - 1][0] == room else T_gt
            prior = last @ np.linalg.inv(T_gt_prev) @ T_gt  # a jump between rooms: unseen
        start = time.perf_counter()
        fix = localizer.localize(rgb, K, prior)
        ms = (time.perf_counter() - start) * 1e3
        ok = fix.estimate.valid and fix.estimate.inlier_ratio >= gate
        if ok:
            last = fix.T_map_camera
        elif odometry and last is not None and i > 0:
            T_gt_prev = truth[i - 1][1] if truth[i - 1][0] == room else T_gt
            last = last @ np.linalg.inv(T_gt_prev) @ T_gt  # dead reckoning until the next fix
        tried = [index[c] for c in fix.candidates]
        records.append({"frame": i, "room": room, "mode": fix.mode, "ms": ms,
                        "keyframe": fix.keyframe.id if fix.keyframe else "",
                        "correct": correct(fix.T_map_camera, ok, T_gt), "published": ok,
                        "candidate_good": bool(good[tried, i].any()) if tried else False})
    return records


def single_keyframe_matrix(lib, images: list, K: np.ndarray, truth: list, kf_rooms: list,
                           gate: float) -> np.ndarray:
    """(M, T) bool: keyframe m alone gives test frame t a correct gated pose. Keyframes of other
    rooms are not run (a closed room shares no view with another: counted as not correct)."""
    from mickey_ros.geometry.pose import invert_transform

    est = lib.estimator
    good = np.zeros((len(lib), len(images)), bool)
    for t, (rgb, (room, T_gt)) in enumerate(zip(images, truth)):
        members = [m for m in range(len(lib)) if kf_rooms[m] == room]
        query = est.extract_features(rgb, K)
        for m, e in zip(members, est.estimate_against(query, [lib.features[m] for m in members])):
            if e.valid:
                T = lib.entries[m].T_map_camera @ invert_transform(e.T_query_ref)
                good[m, t] = correct(T, e.inlier_ratio >= gate, T_gt)
    return good


def recall_at_k(lib, images: list, K: np.ndarray, truth: list, kf_rooms: list,
                good: np.ndarray, ks=(1, 3, 5, 10)) -> dict:
    """Share of test frames whose top-k retrieved keyframes hold a right one: 'nearest' (the one
    a perfect prior would rank first), 'near' (any in the same room within RIGHT_M and
    RIGHT_DEG) and 'useful' (one that alone gives a correct pose)."""
    from mickey_ros.keyframes.descriptor import pooled_descriptor, rank_by_similarity
    from mickey_ros.keyframes.selection import select_near_prior, view_angle_deg

    poses, est = lib.poses, lib.estimator
    hits = {f"{kind}@{k}": [] for kind in ("nearest", "near", "useful") for k in ks}
    for t, (rgb, (room, T_gt)) in enumerate(zip(images, truth)):
        f = est.extract_features(rgb, K).feats
        order, _ = rank_by_similarity(pooled_descriptor(f.descriptors[0], f.scores[0],
                                                        f.grid_hw), lib.descriptors)
        dist = np.linalg.norm(poses[:, :3, 3] - T_gt[:3, 3], axis=1)
        near = (np.asarray(kf_rooms) == room) & (dist <= RIGHT_M) & (
            view_angle_deg(T_gt, poses) <= RIGHT_DEG)
        nearest = select_near_prior(T_gt, poses, 1, RIGHT_M, RIGHT_DEG)
        for k in ks:
            if nearest:
                hits[f"nearest@{k}"].append(nearest[0] in order[:k].tolist())
            if near.any():
                hits[f"near@{k}"].append(bool(near[order[:k]].any()))
            if good[:, t].any():
                hits[f"useful@{k}"].append(bool(good[order[:k], t].any()))
    return {key: (float(np.mean(v)), len(v)) for key, v in hits.items()}


def kidnapped(localizer, images: list, K: np.ndarray, truth: list, gate: float,
              starts: list[int], limit: int = 10) -> list[int]:
    """Frames until the first correct fix after the prior is removed (``reset``), from each
    start frame, continuing along that room's loop; ``limit + 1`` = not recovered."""
    out = []
    for s in starts:
        room = truth[s][0]
        loop = [i for i, (r, _) in enumerate(truth) if r == room]
        order = loop[loop.index(s):] + loop[:loop.index(s)]
        localizer.reset()
        frames = limit + 1
        for n, i in enumerate(order[:limit], start=1):
            fix = localizer.localize(images[i], K)
            ok = fix.estimate.valid and fix.estimate.inlier_ratio >= gate
            if correct(fix.T_map_camera, ok, truth[i][1]):
                frames = n
                break
        out.append(frames)
    return out


def latency_by_k(lib, images: list, K: np.ndarray, ks=(1, 2, 4, 8), frames: int = 5) -> dict:
    """Median ms per live frame with k candidates (retrieval forced: the prior is reset)."""
    from mickey_ros.keyframes import LibraryLocalizer, LocalizerConfig

    pick = images[:: max(1, len(images) // frames)][:frames]
    times: dict[int, list[float]] = {k: [] for k in ks}
    for rgb in pick:  # interleaved: every k on the same frame, one after the other
        for k in ks:
            loc = LibraryLocalizer(lib, LocalizerConfig(k=min(k, len(lib))))
            start = time.perf_counter()
            loc.localize(rgb, K)
            times[k].append((time.perf_counter() - start) * 1e3)
    return {k: float(np.median(v)) for k, v in times.items()}


def load_500(lib_dir: Path, est, source, count: int = 500) -> tuple[float, int]:
    """Seconds to open a library of ``count`` keyframes (copies of the built ones)."""
    from mickey_ros.keyframes import KeyframeLibrary
    from mickey_ros.keyframes.store import KeyframeEntry, read_manifest, write_manifest

    big = lib_dir.with_name(lib_dir.name + f"-{count}")
    shutil.rmtree(big, ignore_errors=True)
    manifest = read_manifest(lib_dir)
    (big / "images").mkdir(parents=True)
    (big / "features").mkdir()
    entries = []
    for i in range(count):
        src = manifest.keyframes[i % len(manifest.keyframes)]
        e = KeyframeEntry(f"copy{i:05d}", src.K, src.T_map_camera, src.stamp_ns, src.source)
        shutil.copy(lib_dir / src.image_file, big / e.image_file)
        shutil.copy(lib_dir / src.features_file, big / e.features_file)
        entries.append(e)
    manifest.keyframes = entries
    write_manifest(big, manifest)
    start = time.perf_counter()
    lib = KeyframeLibrary.open(big, est, source)
    return time.perf_counter() - start, len(lib)


def main() -> None:
    from mickey_ros.cli.main import main as cli
    from mickey_ros.estimator.relative_pose import EstimatorConfig, RelativePoseEstimator
    from mickey_ros.keyframes import KeyframeLibrary, LibraryLocalizer, LocalizerConfig
    from mickey_ros.keyframes.library import feature_source
    from mickey_ros.relocalization.session import SessionConfig

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/kf_building"))
    ap.add_argument("--rooms", type=int, default=4)
    ap.add_argument("--map-per-room", type=int, default=12)
    ap.add_argument("--test-per-room", type=int, default=8)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--retrieval-check", type=int, default=1,
                    help="LocalizerConfig.retrieval_check of the drives (0: prior only)")
    args = ap.parse_args()
    gate = SessionConfig().min_confidence
    layout = plan(args.rooms, args.map_per_room, args.test_per_room)
    images, K = render_drives(layout, args.seed)
    mapping = args.workdir / "mapping"
    shutil.rmtree(mapping, ignore_errors=True)
    write_mapping_directory(mapping, layout, images["map"], K)
    lib_dir = args.workdir / "library"
    start = time.perf_counter()
    code = cli(["keyframes", "build", "--images", str(mapping), "--poses",
                str(mapping / "poses.txt"), "--out", str(lib_dir), "--overwrite"])
    assert code == 0, f"keyframes build failed with {code}"
    build_s = time.perf_counter() - start
    est = RelativePoseEstimator.from_checkpoint("demo", config=EstimatorConfig(seed=0))
    source = feature_source(est, "demo")
    lib = KeyframeLibrary.open(lib_dir, est, source)
    kf_rooms = [layout["map"][int(e.source.split("_")[1][:4])][0] for e in lib.entries]
    test, truth = images["test"], layout["test"]
    good = single_keyframe_matrix(lib, test, K, truth, kf_rooms, gate)
    drives = {}
    for name, track, odometry in (("odometry", False, True), ("track", True, False),
                                  ("retrieval", False, False)):
        options = LocalizerConfig(k=args.k, min_confidence=gate, track=track,
                                  retrieval_check=args.retrieval_check)
        drives[name] = run_drive(LibraryLocalizer(lib, options), test, K, truth, gate,
                                 odometry, good)
    drive = drives["odometry"]
    starts = list(range(0, len(test), 3))
    kid = kidnapped(LibraryLocalizer(lib, LocalizerConfig(k=args.k, min_confidence=gate)),
                    test, K, truth, gate, starts)
    room_starts = [next(r["frame"] for r in drive if r["room"] == room)
                   for room in range(1, args.rooms)]
    stale = []
    for s in room_starts:  # the drive jumps rooms with the old room's fix as prior
        after = [r for r in drive[s:] if r["room"] == drive[s]["room"]]
        stale.append(next((n for n, r in enumerate(after, 1) if r["correct"]), len(after) + 1))
    disk = sum(f.stat().st_size for f in lib_dir.rglob("*") if f.is_file()) / len(lib)
    load_s, loaded = load_500(lib_dir, est, source)
    result = {
        "load_avg": os.getloadavg(), "torch_threads": __import__("torch").get_num_threads(),
        "keyframes": len(lib), "test_frames": len(test), "gate": gate, "k": args.k,
        "build_s": build_s,
        "library": {name: {"share": float(np.mean([r["correct"] for r in d])),
                           "published": float(np.mean([r["published"] for r in d])),
                           "candidate_good": float(np.mean([r["candidate_good"] for r in d])),
                           "modes": {m: sum(r["mode"] == m for r in d) for m in
                                     ("prior", "retrieval", "tracking", "none")}}
                    for name, d in drives.items()},
        "single_best_share": float(good.sum(1).max() / len(test)),
        "single_best_in_its_room": float(max(
            good[m].sum() / sum(r == kf_rooms[m] for r, _ in truth) for m in range(len(lib)))),
        "single_best_keyframe": lib.entries[int(good.sum(1).argmax())].id,
        "oracle_share": float(good.any(0).mean()),
        "recall": recall_at_k(lib, test, K, truth, kf_rooms, good),
        "kidnapped_frames": kid, "stale_prior_frames": stale,
        "latency_ms_by_k": latency_by_k(lib, test, K),
        "memory_bytes_per_keyframe": lib.memory_bytes() / len(lib),
        "disk_bytes_per_keyframe": disk, "load_s": load_s, "loaded": loaded,
        "drive_ms_median": float(np.median([r["ms"] for r in drive])),
    }
    (args.workdir / "result.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
