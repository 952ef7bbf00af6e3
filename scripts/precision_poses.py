r"""Pose accuracy of the bf16 and int8 paths against fp32 on held-out synthetic pairs (issue 30).

Renders (once) the demo benchmark's held-out pairs (``train_demo.py``: seed 2000, the demo
config's camera rig), runs the network of a checkpoint on each batch in fp32, on the ``precision
auto`` bf16 path (backbone cast to bf16, heads under bf16 autocast, outputs cast to fp32) and,
with ``--int8``, through the checkpoint's int8 ONNX file (``export_int8``: written once into
``--run``; run by ONNX Runtime); matcher and solver fp32 for all. Every pair is solved with
``--seeds`` RANSAC seeds (seed ``1000 * s + batch``, as ``train_demo.py seeds``). Reports per
path the per-seed medians, the fp32 seed-to-seed spread, the same-seed differences against fp32
(per pair and of the medians), the per-output network error and the network time per batch.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/precision_poses.py --count 64 --seeds 4 --int8 \
        --run /tmp/mickey_precision --out /tmp/mickey_precision/report.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_demo import CONFIG, HELDOUT_SETS, heldout_batches, stage_render, summarise  # noqa: E402

from mickey_ros.estimator.backends import OnnxRuntimeBackend, TorchBackend  # noqa: E402
from mickey_ros.estimator.export import export_int8, relative_errors  # noqa: E402
from mickey_ros.geometry.camera import backproject  # noqa: E402
from mickey_ros.model.checkpoint import load_checkpoint  # noqa: E402
from mickey_ros.model.matching import correspondence_probabilities  # noqa: E402
from mickey_ros.train.config import load_train_config  # noqa: E402
from mickey_ros.train.module import MicKeyTrainingModule  # noqa: E402

OUTPUTS = ("kpts", "depth", "scores", "descriptors")


def _untimed(stage: str) -> nullcontext:
    return nullcontext()


def _forward(backend: TorchBackend, net, batch: dict) -> tuple[dict, float, tuple]:
    """``MicKeyTrainingModule.forward_pair``'s outputs through ``backend`` (fp32 matcher)."""
    timer = _untimed
    start = time.perf_counter()
    f0, f1 = backend.extract(batch["image0"], timer), backend.extract(batch["image1"], timer)
    seconds = time.perf_counter() - start
    match_probs = net.matcher(f0.descriptors, f1.descriptors)
    out = {"P": correspondence_probabilities(match_probs, f0.scores, f1.scores),
           "X0": backproject(f0.kpts, f0.depth, batch["K0"]),
           "X1": backproject(f1.kpts, f1.depth, batch["K1"])}
    return out, seconds, tuple(torch.cat([getattr(f0, o), getattr(f1, o)]) for o in OUTPUTS)


