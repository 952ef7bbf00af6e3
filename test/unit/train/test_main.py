from dataclasses import replace

import pytest
import torch

from mickey_ros.model.checkpoint import load_checkpoint
from mickey_ros.train.config import DataConfig
from mickey_ros.train.main import cli, main, resolve_devices


def _train_or_skip(cfg, out_dir, **kwargs):
    """``main`` on synthetic pairs rendered on the fly; skip where headless OpenGL is missing."""
    pytest.importorskip("moderngl")
    from mickey_ros.synth.render import EGLUnavailableError

    try:
        return main(cfg, None, out_dir, **kwargs)
    except EGLUnavailableError as err:
        pytest.skip(f"no headless OpenGL: {err}")


class TestCli:
    def test_unknown_config_key_is_one_line_error(self, tmp_path, capsys):
        path = tmp_path / "bad.yaml"
        path.write_text("batch_sise: 2\n")
        assert cli(["--config", str(path)]) == 2
        err = capsys.readouterr().err
        assert "batch_sise" in err and "Traceback" not in err

    def test_missing_data_folder(self, tmp_path, capsys):
        path = tmp_path / "ok.yaml"
        path.write_text("model: mickey_tiny\n")
        assert cli(["--config", str(path), "--data", str(tmp_path / "nope")]) == 2
        assert "--data" in capsys.readouterr().err

    def test_hub_backbone_needs_weights(self, tmp_path, capsys):
        path = tmp_path / "ok.yaml"
        path.write_text("model: mickey_vits14\ndata:\n  source: synthetic\n")
        assert cli(["--config", str(path), "--out", str(tmp_path / "run")]) == 2
        assert "--dinov2-weights" in capsys.readouterr().err

    @pytest.mark.parametrize("argv, needle", [
        (["--gpus", "2"], "2 GPU(s) per node requested but torch sees 0"),
        (["--accelerator", "gpu", "--devices", "1"], "--accelerator cpu --devices 1"),
        (["--gpus", "1", "--accelerator", "cpu"], "give either --gpus or --accelerator/--devices"),
        (["--accelerator", "cpu", "--devices", "0"], "--devices must be >= 1, got 0"),
        (["--nodes", "0"], "--nodes must be >= 1, got 0"),
    ])
    def test_impossible_device_request_is_one_line_error(self, tmp_path, capsys, argv, needle):
        """Issue 18: --gpus 2 without GPUs ended in a Lightning traceback."""
        if torch.cuda.is_available():
            pytest.skip("checks the refusal on a machine without CUDA")
        path = tmp_path / "ok.yaml"
        path.write_text("model: mickey_tiny\n")
        assert cli(["--config", str(path), "--out", str(tmp_path / "run"), *argv]) == 2
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "run").exists()  # refused before anything was written


    @staticmethod
    def _main_kwargs(tmp_path, monkeypatch, *argv):
        """The keyword arguments ``cli(argv)`` hands to ``main`` (which is not run)."""
        calls = []
        monkeypatch.setattr("mickey_ros.train.main.main",
                            lambda *a, **k: calls.append(k) or "best.ckpt")
        path = tmp_path / "ok.yaml"
        path.write_text("model: mickey_demo_cnn\n")
        assert cli(["--config", str(path), "--out", str(tmp_path / "run"), *argv]) == 0
        return calls[0]

    def test_no_progress_reaches_main(self, tmp_path, monkeypatch):
        assert self._main_kwargs(tmp_path, monkeypatch)["progress"] is True
        assert self._main_kwargs(tmp_path, monkeypatch, "--no-progress")["progress"] is False

    def test_init_demo_is_the_bundled_model(self, tmp_path, monkeypatch):
        from mickey_ros.model.checkpoint import DEMO_CHECKPOINT

        assert self._main_kwargs(tmp_path, monkeypatch, "--init", "demo")["init"] == DEMO_CHECKPOINT

class TestResolveDevices:
    @pytest.mark.parametrize("args, expected", [
        ((None, None, None), ("cpu", 1)),
        (("cpu", 2, None), ("cpu", 2)),
        ((None, None, 0), ("cpu", 1)),  # --gpus 0 keeps meaning one CPU process
        (("auto", 3, None), ("cpu", 3)),
    ])
    def test_cpu_requests(self, args, expected):
        if torch.cuda.is_available():
            pytest.skip("'auto' picks the GPU here")
        assert resolve_devices(*args) == expected


