r"""CPU speed and parity of the estimator backends (issues 16, 30): interleaved and re-runnable.

Builds the torch estimator (random weights in the official layout, seed 0) in fp32 and with
``precision auto`` (bf16 backbone + heads where the CPU has bf16 units; the same weights), exports
it once to ONNX (fp32, dynamic sizes) and once to int8 (``export_int8``: the linear layers and
the heads' convolutions as dynamically quantised MatMuls), then
for each size runs, backend after backend inside each iteration (so machine load hits all alike):
a full pair pass (``estimate_pair``) and a live frame with the keyframe cached. It reports the
median ms per stage, the speed-ups the issue asks for, the relative error of every network output
against torch and the pose difference per backend (same seed), with the threads (one) and the
1-minute load average of every iteration. Memory per backend needs one process each:
``mickey-ros bench --backend ...`` reports its peak RSS.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python scripts/bench_backends_cpu.py \\
        --model mickey_vitl14 --sizes 378x252,720x540 --iterations 1 --warmup 1 \\
        --out /tmp/mickey_backends/report.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from mickey_ros.estimator import runtime
from mickey_ros.estimator.bench import BenchConfig, _median_timings, _test_images, build_estimator
from mickey_ros.estimator.export import export_int8, export_onnx, relative_errors
from mickey_ros.estimator.relative_pose import EstimatorConfig, RelativePoseEstimator


def _features(est: RelativePoseEstimator) -> tuple:
    feats = est._reference[1]  # the cached keyframe features (script-only peek)
    return feats.kpts, feats.depth, feats.scores, feats.descriptors


def _pose_difference(a, b) -> dict[str, float]:
    if not (a.valid and b.valid):
        return {"valid": float(a.valid and b.valid)}
    chord = np.linalg.norm(a.R - b.R) / 2**1.5  # arccos(trace) loses tiny angles
    return {"rotation_deg": float(np.degrees(2 * np.arcsin(min(1.0, chord)))),
            "translation_rel": float(np.linalg.norm(a.t - b.t) / max(np.linalg.norm(a.t), 1e-12))}


def _estimators(model: str, workdir: Path) -> tuple[dict[str, RelativePoseEstimator], dict]:
    torch_est = build_estimator(BenchConfig(model=model, threads=1))
    auto_est = build_estimator(BenchConfig(model=model, threads=1, precision="auto"))
    fp32, int8 = workdir / f"{model}.onnx", workdir / f"{model}-int8linear.onnx"
    times = {}
    if not fp32.is_file():
        times["export_s"] = export_onnx(torch_est.model, fp32, (378, 252), parity_sizes_wh=[],
                                        source=f"{model} random seed 0").export_s
    if not int8.is_file():
        t0 = time.perf_counter()
        export_int8(torch_est.model, int8, (378, 252), source=f"{model} random seed 0")
        times["int8_export_s"] = time.perf_counter() - t0
    ests = {"torch": torch_est, f"torch-auto-{auto_est.config.precision}": auto_est}
    for name, path in (("onnxruntime", fp32), ("onnxruntime-int8linear", int8)):
        ests[name] = RelativePoseEstimator.from_onnx(
            path, EstimatorConfig(backend="onnxruntime", threads=1))
    return ests, times


def _run_size(ests: dict, size_wh: tuple[int, int], iterations: int, warmup: int) -> dict:
    ref, query, K = _test_images(size_wh)
    runs = {name: {"pair": [], "cached": []} for name in ests}
    poses, feats, load = {}, {}, []
    for i in range(warmup + iterations):
        load.append(os.getloadavg()[0])
        for name, est in ests.items():  # interleaved: one of each per iteration
            pose = est.estimate_pair(ref, K, query, K)
            poses[name] = pose
            est.clear_reference()
            est.set_reference(ref, K)
            feats[name] = _features(est)
            cached = est.estimate(query, K)
            if i < warmup:  # first runs at a new size: allocator, ORT's per-shape planning
                continue
            runs[name]["pair"].append(pose.timings_ms)
            runs[name]["cached"].append(cached.timings_ms)
            print(f"{size_wh} {name}: pair {runs[name]['pair'][-1]['total']:.0f} ms, cached "
                  f"{runs[name]['cached'][-1]['total']:.0f} ms", flush=True)
    med = {n: {m: _median_timings(r) for m, r in modes.items()} for n, modes in runs.items()}
    torch_pair = med["torch"]["pair"]["total"]
    return {
        "load_avg_1min_per_iteration": load + [os.getloadavg()[0]],
        "median_ms": med,
        "total_ms_per_run": {n: {m: [r["total"] for r in rs] for m, rs in modes.items()}
                             for n, modes in runs.items()},
        "live_frame_speedup_vs_torch_pair": {n: torch_pair / m["cached"]["total"]
                                             for n, m in med.items()},
        "pair_speedup_vs_torch_pair": {n: torch_pair / m["pair"]["total"] for n, m in med.items()},
        "output_rel_error_vs_torch": {n: relative_errors(feats["torch"], f)
                                      for n, f in feats.items() if n != "torch"},
        "pose_difference_vs_torch": {n: _pose_difference(poses["torch"], p)
                                     for n, p in poses.items() if n != "torch"},
    }


def main() -> None:
    """Parse arguments, run every size, print and write the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="mickey_vitl14")
    parser.add_argument("--sizes", default="378x252,720x540", help="comma list of WxH")
    parser.add_argument("--iterations", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=1, help="discarded iterations per size")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mickey_backends"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/mickey_backends/report.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.workdir.mkdir(parents=True, exist_ok=True)
    ests, build = _estimators(args.model, args.workdir)
    units = sorted(runtime.cpu_flags() & set(runtime.BF16_CPU_FLAGS))
    report = {"model": args.model, "threads": 1, "cpu_bf16_flags": units,
              "iterations": args.iterations,
              "warmup": args.warmup, "torch": torch.__version__, "build": build,
              "sizes": {}}
    for size in args.sizes.split(","):
        W, H = (int(v) for v in size.split("x"))
        report["sizes"][size] = _run_size(ests, (W, H), args.iterations, args.warmup)
        args.out.write_text(json.dumps(report, indent=2))  # partial results survive a kill
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
