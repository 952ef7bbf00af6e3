"""Per-stage latency benchmark of the estimator (``mickey-ros bench``); not a library dependency.

Measures preprocess, backbone, heads, matching, solver and total in two modes:
``pair`` (both images through the network, as the official demo) and ``cached`` (the keyframe's
features cached, one backbone pass per live frame, as the node runs). Warm-up runs are discarded;
GPU stages are timed with device synchronisation inside the estimator.
"""

from __future__ import annotations

import json
import platform
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from mickey_ros.estimator.relative_pose import EstimatorConfig, RelativePoseEstimator
from mickey_ros.geometry.ransac import SolverConfig
from mickey_ros.model.config import get_model_config

STAGES = ("preprocess", "backbone", "heads", "matching", "solver", "total")


@dataclass(frozen=True)
class BenchConfig:
    """What to measure."""

    model: str = "mickey_vitl14"  # model config name (random weights) unless checkpoint is set
    checkpoint: str | None = None
    dinov2_weights: str | None = None
    size_wh: tuple[int, int] = (540, 720)  # Map-free images are 540 wide x 720 high
    device: str = "cpu"
    precision: str = "fp32"
    batch: int = 1  # queries per estimate_batch call in cached mode
    iterations: int = 5
    warmup: int = 1
    modes: tuple[str, ...] = ("pair", "cached")
    sampler: str = "exponential_keys"  # solver sampler; "multinomial" is the reference path


def _test_images(size_wh: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A textured image and a shifted copy, so the solver does real work."""
    W, H = size_wh
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 255, (H // 8 + 2, W // 8 + 2, 3)).astype(np.uint8)
    big = np.kron(coarse, np.ones((8, 8, 1), np.uint8))
    ref, query = big[:H, :W].copy(), big[4 : H + 4, 6 : W + 6].copy()
    K = np.array([[0.9 * W, 0, W / 2], [0, 0.9 * W, H / 2], [0, 0, 1]])
    return ref, query, K


def _median_timings(runs: list[dict[str, float]]) -> dict[str, float]:
    return {s: statistics.median(r.get(s, 0.0) for r in runs) for s in STAGES}


def run_benchmark(config: BenchConfig) -> dict:
    """Run the benchmark; returns a JSON-friendly dict with median ms per stage and FPS."""
    est_config = EstimatorConfig(
        device=config.device,
        precision=config.precision,
        solver=SolverConfig(sampler=config.sampler),
    )
    if config.checkpoint:
        estimator = RelativePoseEstimator.from_checkpoint(
            config.checkpoint, config.dinov2_weights, est_config
        )
    else:
        estimator = RelativePoseEstimator.from_model_config(
            get_model_config(config.model), est_config
        )
    ref, query, K = _test_images(config.size_wh)
    results = {}
    for mode in config.modes:
        runs = []
        if mode == "cached":
            estimator.set_reference(ref, K)
        for i in range(config.warmup + config.iterations):
            if mode == "pair":
                estimate = estimator.estimate_pair(ref, K, query, K)
            else:
                estimate = estimator.estimate_batch([query] * config.batch, [K] * config.batch)[0]
            if i >= config.warmup:
                runs.append(estimate.timings_ms)
        med = _median_timings(runs)
        frames = config.batch if mode == "cached" else 1
        results[mode] = {
            "median_ms": med,
            "fps": 1e3 * frames / med["total"] if med["total"] else 0.0,
        }
    memory = torch.cuda.max_memory_allocated() / 2**20 if estimator.device.type == "cuda" else None
    return {
        "config": asdict(config),
        "machine": {
            "device_name": torch.cuda.get_device_name(estimator.device)
            if estimator.device.type == "cuda"
            else platform.processor() or platform.machine(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "max_memory_mib": memory,
        },
        "results": results,
    }


def format_table(report: dict) -> str:
    """Markdown table: one row per mode, one column per stage (median ms) plus FPS."""
    header = "| mode | " + " | ".join(STAGES) + " | FPS |"
    lines = [header, "|" + "---|" * (len(STAGES) + 2)]
    for mode, res in report["results"].items():
        cells = " | ".join(f"{res['median_ms'][s]:.1f}" for s in STAGES)
        lines.append(f"| {mode} | {cells} | {res['fps']:.2f} |")
    return "\n".join(lines)


def main(config: BenchConfig, out: Path | None = None) -> dict:
    """Run, print the table, and write JSON to ``out`` when given."""
    report = run_benchmark(config)
    print(format_table(report))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
    return report
