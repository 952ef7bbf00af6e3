r"""Parity of fp16/bf16 autocast (torch backend) against fp32 per network output (issue 16).

Measured on the CPU here (CPU autocast kernels); GPU kernels round differently, so treat the
figures as the size of the effect, not a GPU measurement.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python scripts/autocast_parity.py \
        --model demo --sizes 322x238,714x532
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python scripts/autocast_parity.py \
        --model mickey_vitl14 --sizes 378x252
"""

from __future__ import annotations

import argparse
import json
from contextlib import nullcontext

import torch

from mickey_ros.estimator.backends import TorchBackend
from mickey_ros.estimator.export import relative_errors
from mickey_ros.estimator.relative_pose import DEMO_CHECKPOINT
from mickey_ros.model.checkpoint import load_checkpoint
from mickey_ros.model.config import get_model_config
from mickey_ros.model.mickey import MicKey


def main() -> None:
    """Print max |autocast - fp32| / max |fp32| per output, per size and precision, as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="demo", help="'demo' or a model config (random, seed 0)")
    parser.add_argument("--sizes", default="322x238,714x532")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.model == "demo":
        model, _ = load_checkpoint(DEMO_CHECKPOINT)
    else:
        torch.manual_seed(0)
        model = MicKey(get_model_config(args.model))
    model = model.eval()
    model.set_backbone_precision("fp32")
    report = {}
    for size in args.sizes.split(","):
        W, H = (int(v) for v in size.split("x"))
        image = torch.rand(1, 3, H, W, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            plain = TorchBackend(model, torch.device("cpu")).extract(image, lambda s: nullcontext())
            for precision in ("bf16", "fp16"):
                fast = TorchBackend(model, torch.device("cpu"), autocast=precision)
                feats = fast.extract(image, lambda s: nullcontext())
                report[f"{size} {precision}"] = relative_errors(
                    (plain.kpts, plain.depth, plain.scores, plain.descriptors),
                    (feats.kpts, feats.depth, feats.scores, feats.descriptors))
                print(size, precision, report[f"{size} {precision}"], flush=True)
    print(json.dumps({"model": args.model, "relative_error_vs_fp32": report}, indent=2))


if __name__ == "__main__":
    main()
