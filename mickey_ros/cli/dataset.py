"""``mickey-ros dataset BAG [BAG ...] --out DIR --fixed-frame odom``: bags -> Map-free layout.

A thin wrapper over ``mickey_ros.dataset.convert.main``; see docs/datasets.md.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from mickey_ros.cli.main import UserError


def _fractions(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--split takes fractions like 0.8,0.2 or 0.7,0.15,0.15, got {text!r}") from None


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``dataset``."""
    from mickey_ros.dataset.config import DatasetConfig

    d = DatasetConfig()
    p = subparsers.add_parser(
        "dataset", help="robot bags -> a Map-free-layout training set (mickey-train --data)",
        description="Convert rosbags (ROS 2 sqlite3/MCAP, ROS 1 .bag) with a camera and TF into "
        "the Map-free layout: keyframes, co-visible pairs, time-block splits, a summary.")
    p.add_argument("bags", nargs="+", type=Path, metavar="BAG", help="rosbag2 folders or files")
    p.add_argument("--out", type=Path, required=True, help="dataset folder to create")
    p.add_argument("--fixed-frame", default=d.fixed_frame, help="poses in this frame (map, odom)")
    p.add_argument("--image-topic", help="Image or CompressedImage topic (default: the only one)")
    p.add_argument("--camera-frame", help="the images' frame (default: their frame_id)")
    p.add_argument("--pose-topic", help="PoseStamped/Odometry topic instead of /tf (mocap)")
    p.add_argument("--depth-topic", help="registered depth (16UC1 mm / 32FC1 m): depth overlaps")
    p.add_argument("--camera-convention", default=d.camera_convention,
                   choices=("auto", "optical", "body"),
                   help="camera frame: REP 103 optical, or a body frame (x forward, z up)")
    p.add_argument("--max-tf-gap", type=float, default=d.max_tf_gap_s, metavar="S",
                   help="refuse frames whose TF samples around them are farther apart (s)")
    p.add_argument("--min-translation", type=float, default=d.min_translation_m, metavar="M",
                   help="keyframe after this much motion (m)")
    p.add_argument("--min-rotation", type=float, default=d.min_rotation_deg, metavar="DEG",
                   help="... or this much rotation (deg)")
    p.add_argument("--blur-ratio", type=float, default=d.blur_ratio,
                   help="drop frames below this fraction of their neighbours' sharpness")
    p.add_argument("--max-speed", type=float, default=d.max_speed_mps, metavar="M/S",
                   help="faster between two frames is a jump: a new scene")
    p.add_argument("--prior-depth", type=float, default=d.prior_depth_m, metavar="M",
                   help="scene depth assumed for overlaps without a depth topic (m)")
    p.add_argument("--max-baseline", type=float, default=d.max_baseline_m, metavar="M",
                   help="pairs at most this far apart (m)")
    p.add_argument("--max-angle", type=float, default=d.max_angle_deg, metavar="DEG",
                   help="pairs whose viewing directions differ at most this much (deg)")
    p.add_argument("--split", type=_fractions, default=d.split_fractions, metavar="F,F[,F]",
                   help="train,val[,test] fractions of each continuous part's duration")
    p.add_argument("--guard", type=float, default=d.guard_s, metavar="S",
                   help="seconds of frames left out between split blocks")
    p.add_argument("--eval-min-overlap", type=float, default=d.eval_min_overlap,
                   help="held-out queries share at least this overlap with their reference")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Convert and print the summary."""
    from mickey_ros.dataset.config import DatasetConfig
    from mickey_ros.dataset.convert import main
    from mickey_ros.dataset.summary import summary_text

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    cfg = DatasetConfig(
        fixed_frame=args.fixed_frame, image_topic=args.image_topic,
        camera_frame=args.camera_frame, pose_topic=args.pose_topic,
        depth_topic=args.depth_topic, camera_convention=args.camera_convention,
        max_tf_gap_s=args.max_tf_gap, min_translation_m=args.min_translation,
        min_rotation_deg=args.min_rotation, blur_ratio=args.blur_ratio,
        max_speed_mps=args.max_speed, prior_depth_m=args.prior_depth,
        max_baseline_m=args.max_baseline, max_angle_deg=args.max_angle,
        split_fractions=tuple(args.split), guard_s=args.guard,
        eval_min_overlap=args.eval_min_overlap,
    )
    for bag in args.bags:
        if not bag.exists():
            raise UserError(f"bag {bag} does not exist")
    out = main(cfg, args.bags, args.out, progress=not args.no_progress)
    import json

    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    print(summary_text(summary))
    print(f"wrote {out} (summary.txt, pairs.png, trajectory.png)")
    return 0