class TestMain:
    def test_synthetic_run_writes_loadable_checkpoints(self, tmp_path, tiny_config):
        cfg = tiny_config(
            max_steps=2,
            checkpoint_every_n_steps=2,
            log_every_n_steps=1,
            data=DataConfig(source="synthetic", width=168, height=168, synthetic_train_pairs=4,
                            synthetic_val_pairs=2),
        )
        cfg = replace(cfg, validation=replace(cfg.validation, every_n_steps=2))
        best = _train_or_skip(cfg, tmp_path)
        assert best.name == "best-0000002.ckpt"
        names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
        assert names == ["best-0000002.ckpt", "last.ckpt", "step-0000002.ckpt"]
        assert (tmp_path / "train_config.yaml").is_file()
        assert list((tmp_path / "logs").glob("version_0/metrics.csv"))
        _, config = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
        assert config.name == "mickey_tiny"


    def test_last_checkpoint_holds_the_final_step(self, tmp_path, tiny_config):
        cfg = tiny_config(
            max_steps=3,  # not a multiple of checkpoint_every_n_steps
            checkpoint_every_n_steps=2,
            data=DataConfig(source="synthetic", width=168, height=168, synthetic_train_pairs=6,
                            synthetic_val_pairs=2),
        )
        _train_or_skip(cfg, tmp_path)
        ckpts = tmp_path / "checkpoints"
        assert sorted(p.name for p in ckpts.glob("step-*")) == [
            "step-0000002.ckpt", "step-0000003.ckpt"]
        for name in ("last.ckpt", "step-0000003.ckpt"):
            assert torch.load(ckpts / name, map_location="cpu", weights_only=False)[
                "global_step"] == 3


def _global_step(path) -> int:
    return torch.load(path, map_location="cpu", weights_only=False)["global_step"]


class TestResume:
    def test_resume_from_last_continues_to_the_new_max_steps(self, tmp_path, tiny_config):
        """Issue 18: with max_epochs 1, a run resumed from last.ckpt trained nothing."""
        cfg = tiny_config(
            max_epochs=1,  # 4 batches per epoch: every run below stops inside the first epoch
            max_steps=2,
            checkpoint_every_n_steps=2,
            data=DataConfig(source="synthetic", width=168, height=168, synthetic_train_pairs=8,
                            synthetic_val_pairs=2),
        )
        ckpts = tmp_path / "checkpoints"
        last = ckpts / "last.ckpt"
        _train_or_skip(cfg, tmp_path)
        assert _global_step(last) == 2
        main(replace(cfg, max_steps=3), None, tmp_path, resume=last)
        assert _global_step(last) == 3
        raw = torch.load(last, map_location="cpu", weights_only=False)
        assert raw["loops"]["fit_loop"]["epoch_progress"]["current"]["completed"] == 0
        main(replace(cfg, max_steps=3), None, tmp_path, resume=last)  # nothing left to train
        assert _global_step(last) == 3
        main(replace(cfg, max_steps=4), None, tmp_path, resume=last)
        assert _global_step(last) == 4
        assert sorted(p.name for p in ckpts.glob("step-*")) == [
            "step-0000002.ckpt", "step-0000003.ckpt", "step-0000004.ckpt"]
        weights = [torch.load(ckpts / f"step-000000{s}.ckpt", map_location="cpu",
                              weights_only=False)["state_dict"] for s in (2, 3)]
        key = next(k for k in weights[0] if k.startswith("compute_matches.extractor.depth_head"))
        assert not torch.equal(weights[0][key], weights[1][key])  # step 3 really trained

    def test_resume_after_the_last_epoch_trains_the_next_one(self, tmp_path, tiny_config):
        cfg = tiny_config(  # 2 batches per epoch, no step limit: the run ends with its epoch
            max_epochs=1, checkpoint_every_n_steps=100,
            data=DataConfig(source="synthetic", width=168, height=168, synthetic_train_pairs=4,
                            synthetic_val_pairs=2),
        )
        last = tmp_path / "checkpoints" / "last.ckpt"
        _train_or_skip(cfg, tmp_path)
        assert _global_step(last) == 2
        main(replace(cfg, max_epochs=2), None, tmp_path, resume=last)
        raw = torch.load(last, map_location="cpu", weights_only=False)
        assert (raw["global_step"], raw["epoch"]) == (4, 1)
        assert sorted(p.name for p in last.parent.glob("step-*")) == [
            "step-0000002.ckpt", "step-0000004.ckpt"]


class TestBuildModel:
    def test_init_loads_weights_for_fine_tuning(self, tmp_path, tiny_config):
        import torch

        from mickey_ros.model.checkpoint import save_checkpoint
        from mickey_ros.model.config import mickey_tiny
        from mickey_ros.model.mickey import MicKey
        from mickey_ros.train.main import _build_model

        torch.manual_seed(1)
        source = MicKey(mickey_tiny())
        path = save_checkpoint(tmp_path / "init.ckpt", source)
        model = _build_model(tiny_config(freeze_backbone=False), path, None)
        assert model.training
        assert all(p.requires_grad for p in model.backbone.parameters())
        for key, value in source.state_dict().items():
            assert torch.equal(model.state_dict()[key], value), key
