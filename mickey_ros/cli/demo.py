"""``mickey-ros demo``: the whole pipeline in one command, on the bundled model.

Renders (or reuses) a small synthetic robot bag with ground-truth TF, replays it with the
embedded demo model exactly as the node would run, prints the summary and writes the report
PNG, a TUM trajectory and a CSV, all under ``--workdir`` (default ``~/.cache/mickey_ros/demo``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from mickey_ros.cli.main import UserError
from mickey_ros.cli.options import (
    add_backend_arguments,
    add_progress_argument,
    add_render_size_argument,
    backend_options,
    int_at_least,
    positive_float,
)

DEFAULT_WORKDIR = Path("~/.cache/mickey_ros/demo")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``demo``."""
    parser = subparsers.add_parser(
        "demo", help="render a synthetic robot bag and replay it with the bundled model",
        description="One-command demo: synthetic rosbag -> replay with the embedded model -> "
                    "summary and plot against ground truth.")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR,
                        help="cache for the bag and the outputs (default: %(default)s)")
    parser.add_argument("--seconds", type=positive_float, default=8.0,
                        help="bag length (default 8 s)")
    parser.add_argument("--rate", type=positive_float, default=5.0,
                        help="camera rate in Hz (default 5)")
    add_render_size_argument(parser, (320, 240), "rendered image size (default 320x240, the "
                             "demo model's training size); the network runs at this size")
    parser.add_argument("--seed", type=int, default=0, help="scene and path seed")
    parser.add_argument("--storage", default="mcap", choices=["sqlite3", "mcap"],
                        help="format of the rendered bag (default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    parser.add_argument("--every", type=int_at_least(1), default=1,
                        help="process every N-th frame")
    parser.add_argument("--tf-mode", default="relative",
                        choices=["relative", "attach_reference", "map_to_odom", "none"],
                        help="which transform is written to /tf (default: %(default)s)")
    add_backend_arguments(parser)
    add_progress_argument(parser)
    parser.set_defaults(run=run)


def _check_demo_model() -> None:
    from mickey_ros.estimator.relative_pose import DEMO_CHECKPOINT

    if not DEMO_CHECKPOINT.is_file():
        raise UserError(
            f"the bundled demo model is not there yet ({DEMO_CHECKPOINT}): it is trained by the "
            "project's training entry point (`mickey-train --config "
            "config/train/demo_cnn.yaml`, then `demo_cnn_continue.yaml` and `demo_cnn_s5.yaml`, "
            "see docs/demo_model.md). Until it ships, replay a bag with your own weights: "
            "`mickey-ros replay BAG --checkpoint mickey.ckpt --dinov2-weights F`"
        )


def demo_bag(args: argparse.Namespace, workdir: Path) -> Path:
    """The cached synthetic bag for these settings, rendered on first use."""
    W, H = args.render_size
    name = f"robot-seed{args.seed}-{args.seconds:g}s-{args.rate:g}hz-{W}x{H}-{args.storage}"
    bag = workdir / name
    if (bag / "metadata.yaml").is_file():
        print(f"reusing the synthetic bag {bag}")
        return bag
    from mickey_ros.synth.render import EGLUnavailableError
    from mickey_ros.synth.rosbag import write_robot_bag
    from mickey_ros.utils.outputs import discard_staging, publish_directory, staging_path

    partial = staging_path(bag)  # unique: two demos in one workdir never share it
    print(f"rendering a {args.seconds:g} s synthetic robot bag ({W}x{H} at {args.rate:g} Hz)...")
    try:
        write_robot_bag(partial, seconds=args.seconds, rate_hz=args.rate, size_wh=(W, H),
                        storage=args.storage, seed=args.seed, progress=not args.no_progress)
    except BaseException as err:
        discard_staging(partial)  # failed or interrupted: nothing half-written
        if isinstance(err, EGLUnavailableError):
            raise UserError(f"cannot render the synthetic bag: {err}") from None
        raise
    # metadata.yaml names the files inside, not the directory; a demo that finished the same
    # render first wins and this one's copy is dropped
    return publish_directory(partial, bag, keep_existing=True)


def run(args: argparse.Namespace) -> int:
    """Render or reuse the bag, replay it, print the summary."""
    import dataclasses

    from mickey_ros.relocalization.params import NodeParams
    from mickey_ros.replay.run import ReplayConfig, replay

    speed = backend_options(args)  # refused before any rendering
    _check_demo_model()
    workdir = args.workdir.expanduser()
    workdir.mkdir(parents=True, exist_ok=True)
    bag = demo_bag(args, workdir)
    node = NodeParams()
    node = dataclasses.replace(
        node, model=dataclasses.replace(node.model, checkpoint="demo", device=args.device,
                                        **speed),
        output=dataclasses.replace(node.output, tf_mode=args.tf_mode))
    cfg = ReplayConfig(
        reference_topic="/reference/image", every=args.every, node=node, storage="mcap",
        overwrite=True, ground_truth_tf=True, world_frame="odom", tum=str(workdir / "poses.txt"),
        csv=str(workdir / "frames.csv"), plot=str(workdir / "report.png"),
        progress=not args.no_progress,
    )
    start = time.perf_counter()
    result = replay(cfg, bag, workdir / f"{bag.name}-replay")
    print(result.report())
    print(f"demo finished in {time.perf_counter() - start:.0f} s; open {workdir / 'report.png'}")
    return 130 if result.interrupted else 0
