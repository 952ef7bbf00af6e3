"""``mickey-ros replay``: run relocalisation over a rosbag2 recording without ROS.

A thin wrapper around ``mickey_ros.replay.run.replay``: flags become a ``ReplayConfig`` whose node
parameters start from ``--params`` (e.g. the robot's ``config/relocalize.yaml``) or the node's
defaults, with the model, tf_mode and gate flags applied on top.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from mickey_ros.cli.keyframes import add_library_arguments, localizer_options
from mickey_ros.cli.main import UserError, add_size_argument, check_device, check_working_size
from mickey_ros.cli.options import (
    add_backend_arguments,
    add_model_config_argument,
    add_progress_argument,
    backend_options,
    check_outputs,
    int_at_least,
)


def _floats(text: str, flag: str, count: int) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != count:
        raise UserError(f"{flag} expects {count} comma-separated numbers, got {text!r}")
    return values


def _add_input_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", type=Path, help="rosbag2 directory (sqlite3 or MCAP) or .mcap file")
    parser.add_argument("--list-topics", action="store_true", help="print the topics and exit")
    parser.add_argument("--camera", default="/camera/image_raw",
                        help="live image topic, Image or CompressedImage (default: %(default)s)")
    parser.add_argument("--camera-info", default="",
                        help="its CameraInfo topic (default: <camera namespace>/camera_info)")
    ref = parser.add_argument_group("keyframe (choose one)")
    ref.add_argument("--reference-topic", default="", help="keyframe image topic, e.g. "
                     "/reference/image (a new message replaces the keyframe, as in the node)")
    ref.add_argument("--reference-camera-info", default="", help="keyframe CameraInfo topic")
    ref.add_argument("--reference-frame-index", type=int_at_least(-1), default=-1,
                     help="use the N-th live frame as keyframe for all frames (-1: off)")
    ref.add_argument("--reference-image", default="", help="keyframe image file")
    ref.add_argument("--reference-K", default="",
                     help="fx,fy,cx,cy of --reference-image (default: the live camera's K)")
    add_library_arguments(ref)  # --keyframes LIB: library mode (mickey_ros.cli.keyframes)


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    model = parser.add_argument_group("model and node parameters")
    model.add_argument("--params", type=Path, help="node params YAML (config/relocalize.yaml); "
                       "the flags below override it")
    model.add_argument("--checkpoint", help="mickey.ckpt, one of ours, or 'demo' (default: the "
                       "params file's model.checkpoint, else the bundled demo model)")
    model.add_argument("--dinov2-weights", help="DINOv2 weight file for official checkpoints")
    add_model_config_argument(model, "RANDOM weights of this model config (e.g. mickey_tiny): "
                              "tests the pipeline only, poses are meaningless")
    model.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda if available)")
    model.add_argument("--precision", choices=["fp32", "fp16", "bf16", "auto"],
                       help="backbone precision (default: the params file's model.precision, "
                       "else fp32)")
    model.add_argument("--seed", type=int_at_least(0),
                       help="solver seed (default: the params file's model.seed, else 0)")
    add_size_argument(model, "network input size, e.g. 720x540 (default: the params file's "
                      "model.input_width/height, else the image size); K is rescaled")
    model.add_argument("--tf-mode", choices=["relative", "attach_reference", "map_to_odom", "none"],
                       help="which transform is written to /tf (docs/ros.md; default: the params "
                       "file's output.tf_mode)")
    model.add_argument("--min-confidence", type=float, help="gate: minimum inlier ratio in [0, 1]")
    model.add_argument("--camera-info-mode", choices=["sync", "latest"],
                       help="pair each image with the CameraInfo of its stamp (sync) or the "
                       "latest one (default: the params file's input.camera_info_mode)")
    model.add_argument("--publish-pose", action="store_true", help="also write ~/pose")
    model.add_argument("--namespace", default="", help="node namespace of the output topics")
    model.add_argument("--node-name", default="mickey_relocalizer",
                       help="node name in the output topics and frames (default: %(default)s)")
    add_backend_arguments(model, from_params=True)


def _add_output_args(parser: argparse.ArgumentParser) -> None:
    out = parser.add_argument_group("outputs")
    out.add_argument("--out", type=Path,
                     help="output bag (default: <bag>-replay-<model>-<tf_mode> beside the input "
                     "recording, or the first free <name>-2, -3, ...; --overwrite replaces the "
                     "default name instead)")
    out.add_argument("--storage", default="sqlite3", choices=["sqlite3", "mcap"],
                     help="output bag format (default: %(default)s)")
    out.add_argument("--overwrite", action="store_true", help="replace an existing output bag")
    out.add_argument("--every", type=int_at_least(1), default=1, help="process every N-th frame")
    out.add_argument("--max-frames", type=int_at_least(0), default=0,
                     help="stop after N frames (0 = all)")
    out.add_argument("--tum", default="", help="TUM trajectory of the published poses")
    out.add_argument("--csv", default="", help="per-frame CSV")
    out.add_argument("--plot", default="", help="PNG report (trajectory, errors, confidence)")
    out.add_argument("--ground-truth-tf", action="store_true",
                     help="score the poses against the bag's TF (camera poses in --world)")
    out.add_argument("--world", default="odom", help="fixed frame of the ground-truth TF")
    out.add_argument("--camera-frame", default="",
                     help="camera frame in the TF tree (default: the image header frame_id)")
    add_progress_argument(parser)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``replay``."""
    parser = subparsers.add_parser(
        "replay", help="replay a rosbag2 through the relocaliser (no ROS needed)",
        description="Write what the node would publish for a recording, and score it against "
                    "ground-truth TF.")
    _add_input_args(parser)
    _add_model_args(parser)
    _add_output_args(parser)
    parser.set_defaults(run=run)


