r"""Parity of the reduced-precision torch paths against fp32 per network output (issues 16, 30).

Paths: ``autocast bf16`` / ``autocast fp16`` (backbone and heads autocast, fp32 weights) and
``precision bf16`` (the backbone cast, heads fp32) and ``auto bf16`` (what ``precision auto``
runs on a CPU with bf16 units: backbone cast to bf16, heads under bf16 autocast).

Measured on the CPU here (CPU autocast kernels); GPU kernels round differently, so treat the
figures as the size of the effect, not a GPU measurement.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python scripts/autocast_parity.py \
        --model demo --sizes 322x238,714x532
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python scripts/autocast_parity.py \
        --model mickey_vitl14 --sizes 378x252

With ``--iterations N`` it also times backbone + heads per path (one thread, the paths
interleaved in each of N passes after one warm-up pass; median ms).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
from contextlib import nullcontext

import torch

from mickey_ros.estimator.backends import TorchBackend
from mickey_ros.estimator.export import relative_errors
from mickey_ros.estimator.relative_pose import DEMO_CHECKPOINT
from mickey_ros.model.checkpoint import load_checkpoint
from mickey_ros.model.config import get_model_config
from mickey_ros.model.mickey import MicKey


def _timed_extract(backend: TorchBackend, image: torch.Tensor) -> tuple:
    """Features of ``image`` and the ms of backbone + heads (one pass, batch 1)."""
    start = time.perf_counter()
    feats = backend.extract(image, lambda stage: nullcontext())
    return feats, (time.perf_counter() - start) * 1e3


def measure_size(paths: dict[str, TorchBackend], size_wh: tuple[int, int],
                 iterations: int) -> dict:
    """Per path: output errors against fp32 and the median ms, paths interleaved per iteration."""
    W, H = size_wh
    image = torch.rand(1, 3, H, W, generator=torch.Generator().manual_seed(0))
    ms: dict[str, list[float]] = {name: [] for name in paths}
    feats = {}
    with torch.inference_mode():
        for i in range(iterations + 1):  # the first pass of each path is a discarded warm-up
            for name, backend in paths.items():
                feats[name], t = _timed_extract(backend, image)
                if i:
                    ms[name].append(t)
    plain = feats["fp32"]
    out = {}
    for name, f in feats.items():
        out[name] = {"median_ms": statistics.median(ms[name]) if ms[name] else None,
                     "load_avg_1min": os.getloadavg()[0],
                     **relative_errors((plain.kpts, plain.depth, plain.scores, plain.descriptors),
                                       (f.kpts, f.depth, f.scores, f.descriptors))}
        print(f"{W}x{H}", name, out[name], flush=True)
    return out


def main() -> None:
    """Print max |x - fp32| / max |fp32| per output and the time, per size and path, as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="demo", help="'demo' or a model config (random, seed 0)")
    parser.add_argument("--sizes", default="322x238,714x532")
    parser.add_argument("--iterations", type=int, default=0,
                        help="timed passes per path, interleaved (0: errors only)")
    parser.add_argument("--paths", default="", help="comma list of the paths to run besides "
                        "fp32 (default: all; fp16 autocast is slow on CPUs)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.model == "demo":
        model, _ = load_checkpoint(DEMO_CHECKPOINT)
    else:
        torch.manual_seed(0)
        model = MicKey(get_model_config(args.model))
    model = model.eval()
    model.set_backbone_precision("fp32")
    bf16_backbone = copy.deepcopy(model)
    bf16_backbone.set_backbone_precision("bf16")
    cpu = torch.device("cpu")
    paths = {"fp32": TorchBackend(model, cpu),
             "autocast bf16": TorchBackend(model, cpu, autocast="bf16"),
             "autocast fp16": TorchBackend(model, cpu, autocast="fp16"),
             "precision bf16": TorchBackend(bf16_backbone, cpu),
             "auto bf16": TorchBackend(bf16_backbone, cpu, autocast="bf16")}
    if args.paths:
        paths = {n: b for n, b in paths.items() if n == "fp32" or n in args.paths.split(",")}
    report = {}
    for size in args.sizes.split(","):
        W, H = (int(v) for v in size.split("x"))
        report[size] = measure_size(paths, (W, H), args.iterations)
    print(json.dumps({"model": args.model, "threads": torch.get_num_threads(),
                      "relative_error_vs_fp32": report}, indent=2))


if __name__ == "__main__":
    main()
