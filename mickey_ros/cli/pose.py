"""``mickey-ros pose``: metric relative pose of one image pair."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mickey_ros.cli.main import UserError, add_model_arguments
from mickey_ros.mapfree.files import ParseReport, intrinsics_matrix, read_intrinsics


def _parse_k(text: str, flag: str) -> np.ndarray:
    try:
        fx, fy, cx, cy = (float(v) for v in text.split(","))
    except ValueError:
        raise UserError(
            f"{flag} expects 'fx,fy,cx,cy' (four comma-separated numbers), got {text!r}"
        ) from None
    return intrinsics_matrix(fx, fy, cx, cy)


def _lookup_intrinsics(path: Path, image: Path) -> np.ndarray:
    """Find an image's line in a Map-free intrinsics file by path suffix or file name."""
    report = ParseReport()
    table = read_intrinsics(path, report)
    wanted = image.as_posix()
    for name, cam in table.items():
        if wanted.endswith(name) or name.endswith(wanted) or Path(name).name == image.name:
            return cam.K
    hint = f" (skipped lines: {report.summary()})" if report.skipped else ""
    raise UserError(
        f"no line for {image} in {path}; it has {sorted(table)[:6]}{hint}. "
        "Name each image as in the file, or pass --ref-K/--query-K"
    )


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``pose``."""
    parser = subparsers.add_parser("pose", help="metric relative pose of an image pair")
    parser.add_argument("ref", type=Path, help="reference (keyframe) image")
    parser.add_argument("query", type=Path, help="query (live) image")
    parser.add_argument("--intrinsics", type=Path, help="Map-free intrinsics.txt with both images")
    parser.add_argument("--ref-K", help="reference intrinsics fx,fy,cx,cy")
    parser.add_argument("--query-K", help="query intrinsics fx,fy,cx,cy")
    add_model_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--viz", type=Path, help="write a PNG with matches and depth maps")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Estimate and print the pose."""
    from mickey_ros.estimator.relative_pose import EstimatorConfig, RelativePoseEstimator
    from mickey_ros.utils.images import load_rgb

    if args.intrinsics is None and (args.ref_K is None or args.query_K is None):
        raise UserError("give --intrinsics FILE, or both --ref-K and --query-K")
    K_ref = (
        _parse_k(args.ref_K, "--ref-K")
        if args.ref_K
        else _lookup_intrinsics(args.intrinsics, args.ref)
    )
    K_query = (
        _parse_k(args.query_K, "--query-K")
        if args.query_K
        else _lookup_intrinsics(args.intrinsics, args.query)
    )
    config = EstimatorConfig(
        device=args.device,
        precision=args.precision,
        resize=tuple(args.resize) if args.resize else None,
        seed=args.seed,
        keep_matches=args.viz is not None,
    )
    if args.checkpoint is None:
        estimator = RelativePoseEstimator.from_demo(config)
    else:
        estimator = RelativePoseEstimator.from_checkpoint(
            args.checkpoint, args.dinov2_weights, config
        )
    ref_rgb, query_rgb = load_rgb(args.ref), load_rgb(args.query)
    estimate = estimator.estimate_pair(ref_rgb, K_ref, query_rgb, K_query)
    if args.viz is not None:
        from mickey_ros.cli.viz import save_estimate_figure

        save_estimate_figure(ref_rgb, query_rgb, estimate, args.viz)
    if args.json:
        print(json.dumps(estimate.to_dict()))
    else:
        print(_summary(estimate, args.viz))
    return 0 if estimate.valid else 1


def _summary(estimate, viz: Path | None) -> str:
    if not estimate.valid:
        return f"no pose: {estimate.reason}"
    angle = np.degrees(np.arccos(np.clip((np.trace(estimate.R) - 1) / 2, -1, 1)))
    q = estimate.q_wxyz
    lines = [
        f"t_query_ref [m]  : {np.array2string(estimate.t, precision=4)} (|t| = "
        f"{np.linalg.norm(estimate.t):.3f} m)",
        f"rotation         : {angle:.2f} deg, q_wxyz = {np.array2string(q, precision=5)}",
        f"confidence       : {estimate.confidence:.1f} / {estimate.num_samples} "
        f"({estimate.num_inliers} inliers)",
        "timings [ms]     : " + ", ".join(f"{k} {v:.0f}" for k, v in estimate.timings_ms.items()),
    ]
    if viz is not None:
        lines.append(f"figure           : {viz}")
    return "\n".join(lines)
