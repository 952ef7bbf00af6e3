"""``mickey-ros export``: the per-image network to ONNX, with metadata and a parity check."""

from __future__ import annotations

import argparse
from pathlib import Path

from mickey_ros.cli.main import add_size_argument

DEFAULT_SIZE_WH = (532, 714)  # Map-free's 540x720 cropped to multiples of 14


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``export``."""
    parser = subparsers.add_parser(
        "export", help="write the network to ONNX (for the onnxruntime/tensorrt backends)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", type=Path,
                        help="mickey.ckpt or our checkpoint (default: the bundled demo model)")
    source.add_argument("--model", help="model config for RANDOM weights (tests, benchmarks): "
                        "mickey_vitl14, mickey_small, mickey_tiny, ...")
    parser.add_argument("--dinov2-weights", type=Path,
                        help="dinov2_vitl14_pretrain.pth for official checkpoints")
    parser.add_argument("--seed", type=int, default=0, help="seed of --model's random weights")
    add_size_argument(parser, "example and parity-check input WxH, multiples of 14 "
                      f"(default {DEFAULT_SIZE_WH[0]}x{DEFAULT_SIZE_WH[1]})",
                      default=DEFAULT_SIZE_WH)
    parser.add_argument("--static", action="store_true",
                        help="fix batch 2 and --size in the graph (default: dynamic batch, H, W)")
    parser.add_argument("--quantize-linear", action="store_true",
                        help="also write <out>-int8linear.onnx (dynamically quantised linear "
                        "layers) and print its error against torch")
    parser.add_argument("--out", type=Path, required=True, help="output .onnx file")
    parser.set_defaults(run=run)


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """--backend, --onnx-path and the speed-path flags (docs/deployment.md)."""
    parser.add_argument("--backend", default="torch", choices=["torch", "onnxruntime", "tensorrt"],
                        help="network runtime (tensorrt = ONNX Runtime's TensorRT provider)")
    parser.add_argument("--onnx-path", default="",
                        help="file from `mickey-ros export` (default: export the model first)")
    parser.add_argument("--autocast", default="", choices=["", "fp16", "bf16"],
                        help="torch backend: autocast backbone and heads")
    parser.add_argument("--compile", action="store_true", help="torch backend: torch.compile")
    parser.add_argument("--io-binding", action="store_true",
                        help="ONNX backends: outputs written in place on the device")
    parser.add_argument("--pin-memory", action="store_true",
                        help="CUDA: pinned host memory for the live image")


def backend_options(args: argparse.Namespace) -> dict:
    """The ``EstimatorConfig`` fields of :func:`add_backend_arguments`."""
    from mickey_ros.estimator.backends import SPEED_FIELDS

    return {name: getattr(args, name) for name in SPEED_FIELDS}


def _load(args: argparse.Namespace):
    import torch

    from mickey_ros.estimator.relative_pose import DEMO_CHECKPOINT
    from mickey_ros.model.checkpoint import load_checkpoint
    from mickey_ros.model.config import get_model_config
    from mickey_ros.model.mickey import MicKey

    if args.model:
        torch.manual_seed(args.seed)
        label = f"{args.model} (random weights, seed {args.seed})"
        return MicKey(get_model_config(args.model)), label
    checkpoint = args.checkpoint or DEMO_CHECKPOINT
    model, _ = load_checkpoint(checkpoint, args.dinov2_weights)
    return model, Path(checkpoint).name


def _errors_line(errors: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.1e}" for name, value in errors.items())


def run(args: argparse.Namespace) -> int:
    """Export, check, print the parity figures."""
    from mickey_ros.cli.main import UserError
    from mickey_ros.estimator.export import (
        PARITY_TOLERANCE,
        ExportError,
        export_onnx,
        parity_check,
        quantize_linear_layers,
    )

    model, source = _load(args)
    try:
        result = export_onnx(model, args.out, args.size, dynamic=not args.static, source=source)
    except ExportError as err:
        raise UserError(str(err)) from None
    size_mb = sum(p.stat().st_size for p in args.out.parent.glob(args.out.name + "*")) / 1e6
    kind = "static" if args.static else "dynamic batch and size"
    print(f"wrote {args.out} ({size_mb:.0f} MB, {kind}, {source}) in {result.export_s:.0f} s")
    for size, errors in result.parity.items():
        print(f"parity {size}: {_errors_line(errors)} (max |onnx - torch| / max |torch|, "
              f"tolerance {PARITY_TOLERANCE:g})")
    if args.quantize_linear:
        int8 = quantize_linear_layers(args.out, args.out.with_name(args.out.stem
                                                                   + "-int8linear.onnx"))
        for size, errors in parity_check(model, int8, [tuple(args.size)]).items():
            print(f"wrote {int8}; error {size}: {_errors_line(errors)} (no tolerance: measure "
                  "the poses before deploying it)")
    return 0
