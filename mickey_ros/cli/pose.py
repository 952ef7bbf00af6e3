"""``mickey-ros pose``: metric relative pose of one image pair."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mickey_ros.cli.main import (
    UserError,
    add_model_arguments,
    check_working_size,
    default_working_size,
    print_note,
)
from mickey_ros.cli.options import add_backend_arguments, backend_options, check_outputs
from mickey_ros.mapfree.files import CameraIntrinsics, intrinsics_matrix, lookup_intrinsics


class Notes:
    """Prints each ``note:`` line to stderr once (the same image given twice says it once)."""

    def __init__(self) -> None:
        self.said: list[str] = []

    def __call__(self, text: str) -> None:  # noqa: D102
        if text not in self.said:
            self.said.append(text)
            print_note(text)


def _parse_k(text: str, flag: str) -> np.ndarray:
    try:
        fx, fy, cx, cy = (float(v) for v in text.split(","))
    except ValueError:
        raise UserError(
            f"{flag} expects 'fx,fy,cx,cy' (four comma-separated numbers), got {text!r}"
        ) from None
    return intrinsics_matrix(fx, fy, cx, cy)


def intrinsics_for_image(
    cam: CameraIntrinsics,
    image_wh: tuple[int, int],
    where: str,
    note: Callable[[str], object] = print_note,
) -> np.ndarray:
    """K for an image of ``image_wh`` from a line stating another size: scaled, or refused.

    Args:
        cam: the intrinsics line (K and the width x height it was calibrated at).
        image_wh: (W, H) of the image file.
        where: names the line in messages.
        note: called with one line when K is scaled.

    Returns:
        (3, 3) K for the image: the line's K when the sizes agree, else K scaled (pixel-centre
        convention) when the aspect ratio is the same (a resized copy of the calibrated image).

    Raises:
        UserError: the aspect ratio differs (a crop or another camera: scaling cannot be right).
    """
    from mickey_ros.estimator.relative_pose import aspect_differs
    from mickey_ros.utils.images import scale_intrinsics

    stated = (cam.width, cam.height)
    if stated == tuple(image_wh) or min(stated) <= 0:
        return cam.K
    if aspect_differs(stated, image_wh):
        why = ("width and height swapped: a rotated image? files are read as stored, without "
               "EXIF rotation" if stated == tuple(image_wh)[::-1] else "a crop or another camera")
        raise UserError(
            f"{where} states {stated[0]}x{stated[1]} but the image is {image_wh[0]}x{image_wh[1]} "
            f"(another aspect ratio: {why}); fix the line's K and size, or pass --ref-K/--query-K"
        )
    note(f"{where} is for {stated[0]}x{stated[1]}; K scaled to the image's "
          f"{image_wh[0]}x{image_wh[1]}")
    return scale_intrinsics(cam.K, image_wh[0] / stated[0], image_wh[1] / stated[1])


def _intrinsics(args: argparse.Namespace, which: str, rgb: np.ndarray, note: Notes) -> np.ndarray:
    text, image = getattr(args, f"{which}_K"), getattr(args, which)
    if text:
        return _parse_k(text, f"--{which}-K")
    cam = lookup_intrinsics(args.intrinsics, image)
    return intrinsics_for_image(cam, (rgb.shape[1], rgb.shape[0]), f"{args.intrinsics}: {image}",
                                note)


def working_size(
    args: argparse.Namespace, ref_rgb: np.ndarray, query_rgb: np.ndarray, note: Notes
) -> tuple[int, int] | None:
    """The network input (W, H), checked for cost; None keeps each image's size.

    ``--size`` if given; else None when both images fit in 720 px, else the query image scaled
    down to a 720 px long side (an 8000x6000 photo would need hours and gigabytes at full size).
    A size that changes the aspect is noted by the estimator (the same warning as in Python).
    """
    H, W = query_rgb.shape[:2]
    if args.size:
        size = tuple(args.size)
    elif max(*ref_rgb.shape[:2], H, W) <= 720:
        return None
    else:
        size = default_working_size(W, H)
        note(f"network input {size[0]}x{size[1]} (the query scaled to a 720 px long side); "
              "--size WxH sets another")
    check_working_size(size, warn=note)
    return size


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``pose``."""
    parser = subparsers.add_parser("pose", help="metric relative pose of an image pair")
    parser.add_argument("ref", type=Path, help="reference (keyframe) image")
    parser.add_argument("query", type=Path, help="query (live) image")
    parser.add_argument("--intrinsics", type=Path, help="Map-free intrinsics.txt with both images")
    parser.add_argument("--ref-K", help="reference intrinsics fx,fy,cx,cy")
    parser.add_argument("--query-K", help="query intrinsics fx,fy,cx,cy")
    add_model_arguments(parser, "the images, scaled down to a 720 px long side")
    add_backend_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--viz", type=Path, help="write a PNG with matches and depth maps")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Estimate and print the pose."""
    from mickey_ros.estimator.relative_pose import EstimatorConfig, RelativePoseEstimator
    from mickey_ros.utils.images import load_rgb

    if args.intrinsics is None and (args.ref_K is None or args.query_K is None):
        raise UserError("give --intrinsics FILE, or both --ref-K and --query-K")
    check_outputs({"--viz": args.viz})
    note = Notes()
    ref_rgb, query_rgb = load_rgb(args.ref, note), load_rgb(args.query, note)
    K_ref = _intrinsics(args, "ref", ref_rgb, note)
    K_query = _intrinsics(args, "query", query_rgb, note)
    config = EstimatorConfig(
        device=args.device,
        precision=args.precision,
        resize=working_size(args, ref_rgb, query_rgb, note),
        seed=args.seed,
        keep_matches=args.viz is not None,
        **backend_options(args),
    )
    if args.onnx_path and args.backend != "torch":
        estimator = RelativePoseEstimator.from_onnx(args.onnx_path, config)
    elif args.checkpoint is None:
        estimator = RelativePoseEstimator.from_demo(config)
    else:
        estimator = RelativePoseEstimator.from_checkpoint(
            args.checkpoint, args.dinov2_weights, config
        )
    estimate = estimator.estimate_pair(ref_rgb, K_ref, query_rgb, K_query)
    if args.viz is not None:
        from mickey_ros.cli.viz import save_estimate_figure

        save_estimate_figure(ref_rgb, query_rgb, estimate, args.viz, estimator.model_name)
    size = config.resize or (query_rgb.shape[1], query_rgb.shape[0])
    run_settings = getattr(estimator, "run_settings", None)  # ONNX/TensorRT estimators have none
    run_note = run_settings.note if run_settings else f"backend {config.backend}"
    if args.json:
        print(json.dumps({**estimate.to_dict(), "model": estimator.model_name,
                          "network_input_wh": list(size), "runs_with": run_note}))
    else:
        print(_summary(estimate, estimator.model_name, size, args.viz, run_note))
    return 0 if estimate.valid else 1


def _summary(estimate, model: str, size_wh: tuple[int, int], viz: Path | None,
             run_note: str) -> str:
    from mickey_ros.geometry.pose import rotation_angle_deg  # torch: not on import

    lines = [f"model            : {model}", f"network input    : {size_wh[0]}x{size_wh[1]} px",
             f"runs with        : {run_note}"]
    if not estimate.valid:
        return "\n".join([*lines, f"no pose: {estimate.reason}"])
    angle = rotation_angle_deg(estimate.R)
    q = estimate.q_wxyz
    lines += [
        f"t_query_ref [m]  : {np.array2string(estimate.t, precision=4)} (|t| = "
        f"{np.linalg.norm(estimate.t):.3f} m)",
        f"rotation         : {angle:.2f} deg, q_wxyz = {np.array2string(q, precision=5)}",
        f"confidence       : {estimate.confidence:.1f} / {estimate.num_samples} soft inliers "
        f"(inlier ratio {estimate.inlier_ratio:.2f}; {estimate.num_inliers} hard inliers)",
        "timings [ms]     : " + ", ".join(f"{k} {v:.0f}" for k, v in estimate.timings_ms.items()),
    ]
    if viz is not None:
        lines.append(f"figure           : {viz}")
    return "\n".join(lines)
