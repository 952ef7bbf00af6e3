"""``mickey-ros``: one command, one sub-command per front-end.

Each sub-command lives in its own module ``mickey_ros.cli.<name>`` exposing
``add_parser(subparsers) -> None`` and ``run(args) -> int``; modules are imported lazily so
``mickey-ros --help`` stays fast and a broken optional dependency only affects its own command.
Errors the user can fix print one line (no traceback) unless ``--debug`` is given; the
``--device`` of every command is checked here, once, before any work starts.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

from mickey_ros import __version__

SUBCOMMANDS = ("pose", "bench", "export", "synth", "eval", "replay", "demo", "check-weights",
               "keyframes", "dataset")


MAX_SIDE_PX = 8192  # a working size above this is a typo (OpenCV would fail with a traceback)
# The matcher holds a few (N0, N1) float32 matrices (N = cells of 14x14 px): 540x720 needs 60 MB.
WARN_MATCH_BYTES = 2 * 2**30
MAX_MATCH_BYTES = 16 * 2**30
MATCH_MATRICES = 4  # scores, two softmaxes, their product


class UserError(Exception):
    """An error caused by the user's input; printed as one line without a traceback."""


def parse_size(text: str) -> tuple[int, int]:
    """``"720x540"`` -> (720, 540), width x height; argparse type of every ``--size``."""
    try:
        W, H = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"size must be WIDTHxHEIGHT in pixels, e.g. 720x540, got {text!r}") from None
    if not (0 < W <= MAX_SIDE_PX and 0 < H <= MAX_SIDE_PX):
        raise argparse.ArgumentTypeError(
            f"size {W}x{H} is out of range: each side must be 1..{MAX_SIDE_PX} px")
    return W, H


class _ResizeAlias(argparse.Action):
    """``--resize W H``, the older spelling of ``--size WxH`` (same destination)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # noqa: D102
        try:
            setattr(namespace, self.dest, parse_size(f"{values[0]}x{values[1]}"))
        except argparse.ArgumentTypeError as err:
            parser.error(f"argument --resize: {err}")


def add_size_argument(
    parser: argparse.ArgumentParser, help: str, default: tuple[int, int] | None = None
) -> None:
    """``--size WxH`` (the documented spelling) and ``--resize W H`` (alias), both into ``size``."""
    parser.add_argument("--size", type=parse_size, default=default, metavar="WxH", help=help)
    parser.add_argument("--resize", nargs=2, metavar=("W", "H"), dest="size",
                        action=_ResizeAlias, help="same as --size WxH (older spelling)")


def check_device(device: str) -> str:
    """``device`` if torch can use it, else ``UserError`` naming the fix (used by every command)."""
    from mickey_ros.estimator.relative_pose import check_torch_device  # the estimator's check

    try:
        check_torch_device(device, "--device")
    except ValueError as err:
        raise UserError(str(err)) from None
    return device


def print_note(text: str) -> None:
    """One ``note:`` line on stderr (something the user should know; not an error)."""
    print(f"note: {text}", file=sys.stderr)


def check_working_size(
    size_wh: tuple[int, int], warn: Callable[[str], object] = print_note
) -> None:
    """Refuse a network input whose matching would need gigabytes; warn before a slow one.

    Args:
        size_wh: (W, H) network input in pixels.
        warn: called with one line when the job will be slow.
    """
    W, H = size_wh
    cells = (W // 14) * (H // 14)
    need = MATCH_MATRICES * 4 * cells**2
    if need > MAX_MATCH_BYTES:
        raise UserError(
            f"a {W}x{H} network input makes {cells} keypoints per image and matching would need "
            f"about {need / 2**30:.0f} GB; pass a smaller --size, e.g. 720x540")
    if need > WARN_MATCH_BYTES:
        warn(f"a {W}x{H} network input needs about {need / 2**30:.1f} GB for matching "
             "and may take minutes on a CPU; a smaller --size (e.g. 720x540) is much faster")


def default_working_size(width: int, height: int, long_side: int = 720) -> tuple[int, int]:
    """The network input for a (width, height) image: the image, scaled down to ``long_side``.

    720 px is the long side of the Map-free images MicKey was trained on; the aspect is kept.
    """
    scale = min(1.0, long_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def add_model_arguments(
    parser: argparse.ArgumentParser, size_default: str = "the image size"
) -> None:
    """--checkpoint, --dinov2-weights, --device, --precision, --size (alias --resize), --seed."""
    parser.add_argument(
        "--checkpoint",
        type=Path,
        help="mickey.ckpt, our checkpoint, or 'demo' (default: the bundled demo model)",
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
        choices=["fp32", "fp16", "bf16", "auto"],
        help="backbone precision (official GPU runs used fp16); auto = bf16 backbone and heads "
        "where the CPU has bf16 units (docs/deployment.md#precision)",
    )
    add_size_argument(
        parser,
        f"network input size, e.g. 720x540 (default: {size_default}); intrinsics are rescaled",
    )
    parser.add_argument("--seed", type=int, default=0, help="solver seed")


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """The library's ``warnings.warn`` lines (e.g. a stretching resize) as ``note:`` lines."""
    if issubclass(category, UserWarning):
        print_note(str(message))
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every available sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="mickey-ros",
        description="Metric relative pose between a reference keyframe and a live image (MicKey).",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}",
                        help="print the version and exit")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"mickey_ros.cli.{name.replace('-', '_')}")
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
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            if getattr(args, "device", None):
                check_device(args.device)
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