def _same_seed(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    """Per-pair |a - b| of the t and R errors (pairs valid in both), median and max."""
    ok = torch.isfinite(a[:, 0]) & torch.isfinite(b[:, 0])
    d = (a[ok, :2] - b[ok, :2]).abs().double().numpy()
    return {"pairs_valid_in_both": int(ok.sum()), "invalid_only_in_one": int((~ok).sum()),
            "median_abs_dt_m": float(np.median(d[:, 0])), "max_abs_dt_m": float(d[:, 0].max()),
            "median_abs_dR_deg": float(np.median(d[:, 1])),
            "max_abs_dR_deg": float(d[:, 1].max())}


def measure_set(module, backends: dict, batches: list, seeds: int) -> dict:
    """Rows per precision and seed, output errors and network seconds on one held-out set."""
    rows = {p: [[] for _ in range(seeds)] for p in backends}
    seconds = {p: 0.0 for p in backends}
    errors = {p: dict.fromkeys(OUTPUTS, 0.0) for p in backends if p != "fp32"}
    with torch.inference_mode():
        for i, batch in enumerate(batches):
            outs = {}
            for p, backend in backends.items():
                out, sec, feats = _forward(backend, module.net, batch)
                seconds[p] += sec
                outs[p] = (out, feats)
            for p in errors:
                for k, e in relative_errors(outs["fp32"][1], outs[p][1]).items():
                    errors[p][k] = max(errors[p][k], e)
            for s in range(seeds):
                for p in backends:
                    gen = torch.Generator().manual_seed(1000 * s + i)
                    rows[p][s].append(module.evaluate_batch(batch, gen, outs[p][0]))
    rows = {p: [torch.cat(r) for r in per_seed] for p, per_seed in rows.items()}
    return _report(rows, errors, seconds, len(batches))


def _report(rows: dict, errors: dict, seconds: dict, n_batches: int) -> dict:
    per_seed = {p: [summarise(r) for r in rs] for p, rs in rows.items()}
    med = {p: {k: [s[k] for s in ss] for k in ("median_t_m", "median_R_deg")}
           for p, ss in per_seed.items()}
    seeds = len(rows["fp32"])
    fp32_pairs = [_same_seed(rows["fp32"][0], rows["fp32"][s]) for s in range(1, seeds)]
    others = [p for p in rows if p != "fp32"]
    return {
        "per_seed_medians": med,
        "pooled": {p: summarise(torch.cat(rs)) for p, rs in rows.items()},
        "fp32_seed_spread_of_medians": {k: float(np.ptp(v)) for k, v in med["fp32"].items()},
        "same_seed_difference_of_medians": {p: {
            k: float(np.max(np.abs(np.subtract(med[p][k], med["fp32"][k])))) for k in
            ("median_t_m", "median_R_deg")} for p in others},
        "per_pair_same_seed_vs_fp32": {p: [_same_seed(rows["fp32"][s], rows[p][s])
                                           for s in range(seeds)] for p in others},
        "per_pair_fp32_seed0_vs_seed_s": fp32_pairs,
        "output_rel_error_vs_fp32": errors,
        "network_s_per_batch": {p: s / n_batches for p, s in seconds.items()},
    }


def main() -> None:
    """Parse arguments, render, measure both held-out sets, print and write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default="demo")
    parser.add_argument("--count", type=int, default=64, help="pairs per held-out set")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--int8", action="store_true",
                        help="also the checkpoint's int8 ONNX file (export_int8, in --run)")
    parser.add_argument("--run", type=Path, default=Path("/tmp/mickey_precision"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/mickey_precision/report.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = load_train_config(CONFIG)
    args.run.mkdir(parents=True, exist_ok=True)
    stage_render(args.run, cfg, args.count)
    model32, _ = load_checkpoint(args.checkpoint)
    model16, _ = load_checkpoint(args.checkpoint)
    model32.eval().set_backbone_precision("fp32")
    model16.eval().set_backbone_precision("bf16")
    cpu = torch.device("cpu")
    backends = {"fp32": TorchBackend(model32, cpu), "bf16": TorchBackend(model16, cpu, "bf16")}
    if args.int8:
        int8 = args.run / "int8linear.onnx"
        if not int8.is_file():
            patch = model32.config.backbone.patch_size  # the file is dynamic: any example size
            export_int8(model32, int8, (cfg.data.width // patch * patch,
                                        cfg.data.height // patch * patch), source=args.checkpoint)
        model32.set_backbone_precision("fp32")
        backends["int8"] = OnnxRuntimeBackend(int8, cpu)
    module = MicKeyTrainingModule(cfg, model32).eval()
    report = {"checkpoint": args.checkpoint, "pairs_per_set": args.count, "seeds": args.seeds,
              "threads": torch.get_num_threads(), "load_avg_1min": [os.getloadavg()[0]],
              "sets": {}}
    size_wh = (cfg.data.width, cfg.data.height)
    for name, (folder, _) in HELDOUT_SETS.items():
        batches = heldout_batches(args.run / folder, size_wh)
        report["sets"][name] = measure_set(module, backends, batches, args.seeds)
        print(name, json.dumps(report["sets"][name], indent=1), flush=True)
    report["load_avg_1min"].append(os.getloadavg()[0])
    args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
