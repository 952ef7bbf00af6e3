from pathlib import Path

import pytest

from mickey_ros.config_utils import ConfigError
from mickey_ros.train.config import TrainConfig, load_train_config

CONFIGS = Path(__file__).resolve().parents[3] / "config" / "train"


class TestLoadTrainConfig:
    @pytest.mark.parametrize(
        "name", ["mapfree_curriculum.yaml", "finetune_own_data.yaml", "synthetic_small.yaml"]
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
