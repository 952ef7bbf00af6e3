"""``mickey-ros export``: the per-image network to ONNX, with metadata and a parity check."""

from __future__ import annotations

import argparse
from pathlib import Path

from mickey_ros.cli.main import add_size_argument
from mickey_ros.cli.options import add_model_config_argument, check_outputs

DEFAULT_SIZE_WH = (532, 714)  # Map-free's 540x720 cropped to multiples of 14


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``export``."""
    parser = subparsers.add_parser(
        "export", help="write the network to ONNX (for the onnxruntime/tensorrt backends)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", type=Path,
                        help="mickey.ckpt, our checkpoint, or 'demo' (default: the bundled demo "
                        "model)")
    add_model_config_argument(source, "model config for RANDOM weights (tests, benchmarks): "
                              "mickey_vitl14, mickey_small, mickey_tiny, ...")
    parser.add_argument("--dinov2-weights", type=Path,
                        help="dinov2_vitl14_pretrain.pth for official checkpoints")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of --model-config's random weights")
    add_size_argument(parser, "example and parity-check input WxH, multiples of 14 "
                      f"(default {DEFAULT_SIZE_WH[0]}x{DEFAULT_SIZE_WH[1]})",
                      default=DEFAULT_SIZE_WH)
    parser.add_argument("--static", action="store_true",
                        help="fix batch 2 and --size in the graph (default: dynamic batch, H, W)")
    parser.add_argument("--quantize-linear", action="store_true",
                        help="also write <out>-int8linear.onnx (int8 weights of the linear "
                        "layers and the heads' convolutions, activations quantised per call) "
                        "and print its error against torch")
    parser.add_argument("--out", type=Path, required=True, help="output .onnx file")
    parser.set_defaults(run=run)


def _load(args: argparse.Namespace):
    import torch

    from mickey_ros.estimator.relative_pose import model_label
    from mickey_ros.model.checkpoint import DEMO_NAME, load_checkpoint
    from mickey_ros.model.config import get_model_config
    from mickey_ros.model.mickey import MicKey

    if args.model_config:
        torch.manual_seed(args.seed)
        label = f"{args.model_config} (random weights, seed {args.seed})"
        return MicKey(get_model_config(args.model_config)), label
    checkpoint = args.checkpoint or DEMO_NAME
    model, _ = load_checkpoint(checkpoint, args.dinov2_weights)
    return model, model_label(checkpoint)  # kept in the file's metadata: the demo note too


def _errors_line(errors: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.1e}" for name, value in errors.items())


def run(args: argparse.Namespace) -> int:
    """Export, check, print the parity figures."""
    from mickey_ros.cli.main import UserError
    from mickey_ros.estimator.export import (
        PARITY_TOLERANCE,
        ExportError,
        export_onnx,
        export_int8,
        parity_check,
    )

    int8 = args.out.with_name(args.out.stem + "-int8linear.onnx")
    check_outputs({"--out": args.out, "--quantize-linear": int8 if args.quantize_linear else None})
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
        int8 = export_int8(model, int8, args.size, dynamic=not args.static, source=source)
        for size, errors in parity_check(model, int8, [tuple(args.size)]).items():
            print(f"wrote {int8}; error {size}: {_errors_line(errors)} (no tolerance: measure "
                  "the poses before deploying it)")
    return 0
