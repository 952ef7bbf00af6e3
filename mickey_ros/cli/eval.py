"""``mickey-ros eval``: Map-free submissions and scores, and pair-list relative-pose metrics.

    mickey-ros eval mapfree --data /data/mapfree --split val --checkpoint mickey.ckpt
        --dinov2-weights dinov2_vitl14_pretrain.pth --out results/ [--seeds 3]
    mickey-ros eval score --submission results/.../submission.zip --data /data/mapfree --split val
    mickey-ros eval pairs --pairs pairs.txt --images DIR --checkpoint mickey.ckpt --out results/

Each is a thin wrapper over ``mickey_ros.eval.{mapfree,score,pairs}``; see docs/evaluation.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path

from mickey_ros.cli.main import add_model_arguments, check_working_size
from mickey_ros.cli.options import (
    add_backend_arguments,
    add_progress_argument,
    backend_options,
    check_outputs,
    int_at_least,
)


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    add_backend_arguments(parser, speed_flags=False)
    add_progress_argument(parser)
    parser.add_argument(
        "--seeds",
        type=int_at_least(1),
        default=1,
        help="run K seeds (seed .. seed+K-1) and report mean and std",
    )
    parser.add_argument("--out", type=Path, default=Path("results"), help="output folder")


def _scenes(text: str | None) -> tuple[str, ...] | None:
    return tuple(s.strip() for s in text.split(",") if s.strip()) if text else None


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``eval`` and its sub-commands ``mapfree``, ``score`` and ``pairs``."""
    parser = subparsers.add_parser("eval", help="Map-free benchmark and pair-list evaluation")
    sub = parser.add_subparsers(dest="eval_command", required=True, metavar="WHAT")

    mapfree = sub.add_parser("mapfree", help="run a split and write submission.zip (+ scores)")
    mapfree.add_argument("--data", type=Path, required=True, help="folder with train/ val/ test/")
    mapfree.add_argument("--split", default="val", help="val (scored here) or test (server)")
    mapfree.add_argument("--batch-size", type=int_at_least(1), default=8,
                         help="query frames per batch")
    mapfree.add_argument("--scenes", help="comma-separated scene ids (default: all)")
    mapfree.add_argument(
        "--skip-invalid",
        action="store_true",
        help="leave out invalid estimates (default: identity, confidence 0)",
    )
    _add_model_args(mapfree)

    score = sub.add_parser("score", help="score a submission like the official evaluator")
    score.add_argument("--submission", type=Path, required=True, help="submission.zip")
    score.add_argument("--data", type=Path, required=True, help="folder with train/ val/ test/")
    score.add_argument("--split", default="val", help="split with ground truth")
    score.add_argument("--scenes", help="comma-separated scene ids (default: all)")
    score.add_argument("--out", type=Path, help="write metrics.json, report.md and plots here")

    pairs = sub.add_parser("pairs", help="metric relative-pose metrics of a pair list")
    pairs.add_argument("--pairs", type=Path, required=True, help="ScanNet-1500-style pair list")
    pairs.add_argument("--images", type=Path, required=True, help="folder the names refer to")
    _add_model_args(pairs)
    parser.set_defaults(run=run)


def _model_settings(args: argparse.Namespace):
    from mickey_ros.eval.common import ModelSettings

    carried = {f.name for f in dataclasses.fields(ModelSettings)}
    if args.size:
        check_working_size(args.size)
    check_outputs({"--out": args.out}, directories=("--out",))
    return ModelSettings(
        checkpoint=str(args.checkpoint) if args.checkpoint else None,
        dinov2_weights=str(args.dinov2_weights) if args.dinov2_weights else None,
        device=args.device,
        precision=args.precision,
        resize=tuple(args.size) if args.size else None,
        seed=args.seed,
        # the backend flags ModelSettings carries into its EstimatorConfig
        **{k: v for k, v in backend_options(args).items() if k in carried},
    )


def _print(result: dict) -> None:
    print(json.dumps(result, indent=2, default=str))


def _run_mapfree(args: argparse.Namespace) -> None:
    from mickey_ros.eval import mapfree

    cfg = mapfree.MapfreeEvalConfig(
        model=_model_settings(args),
        split=args.split,
        batch_size=args.batch_size,
        scenes=_scenes(args.scenes),
        write_invalid=not args.skip_invalid,
    )
    result = mapfree.evaluate(cfg, args.data, args.out, args.seeds,
                              progress=not args.no_progress)
    _print({"model": cfg.model.label,
            **(result["summary"] or result["per_seed"] or {"submissions": result["submissions"]})})


def _run_score(args: argparse.Namespace) -> None:
    from mickey_ros.eval import score

    check_outputs({"--out": args.out}, directories=("--out",))
    result = score.main(args.submission, args.data, args.split, args.out, _scenes(args.scenes))
    _print({k: v for k, v in result.items() if k != "details"})


def _run_pairs(args: argparse.Namespace) -> None:
    from mickey_ros.eval import pairs

    cfg = pairs.PairsEvalConfig(model=_model_settings(args))
    result = pairs.evaluate(cfg, args.pairs, args.images, args.out, args.seeds,
                            progress=not args.no_progress)
    _print({"model": cfg.model.label, **(result["summary"] or result["per_seed"])})


def run(args: argparse.Namespace) -> int:
    """Dispatch to the chosen evaluation."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    {"mapfree": _run_mapfree, "score": _run_score, "pairs": _run_pairs}[args.eval_command](args)
    return 0
