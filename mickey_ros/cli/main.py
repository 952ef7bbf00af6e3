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

SUBCOMMANDS = ("pose", "bench", "synth", "eval", "replay", "demo")


class UserError(Exception):
    """An error caused by the user's input; printed as one line without a traceback."""


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
