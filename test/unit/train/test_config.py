import dataclasses
from pathlib import Path

import pytest

from mickey_ros.train.config import DataConfig, OptimConfig, TrainConfig, load_train_config
from mickey_ros.utils.config import ConfigError

CONFIGS = Path(__file__).resolve().parents[3] / "config" / "train"


class TestLoadTrainConfig:
    @pytest.mark.parametrize(
        "name", ["mapfree_curriculum.yaml", "finetune_own_data.yaml", "synthetic_small.yaml",
                 "finetune_demo_own_data.yaml", "finetune_demo_own_data_rgbd.yaml"]
    )
    def test_shipped_configs_load(self, name):
        assert isinstance(load_train_config(CONFIGS / name), TrainConfig)

    def test_official_values(self):
        cfg = load_train_config(CONFIGS / "mapfree_curriculum.yaml")
        assert cfg == TrainConfig()  # the YAML spells out the defaults, which are official
        assert (cfg.hypotheses.num_draws, cfg.hypotheses.num_samples) == (20, 512)
        assert (cfg.hypotheses.num_hypotheses, cfg.hypotheses.set_size) == (20, 8)
        assert (cfg.optim.lr, cfg.optim.adam_eps, cfg.optim.grad_clip_norm) == (1e-4, 1e-6, 5.0)
        assert cfg.loss.null_inlier_fraction == 0.35 and cfg.loss.score_temperature == 20.0

    def test_demo_config_is_small(self):
        cfg = load_train_config(CONFIGS / "synthetic_small.yaml")
        assert cfg.model == "mickey_small" and cfg.data.source == "synthetic"
        assert cfg.supervision.depth_weight > 0  # the documented warm-up

    def test_unknown_key_lists_valid_ones(self, tmp_path):
        path = tmp_path / "bad.yaml"
        path.write_text("optim:\n  learning_rate: 0.1\n")
        with pytest.raises(ConfigError, match=r"unknown key\(s\) \['learning_rate'\].*'lr'"):
            load_train_config(path)

    def test_bad_source(self, tmp_path):
        path = tmp_path / "bad.yaml"
        path.write_text("data:\n  source: kitti\n")
        with pytest.raises(ConfigError, match="data.source"):
            load_train_config(path)

    def test_demo_fine_tune_rehearses_the_demo_rig(self):
        cfg = load_train_config(CONFIGS / "finetune_demo_own_data.yaml")
        s5 = load_train_config(CONFIGS / "demo_cnn_s5.yaml").data
        r = cfg.data.rehearsal
        # 2 of every 6 pairs (the recipe that met the targets in docs/datasets.md)
        assert round(cfg.data.rehearsal_fraction * cfg.batch_size) == 2 and cfg.batch_size == 6
        assert r.source == "synthetic"
        assert r.synthetic_pairs == s5.synthetic_pairs  # the rig the bundled model learnt
        assert r.synthetic_train_seed != s5.synthetic_train_seed  # new scenes of it

    def test_rgbd_fine_tune_differs_only_in_depth_and_rehearsal_share(self):
        no_depth = load_train_config(CONFIGS / "finetune_demo_own_data.yaml")
        rgbd = load_train_config(CONFIGS / "finetune_demo_own_data_rgbd.yaml")
        # 3 of every 6 pairs rehearse (docs/datasets.md: a third let the demo drive go on RGB-D)
        assert round(rgbd.data.rehearsal_fraction * rgbd.batch_size) == 3
        assert rgbd.data.depth_suffix == ".depth.png"  # the converter's depth PNGs
        assert rgbd == dataclasses.replace(no_depth, data=dataclasses.replace(
            no_depth.data, rehearsal_fraction=0.5, depth_suffix=".depth.png"))


