"""Ctrl-C and SIGTERM during mickey-train (issue 28): save, say how to resume, exit 128 + signal."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch

from mickey_ros.train.config import DataConfig
from mickey_ros.train.interrupt import TrainingInterrupted, resume_command
from mickey_ros.train.main import cli, main

CONFIG = """\
model: mickey_tiny
batch_size: 2
num_workers: {workers}
max_steps: 1000000
checkpoint_every_n_steps: 1000000
log_every_n_steps: 1
hypotheses: {{num_draws: 3, num_samples: 32, num_hypotheses: 4}}
validation: {{num_draws: 2, num_samples: 64, num_hypotheses: 10, max_batches: 1}}
data: {{source: synthetic, width: 168, height: 168, synthetic_train_pairs: 1000000,
        synthetic_val_pairs: 2}}
"""
STARTUP_S = 120  # import, model, first render: slow on a loaded 2-core machine


def _global_step(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=False)["global_step"]


def _interrupted_run(tmp_path: Path, signum: int, workers: int) -> tuple[int, str, list[str]]:
    """Start mickey-train, signal its process group once the first step is under way (as a
    terminal's Ctrl-C does, workers included); return exit code, stderr and its argv."""
    pytest.importorskip("moderngl")
    config = tmp_path / "tiny.yaml"
    config.write_text(CONFIG.format(workers=workers))
    argv = ["--config", str(config), "--out", str(tmp_path / "run"), "--threads", "1"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "mickey_ros.train.main", *argv], stderr=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    started, lines = time.monotonic(), []
    try:
        for line in proc.stderr:  # the bar's first line is printed when training starts
            lines.append(line)
            if line.startswith("train:") or time.monotonic() - started > STARTUP_S:
                break
        time.sleep(1.0)  # into the first steps
        os.killpg(proc.pid, signum)
        out, err = proc.communicate(timeout=STARTUP_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    err = "".join(lines) + err
    if "EGL" in err and proc.returncode not in (130, 143):
        pytest.skip(f"no headless OpenGL: {err.strip().splitlines()[-1]}")
    return proc.returncode, err + out, argv


class TestInterrupt:
    def test_ctrl_c_saves_says_how_to_resume_and_resumes_step_exact(self, tmp_path):
        """Issue 28: Ctrl-C exited 1 with Lightning's message only and kept nothing."""
        code, output, argv = _interrupted_run(tmp_path, signal.SIGINT, workers=1)
        assert code == 130, output
        match = re.search(r"mickey-train: SIGINT: stopped at step (\d+), saved (\S+)\n"
                          r"resume with: (.+)\n", output)
        assert match, output
        step, saved = int(match[1]), Path(match[2])
        assert step >= 1 and saved == tmp_path / "run" / "checkpoints" / f"step-{step:07d}.ckpt"
        assert _global_step(saved) == step
        assert _global_step(tmp_path / "run" / "checkpoints" / "last.ckpt") == step
        assert match[3] == resume_command(argv, saved)
        for noise in ("Traceback", "Tip:", "GPU available", "does not have many workers",
                      "Detected KeyboardInterrupt", "DataLoader worker"):
            assert noise not in output
        # the printed command, two steps further: it trains exactly steps step+1 and step+2
        # (in this process: no worker, since a fork of a process with an EGL context cannot
        # render; the workers do not change what is trained)
        (tmp_path / "tiny.yaml").write_text(CONFIG.format(workers=0))
        resume_argv = shlex.split(match[3])[1:] + ["--max-steps", str(step + 2)]
        assert cli(resume_argv) == 0
        ckpts = tmp_path / "run" / "checkpoints"
        assert _global_step(ckpts / "last.ckpt") == step + 2
        assert sorted(p.name for p in ckpts.glob("step-*")) == [
            f"step-{step:07d}.ckpt", f"step-{step + 2:07d}.ckpt"]
        assert not list(ckpts.glob("last-v*.ckpt"))

    def test_sigterm_in_a_step_saves_that_step(self, tmp_path, tiny_config):
        """A cluster's SIGTERM (in-process: the signal arrives while step 3 runs)."""
        pytest.importorskip("moderngl")
        from mickey_ros.synth.render import EGLUnavailableError

        cfg = tiny_config(max_steps=50, checkpoint_every_n_steps=250, data=DataConfig(
            source="synthetic", width=168, height=168, synthetic_train_pairs=200,
            synthetic_val_pairs=2))
        try:
            with pytest.raises(TrainingInterrupted) as caught:
                main(cfg, None, tmp_path, callbacks=[_SignalAtStep(3, signal.SIGTERM)],
                     progress=False)
        except EGLUnavailableError as err:
            pytest.skip(f"no headless OpenGL: {err}")
        err = caught.value
        assert (err.signum, err.step, err.exit_code) == (signal.SIGTERM, 3, 143)
        assert err.checkpoint == tmp_path / "checkpoints" / "step-0000003.ckpt"
        assert _global_step(err.checkpoint) == 3
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # given back


class _SignalAtStep(L.Callback):
    """Sends ``signum`` to this process when the batch of global step ``step`` starts."""

    def __init__(self, step: int, signum: int):
        self.step, self.signum = step, signum

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step + 1 == self.step:
            os.kill(os.getpid(), self.signum)


class TestResumeCommand:
    def test_replaces_an_earlier_resume(self):
        argv = ["--config", "c.yaml", "--resume=a.ckpt", "--out", "r", "--resume", "b.ckpt"]
        assert resume_command(argv, Path("r/checkpoints/step-0000027.ckpt")) == (
            "mickey-train --config c.yaml --out r --resume r/checkpoints/step-0000027.ckpt")
