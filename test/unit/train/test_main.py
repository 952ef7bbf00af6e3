from dataclasses import replace

import pytest
import torch

from mickey_ros.model.checkpoint import load_checkpoint
from mickey_ros.train.config import DataConfig
from mickey_ros.train.main import cli, main


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


class TestMain:
    def test_synthetic_run_writes_loadable_checkpoints(self, tmp_path, tiny_config):
        pytest.importorskip("moderngl")
        from mickey_ros.synth.render import EGLUnavailableError

        cfg = tiny_config(
            max_steps=2,
            checkpoint_every_n_steps=2,
            log_every_n_steps=1,
            data=DataConfig(source="synthetic", width=168, height=168, synthetic_train_pairs=4,
                            synthetic_val_pairs=2),
        )
        cfg = replace(cfg, validation=replace(cfg.validation, every_n_steps=2))
        try:
            best = main(cfg, None, tmp_path)
        except EGLUnavailableError as err:
            pytest.skip(f"no headless OpenGL: {err}")
        assert best.name == "best-0000002.ckpt"
        names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
        assert names == ["best-0000002.ckpt", "last.ckpt", "step-0000002.ckpt"]
        assert (tmp_path / "train_config.yaml").is_file()
        assert list((tmp_path / "logs").glob("version_0/metrics.csv"))
        _, config = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
        assert config.name == "mickey_tiny"


    def test_last_checkpoint_holds_the_final_step(self, tmp_path, tiny_config):
        pytest.importorskip("moderngl")
        from mickey_ros.synth.render import EGLUnavailableError

        cfg = tiny_config(
            max_steps=3,  # not a multiple of checkpoint_every_n_steps
            checkpoint_every_n_steps=2,
            data=DataConfig(source="synthetic", width=168, height=168, synthetic_train_pairs=6,
                            synthetic_val_pairs=2),
        )
        try:
            main(cfg, None, tmp_path)
        except EGLUnavailableError as err:
            pytest.skip(f"no headless OpenGL: {err}")
        ckpts = tmp_path / "checkpoints"
        assert sorted(p.name for p in ckpts.glob("step-*")) == [
            "step-0000002.ckpt", "step-0000003.ckpt"]
        for name in ("last.ckpt", "step-0000003.ckpt"):
            assert torch.load(ckpts / name, map_location="cpu", weights_only=False)[
                "global_step"] == 3


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
