"""Per-stage latency benchmark of the estimator (``mickey-ros bench``); not a library dependency.

Measures preprocess, backbone, heads, matching, solver and total in two modes:
``pair`` (both images through the network, as the official demo) and ``cached`` (the keyframe's
features cached, one backbone pass per live frame, as the node runs). Warm-up runs are discarded;
GPU stages are timed with device synchronisation inside the estimator. The ONNX backends run
backbone and heads as one graph, reported as the stage ``network``. Memory per mode: peak GPU
memory allocated by torch on CUDA (ONNX Runtime's own arena is not counted), else the process's
peak resident set size (monotonic over the run: read the first mode's figure).
"""

from __future__ import annotations

import json
import platform
import resource
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from mickey_ros.estimator.backends import SPEED_FIELDS
from mickey_ros.estimator.relative_pose import EstimatorConfig, RelativePoseEstimator
from mickey_ros.geometry.ransac import SolverConfig
from mickey_ros.model.config import get_model_config

STAGES = ("preprocess", "backbone", "heads", "network", "matching", "solver", "total")


@dataclass(frozen=True)
class BenchConfig:
    """What to measure."""

    model: str = "mickey_vitl14"  # model config name (random weights) unless checkpoint is set
    checkpoint: str | None = None
    dinov2_weights: str | None = None
    size_wh: tuple[int, int] = (540, 720)  # Map-free images are 540 wide x 720 high
    device: str = "cpu"
    precision: str = "fp32"  # backbone: fp32 | fp16 | bf16 | auto (estimator/runtime.py)
    threads: int = 0  # torch and ONNX Runtime CPU threads; 0 = auto (estimator/runtime.py)
    batch: int = 1  # queries per estimate_batch call in cached mode
    iterations: int = 5
    warmup: int = 1
    modes: tuple[str, ...] = ("pair", "cached")
    sampler: str = "exponential_keys"  # solver sampler; "multinomial" is the reference path
    backend: str = "torch"  # EstimatorConfig.backend: torch | onnxruntime | tensorrt
    onnx_path: str = ""  # exported file for the ONNX backends ('' exports the model first)
    autocast: str = ""  # torch backend: '' | fp16 | bf16
    compile: bool = False  # torch backend: torch.compile
    io_binding: bool = False  # ONNX backends: bind outputs in place
    pin_memory: bool = False  # CUDA: pinned host memory for the live image


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


def build_estimator(config: BenchConfig) -> RelativePoseEstimator:
    """The estimator ``config`` describes (random weights unless a checkpoint is given)."""
    est_config = EstimatorConfig(
        device=config.device,
        precision=config.precision,
        solver=SolverConfig(sampler=config.sampler),
        **{name: getattr(config, name) for name in SPEED_FIELDS},
    )
    if config.checkpoint:
        return RelativePoseEstimator.from_checkpoint(
            config.checkpoint, config.dinov2_weights, est_config
        )
    if config.onnx_path and config.backend != "torch":
        return RelativePoseEstimator.from_onnx(config.onnx_path, est_config)
    return RelativePoseEstimator.from_model_config(get_model_config(config.model), est_config)


def time_mode(estimator: RelativePoseEstimator, mode: str, images: tuple, batch: int = 1
              ) -> dict[str, float]:
    """Per-stage ms of one ``pair`` or ``cached`` estimate of ``images`` = (ref, query, K)."""
    ref, query, K = images
    if mode == "pair":
        return estimator.estimate_pair(ref, K, query, K).timings_ms
    if mode != "cached":
        raise ValueError(f"mode must be 'pair' or 'cached', got {mode!r}")
    if not estimator.has_reference:
        estimator.set_reference(ref, K)
    return estimator.estimate_batch([query] * batch, [K] * batch)[0].timings_ms


def peak_memory_mib(device: torch.device) -> float:
    """Peak torch-allocated GPU memory on CUDA, else the process's peak RSS, MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_benchmark(config: BenchConfig) -> dict:
    """Run the benchmark; returns a JSON-friendly dict with median ms per stage, FPS, memory."""
    estimator = build_estimator(config)
    images = _test_images(config.size_wh)
    results = {}
    for mode in config.modes:
        if estimator.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(estimator.device)
        estimator.clear_reference()
        runs = [time_mode(estimator, mode, images, config.batch)
                for _ in range(config.warmup + config.iterations)][config.warmup:]
        med = _median_timings(runs)
        frames = config.batch if mode == "cached" else 1
        results[mode] = {
            "median_ms": med,
            "fps": 1e3 * frames / med["total"] if med["total"] else 0.0,
            "peak_memory_mib": peak_memory_mib(estimator.device),
        }
    memory = torch.cuda.max_memory_allocated() / 2**20 if estimator.device.type == "cuda" else None
    ran = estimator.config
    return {
        "config": asdict(config),
        # what the run used after 'auto' was resolved (precision, autocast, threads) and why
        "ran_with": {"precision": ran.precision, "autocast": ran.autocast, "threads": ran.threads,
                     "note": estimator.run_settings.note},
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
    """The settings line, then a markdown table: per mode, median ms per stage, FPS, memory."""
    kind = "GPU peak" if report["config"]["device"].startswith("cuda") else "peak RSS"
    ran = report["ran_with"]
    header = f"| backend | mode | {' | '.join(STAGES)} | FPS | {kind} MiB |"
    lines = [f"ran with {ran['note']}", "", header, "|" + "---|" * (len(STAGES) + 4)]
    backend = report["config"]["backend"]
    for mode, res in report["results"].items():
        cells = " | ".join(f"{res['median_ms'][s]:.1f}" if res["median_ms"][s] else "-"
                           for s in STAGES)
        lines.append(f"| {backend} | {mode} | {cells} | {res['fps']:.2f} | "
                     f"{res['peak_memory_mib']:.0f} |")
    return "\n".join(lines)


def main(config: BenchConfig, out: Path | None = None) -> dict:
    """Run, print the table, and write JSON to ``out`` when given."""
    report = run_benchmark(config)
    print(format_table(report))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
    return report
