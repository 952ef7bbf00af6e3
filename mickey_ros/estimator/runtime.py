"""Run-time settings chosen by measurement: CPU threads and the ``'auto'`` network precision.

Threads (issue 28, ``docs/performance.md#threads``): on a machine whose cores are shared with
other processes, torch's default of one thread per core loses badly: every parallel region waits
for its slowest thread, so a frame that takes 0.2 s with one thread took 0.9-1.8 s with two while
the other core was busy (the demo model, 2 cores); on an idle machine two threads gained only
1.3x for the small models. ``threads=0`` therefore picks one thread for the small models and half
the cores for the large ones (ViT backbones), and an explicit ``OMP_NUM_THREADS`` is honoured.

Precision (issue 30, ``docs/deployment.md#precision``): ``'auto'`` runs backbone and heads in
bf16 where the CPU has bf16 matrix instructions (``amx_bf16`` or ``avx512_bf16`` in
``/proc/cpuinfo``): the backbone cast to bf16 (as the official code casts it to fp16) and the
heads under bf16 autocast, which keeps normalisations and reductions in fp32. Matching and the
solver stay fp32 in every case. On CUDA it picks the official fp16 backbone with fp16 heads;
elsewhere fp32. The detection is an argument, so tests force both paths.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

AUTO = "auto"
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo flags of bf16 matrix instructions
# Models below this many parameters (mickey_tiny, the demo CNN, mickey_small: 0.4-4.8 M) run one
# thread by default; MicKey with a DINOv2 backbone (ViT-S 52 M, ViT-L 347 M) uses half the cores.
SMALL_MODEL_PARAMS = 20_000_000

logger = logging.getLogger("mickey_ros.estimator")


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU feature flags the kernel reports (empty where there is no ``/proc/cpuinfo``)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, else ``os.cpu_count``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class RunSettings:
    """What the estimator runs with, and one line saying why (printed by ``bench``, logged)."""

    threads: int
    precision: str  # backbone: fp32 | fp16 | bf16
    autocast: str  # heads (and backbone): '' | fp16 | bf16
    note: str


def choose_threads(requested: int, num_params: int, cores: int,
                   environ: Mapping[str, str]) -> tuple[int, str]:
    """Torch (and ONNX Runtime) intra-op threads and the reason.

    Args:
        requested: ``EstimatorConfig.threads``; 0 = auto.
        num_params: parameters of the network (backbone + heads).
        cores: cores available to the process.
        environ: the environment (an explicit ``OMP_NUM_THREADS`` wins over auto).
    """
    if requested < 0:
        raise ValueError(f"threads must be >= 0 (0 = auto), got {requested}")
    if requested:
        return requested, f"threads {requested} (set)"
    if environ.get("OMP_NUM_THREADS"):
        n = torch.get_num_threads()
        return n, f"threads {n} (OMP_NUM_THREADS)"
    if num_params < SMALL_MODEL_PARAMS:
        return 1, "threads 1 (auto: small model; more threads lose under load)"
    n = max(1, cores // 2)
    return n, f"threads {n} (auto: half of {cores} cores for a large model)"


def choose_precision(precision: str, autocast: str, device: torch.device, backend: str,
                     flags: frozenset[str]) -> tuple[str, str, str]:
    """(backbone precision, autocast, reason) for ``precision``; only ``'auto'`` is changed.

    Args:
        precision: ``EstimatorConfig.precision``: fp32 | fp16 | bf16 | auto.
        autocast: ``EstimatorConfig.autocast``; an explicit value is kept.
        device: the estimator's device.
        backend: torch | onnxruntime | tensorrt.
        flags: CPU flags (:func:`cpu_flags`).
    """
    if precision != AUTO:
        return precision, autocast, f"precision {precision}" + (
            f", autocast {autocast}" if autocast else "")
    if backend == "tensorrt":
        return "fp16", "", "precision auto -> fp16 (TensorRT engines)"
    if backend != "torch":
        return "fp32", "", f"precision auto -> fp32 (the {backend} graph is fp32)"
    if device.type == "cuda":
        return "fp16", autocast or "fp16", "precision auto -> fp16 backbone + heads (CUDA)"
    units = sorted(f for f in BF16_CPU_FLAGS if f in flags)
    if device.type == "cpu" and units:
        return "bf16", autocast or "bf16", (f"precision auto -> bf16 backbone + heads (CPU has "
                                            f"{', '.join(units)})")
    return "fp32", autocast, (f"precision auto -> fp32 ({device.type}: no "
                              f"{' or '.join(BF16_CPU_FLAGS)})")


def resolve_run_settings(threads: int, precision: str, autocast: str, device: torch.device,
                         backend: str, num_params: int, flags: frozenset[str] | None = None,
                         environ: Mapping[str, str] | None = None) -> RunSettings:
    """Threads and precision an estimator runs with (``flags``/``environ``: this machine's)."""
    n, threads_note = choose_threads(threads, num_params, available_cores(),
                                     os.environ if environ is None else environ)
    flags = cpu_flags() if flags is None else flags
    prec, cast, prec_note = choose_precision(precision, autocast, device, backend, flags)
    return RunSettings(n, prec, cast, f"{prec_note}; {threads_note}")


def apply_threads(threads: int) -> None:
    """Set torch's intra-op threads (process-wide; ONNX Runtime sessions copy this number)."""
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
