"""One rank of the two-process DDP training of ``test_train_ddp.py`` (run as a script).

Trains the tiny model through ``mickey_ros.train.main.main`` with ``accelerator="cpu",
devices=2``; the process group comes from the environment the test sets (``LOCAL_RANK``,
``MASTER_ADDR=127.0.0.1``, ``MASTER_PORT``). Writes ``<tag>-steps-rank<R>.jsonl`` (per optimiser
step: a digest of the batch and of all parameters) and ``<tag>-writes-rank<R>.txt`` (every
checkpoint file this rank wrote) into the run folder.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO

from mickey_ros.train.config import (
    DataConfig,
    HypothesisConfig,
    SupervisionConfig,
    TrainConfig,
    ValidationConfig,
)
from mickey_ros.train.main import main


def _digest(tensors) -> str:
    h = hashlib.sha1()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class _RecordSteps(Callback):
    def __init__(self, path: Path) -> None:
        self.path = path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        params = [p for _, p in sorted(pl_module.named_parameters())]
        row = {"step": trainer.global_step, "batch": _digest([batch["image0"]]),
               "weights": _digest(params)}
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")


def _record_writes(path: Path) -> None:
    save = TorchCheckpointIO.save_checkpoint

    def recording_save(self, checkpoint, filepath, storage_options=None):
        with path.open("a") as f:
            f.write(f"{Path(filepath).name}\n")
        return save(self, checkpoint, filepath, storage_options)

    TorchCheckpointIO.save_checkpoint = recording_save


def config(max_steps: int) -> TrainConfig:
    """Tiny model, 112 x 112 pairs, a supervised warm-up (steps 0-1), then the paper's objective."""
    return TrainConfig(
        model="mickey_tiny",
        freeze_backbone=False,  # the trainable backbone's never-used mask token must not block DDP
        batch_size=2,
        num_workers=0,
        max_epochs=100,
        max_steps=max_steps,
        seed=0,
        log_every_n_steps=1,
        checkpoint_every_n_steps=2,
        hypotheses=HypothesisConfig(num_draws=3, num_samples=32, num_hypotheses=4),
        supervision=SupervisionConfig(depth_weight=1.0, correspondence_weight=0.5,
                                      pose_from_step=2),
        data=DataConfig(source="synthetic", width=112, height=112),
        validation=ValidationConfig(every_n_steps=2, max_batches=1, num_draws=2, num_samples=32,
                                    num_hypotheses=4, monitor="val/pose_auc_50cm_10deg"),
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--max-steps", type=int, required=True)
    parser.add_argument("--resume", type=Path)
    parser.add_argument("--tag", required=True, help="prefix of the record files")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rank = int(os.environ["LOCAL_RANK"])
    args.out.mkdir(parents=True, exist_ok=True)
    _record_writes(args.out / f"{args.tag}-writes-rank{rank}.txt")
    record = _RecordSteps(args.out / f"{args.tag}-steps-rank{rank}.jsonl")
    main(config(args.max_steps), args.data, args.out, accelerator="cpu", devices=2,
         resume=args.resume, callbacks=[record])
