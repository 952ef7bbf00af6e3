"""Options several ``mickey-ros`` commands share, each added by one helper so they mean the same.

- :func:`add_backend_arguments`: ``--backend``, ``--onnx-path`` and the speed-path flags
  (pose, bench, replay, eval, demo); :func:`backend_options` turns them into
  ``EstimatorConfig`` fields.
- :func:`add_model_config_argument`: ``--model-config`` (the old ``--model`` is a hidden alias).
- :func:`add_render_size_argument`: ``--render-size`` of the commands that render images (the
  old ``--size``/``--resize`` are hidden aliases; ``--size`` is the network input elsewhere).
- :func:`add_progress_argument`: ``--no-progress`` on every long-running command.
- :func:`int_at_least` / :func:`positive_float`: argparse types whose errors name the flag.
- :func:`add_deprecated_alias`: an old spelling that still works, hidden from ``--help``, with a
  note naming the new one.
- :func:`check_outputs`: every output path a command will write, checked before the work.

Kept free of heavy imports (``mickey-ros --help`` imports every command's module).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

BACKEND_CHOICES = ("torch", "onnxruntime", "tensorrt")  # mickey_ros.estimator.backends.BACKENDS


def int_at_least(minimum: int) -> Callable[[str], int]:
    """argparse type: an integer >= ``minimum`` (argparse prefixes the flag to the error)."""

    def parse(text: str) -> int:
        value = int(text)  # a ValueError reads "argument --every: invalid int value: 'two'"
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    parse.__name__ = "int"
    return parse


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expects a number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


class _DeprecatedAlias(argparse.Action):
    """Stores like the new option and prints one note naming it."""

    def __init__(self, option_strings: list[str], dest: str, new: str = "",
                 convert: Callable[[Any], Any] = lambda v: v, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.new, self.convert = new, convert

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # noqa: D102
        from mickey_ros.cli.main import print_note

        try:
            setattr(namespace, self.dest, self.convert(values))
        except argparse.ArgumentTypeError as err:
            parser.error(f"argument {option_string}: {err}")
        print_note(f"{option_string} is the old spelling of {self.new}; use {self.new}")


def add_deprecated_alias(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, old: str, new: str, dest: str,
    convert: Callable[[Any], Any] = lambda v: v, nargs: int | None = None,
) -> None:
    """``old`` stores into ``dest`` as ``new`` does; hidden from ``--help``, noted when used.

    Args:
        parser: the parser or group holding ``new``.
        old: the old flag, e.g. ``"--model"``.
        new: the documented flag, e.g. ``"--model-config"``.
        dest: the destination both share.
        convert: turns the parsed string(s) into the stored value (e.g. ``parse_size``).
        nargs: argparse ``nargs`` of ``old`` (None: one value).
    """
    parser.add_argument(old, dest=dest, action=_DeprecatedAlias, new=new, convert=convert,
                        nargs=nargs, help=argparse.SUPPRESS)


def add_model_config_argument(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, help: str, default: str | None = None
) -> None:
    """``--model-config NAME`` (``--model`` is its old, hidden spelling), into ``model_config``."""
    parser.add_argument("--model-config", default=default, metavar="NAME", help=help)
    add_deprecated_alias(parser, "--model", "--model-config", "model_config")


def add_render_size_argument(
    parser: argparse.ArgumentParser, default: tuple[int, int], help: str
) -> None:
    """``--render-size WxH`` into ``render_size``; ``--size WxH``/``--resize W H`` are aliases."""
    from mickey_ros.cli.main import parse_size

    parser.add_argument("--render-size", type=parse_size, default=default, metavar="WxH",
                        help=help)
    add_deprecated_alias(parser, "--size", "--render-size", "render_size", parse_size)
    add_deprecated_alias(parser, "--resize", "--render-size", "render_size",
                         lambda wh: parse_size("x".join(wh)), nargs=2)


def add_progress_argument(parser: argparse.ArgumentParser) -> None:
    """``--no-progress``: no progress bars (logs, CI, a terminal that is not one)."""
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bars (for logs and CI)")


def add_backend_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, from_params: bool = False,
    speed_flags: bool = True,
) -> None:
    """--backend, --onnx-path and the speed-path flags (docs/deployment.md).

    Args:
        parser: the command's parser.
        from_params: the command reads node parameters (``replay``): every flag defaults to
            None, meaning "the params file's model.* value".
        speed_flags: also --autocast, --compile, --io-binding, --pin-memory.
    """
    unset = None if from_params else ""
    where = " (default: the params file's model.{}, else {})" if from_params else ""
    parser.add_argument("--backend", default=None if from_params else "torch",
                        choices=BACKEND_CHOICES,
                        help="network runtime (tensorrt = ONNX Runtime's TensorRT provider)"
                        + where.format("backend", "torch"))
    parser.add_argument("--onnx-path", default=unset,
                        help="file from `mickey-ros export`, with --backend onnxruntime or "
                        "tensorrt (default: export the model at start)")
    parser.add_argument("--threads", type=int_at_least(0), default=None if from_params else 0,
                        help="CPU threads of torch and ONNX Runtime; 0 = auto: 1 for small "
                        "models, half the cores for ViT (docs/performance.md#threads)"
                        + where.format("threads", "0"))
    if not speed_flags:
        return
    parser.add_argument("--autocast", default=unset, choices=["", "fp16", "bf16"],
                        help="torch backend: autocast backbone and heads")
    flag = {"action": "store_true", "default": None} if from_params else {"action": "store_true"}
    parser.add_argument("--compile", **flag, help="torch backend: torch.compile")
    parser.add_argument("--io-binding", **flag,
                        help="ONNX backends: outputs written in place on the device")
    parser.add_argument("--pin-memory", **flag,
                        help="CUDA: pinned host memory for the live image")


def backend_options(args: argparse.Namespace, backend: str = "torch") -> dict[str, Any]:
    """The ``EstimatorConfig`` fields of :func:`add_backend_arguments` that were set.

    Args:
        args: the parsed flags.
        backend: the backend when ``--backend`` is unset (replay: the params file's).

    Raises:
        UserError: ``--onnx-path`` with the torch backend (the file would be ignored).
    """
    from mickey_ros.cli.main import UserError
    from mickey_ros.estimator.backends import SPEED_FIELDS

    options = {name: getattr(args, name) for name in SPEED_FIELDS
               if getattr(args, name, None) is not None}
    if options.get("onnx_path") and options.get("backend", backend) == "torch":
        raise UserError(f"--onnx-path {options['onnx_path']} is run by an ONNX backend: add "
                        "--backend onnxruntime (or tensorrt)")
    return options


def check_outputs(outputs: dict[str, str | Path | None], directories: tuple[str, ...] = ()
                  ) -> None:
    """Check that every output can be written, before the work (no result lost at the end).

    Args:
        outputs: flag -> path; empty or None entries are skipped.
        directories: the flags whose path is a directory (e.g. eval's ``--out``).

    Raises:
        OSError: naming the flag, the path and why (printed as one line, exit 2).
    """
    from mickey_ros.utils.checks import check_writable

    for flag, path in outputs.items():
        if path:
            check_writable(path, flag, directory=flag in directories)
