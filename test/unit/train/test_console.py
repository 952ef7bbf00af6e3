"""mickey-train's terminal output (issue 28): the bar counts the run's steps; a short run says
why."""

from __future__ import annotations

import logging
import warnings

import lightning as L
import pytest

from mickey_ros.train.config import DataConfig
from mickey_ros.train.console import quiet_lightning
from mickey_ros.train.main import main


class _Probe(L.Callback):
    """Records what the progress bar planned at the start of training."""

    def on_train_start(self, trainer, pl_module):
        self.total = trainer.progress_bar_callback.total_train_batches


def _train(cfg, out_dir, **kwargs):
    pytest.importorskip("moderngl")
    from mickey_ros.synth.render import EGLUnavailableError

    try:
        return main(cfg, None, out_dir, progress=False, **kwargs)
    except EGLUnavailableError as err:
        pytest.skip(f"no headless OpenGL: {err}")


def _data(train_pairs: int) -> DataConfig:
    return DataConfig(source="synthetic", width=168, height=168,
                      synthetic_train_pairs=train_pairs, synthetic_val_pairs=2)


class _Messages(logging.Handler):
    """Collects one logger's records whatever logging setup the session installed."""

    def __init__(self, name: str):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.log = logging.getLogger(name)

    def emit(self, record):
        self.lines.append(record.getMessage())

    def __enter__(self):
        self.log.addHandler(self)
        self._level, self.log.level = self.log.level, logging.DEBUG
        return self

    def __exit__(self, *exc):
        self.log.removeHandler(self)
        self.log.setLevel(self._level)


class TestStepProgressBar:
    def test_counts_to_max_steps_not_to_the_epoch_end(self, tmp_path, tiny_config):
        """Issue 28: the bar's total was the epoch's batches (an ETA of 3 h for 20 steps)."""
        probe = _Probe()
        cfg = tiny_config(max_steps=2, checkpoint_every_n_steps=100, data=_data(8))  # 4 batches
        _train(cfg, tmp_path, callbacks=[probe])
        assert probe.total == 2

    def test_says_why_a_run_ends_before_max_steps(self, tmp_path, tiny_config):
        """Issue 28: --max-steps 4 on data of one batch stopped after 1 step without a word."""
        cfg = tiny_config(max_epochs=1, max_steps=3, checkpoint_every_n_steps=100, data=_data(2))
        probe = _Probe()
        with _Messages("mickey_ros.train.console") as messages:
            _train(cfg, tmp_path, callbacks=[probe])
        reason = ("max_epochs 1 reached with 1 batch per epoch (2 training pairs / batch_size 2, "
                  "the last partial batch dropped)")
        assert messages.lines == [
            f"the run will stop at step 1, before max_steps 3: {reason}; raise max_epochs in the "
            "config or give more training pairs",
            f"stopped at step 1 of max_steps 3: {reason}"]
        assert probe.total == 1


class TestQuietLightning:
    def test_drops_known_noise_keeps_other_warnings(self):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with quiet_lightning(expected_eval_modules=29):
                warnings.warn("The 'train_dataloader' does not have many workers which may be a "
                              "bottleneck.", UserWarning, stacklevel=1)
                warnings.warn("Found 29 module(s) in eval mode at the start of training.",
                              UserWarning, stacklevel=1)
                warnings.warn("Found 3 module(s) in eval mode at the start of training.",
                              UserWarning, stacklevel=1)
                warnings.warn("GPU available but not used.", UserWarning, stacklevel=1)
                warnings.warn("Using ModelCheckpoint with manual optimization and "
                              "every_n_train_steps, but no pre-optimization state was saved.",
                              UserWarning, stacklevel=1)
        assert [str(w.message) for w in caught] == [
            "Found 3 module(s) in eval mode at the start of training.",
            "GPU available but not used."]

    def test_drops_lightning_info_lines_inside_the_block_only(self):
        name = "lightning.pytorch.utilities.rank_zero"
        with _Messages(name) as messages:
            with quiet_lightning():
                logging.getLogger(name).info("💡 Tip: For seamless cloud logging ...")
                logging.getLogger(name).info("GPU available: False, used: False")
                logging.getLogger(name).info("Restored all states from the checkpoint at x")
            logging.getLogger(name).info("GPU available: False, used: False")
        assert messages.lines == ["Restored all states from the checkpoint at x",
                                  "GPU available: False, used: False"]
