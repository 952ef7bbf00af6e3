"""What the evaluation runs share: model settings, run folders named by their settings, resume.

A run folder is ``<out>/<kind>-<data>-<model>-r<W>x<H>-<precision>-seed<S>``; it holds the run's
config (``run_config.json``, written first) and per-item result files written atomically as each
item finishes, so an interrupted run resumes by skipping the files that exist.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mickey_ros.estimator.result import PoseEstimator
from mickey_ros.utils.config import config_to_dict
from mickey_ros.utils.outputs import atomic_write_bytes

LOG = logging.getLogger("mickey_ros.eval")


@dataclass(frozen=True)
class ModelSettings:
    """Which estimator an evaluation runs and how (maps onto ``EstimatorConfig``)."""

    checkpoint: str | None = None  # official mickey.ckpt or one of ours; None: the demo model
    dinov2_weights: str | None = None  # DINOv2 weight file for official checkpoints
    device: str = "cpu"  # 'cpu', 'cuda', 'cuda:1'
    precision: str = "fp32"  # backbone precision: fp32, fp16, bf16
    resize: tuple[int, int] | None = None  # (W, H) network input; None keeps 540x720 Map-free
    seed: int = 0  # solver seed (RANSAC sampling is stochastic)
    name: str | None = None  # model tag in output names; default: the checkpoint file stem
    backend: str = "torch"  # EstimatorConfig.backend: torch | onnxruntime | tensorrt
    onnx_path: str = ""  # exported file for the ONNX backends ('' exports the model at start)

    @property
    def base_tag(self) -> str:
        """Settings part of a run name without the seed, e.g. ``mickey-r540x720-fp16``."""
        source = self.onnx_path if self.onnx_path and self.backend != "torch" else self.checkpoint
        model = self.name or (Path(source).stem if source else "demo")
        size = f"r{self.resize[0]}x{self.resize[1]}" if self.resize else "rnative"
        return f"{model}-{size}-{self.precision}"

    @property
    def tag(self) -> str:
        """Settings part of a run name, e.g. ``mickey-r540x720-fp16-seed0``."""
        return f"{self.base_tag}-seed{self.seed}"

    @property
    def label(self) -> str:
        """The model as outputs name it (file name; the demo model carries its not-for-use note)."""
        from mickey_ros.estimator.relative_pose import (  # heavy: model code
            model_label,
            onnx_model_label,
            read_metadata,
        )

        if self.onnx_path and self.backend != "torch":
            return onnx_model_label(self.onnx_path, read_metadata(self.onnx_path))
        return model_label(self.checkpoint)

    def with_seed(self, seed: int) -> ModelSettings:
        """The same settings with another solver seed."""
        return replace(self, seed=seed)


def build_estimator(settings: ModelSettings) -> PoseEstimator:
    """``RelativePoseEstimator`` from the checkpoint in ``settings`` (None: the bundled demo)."""
    from mickey_ros.estimator.relative_pose import (  # heavy: model code
        EstimatorConfig,
        RelativePoseEstimator,
    )

    config = EstimatorConfig(
        device=settings.device,
        precision=settings.precision,
        resize=settings.resize,
        seed=settings.seed,
        backend=settings.backend,
        onnx_path=settings.onnx_path,
    )
    LOG.info("model: %s", settings.label)
    if settings.onnx_path and settings.backend != "torch":
        return RelativePoseEstimator.from_onnx(settings.onnx_path, config)
    if not settings.checkpoint:
        return RelativePoseEstimator.from_demo(config)
    return RelativePoseEstimator.from_checkpoint(
        settings.checkpoint, settings.dinov2_weights, config=config
    )


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` so that ``path`` either does not exist or is complete (resume marker)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def prepare_run_dir(out_dir: str | Path, run_name: str, config: Any) -> Path:
    """Create ``out_dir/run_name``, log the config and write ``run_config.json``.

    An existing folder is resumed only if it was made with the same config.

    Raises:
        ValueError: if the folder holds a run with another config.
    """
    run_dir = Path(out_dir) / run_name
    config_dict = config_to_dict(config) if not isinstance(config, dict) else config
    text = json.dumps(config_dict, indent=2, sort_keys=True) + "\n"
    LOG.info("run %s config:\n%s", run_name, text.rstrip())
    config_path = run_dir / "run_config.json"
    if config_path.is_file():
        if json.loads(config_path.read_text(encoding="utf-8")) != json.loads(text):
            raise ValueError(
                f"{run_dir} holds a run with another config ({config_path}); "
                "choose another --out or delete that folder"
            )
        LOG.info("resuming %s", run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(config_path, text)
    return run_dir


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # strict JSON has no NaN/Inf; null reads as "not available"
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_json(path: Path, data: dict) -> None:
    """Indented strict JSON (NaN/Inf written as null) with a trailing newline."""
    atomic_write_text(path, json.dumps(_json_safe(data), indent=2, allow_nan=False) + "\n")