class TestDataConfigRehearsal:
    SYNTH = DataConfig(source="synthetic", width=320, height=240)

    def test_off_by_default(self):
        assert (DataConfig().rehearsal, DataConfig().rehearsal_fraction) == (None, 0.0)

    def test_loads_nested_from_yaml(self, tmp_path):
        path = tmp_path / "r.yaml"
        path.write_text("data:\n  rehearsal_fraction: 0.25\n  rehearsal:\n    source: synthetic\n"
                        "    synthetic_train_seed: 9\n")
        data = load_train_config(path).data
        assert data.rehearsal == DataConfig(source="synthetic", synthetic_train_seed=9)
        assert data.rehearsal_fraction == 0.25

    @pytest.mark.parametrize(
        "kwargs, message",
        [
            (dict(rehearsal_fraction=0.5),
             r"^data.rehearsal_fraction 0.5 needs data.rehearsal \(a data config"),
            (dict(rehearsal=DataConfig()),
             r"^data.rehearsal is set but data.rehearsal_fraction is 0: set the share"),
            (dict(rehearsal=DataConfig(), rehearsal_fraction=1.0),
             r"^data.rehearsal_fraction must be in \[0, 1\), got 1.0$"),
            (dict(rehearsal_fraction=-0.1), r"^data.rehearsal_fraction must be in \[0, 1\)"),
            (dict(rehearsal=DataConfig(source="kitti"), rehearsal_fraction=0.5),
             r"^data.rehearsal.source must be 'mapfree' or 'synthetic', got 'kitti'$"),
            (dict(rehearsal=SYNTH, rehearsal_fraction=0.5),
             r"^data.rehearsal size 320x240 differs from data size 540x720: both fill"),
            (dict(rehearsal=DataConfig(rehearsal=SYNTH, rehearsal_fraction=0.5,
                                       width=320, height=240),
                  rehearsal_fraction=0.5, width=320, height=240, rehearsal_dir="x"),
             r"^data.rehearsal cannot have a rehearsal of its own$"),
            (dict(rehearsal=DataConfig(), rehearsal_fraction=0.5),
             r"^data.rehearsal.source 'mapfree' needs data.rehearsal_dir"),
        ],
    )
    def test_bad_rehearsal_names_the_fix(self, kwargs, message):
        with pytest.raises(ConfigError, match=message):
            DataConfig(**kwargs)

    def test_bad_rehearsal_in_yaml(self, tmp_path):
        path = tmp_path / "bad.yaml"
        path.write_text("data:\n  rehearsal_fraction: 0.5\n")
        with pytest.raises(ConfigError, match="needs data.rehearsal"):
            load_train_config(path)


class TestLearningRate:
    def cosine(self, **optim) -> TrainConfig:
        values = dict(lr=1e-3, lr_schedule="cosine", warmup_steps=10, min_lr=1e-5)
        return TrainConfig(max_steps=110, optim=OptimConfig(**{**values, **optim}))

    def test_constant_is_the_official_flat_rate(self):
        cfg = TrainConfig()
        assert {cfg.learning_rate(s) for s in (0, 1, 10_000)} == {1e-4}

    def test_warmup_ramps_linearly_to_lr(self):
        cfg = self.cosine()
        assert [cfg.learning_rate(s) for s in (0, 4, 9)] == pytest.approx([1e-4, 5e-4, 1e-3])

    def test_cosine_halfway_and_end(self):
        cfg = self.cosine()
        assert cfg.learning_rate(10) == pytest.approx(1e-3)
        assert cfg.learning_rate(60) == pytest.approx((1e-3 + 1e-5) / 2)
        assert cfg.learning_rate(110) == pytest.approx(1e-5)
        assert cfg.learning_rate(500) == pytest.approx(1e-5)  # past max_steps: stays at min_lr
        rates = [cfg.learning_rate(s) for s in range(10, 111)]
        assert all(a >= b for a, b in zip(rates, rates[1:]))

    def test_bad_schedules_name_the_fix(self):
        with pytest.raises(ConfigError, match="set max_steps > 0"):
            TrainConfig(optim=OptimConfig(lr_schedule="cosine"))
        with pytest.raises(ConfigError, match="one of"):
            TrainConfig(optim=OptimConfig(lr_schedule="step"))
        with pytest.raises(ConfigError, match="min_lr"):
            self.cosine(min_lr=1.0)
