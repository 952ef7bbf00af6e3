"""``mickey-ros``: one command, one sub-command per front-end.

Each sub-command lives in its own module ``mickey_ros.cli.<name>`` exposing
``add_parser(subparsers) -> None`` and ``run(args) -> int``; modules are imported lazily so
``mickey-ros --help`` stays fast and a broken optional dependency only affects its own command.
Errors the user can fix print one line (no traceback) unless ``--debug`` is given.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

SUBCOMMANDS = ("pose", "bench", "synth", "eval", "replay", "demo")


class UserError(Exception):
    """An error caused by the user's input; printed as one line without a traceback."""


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--checkpoint, --dinov2-weights, --device, --precision, --resize and --seed."""
    parser.add_argument(
        "--checkpoint",
        type=Path,
        help="mickey.ckpt or our checkpoint (default: the bundled demo model)",
    )
    parser.add_argument(
        "--dinov2-weights",
        type=Path,
        help="dinov2_vitl14_pretrain.pth for official checkpoints (their DINOv2 keys are stripped)",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "fp16", "bf16"],
        help="backbone precision (official GPU runs used fp16)",
    )
    parser.add_argument(
        "--resize",
        type=int,
        nargs=2,
        metavar=("W", "H"),
        help="network input size (default: the image size); intrinsics are rescaled to match",
    )
    parser.add_argument("--seed", type=int, default=0, help="solver seed")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every available sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="mickey-ros",
        description="Metric relative pose between a reference keyframe and a live image (MicKey).",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"mickey_ros.cli.{name}")
        except ModuleNotFoundError as err:
            if err.name and err.name.startswith("mickey_ros.cli"):
                continue  # sub-command not built yet
            raise
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (UserError, OSError, ValueError) as err:  # OSError: missing, unwritable, full disk
        if args.debug:
            raise
        print(f"mickey-ros {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
