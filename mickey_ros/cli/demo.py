"""``mickey-ros demo``: the whole pipeline in one command, on the bundled model.

Renders (or reuses) a small synthetic robot bag with ground-truth TF, replays it with the
embedded demo model exactly as the node would run, prints the summary and writes the report
PNG, a TUM trajectory and a CSV, all under ``--workdir`` (default ``~/.cache/mickey_ros/demo``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from mickey_ros.cli.main import UserError, add_size_argument

DEFAULT_WORKDIR = Path("~/.cache/mickey_ros/demo")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``demo``."""
    parser = subparsers.add_parser(
        "demo", help="render a synthetic robot bag and replay it with the bundled model",
        description="One-command demo: synthetic rosbag -> replay with the embedded model -> "
                    "summary and plot against ground truth.")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR,
                        help="cache for the bag and the outputs (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=8.0, help="bag length (default 8 s)")
    parser.add_argument("--rate", type=float, default=5.0, help="camera rate in Hz (default 5)")
    add_size_argument(parser, "image size (default 320x240, the demo model's training size)",
                      default=(320, 240))
    parser.add_argument("--seed", type=int, default=0, help="scene and path seed")
    parser.add_argument("--storage", default="mcap", choices=["sqlite3", "mcap"])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    parser.add_argument("--every", type=int, default=1, help="process every N-th frame")
    parser.add_argument("--tf-mode", default="relative",
                        choices=["relative", "attach_reference", "map_to_odom", "none"])
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(run=run)


def _check_demo_model() -> None:
    from mickey_ros.estimator.relative_pose import DEMO_CHECKPOINT

    if not DEMO_CHECKPOINT.is_file():
        raise UserError(
            f"the bundled demo model is not there yet ({DEMO_CHECKPOINT}): it is trained by the "
            "project's training entry point (`mickey-train --config "
            "config/train/demo_cnn.yaml`, then `demo_cnn_continue.yaml` and `demo_cnn_s5.yaml`, "
            "see docs/training.md). Until it ships, replay a bag with your own weights: "
            "`mickey-ros replay BAG --checkpoint mickey.ckpt --dinov2-weights F`"
        )


def demo_bag(args: argparse.Namespace, workdir: Path) -> Path:
    """The cached synthetic bag for these settings, rendered on first use."""
    W, H = args.size
    name = f"robot-seed{args.seed}-{args.seconds:g}s-{args.rate:g}hz-{W}x{H}-{args.storage}"
    bag = workdir / name
    if (bag / "metadata.yaml").is_file():
        print(f"reusing the synthetic bag {bag}")
        return bag
    from mickey_ros.synth.render import EGLUnavailableError
    from mickey_ros.synth.rosbag import write_robot_bag

    partial = workdir / f"{name}.partial"
    if partial.exists():
        import shutil

        shutil.rmtree(partial)  # an interrupted earlier render
    print(f"rendering a {args.seconds:g} s synthetic robot bag ({W}x{H} at {args.rate:g} Hz)...")
    try:
        write_robot_bag(partial, seconds=args.seconds, rate_hz=args.rate, size_wh=(W, H),
                        storage=args.storage, seed=args.seed, progress=not args.no_progress)
    except EGLUnavailableError as err:
        raise UserError(f"cannot render the synthetic bag: {err}") from None
    partial.rename(bag)  # metadata.yaml names the files inside, not the directory
    return bag


def run(args: argparse.Namespace) -> int:
    """Render or reuse the bag, replay it, print the summary."""
    import dataclasses

    from mickey_ros.relocalization.params import NodeParams
    from mickey_ros.replay.run import ReplayConfig, replay

    _check_demo_model()
    workdir = args.workdir.expanduser()
    workdir.mkdir(parents=True, exist_ok=True)
    bag = demo_bag(args, workdir)
    node = NodeParams()
    node = dataclasses.replace(
        node, model=dataclasses.replace(node.model, checkpoint="demo", device=args.device),
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
