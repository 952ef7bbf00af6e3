"""What ``mickey-train`` shows on a terminal: one progress bar over steps, without the noise.

Lightning's own bar counts the batches of an epoch, so its ETA is the epoch's, not the run's
(3 h for a 20-step run on 20,000 synthetic pairs), and a normal run prints tips, device lines and
warnings about choices this package makes on purpose. Here the bar counts optimizer steps to the
step where the run will really end (``max_steps``, or ``max_epochs`` when the data runs out
first, which is said once at the start and once at the end), and a filter drops only the
messages listed below; every other warning still shows.
"""

from __future__ import annotations

import logging
import math
import re
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ProgressBar

logger = logging.getLogger(__name__)

# Lightning's info lines that say nothing a user of mickey-train needs (we set these on purpose)
NOISE_LOGS = (
    r"💡 Tip: ",  # litlogger advertisement
    r"GPU available: ", r"TPU available: ",  # the device line; a GPU left unused still warns
    r"`Trainer\(\w+=1(\.0)?\)` was configured so ",  # limit_val_batches / val_check_interval
    r"`Trainer.fit` stopped: ",  # our own end line says why, with the step
    r"Seed set to ",
)
# Lightning and torch warnings about choices this package makes on purpose
NOISE_WARNINGS = (
    r"The '\w+' does not have many workers",  # num_workers comes from the config
    r"Consider setting `persistent_workers=True`",
    r"The number of training batches \(\d+\) is smaller than the logging interval",
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",  # Lightning vs torch versions
    # a resumed epoch draws a fresh order (random sampling): the step counter is what resumes
    r"You're resuming from a checkpoint that ended before the epoch ended",
    # checkpoints hold the state after the step they are named after: what a resume continues
    r"Using ModelCheckpoint with manual optimization and every_n_train_steps",
)
NON_TTY_REFRESH_S = 30.0  # a log file gets a progress line every 30 s, not a stream of them


class _DropNoise(logging.Filter):
    def __init__(self, patterns: tuple[str, ...]) -> None:
        super().__init__()
        self._pattern = re.compile("|".join(f"(?:{p})" for p in patterns))

    def filter(self, record: logging.LogRecord) -> bool:
        return not self._pattern.match(record.getMessage().lstrip())


def _rank_zero_loggers() -> list[logging.Logger]:
    # rank_zero_info logs through whichever of these lightning_utilities was pointed at last
    names = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
             "lightning.fabric.utilities.seed")
    return [logging.getLogger(name) for name in names]


@contextmanager
def quiet_lightning(expected_eval_modules: int = 0, resuming: bool = False) -> Iterator[None]:
    """Drop the known noise (``NOISE_LOGS``, ``NOISE_WARNINGS``) inside the block; keep the rest.

    Args:
        expected_eval_modules: modules in eval mode by design (a frozen backbone); Lightning's
            "Found N module(s) in eval mode" is dropped for exactly this N and kept for any
            other, which would mean a forgotten ``.train()``.
        resuming: the run continues in its own folder: "Checkpoint directory ... exists and is
            not empty" is expected (and kept for a new run, where it means mixing two runs).
    """
    noise = _DropNoise(NOISE_LOGS)
    loggers = _rank_zero_loggers()
    for log in loggers:
        log.addFilter(noise)
    try:
        with warnings.catch_warnings():
            for message in NOISE_WARNINGS:
                warnings.filterwarnings("ignore", message=message)
            if expected_eval_modules:
                warnings.filterwarnings(
                    "ignore", message=f"Found {expected_eval_modules} module\\(s\\) in eval mode")
            if resuming:
                warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is")
            yield
    finally:
        for log in loggers:
            log.removeFilter(noise)


def planned_last_step(trainer: L.Trainer) -> tuple[int | float, str]:
    """The global step the run ends at, and the limit that ends it (``max_steps``/``max_epochs``).

    Steps are optimizer steps, one per batch; ``inf`` when neither limit is set or the data is
    endless.
    """
    max_steps = trainer.max_steps if trainer.max_steps > 0 else math.inf
    max_epochs = trainer.max_epochs if trainer.max_epochs not in (None, -1) else math.inf
    per_epoch = trainer.num_training_batches
    done_in_epoch = trainer.fit_loop.epoch_loop.batch_progress.current.completed
    before_epoch = trainer.global_step - done_in_epoch
    by_epochs = before_epoch + (max_epochs - trainer.current_epoch) * per_epoch
    if by_epochs < max_steps:
        return by_epochs, "max_epochs"
    return max_steps, "max_steps"


def _epochs_reason(trainer: L.Trainer) -> str:
    per_epoch = trainer.num_training_batches
    loader = trainer.train_dataloader
    size = (f"{len(loader.dataset)} training pairs / batch_size {loader.batch_size}"
            if hasattr(loader, "dataset") and hasattr(loader.dataset, "__len__")
            else "training pairs / batch_size")
    return (f"max_epochs {trainer.max_epochs} reached with {per_epoch} batch"
            f"{'es' if per_epoch != 1 else ''} per epoch ({size}, the last partial batch "
            f"dropped)")


class StepProgressBar(ProgressBar):
    """A tqdm bar over the run's optimizer steps, with the loss and pairs/s (rank 0 only).

    Args:
        enabled: False: no bar (the start/end messages stay).
    """

    def __init__(self, enabled: bool = True) -> None:
        super().__init__()
        self._enabled = enabled
        self.bar: Any = None
        self.last_step: int | float = math.inf
        self._first_step = 0
        self.stopped_by = "max_steps"

    @property
    def is_enabled(self) -> bool:
        """Whether the bar is drawn."""
        return self._enabled

    def disable(self) -> None:
        """Called by Lightning on ranks other than 0."""
        self._enabled = False

    def enable(self) -> None:
        """Lightning's switch back on (the bar shows on rank 0 only)."""
        self._enabled = True

    @property
    def total_train_batches(self) -> int | float:
        """Steps (one per batch) the bar counts in this run: from its first step to its last."""
        return self.last_step - self._first_step

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Open the bar; say at once when the data ends the run before ``max_steps``."""
        from tqdm import tqdm

        self.last_step, self.stopped_by = planned_last_step(trainer)
        self._first_step = trainer.global_step
        if self.stopped_by == "max_epochs" and trainer.is_global_zero:
            logger.warning("the run will stop at step %d, before max_steps %d: %s; raise "
                           "max_epochs in the config or give more training pairs",
                           self.last_step, trainer.max_steps, _epochs_reason(trainer))
        tty = sys.stderr.isatty()
        self.bar = tqdm(
            total=None if math.isinf(self.last_step) else int(self.last_step),
            initial=trainer.global_step, unit="step", desc="train", dynamic_ncols=True,
            disable=not self._enabled, mininterval=0.1 if tty else NON_TTY_REFRESH_S,
            file=sys.stderr,
        )

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        """Move to the current step; show the loss and the speed."""
        metrics = trainer.progress_bar_metrics
        postfix = {k: f"{float(metrics[k]):.3g}" for k in ("loss", "pairs_s") if k in metrics}
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(trainer.global_step - self.bar.n)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Close the bar; say why the run ended before ``max_steps`` (if it did)."""
        self.teardown(trainer, pl_module, "fit")
        short = 0 < trainer.max_steps and trainer.global_step < trainer.max_steps
        if short and self.stopped_by == "max_epochs" and trainer.is_global_zero:
            logger.warning("stopped at step %d of max_steps %d: %s", trainer.global_step,
                           trainer.max_steps, _epochs_reason(trainer))

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Close the bar, also after an exception."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
