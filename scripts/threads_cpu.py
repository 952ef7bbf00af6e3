r"""Live-frame latency per torch thread count, interleaved, with the load average (issue 28).

For each model, one estimator per model (random weights, or the bundled demo model for 'demo');
inside every iteration each thread count runs one cached live frame (keyframe features cached,
one network pass, matching, solver) on the textured test pair, so load from other processes hits
every thread count alike. Prints the median ms per thread count and the 1-minute load average
before and after, and writes the JSON report.

    .venv/bin/python scripts/threads_cpu.py --models demo --size 320x240 --iterations 9
    .venv/bin/python scripts/threads_cpu.py --models mickey_vitl14 --size 378x252 --iterations 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

import torch

from mickey_ros.estimator.bench import BenchConfig, _test_images, build_estimator
from mickey_ros.estimator.relative_pose import DEMO_CHECKPOINT


def _estimator(model: str, size_wh: tuple[int, int], precision: str):
    if model == "demo":
        config = BenchConfig(checkpoint=str(DEMO_CHECKPOINT), size_wh=size_wh, precision=precision)
    else:
        config = BenchConfig(model=model, size_wh=size_wh, precision=precision)
    return build_estimator(config)


def measure(model: str, size_wh: tuple[int, int], threads: list[int], iterations: int,
            warmup: int, precision: str) -> dict:
    """Median live-frame ms per thread count, interleaved; every run kept."""
    est = _estimator(model, size_wh, precision)
    ref, query, K = _test_images(size_wh)
    est.set_reference(ref, K)
    runs: dict[int, list[float]] = {n: [] for n in threads}
    load = [os.getloadavg()[0]]
    for i in range(warmup + iterations):
        for n in threads:
            torch.set_num_threads(n)
            total = est.estimate(query, K).timings_ms["total"]
            if i >= warmup:
                runs[n].append(total)
    load.append(os.getloadavg()[0])
    med = {n: statistics.median(r) for n, r in runs.items()}
    for n in threads:
        print(f"{model} {size_wh[0]}x{size_wh[1]} {precision} threads {n}: live frame "
              f"{med[n]:.0f} ms (runs {[round(r) for r in runs[n]]}), load {load}", flush=True)
    return {"median_ms": med, "runs_ms": runs, "load_avg_1min": load}


def main() -> None:
    """Parse arguments, measure each model, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="demo", help="comma list: demo or model configs")
    parser.add_argument("--size", default="320x240", help="network input WxH")
    parser.add_argument("--threads", default="1,2", help="comma list of thread counts")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--iterations", type=int, default=9)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("/tmp/mickey_threads.json"))
    args = parser.parse_args()
    W, H = (int(v) for v in args.size.split("x"))
    threads = [int(n) for n in args.threads.split(",")]
    report = {m: measure(m, (W, H), threads, args.iterations, args.warmup, args.precision)
              for m in args.models.split(",")}
    args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
