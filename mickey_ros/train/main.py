r"""``mickey-train``: offline MicKey training with PyTorch Lightning (hloc-style ``main``).

Examples::

    mickey-train --config config/train/mapfree_curriculum.yaml --data /data/mapfree --gpus 4
    mickey-train --config config/train/synthetic_small.yaml --accelerator cpu --devices 2
    mickey-train --config config/train/finetune_own_data.yaml --init mickey.ckpt \\
        --dinov2-weights dinov2_vitl14_pretrain.pth --data my_dataset/
    mickey-train --config config/train/synthetic_small.yaml --data pairs/ --out runs/demo

Outputs under ``--out``: ``checkpoints/`` (``step-*.ckpt`` every N steps, ``best-*.ckpt`` by
validation, ``last.ckpt``), ``logs/`` (CSV, TensorBoard when installed) and ``train_config.yaml``.

Ctrl-C (or SIGTERM) finishes the current step, saves ``step-*.ckpt`` and ``last.ckpt``, prints the
command that resumes the run and exits 130 (143 for SIGTERM).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.strategies import DDPStrategy
from torch.utils.data import DataLoader

from mickey_ros.model.config import get_model_config
from mickey_ros.model.mickey import MicKey
from mickey_ros.train.config import TrainConfig, load_train_config
from mickey_ros.train.console import StepProgressBar, quiet_lightning
from mickey_ros.train.data import build_datasets
from mickey_ros.train.interrupt import (
    StopRequest,
    TrainingInterrupted,
    ignore_stop_signals_in_worker,
    resume_command,
    signal_name,
)
from mickey_ros.train.module import MicKeyTrainingModule, phases_leave_parameters_unused
from mickey_ros.utils.checks import check_writable
from mickey_ros.utils.config import ConfigError, config_to_dict

logger = logging.getLogger(__name__)


def _loggers(out_dir: Path) -> list:
    loggers = [CSVLogger(out_dir, name="logs")]
    try:
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(out_dir, name="tensorboard"))
    except (ImportError, ModuleNotFoundError):
        logger.info("tensorboard is not installed: logging to CSV only")
    return loggers


def _is_final_batch(trainer: L.Trainer) -> bool:
    """Whether the batch that just ended is the run's last (``max_steps`` or last epoch's end)."""
    if 0 < trainer.max_steps <= trainer.global_step:
        return True
    max_epochs = trainer.max_epochs if trainer.max_epochs is not None else -1  # -1: no limit
    last_epoch = 0 < max_epochs <= trainer.current_epoch + 1
    return last_epoch and trainer.fit_loop.epoch_loop.batch_progress.is_last_batch


class StepCheckpoint(ModelCheckpoint):
    """``step-*.ckpt`` every N steps, at the final step and at an interrupt, + ``last.ckpt``.

    All are written at a batch end.

    A checkpoint written after ``fit`` returns (or by ``ModelCheckpoint.on_train_end``) marks the
    epoch finished, so a run resumed from it starts after its last epoch: with ``max_epochs: 1``
    it trained nothing. One written at the final batch's end resumes inside the epoch,
    to the new ``max_steps``. The save is collective (rank 0 writes, the other ranks wait), and
    every rank takes the same decision from the step counter, never from the file system.

    A SIGINT/SIGTERM during ``fit`` (:class:`~mickey_ros.train.interrupt.StopRequest`) is
    answered at the next batch end the same way, then the trainer stops; ``interrupted`` is then
    ``(signal number, step, checkpoint)``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stop_request = StopRequest()
        self.interrupted: tuple[int, int, Path | None] | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Catch the stop signals from here (after Lightning registered its own handlers)."""
        super().on_train_start(trainer, pl_module)
        self.interrupted = None
        self.stop_request.install()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        """Periodic save, then the final (or interrupted) step's save unless just saved."""
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        stop = self.stop_request.requested(trainer)
        saved_now = self._last_global_step_saved == trainer.global_step
        if (stop or _is_final_batch(trainer)) and not saved_now:
            candidates = self._monitor_candidates(trainer)
            self._save_topk_checkpoint(trainer, candidates)
            self._save_last_checkpoint(trainer, candidates)
        if stop:
            # a rank without the signal itself (DDP) stops with the others: report SIGINT
            signum = self.stop_request.signum or int(signal.SIGINT)
            saved = Path(self.best_model_path) if self.best_model_path else None  # None: step 0
            self.interrupted = (signum, trainer.global_step, saved)
            trainer.should_stop = True
            # Lightning validates before it honours should_stop: a pass a Ctrl-C (or the
            # grace period of a SIGTERM) should not wait for
            trainer.limit_val_batches = 0

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Give the signals back; no save (the final batch was saved; one now ends the epoch)."""
        self.stop_request.restore()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule,
                     exception: BaseException) -> None:
        """Give the signals back (before Lightning restores its own: the order it saved them)."""
        self.stop_request.restore()


def _callbacks(cfg: TrainConfig, ckpt_dir: Path) -> tuple[StepCheckpoint, ModelCheckpoint]:
    periodic = StepCheckpoint(
        dirpath=ckpt_dir,
        filename="step-{step:07d}",
        auto_insert_metric_name=False,
        every_n_train_steps=cfg.checkpoint_every_n_steps,
        save_top_k=-1,
        save_last=True,
        # a run resumed from step-N.ckpt rewrites last.ckpt (and any later step-*.ckpt of the
        # same run) instead of leaving last-v1.ckpt beside a stale last.ckpt
        enable_version_counter=False,
    )
    best = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="best-{step:07d}",
        auto_insert_metric_name=False,
        monitor=cfg.validation.monitor,
        mode="max",
        save_top_k=1,
    )
    return periodic, best


def _build_model(cfg: TrainConfig, init: Path | None, dinov2_weights: Path | None):
    """The network to train: from ``init``, else fresh heads on the DINOv2 weight file."""
    from mickey_ros.model.checkpoint import load_checkpoint, load_state_dict_file

    if init is not None:
        model, _ = load_checkpoint(init, dinov2_weights=dinov2_weights)
    else:
        model_config = get_model_config(cfg.model)
        backbone = replace(model_config.backbone, trainable=not cfg.freeze_backbone)
        model = MicKey(replace(model_config, backbone=backbone))
        if dinov2_weights is not None:
            model.backbone.load_state_dict(load_state_dict_file(dinov2_weights), strict=True)
        elif backbone.arch not in ("custom", "conv"):  # no hub weights exist for these
            raise ValueError(
                f"model {cfg.model} uses a DINOv2 {backbone.arch} backbone: pass its weight file "
                f"with --dinov2-weights dinov2_{backbone.arch}_pretrain.pth (never downloaded)"
            )
    model.extractor.trainable_backbone = not cfg.freeze_backbone
    model.backbone.requires_grad_(not cfg.freeze_backbone)
    return model.train()


def resolve_devices(
    accelerator: str | None, devices: int | None, gpus: int | None = None, nodes: int = 1
) -> tuple[str, int]:
    """Lightning's accelerator and processes per node for ``--accelerator/--devices/--gpus``.

    ``--gpus N`` is short for ``--accelerator gpu --devices N`` (``--gpus 0``: one CPU process);
    nothing given means one CPU process.

    Raises:
        ValueError: one line naming the impossible request and the fix.

    >>> resolve_devices("cpu", 2), resolve_devices(None, None, gpus=0)
    (('cpu', 2), ('cpu', 1))
    """
    if nodes < 1:
        raise ValueError(f"--nodes must be >= 1, got {nodes}")
    if gpus is not None:
        if devices is not None or accelerator not in (None, "gpu"):
            raise ValueError("--gpus N is short for --accelerator gpu --devices N: "
                             "give either --gpus or --accelerator/--devices")
        accelerator, devices = ("gpu", gpus) if gpus > 0 else ("cpu", 1)
    if accelerator in (None, "auto"):
        accelerator = "gpu" if accelerator == "auto" and torch.cuda.is_available() else "cpu"
    if accelerator not in ("cpu", "gpu"):
        raise ValueError(f"--accelerator must be cpu, gpu or auto, got {accelerator!r}")
    devices = 1 if devices is None else devices
    if devices < 1:
        raise ValueError(f"--devices must be >= 1, got {devices}")
    if accelerator == "gpu" and devices > torch.cuda.device_count():
        raise ValueError(f"{devices} GPU(s) per node requested but torch sees "
                         f"{torch.cuda.device_count()}; for CPU processes use "
                         f"--accelerator cpu --devices {devices}")
    return accelerator, devices


def _strategy(cfg: TrainConfig, world_size: int) -> str | DDPStrategy:
    if world_size == 1:
        return "auto"
    # the search for parameters without a gradient costs a graph traversal per step: only where
    # a phase of the run leaves some out (gloo on CPU, NCCL on GPU: Lightning's defaults)
    return DDPStrategy(find_unused_parameters=phases_leave_parameters_unused(cfg))


def _trainer(cfg: TrainConfig, out_dir: Path, accelerator: str, devices: int, nodes: int,
             callbacks: list[Callback]) -> L.Trainer:
    every = cfg.validation.every_n_steps
    return L.Trainer(
        accelerator=accelerator,
        devices=devices,
        num_nodes=nodes,
        strategy=_strategy(cfg, devices * nodes),
        precision=cfg.precision,
        max_epochs=cfg.max_epochs,
        max_steps=cfg.max_steps,
        val_check_interval=every if every > 0 else 1.0,
        check_val_every_n_epoch=None if every > 0 else 1,
        limit_val_batches=cfg.validation.max_batches,
        log_every_n_steps=cfg.log_every_n_steps,
        num_sanity_val_steps=0,
        callbacks=callbacks,
        logger=_loggers(out_dir),
        default_root_dir=out_dir,
        enable_model_summary=False,  # a table per run: main logs the one line that matters
    )


def main(
    cfg: TrainConfig,
    data_dir: str | Path | None,
    out_dir: str | Path,
    *,
    init: str | Path | None = None,
    dinov2_weights: str | Path | None = None,
    accelerator: str = "cpu",
    devices: int = 1,
    nodes: int = 1,
    resume: str | Path | None = None,
    callbacks: list[Callback] | None = None,
    progress: bool = True,
) -> Path:
    """Train MicKey and return the path of the best checkpoint (``last.ckpt`` if none is best).

    Args:
        cfg: training settings (``config/train/*.yaml``).
        data_dir: Map-free-layout root (with ``train/`` and ``val/``), or a folder of
            pre-rendered synthetic pairs (``train/``, ``val/``); None renders synthetic pairs on
            the fly (``data.source: synthetic`` only).
        out_dir: run folder (checkpoints, logs, the config used).
        init: official or mickey_ros checkpoint to fine-tune from.
        dinov2_weights: DINOv2 weight file for ``init`` checkpoints without a backbone.
        accelerator: ``"cpu"`` or ``"gpu"`` (:func:`resolve_devices` checks a request).
        devices: processes per node (GPUs, or CPU processes); more than one in all uses DDP.
        nodes: number of nodes.
        resume: a Lightning checkpoint (e.g. ``last.ckpt``) to continue from, to
            ``cfg.max_steps``.
        callbacks: extra Lightning callbacks (e.g. to monitor a run).
        progress: draw the progress bar (over steps, to the step the run will end at).

    Raises:
        TrainingInterrupted: SIGINT or SIGTERM stopped the run after the step in flight; its
            ``checkpoint`` (saved then) resumes it with ``resume``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    model = _build_model(
        cfg, Path(init) if init else None, Path(dinov2_weights) if dinov2_weights else None
    )
    module = MicKeyTrainingModule(cfg, model)
    train_set, val_set, sampler = build_datasets(cfg.data, data_dir, cfg.seed, cfg.batch_size)
    loader_args = {"batch_size": cfg.batch_size, "num_workers": cfg.num_workers,
                   "persistent_workers": cfg.num_workers > 0,
                   "worker_init_fn": ignore_stop_signals_in_worker}
    train_loader = DataLoader(train_set, sampler=sampler, shuffle=sampler is None, drop_last=True,
                              **loader_args)
    val_loader = DataLoader(val_set, shuffle=False, **loader_args)
    periodic, best = _callbacks(cfg, out_dir / "checkpoints")
    frozen = sum(1 for m in module.modules() if not m.training)  # a frozen backbone, by design
    with quiet_lightning(expected_eval_modules=frozen, resuming=resume is not None):
        trainer = _trainer(cfg, out_dir, accelerator, devices, nodes,
                           [periodic, best, StepProgressBar(progress), *(callbacks or [])])
        if trainer.is_global_zero:
            text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False)
            (out_dir / "train_config.yaml").write_text(text)
            params = list(module.parameters())
            logger.info("model %s: %s parameters, %s trainable; run folder %s", cfg.model,
                        f"{sum(p.numel() for p in params):,}",
                        f"{sum(p.numel() for p in params if p.requires_grad):,}", out_dir)
        trainer.fit(module, train_loader, val_loader, ckpt_path=str(resume) if resume else None)
    if periodic.interrupted is not None:
        raise TrainingInterrupted(*periodic.interrupted)
    if best.best_model_path:
        return Path(best.best_model_path)
    return Path(periodic.last_model_path or periodic.best_model_path)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mickey-train", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path, help="config/train/*.yaml")
    parser.add_argument("--data", type=Path, help="dataset root (Map-free layout or pair files)")
    parser.add_argument("--out", type=Path, default=Path("runs/train"), help="run folder")
    parser.add_argument("--init", type=Path,
                        help="checkpoint to fine-tune (official or ours; 'demo': the bundled model)")
    parser.add_argument("--dinov2-weights", type=Path, help="DINOv2 weights for --init")
    parser.add_argument("--accelerator", choices=("cpu", "gpu", "auto"),
                        help="device kind (default cpu; auto = gpu when CUDA is available)")
    parser.add_argument("--devices", type=int,
                        help="processes per node: GPUs, or CPU processes (DDP when > 1)")
    parser.add_argument("--gpus", type=int, help="short for --accelerator gpu --devices N")
    parser.add_argument("--nodes", type=int, default=1, help="nodes for multi-node DDP")
    parser.add_argument("--resume", type=Path, help="Lightning checkpoint to resume exactly")
    parser.add_argument("--max-steps", type=int, help="override max_steps of the config")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (for logs and CI)")
    return parser


def _report_interrupt(err: TrainingInterrupted, argv: list[str]) -> int:
    """Say where the run stopped and the command that continues it; the shell's exit code."""
    where = f"mickey-train: {signal_name(err.signum)}: stopped at step {err.step}"
    if err.checkpoint is None:
        print(f"{where}, before any step was trained: nothing to resume", file=sys.stderr)
    else:
        print(f"{where}, saved {err.checkpoint}\nresume with: "
              f"{resume_command(argv, err.checkpoint)}", file=sys.stderr)
    return err.exit_code


def cli(argv: list[str] | None = None) -> int:
    """Console entry point ``mickey-train``."""
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_train_config(args.config)
        if args.max_steps is not None:
            cfg = replace(cfg, max_steps=args.max_steps)
        if args.init is not None:
            from mickey_ros.model.checkpoint import resolve_checkpoint

            args.init = resolve_checkpoint(args.init)
        for flag, path in (("--data", args.data), ("--init", args.init),
                           ("--dinov2-weights", args.dinov2_weights), ("--resume", args.resume)):
            if path is not None and not path.exists():
                raise FileNotFoundError(f"{flag} {path} does not exist")
        check_writable(args.out, "--out", directory=True)  # before the model and data load
        accelerator, devices = resolve_devices(args.accelerator, args.devices, args.gpus,
                                               args.nodes)
        if args.threads:
            torch.set_num_threads(args.threads)
        best = main(cfg, args.data, args.out, init=args.init, dinov2_weights=args.dinov2_weights,
                    accelerator=accelerator, devices=devices, nodes=args.nodes,
                    resume=args.resume, progress=not args.no_progress)
    except (ConfigError, OSError, ValueError) as err:  # OSError: missing, unwritable, disk full
        print(f"mickey-train: error: {err}", file=sys.stderr)
        return 2
    except TrainingInterrupted as err:
        return _report_interrupt(err, argv)
    except KeyboardInterrupt:  # before training started (model, data): nothing trained yet
        print("mickey-train: SIGINT before training started: nothing saved", file=sys.stderr)
        return 130
    print(f"best checkpoint: {best}")
    return 0


if __name__ == "__main__":
    sys.exit(cli())
