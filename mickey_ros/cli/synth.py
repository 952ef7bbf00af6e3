"""``mickey-ros synth``: synthetic scenes with exact metric ground truth.

    mickey-ros synth pairs   --out DIR --count N [--render-size 540x720] [--seed S] [--preset hard]
                             [--baseline-m MIN MAX] [--rotation-deg MIN MAX] [--max-rotation-deg D]
                             [--overlap MIN MAX] [--min-overlap X] [--scene room|courtyard|mixed]
                             [--no-previews]
    mickey-ros synth mapfree --out DIR --scenes N --frames-per-seq M [--split train|val]
                             [--render-size WxH] [--seed S] [--first-scene-id I]
                             [--depth-suffix .depth.png]
    mickey-ros synth rosbag  --out BAG [--storage sqlite3|mcap] [--seconds T] [--rate HZ]
                             [--render-size WxH] [--compressed] [--scene room|courtyard] [--seed S]
                             [--depth] [--no-optical-frame]

Thin wrappers over ``mickey_ros.synth``; formats and conventions are in docs/synthetic.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from mickey_ros.cli.main import UserError
from mickey_ros.cli.options import add_render_size_argument

MIN_RENDER_SIDE = 32  # smaller renders carry too few texture cells to be useful


def _pair_config(args: argparse.Namespace):
    from mickey_ros.synth.cameras import PairSamplingConfig, hard_pair_config

    base = hard_pair_config() if args.preset == "hard" else PairSamplingConfig()
    changes = {}
    if args.scene:
        changes["scene"] = args.scene
    if args.baseline_m:
        changes["baseline_m"] = tuple(args.baseline_m)
    rotation = list(args.rotation_deg or base.rotation_deg)
    if args.max_rotation_deg is not None:
        rotation[1] = args.max_rotation_deg
    changes["rotation_deg"] = (min(rotation[0], rotation[1]), rotation[1])
    overlap = list(args.overlap or base.overlap)
    if args.min_overlap is not None:
        overlap[0] = args.min_overlap
    changes["overlap"] = tuple(overlap)
    if args.long_view_fraction is not None:
        changes["long_view_fraction"] = args.long_view_fraction
    try:
        return dataclasses.replace(base, **changes)
    except ValueError as err:
        raise UserError(str(err)) from None


def _run_pairs(args: argparse.Namespace) -> int:
    from mickey_ros.synth.pairs import write_pairs

    config = _pair_config(args)
    start = time.perf_counter()
    out = write_pairs(
        args.out, args.count, args.render_size, args.seed, config, previews=not args.no_previews
    )
    elapsed = time.perf_counter() - start
    print(
        f"wrote {args.count} pairs to {out} (index: {out / 'pairs.json'}) "
        f"in {elapsed:.1f} s ({args.count / elapsed:.1f} pairs/s)"
    )
    return 0


def _run_mapfree(args: argparse.Namespace) -> int:
    from mickey_ros.synth.mapfree import write_mapfree_dataset

    out = write_mapfree_dataset(
        args.out,
        args.scenes,
        args.frames_per_seq,
        args.split,
        args.render_size,
        args.seed,
        args.first_scene_id,
        depth_suffix=args.depth_suffix,
    )
    print(f"wrote {args.scenes} {args.split} scenes in the Map-free layout to {out}")
    return 0


def _run_rosbag(args: argparse.Namespace) -> int:
    from mickey_ros.synth.rosbag import write_robot_bag

    out = write_robot_bag(
        args.out,
        args.seconds,
        args.rate,
        args.render_size,
        args.storage,
        args.compressed,
        args.seed,
        scene=args.scene,
        depth=args.depth,
        optical_frame_in_tf=not args.no_optical_frame,
    )
    print(f"wrote rosbag2 ({args.storage}) to {out}; play it with: ros2 bag play {out}")
    return 0


def _add_pairs(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pairs", help="image pairs with K, T_1_0, depth and overlap (.npz)")
    p.add_argument("--out", type=Path, required=True, help="output folder (new)")
    p.add_argument("--count", type=int, required=True, help="number of pairs")
    add_render_size_argument(p, (540, 720), "rendered image WxH (default 540x720)")
    p.add_argument("--seed", type=int, default=0, help="seed of the scenes and poses (default 0)")
    p.add_argument(
        "--preset",
        choices=["default", "hard"],
        default="default",
        help="default: 0.1-1.5 m, 0-30 deg, overlap 0.3-1; hard (Map-free-like): "
        "1-6 m, 20-60 deg, overlap 0.1-0.6, courtyards",
    )
    p.add_argument("--scene", choices=["room", "courtyard", "mixed"], help="kind of place")
    p.add_argument(
        "--baseline-m",
        type=float,
        nargs=2,
        metavar=("MIN", "MAX"),
        help="camera-centre distance range, metres",
    )
    p.add_argument(
        "--rotation-deg",
        type=float,
        nargs=2,
        metavar=("MIN", "MAX"),
        help="relative rotation range, degrees",
    )
    p.add_argument("--max-rotation-deg", type=float, help="upper end of the rotation range")
    p.add_argument(
        "--overlap",
        type=float,
        nargs=2,
        metavar=("MIN", "MAX"),
        help="co-visibility range in [0, 1]",
    )
    p.add_argument("--min-overlap", type=float, help="lower end of the overlap range")
    p.add_argument("--long-view-fraction", type=float, metavar="F",
                   help="share of first views looking down the longest line of the place (a "
                   "robot driving down a room; default 0)")
    p.add_argument("--no-previews", action="store_true", help="skip the JPEG previews")
    p.set_defaults(synth_run=_run_pairs)


def _add_mapfree(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mapfree", help="a dataset in the Map-free layout (sXXXXX/seq0, seq1)")
    p.add_argument("--out", type=Path, required=True, help="dataset root (gets <split>/sXXXXX)")
    p.add_argument("--scenes", type=int, required=True, help="number of scenes")
    p.add_argument("--frames-per-seq", type=int, required=True, help="frames per scan")
    p.add_argument("--split", choices=["train", "val"], default="val",
                   help="the dataset split the scenes go to (default val)")
    add_render_size_argument(p, (540, 720), "rendered image WxH (default 540x720)")
    p.add_argument("--seed", type=int, default=0, help="seed of the scenes and poses (default 0)")
    p.add_argument("--first-scene-id", type=int, default=0, help="number of the first sXXXXX")
    p.add_argument("--depth-suffix", default="", metavar="SUFFIX",
                   help="also write exact depth as 16-bit millimetre PNGs <frame stem>SUFFIX "
                        "(e.g. .depth.png), for mickey-train's data.depth_suffix")
    p.set_defaults(synth_run=_run_mapfree)


def _add_rosbag(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rosbag", help="a rosbag2 of a robot driving through a scene, with GT TF")
    p.add_argument("--out", type=Path, required=True, help="bag directory to create")
    p.add_argument("--storage", choices=["sqlite3", "mcap"], default="sqlite3",
                   help="rosbag2 storage plugin (default sqlite3)")
    p.add_argument("--seconds", type=float, default=10.0, help="length of the drive (default 10)")
    p.add_argument("--rate", type=float, default=5.0, help="camera rate in Hz")
    add_render_size_argument(p, (320, 240), "rendered image WxH (default 320x240)")
    p.add_argument(
        "--compressed",
        action="store_true",
        help="also write JPEG CompressedImage on <image>/compressed",
    )
    p.add_argument("--scene", choices=["room", "courtyard"], default="room",
                   help="kind of place driven through (default room)")
    p.add_argument("--seed", type=int, default=0, help="seed of the scene (default 0)")
    p.add_argument("--depth", action="store_true",
                   help="also write the registered depth (32FC1 metres) on /camera/depth/image_raw")
    p.add_argument("--no-optical-frame", action="store_true",
                   help="leave camera_link -> camera optical frame out of TF: images carry "
                   "camera_link, a body frame (x forward), as some drivers publish them")
    p.set_defaults(synth_run=_run_rosbag)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``synth`` and its sub-commands ``pairs``, ``mapfree`` and ``rosbag``."""
    parser = subparsers.add_parser("synth", help="synthetic scenes with exact metric ground truth")
    sub = parser.add_subparsers(dest="synth_command", required=True, metavar="KIND")
    _add_pairs(sub)
    _add_mapfree(sub)
    _add_rosbag(sub)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the chosen sub-command; rendering needs EGL, reported as a one-line error if absent."""
    from mickey_ros.synth.render import EGLUnavailableError

    if min(args.render_size) < MIN_RENDER_SIDE:
        W, H = args.render_size
        raise UserError(f"--render-size {W}x{H} is too small to render; use at least "
                        f"{MIN_RENDER_SIDE}x{MIN_RENDER_SIDE}")
    try:
        return int(args.synth_run(args))
    except (EGLUnavailableError, FileExistsError) as err:
        raise UserError(str(err)) from None
