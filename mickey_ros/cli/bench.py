"""``mickey-ros bench``: per-stage latency and FPS of the estimator."""

from __future__ import annotations

import argparse
from pathlib import Path

from mickey_ros.cli.main import add_size_argument
from mickey_ros.cli.options import (
    add_backend_arguments,
    add_model_config_argument,
    backend_options,
    check_outputs,
    int_at_least,
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``bench``."""
    parser = subparsers.add_parser("bench", help="per-stage latency and FPS")
    add_model_config_argument(
        parser, "model config of RANDOM weights (default %(default)s): mickey_vitl14, "
        "mickey_vits14, mickey_small, mickey_tiny", default="mickey_vitl14")
    parser.add_argument("--checkpoint", help="measure a checkpoint instead of random weights "
                        "(a file, or 'demo' for the bundled model)")
    parser.add_argument("--dinov2-weights", help="DINOv2 weight file for official checkpoints")
    add_size_argument(parser, "input WxH (default 540x720, Map-free)", default=(540, 720))
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16", "auto"],
                        help="backbone precision (default %(default)s); auto = bf16 backbone "
                        "and heads where the CPU has bf16 units (docs/deployment.md#precision)")
    parser.add_argument("--batch", type=int_at_least(1), default=1,
                        help="queries per call in cached mode")
    parser.add_argument("--iterations", type=int_at_least(1), default=5,
                        help="timed runs per mode (default %(default)s; the median is reported)")
    parser.add_argument("--warmup", type=int_at_least(0), default=1,
                        help="untimed runs before them (default %(default)s)")
    parser.add_argument("--modes", default="pair,cached", help="comma list of pair,cached")
    parser.add_argument(
        "--sampler",
        default="exponential_keys",
        choices=["exponential_keys", "multinomial"],
        help="solver sampler (multinomial = torch.multinomial, the reference)",
    )
    parser.add_argument("--out", type=Path, help="write the JSON report here")
    add_backend_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark."""
    from mickey_ros.cli.main import check_working_size
    from mickey_ros.estimator.bench import BenchConfig, main

    check_working_size(args.size)
    check_outputs({"--out": args.out})
    config = BenchConfig(
        model=args.model_config,
        checkpoint=args.checkpoint,
        dinov2_weights=args.dinov2_weights,
        size_wh=args.size,
        device=args.device,
        precision=args.precision,
        batch=args.batch,
        iterations=args.iterations,
        warmup=args.warmup,
        modes=tuple(m for m in args.modes.split(",") if m),
        sampler=args.sampler,
        **backend_options(args),
    )
    main(config, args.out)
    return 0
