"""Ctrl-C and a cluster's SIGTERM during training: finish the step, save, say how to resume.

Lightning's own handling stops mid-step and exits 1 with nothing saved since the last periodic
checkpoint (250 steps apart in ``synthetic_small.yaml``). Here the first SIGINT or SIGTERM only
sets a flag; the step in flight completes, ``StepCheckpoint`` saves at its batch end (where a
resume continues inside the epoch, step-exact) and the run ends with :class:`TrainingInterrupted`.
A second Ctrl-C stops at once, without saving.
"""

from __future__ import annotations

import os
import shlex
import signal
import threading
from pathlib import Path
from types import FrameType

import lightning as L

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(KeyboardInterrupt):
    """A run stopped by a signal after saving ``checkpoint`` at ``step`` (None: at step 0).

    A ``KeyboardInterrupt``, so a script that does not handle it still stops as on Ctrl-C.
    """

    def __init__(self, signum: int, step: int, checkpoint: Path | None) -> None:
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        super().__init__(f"{signal_name(signum)} at step {step}; saved {checkpoint}")

    @property
    def exit_code(self) -> int:
        """The shell's code for a process ended by the signal (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + self.signum


def signal_name(signum: int) -> str:
    """``SIGINT`` for 2, ...

    >>> signal_name(15)
    'SIGTERM'
    """
    return signal.Signals(signum).name


class StopRequest:
    """The first SIGINT/SIGTERM of a run, recorded for the next batch end (see module doc)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        """Catch SIGINT and SIGTERM (main thread only: Python delivers signals there)."""
        if threading.current_thread() is not threading.main_thread():
            return
        self.signum = None
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)

    def restore(self) -> None:
        """Put back the handlers found at ``install``."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            return  # a repeated SIGTERM: the save is already on its way
        self.signum = signum
        if signal.SIGINT in self._previous:  # a second Ctrl-C stops at once
            signal.signal(signal.SIGINT, self._previous.pop(signal.SIGINT))
        # os.write, not print: a handler that prints while the bar is printing raises
        # "reentrant call" inside the stream
        os.write(2, f"\nmickey-train: {signal_name(signum)} received: saving a checkpoint when "
                    f"this step ends (Ctrl-C again stops at once, without saving)\n".encode())

    def requested(self, trainer: L.Trainer) -> bool:
        """Whether any rank got a signal: one decision for all, since the save is collective."""
        return trainer.strategy.reduce_boolean_decision(self.signum is not None, all=False)


def resume_command(argv: list[str], checkpoint: Path, prog: str = "mickey-train") -> str:
    """The command line that continues a run: ``argv`` with ``--resume checkpoint``.

    >>> resume_command(["--config", "a b.yaml", "--resume", "old.ckpt"], Path("r/last.ckpt"))
    "mickey-train --config 'a b.yaml' --resume r/last.ckpt"
    """
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--resume":
            skip = True
        elif not arg.startswith("--resume="):
            kept.append(arg)
    return shlex.join([prog, *kept, "--resume", str(checkpoint)])


def ignore_stop_signals_in_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: leave SIGINT/SIGTERM to the main process, then seed.

    A terminal's Ctrl-C reaches every process of the group; a worker that died of it would end
    the run with "DataLoader worker exited unexpectedly" before the main process could save.
    Workers still exit with the main process (PyTorch's parent watchdog).
    """
    from lightning.fabric.utilities.seed import pl_worker_init_function

    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    if int(os.environ.get("PL_SEED_WORKERS", 0)):  # the seeding Lightning adds when none is set
        pl_worker_init_function(worker_id)