def node_params(args: argparse.Namespace):
    """``NodeParams`` from ``--params`` (or defaults) with the command-line overrides."""
    from mickey_ros.relocalization.params import NodeParams, load_params_yaml

    params = load_params_yaml(args.params) if args.params else NodeParams()
    model, out, gate, inp = params.model, params.output, params.gate, params.input
    if args.checkpoint or args.model_config:
        model = dataclasses.replace(model, checkpoint=args.checkpoint or "",
                                    config=args.model_config or "")
    elif not model.checkpoint and not model.config:
        model = dataclasses.replace(model, checkpoint="demo")
    if args.dinov2_weights:
        model = dataclasses.replace(model, dinov2_weights=args.dinov2_weights)
    if args.device or not args.params:
        model = dataclasses.replace(model, device=args.device or _auto_device())
    if args.precision:
        model = dataclasses.replace(model, precision=args.precision)
    if args.seed is not None:
        model = dataclasses.replace(model, seed=args.seed)
    model = dataclasses.replace(model, **backend_options(args, model.backend))
    if args.size:
        model = dataclasses.replace(model, input_width=args.size[0], input_height=args.size[1])
    if model.input_width and model.input_height:
        check_working_size((model.input_width, model.input_height))
    if args.tf_mode:
        out = dataclasses.replace(out, tf_mode=args.tf_mode)
    if args.publish_pose:
        out = dataclasses.replace(out, publish_pose=True)
    if args.min_confidence is not None:
        gate = dataclasses.replace(gate, min_confidence=args.min_confidence)
    if args.camera_info_mode:
        inp = dataclasses.replace(inp, camera_info_mode=args.camera_info_mode)
    return dataclasses.replace(params, model=model, output=out, gate=gate, input=inp)


def _auto_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def replay_config(args: argparse.Namespace):
    """The ``ReplayConfig`` of the parsed flags."""
    from mickey_ros.replay.run import ReplayConfig

    return ReplayConfig(
        camera_topic=args.camera, camera_info_topic=args.camera_info,
        reference_topic=args.reference_topic,
        reference_camera_info_topic=args.reference_camera_info,
        reference_frame_index=args.reference_frame_index, reference_image=args.reference_image,
        keyframes=args.keyframes, keyframes_options=localizer_options(args),
        reference_intrinsics=_floats(args.reference_K, "--reference-K", 4)
        if args.reference_K else (),
        every=args.every, max_frames=args.max_frames, node=node_params(args),
        namespace=args.namespace, node_name=args.node_name, storage=args.storage,
        overwrite=args.overwrite, ground_truth_tf=args.ground_truth_tf, world_frame=args.world,
        camera_frame=args.camera_frame, tum=args.tum, csv=args.csv, plot=args.plot,
        progress=not args.no_progress,
    )


def _list_topics(bag: Path) -> int:
    from mickey_ros.bags.reader import BagReader

    with BagReader(bag) as reader:
        print(f"{bag}:\n{reader.describe_topics()}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Replay, print the report; 130 after Ctrl-C (the partial outputs are kept)."""
    from mickey_ros.replay.run import default_output, replay

    if args.list_topics:
        return _list_topics(args.bag)
    cfg = replay_config(args)
    check_outputs({"--out": args.out or default_output(cfg, args.bag), "--tum": args.tum,
                   "--csv": args.csv, "--plot": args.plot}, directories=("--out",))
    device = cfg.node.model.device
    if args.params and not args.device:  # from the params file: say the fix in CLI terms
        try:
            check_device(device)
        except UserError:
            raise UserError(f"{args.params} sets model.device {device!r} but torch sees no "
                            "usable CUDA GPU; pass --device cpu") from None
    try:
        result = replay(cfg, args.bag, args.out)
    except FileExistsError as err:
        raise UserError(str(err)) from None
    print(result.report())
    if result.interrupted:
        print("interrupted: the output bag and files hold the frames done so far",
              file=sys.stderr)
        return 130
    return 0
