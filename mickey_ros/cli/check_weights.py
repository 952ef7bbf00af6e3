"""``mickey-ros check-weights``: do these weight files load, and does the network run on them?

A strict load (every key and shape, as ``pose``, ``replay``, ``eval`` and the node load) and one
forward pass on a random pair, checking that keypoints, depth, scores and match probabilities
are finite. Prints one line either way; see docs/weights.md for where the files come from.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

from mickey_ros.cli.main import UserError, add_size_argument, print_note
from mickey_ros.cli.options import add_model_config_argument

CHECK_SIZE_WH = (280, 210)  # small (fast on a CPU) but above MicKey's 98 px minimum, 4:3


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``check-weights``."""
    parser = subparsers.add_parser(
        "check-weights", help="strict-load weight files and run one forward pass",
        description="Check mickey.ckpt (+ the DINOv2 ViT-L/14 file) before a long run: strict "
                    "load, then a forward pass on a random pair. Exit 0 when usable, 2 if not.")
    parser.add_argument("--checkpoint", required=True,
                        help="mickey.ckpt (official), one of ours, or 'demo'")
    parser.add_argument("--dinov2-weights", type=Path,
                        help="dinov2_vitl14_pretrain.pth (needed by the official mickey.ckpt)")
    add_model_config_argument(parser, "architecture (default: the one the checkpoint names, "
                              "else mickey_vitl14, the official model)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    add_size_argument(parser, "input of the test pass (default %(default)s as WxH)",
                      default=CHECK_SIZE_WH)
    parser.set_defaults(run=run)


def _load(args: argparse.Namespace):
    from mickey_ros.model.checkpoint import (
        CheckpointError,
        UnusedWeightsWarning,
        load_checkpoint,
    )
    from mickey_ros.model.config import get_model_config

    config = get_model_config(args.model_config) if args.model_config else None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model, config = load_checkpoint(args.checkpoint, args.dinov2_weights,
                                            model_config=config, map_location=args.device)
    except CheckpointError as err:  # first line says what and what to do; then each problem
        lines = str(err).splitlines()
        more = f"; first of {len(lines) - 1} problem(s): {lines[1].strip()}" if lines[1:] else ""
        raise UserError(f"{lines[0].rstrip(':')}{more} (--debug lists them all)") from err
    for warning in caught:
        print_note(str(warning.message))
    unused = any(issubclass(w.category, UnusedWeightsWarning) for w in caught)
    return model, config, args.dinov2_weights if not unused else None


def check_forward(model, size_wh: tuple[int, int], device: str) -> dict[str, int]:
    """One forward pass of ``model`` on a random pair; raise ``UserError`` on non-finite output.

    Args:
        model: a loaded ``MicKey``.
        size_wh: (W, H) of the random test images.
        device: torch device of the model.

    Returns:
        ``{"keypoints": N}``, the keypoints per image (cells of the 14 px grid).
    """
    import torch

    W, H = size_wh
    images = torch.rand(2, 3, H, W, generator=torch.Generator().manual_seed(0)).to(device)
    with torch.inference_mode():
        ref, query = model.extract(images[:1]), model.extract(images[1:])
        outputs = {"keypoints": ref.kpts, "depth": ref.depth, "scores": ref.scores,
                   "descriptors": ref.descriptors, "match probabilities": model.match(ref, query)}
    bad = [name for name, value in outputs.items() if not torch.isfinite(value).all()]
    if bad:
        raise UserError(f"the forward pass gives non-finite {', '.join(bad)}: the weights are "
                        "damaged or for another model (--model-config)")
    return {"keypoints": int(ref.kpts.shape[1])}


def run(args: argparse.Namespace) -> int:
    """Load, run once, print one line."""
    from mickey_ros.estimator.relative_pose import model_label

    start = time.perf_counter()
    model, config, dinov2 = _load(args)
    params = sum(p.numel() for p in model.parameters())
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    out = check_forward(model, args.size, args.device)
    files = model_label(args.checkpoint) + (f" + {dinov2.name}" if dinov2 else "")
    print(f"ok: {files} load strictly into {config.name} ({params / 1e6:.1f} M parameters, "
          f"{load_s:.1f} s); a forward pass at {args.size[0]}x{args.size[1]} gives finite "
          f"keypoints, depth, scores and matches ({out['keypoints']} keypoints per image, "
          f"{time.perf_counter() - start:.1f} s on {args.device})")
    return 0
