"""``mickey-ros keyframes build|info``: make and inspect a keyframe library (docs/keyframes.md).

``build`` takes posed images from a directory (Map-free ``poses.txt`` + ``intrinsics.txt``) or
from mapping bags with TF (the fixed frame and camera frame named, keyframes spaced by distance
and view angle, blurred frames skipped) and stores them with the model's features.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from mickey_ros.cli.main import UserError, add_model_arguments, print_note
from mickey_ros.cli.options import int_at_least, positive_float


def _add_build(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build", help="build a library from posed images or mapping bags",
                       description="Build a keyframe library: posed images + the model's "
                                   "features, written atomically.")
    p.add_argument("bags", nargs="*", type=Path, help="mapping rosbag2 directories / .mcap files")
    p.add_argument("--images", type=Path, help="directory of images (names as in --poses)")
    p.add_argument("--poses", type=Path, help="Map-free poses.txt (world-to-camera)")
    p.add_argument("--intrinsics", type=Path,
                   help="Map-free intrinsics.txt (default: beside --poses)")
    p.add_argument("--fixed-frame", default="map", help="bags: frame of the keyframe poses")
    p.add_argument("--image-topic", help="bags: image topic (default: the only one)")
    p.add_argument("--camera-frame", help="bags: optical frame (default: the image frame_id)")
    p.add_argument("--min-distance", type=float, default=0.5,
                   help="bags: metres between keyframes (default %(default)s)")
    p.add_argument("--min-angle", type=float, default=15.0,
                   help="bags: or degrees of turn between keyframes (default %(default)s)")
    p.add_argument("--min-sharpness", type=float, default=20.0,
                   help="bags: skip frames with a lower blur score (default %(default)s)")
    p.add_argument("--out", type=Path, required=True, help="library directory to write")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--overwrite", action="store_true", help="replace an existing library")
    mode.add_argument("--append", action="store_true", help="add to an existing library")
    add_model_arguments(p)
    p.set_defaults(run=run_build)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``keyframes``."""
    parser = subparsers.add_parser("keyframes", help="build or inspect a keyframe library",
                                   description="Keyframe libraries for relocalisation against "
                                               "many posed keyframes (docs/keyframes.md).")
    sub = parser.add_subparsers(dest="keyframes_command", required=True, metavar="ACTION")
    _add_build(sub)
    info = sub.add_parser("info", help="what a library holds (no model needed)")
    info.add_argument("library", type=Path, help="library directory")
    info.set_defaults(run=run_info)


def _estimator(args: argparse.Namespace):
    from mickey_ros.estimator.relative_pose import EstimatorConfig, RelativePoseEstimator
    from mickey_ros.keyframes.library import feature_source

    config = EstimatorConfig(device=args.device, precision=args.precision, resize=args.size,
                             seed=args.seed)
    checkpoint = args.checkpoint or "demo"
    est = RelativePoseEstimator.from_checkpoint(checkpoint, args.dinov2_weights, config)
    return est, feature_source(est, checkpoint)


def _keyframes(args: argparse.Namespace):
    from mickey_ros.keyframes.build import read_posed_bags, read_posed_directory

    if bool(args.bags) == bool(args.images or args.poses):
        raise UserError("give either mapping bags (BAG ... --fixed-frame map) or --images DIR "
                        "--poses poses.txt, not both or neither")
    if args.bags:
        return read_posed_bags(args.bags, args.fixed_frame, args.image_topic, args.camera_frame,
                               args.min_distance, args.min_angle, args.min_sharpness, print_note)
    if not (args.images and args.poses):
        raise UserError("--images and --poses go together (Map-free poses.txt: name qw qx qy qz "
                        "tx ty tz, world-to-camera)")
    return read_posed_directory(args.images, args.poses, args.intrinsics, print_note)


def run_build(args: argparse.Namespace) -> int:
    """Build the library; prints its size and time."""
    from mickey_ros.keyframes.build import build_library
    from mickey_ros.keyframes.store import LibraryError

    keyframes = _keyframes(args)
    start = time.perf_counter()
    est, source = _estimator(args)
    try:
        lib = build_library(args.out, est, source, keyframes, args.overwrite, args.append,
                            print_note)
    except (LibraryError, FileExistsError) as err:
        raise UserError(str(err)) from None
    print(f"keyframe library {args.out}: {len(lib)} keyframes, features of "
          f"{source.describe()}, {time.perf_counter() - start:.1f} s")
    return 0


def run_info(args: argparse.Namespace) -> int:
    """Print the manifest's summary and check each keyframe's files (no model loaded)."""
    from mickey_ros.keyframes.store import LibraryError, read_features, read_manifest

    try:
        manifest = read_manifest(args.library)
    except LibraryError as err:
        raise UserError(str(err)) from None
    bad = []
    for entry in manifest.keyframes:
        try:
            read_features(args.library, entry)
        except LibraryError as err:
            bad.append(str(err))
    print(f"{args.library}: {len(manifest.keyframes)} keyframes, features of "
          f"{manifest.source.describe()}")
    for line in bad:
        print(f"  {line}")
    return 1 if bad else 0


def add_library_arguments(group: argparse._ArgumentGroup) -> None:
    """``--keyframes LIB`` and its selection options (``mickey-ros replay``)."""
    group.add_argument("--keyframes", default="", metavar="LIB",
                       help="keyframe library (mickey-ros keyframes build): each frame is "
                       "localised in the map against its best keyframes (docs/keyframes.md)")
    group.add_argument("--keyframes-k", type=int_at_least(1), default=3, metavar="K",
                       help="library: keyframes tried per frame (default %(default)s)")
    group.add_argument("--no-retrieval", action="store_true",
                       help="library: no appearance retrieval without a pose prior")
    group.add_argument("--prior-radius", type=positive_float, default=3.0, metavar="M",
                       help="library: search radius around the prior, metres (default "
                       "%(default)s)")
    group.add_argument("--recheck-every", type=int_at_least(0), default=0, metavar="N",
                       help="library: while tracking, re-run the top-k check every N frames "
                       "(default 0: every frame)")


def localizer_options(args: argparse.Namespace):
    """The ``LocalizerConfig`` of the ``add_library_arguments`` flags (checked by argparse)."""
    from mickey_ros.keyframes.localizer import LocalizerConfig

    return LocalizerConfig(k=args.keyframes_k, retrieval=not args.no_retrieval,
                           prior_radius_m=args.prior_radius, recheck_every=args.recheck_every)
