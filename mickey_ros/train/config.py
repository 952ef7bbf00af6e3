"""Training configuration: frozen dataclasses loaded from ``config/train/*.yaml``.

Defaults are the official MicKey training values (``config/MicKey/curriculum_learning.yaml`` at
HEAD, see ``shared/reference/mickey.md`` sections 1.1 and 8); each names its source. Options that
the official code does not have (supervised warm-up terms, the synthetic data source) default to
"off" so that a config without them trains exactly the paper's objective.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from mickey_ros.synth.cameras import PairSamplingConfig
from mickey_ros.utils.config import ConfigError, config_from_yaml
from mickey_ros.utils.images import DEPTH_PNG_METRES_PER_UNIT


@dataclass(frozen=True)
class LossConfig:
    """VCRE pose loss, expected loss over hypotheses and the null hypothesis (reference 8.3)."""

    symmetric_vcre: bool = True  # official HEAD (8fec03e); False = release one-directional loss
    soft_clipping: bool = True  # official LOSS_CLASS.SOFT_CLIPPING
    soft_clip_scale_px: float = 80.0  # official: tanh(E / 80)
    max_loss_px: float = 90.0  # official LOSS_CLASS.VCRE.MAX_LOSS_VALUE (null loss when not soft)
    max_loss_soft: float = 0.8  # official LOSS_CLASS.VCRE.MAX_LOSS_SOFTVALUE (null-hypothesis loss)
    clamp_px: float = 720.0  # official: projections clamped to [0, 720] (hard-coded image height)
    score_temperature: float = 20.0  # official GENERATE_HYPOTHESES.SCORE_TEMPERATURE
    null_hypothesis: bool = True  # official NULL_HYPOTHESIS.ADD_NULL_HYPOTHESIS
    null_inlier_fraction: float = 0.35  # official NULL_HYPOTHESIS.TH_OUTLIERS


@dataclass(frozen=True)
class HypothesisConfig:
    """Training-time hypothesis generation (reference 8.3, vectorised HEAD version)."""

    num_draws: int = 20  # official GENERATE_HYPOTHESES.IT_MATCHES
    num_samples: int = 512  # official LOSS_CLASS.SAMPLER.NUM_SAMPLES_MATCHES
    num_hypotheses: int = 20  # official GENERATE_HYPOTHESES.IT_RANSAC
    set_size: int = 8  # official GENERATE_HYPOTHESES.NUM_CORR_3d3d
    soft_inlier_threshold_m: float = 0.3  # official GENERATE_HYPOTHESES.INLIER_3D_TH
    refine_threshold_m: float = 0.15  # official GENERATE_HYPOTHESES.INLIER_REF_TH
    num_refinements: int = 4  # official GENERATE_HYPOTHESES.NUM_REF_STEPS
    beta_scale: float = 5.0  # official: soft-inlier beta = 5 / threshold


@dataclass(frozen=True)
class CurriculumConfig:
    """Top-k curriculum over the pairs of a batch (reference 8.4)."""

    enabled: bool = True  # official CURRICULUM_LEARNING.TRAIN_WITH_TOPK
    topk_init: float = 30.0  # official CURRICULUM_LEARNING.TOPK_INIT (percent of the batch)
    topk_step: float = 5.0  # official: +5 after every epoch
    topk_max: float = 80.0  # official CURRICULUM_LEARNING.TOPK


@dataclass(frozen=True)
class SupervisionConfig:
    """Optional ground-truth supervision for a warm-up (not in the paper: all weights 0 by default).

    Used only when a batch carries ground-truth depth maps (synthetic or RGB-D data).
    """

    depth_weight: float = 0.0  # ours: |log z_pred - log z_gt| at keypoints (GT depth needed)
    correspondence_weight: float = 0.0  # ours: NLL of the GT query cell under the dual softmax
    matched_depth_weight: float = 0.0  # ours: |log-depth error ref - query| at GT matches
    # ours: |log z - log z_gt| at every pixel, read off the backbone by a training-only head
    # (train/dense_depth.py); needs GT depth maps
    dense_depth_weight: float = 0.0
    pose_weight: float = 1.0  # ours: weight of the paper's objective (REINFORCE + direct term)
    pose_from_step: int = 0  # ours: first step that runs the (expensive) pose objective
    supervision_until_step: int = -1  # ours: last step with the supervision terms (-1 = always)
    max_depth_m: float = 100.0  # ours: GT depths beyond (far background) are not supervised
    depth_consistency: float = 0.05  # ours: relative depth tolerance for a visible GT match


@dataclass(frozen=True)
class OptimConfig:
    """Adam and gradient handling (reference 8.2)."""

    lr: float = 1e-4  # official TRAINING.LR
    lr_schedule: str = "constant"  # official: constant; ours: "cosine" (needs max_steps > 0)
    warmup_steps: int = 0  # ours: linear ramp from 0 to lr over the first steps
    min_lr: float = 0.0  # ours: where the cosine ends at max_steps
    adam_eps: float = 1e-6  # official optimiser eps
    grad_clip_norm: float = 5.0  # official: manual clip of the global L2 norm


@dataclass(frozen=True)
class DataConfig:
    """Where training pairs come from."""

    source: str = "mapfree"  # ours: "mapfree" (Map-free layout) or "synthetic"
    width: int = 540  # official DATASET.WIDTH
    height: int = 720  # official DATASET.HEIGHT
    min_overlap: float = 0.0  # official DATASET.MIN_OVERLAP_SCORE (strict lower bound)
    max_overlap: float = 1.0  # official DATASET.MAX_OVERLAP_SCORE (strict upper bound)
    pairs_per_scene: int = 100  # official TRAINING.N_SAMPLES_SCENE (scene_balance sampler)
    train_split: str = "train"  # ours: Map-free split folder used for training
    val_split: str = "val"  # ours: Map-free split folder used for validation
    val_query_step: int = 5  # official: every 5th query frame in validation
    # ours: RGB-D data in the Map-free layout: load <frame stem><depth_suffix> (16-bit PNG) as
    # ground-truth depth for the supervision terms; "" = no depth (the official data loader)
    depth_suffix: str = ""
    depth_metres_per_unit: float = DEPTH_PNG_METRES_PER_UNIT  # ours: millimetre PNGs
    synthetic_train_pairs: int = 2000  # ours: pairs per epoch of the synthetic source
    synthetic_val_pairs: int = 64  # ours: held-out synthetic pairs
    # ours: scene kind, camera heights, pitch, roll, intrinsics, baselines... of rendered pairs
    synthetic_pairs: PairSamplingConfig = field(default_factory=PairSamplingConfig)
    synthetic_train_seed: int = 0  # ours
    synthetic_val_seed: int = 1000  # ours: a different seed, so validation scenes are unseen
    # ours: rehearsal against forgetting while fine-tuning: a second training source (any data
    # config, e.g. the synthetic rig the model was trained on) that fills rehearsal_fraction of
    # every batch; validation stays on the main source. None = off
    rehearsal: DataConfig | None = None
    rehearsal_fraction: float = 0.0  # ours: share of each batch drawn from data.rehearsal
    # ours: root of a Map-free rehearsal source, or of pre-rendered synthetic pairs (train/);
    # "" renders synthetic rehearsal pairs on the fly
    rehearsal_dir: str = ""

    def __post_init__(self) -> None:
        if not 0.0 <= self.rehearsal_fraction < 1.0:
            raise ConfigError(
                f"data.rehearsal_fraction must be in [0, 1), got {self.rehearsal_fraction}"
            )
        if self.rehearsal is None:
            if self.rehearsal_fraction > 0:
                raise ConfigError(
                    f"data.rehearsal_fraction {self.rehearsal_fraction} needs data.rehearsal "
                    "(a data config, e.g. source: synthetic with the original rig's settings)"
                )
            return
        self._check_rehearsal(self.rehearsal)

    def _check_rehearsal(self, r: DataConfig) -> None:
        if self.rehearsal_fraction == 0:
            raise ConfigError(
                "data.rehearsal is set but data.rehearsal_fraction is 0: set the share of each "
                "batch it fills, in (0, 1)"
            )
        if r.source not in ("mapfree", "synthetic"):
            raise ConfigError(
                f"data.rehearsal.source must be 'mapfree' or 'synthetic', got {r.source!r}"
            )
        if (r.width, r.height) != (self.width, self.height):
            raise ConfigError(
                f"data.rehearsal size {r.width}x{r.height} differs from data size "
                f"{self.width}x{self.height}: both fill the same batches, set the same size"
            )
        if r.rehearsal is not None:
            raise ConfigError("data.rehearsal cannot have a rehearsal of its own")
        if r.source == "mapfree" and not self.rehearsal_dir:
            raise ConfigError(
                "data.rehearsal.source 'mapfree' needs data.rehearsal_dir (its dataset root)"
            )


@dataclass(frozen=True)
class ValidationConfig:
    """Validation with the inference solver and Map-free metrics (reference 9.1)."""

    every_n_steps: int = 0  # ours: 0 = once per epoch (official VAL_INTERVAL 0.5 epoch)
    max_batches: int = 100  # official TRAINING.VAL_BATCHES
    num_draws: int = 20  # official PROCRUSTES.IT_MATCHES
    num_samples: int = 2048  # official PROCRUSTES.NUM_SAMPLED_MATCHES
    num_hypotheses: int = 100  # official PROCRUSTES.IT_RANSAC
    vcre_threshold_px: float = 90.0  # official Precision@VCRE
    # official (metres, degrees); (0.5, 10) is the training-time validation threshold
    pose_thresholds: tuple[tuple[float, float], ...] = ((0.25, 5.0), (0.5, 10.0))
    monitor: str = "val/vcre_auc"  # ours: metric for the best-by-validation checkpoint (max)


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``mickey-train`` needs besides data and output paths."""

    model: str = "mickey_vitl14"  # ours: name for mickey_ros.model.config.get_model_config
    freeze_backbone: bool = True  # official: DINOv2 frozen
    batch_size: int = 8  # official TRAINING.BATCH_SIZE (HEAD; 12 at release) per device
    num_workers: int = 8  # official TRAINING.NUM_WORKERS
    max_epochs: int = 100  # official TRAINING.EPOCHS
    max_steps: int = -1  # ours: -1 = no step limit
    precision: str = "32-true"  # ours: Lightning precision ("32-true", "bf16-mixed", "16-mixed")
    seed: int = 66  # official DATASET.SEED
    log_every_n_steps: int = 50  # official TRAINING.LOG_INTERVAL
    checkpoint_every_n_steps: int = 1000  # ours
    loss: LossConfig = field(default_factory=LossConfig)
    hypotheses: HypothesisConfig = field(default_factory=HypothesisConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    supervision: SupervisionConfig = field(default_factory=SupervisionConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)

    def __post_init__(self) -> None:
        if self.data.source not in ("mapfree", "synthetic"):
            raise ConfigError(
                f"data.source must be 'mapfree' or 'synthetic', got {self.data.source!r}"
            )
        if self.precision not in ("32-true", "32", "bf16-mixed", "16-mixed"):
            raise ConfigError(
                f"precision must be one of 32-true, bf16-mixed, 16-mixed; got {self.precision!r}"
            )
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        schedules = ("constant", "cosine")
        if self.optim.lr_schedule not in schedules:
            raise ConfigError(
                f"optim.lr_schedule must be one of {schedules}, got {self.optim.lr_schedule!r}"
            )
        if self.optim.lr_schedule == "cosine" and self.max_steps <= 0:
            raise ConfigError("optim.lr_schedule 'cosine' decays to max_steps: set max_steps > 0")
        if self.optim.warmup_steps < 0 or not 0.0 <= self.optim.min_lr <= self.optim.lr:
            raise ConfigError(
                f"optim.warmup_steps must be >= 0 and 0 <= optim.min_lr <= optim.lr, got "
                f"{self.optim.warmup_steps} and {self.optim.min_lr}"
            )

    def learning_rate(self, step: int) -> float:
        """Learning rate of optimiser step ``step`` (0-based): warm-up ramp, then the schedule.

        A pure function of the step, so a resumed run continues the same curve.

        >>> cfg = TrainConfig(max_steps=100, optim=OptimConfig(
        ...     lr=1.0, lr_schedule="cosine", warmup_steps=10, min_lr=0.0))
        >>> [round(cfg.learning_rate(s), 3) for s in (0, 9, 10, 55, 100)]
        [0.1, 1.0, 1.0, 0.5, 0.0]
        """
        o = self.optim
        if step < o.warmup_steps:
            return o.lr * (step + 1) / o.warmup_steps
        if o.lr_schedule == "constant":
            return o.lr
        span = max(self.max_steps - o.warmup_steps, 1)
        progress = min((step - o.warmup_steps) / span, 1.0)
        return o.min_lr + 0.5 * (o.lr - o.min_lr) * (1.0 + math.cos(math.pi * progress))


def load_train_config(path: str | Path) -> TrainConfig:
    """Load a training YAML (all keys optional; unknown keys raise ``ConfigError`` naming them)."""
    return config_from_yaml(TrainConfig, path)
