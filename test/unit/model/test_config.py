from dataclasses import replace

import pytest
import torch

from mickey_ros.model.config import (
    BackboneConfig,
    HeadsConfig,
    MatcherConfig,
    MickeyConfig,
    backbone_config,
    get_model_config,
    mickey_small,
    mickey_tiny,
    mickey_vitl14,
    mickey_vits14,
)
from mickey_ros.model.mickey import MicKey
from mickey_ros.utils.config import ConfigError

NAMES = ["mickey_vitl14", "mickey_vits14", "mickey_small", "mickey_tiny"]


def _num_params(config: MickeyConfig) -> tuple[int, int]:
    """(backbone, heads + matcher) parameter counts, built on the meta device."""
    with torch.device("meta"):
        model = MicKey(config)
    backbone = sum(p.numel() for p in model.backbone.parameters())
    return backbone, sum(p.numel() for p in model.parameters()) - backbone


class TestMickeyVitl14:
    def test_official_values(self):
        cfg = mickey_vitl14()
        assert cfg.backbone == BackboneConfig()
        bb = cfg.backbone
        assert (bb.embed_dim, bb.depth, bb.num_heads) == (1024, 24, 16)
        assert cfg.heads.blocks_dim == (512, 256, 128, 64)
        assert (cfg.heads.attention_heads, cfg.heads.attention_layers) == (8, 3)
        assert (cfg.heads.score_temperature, cfg.heads.border_cells) == (100.0, 3)
        assert cfg.matcher == MatcherConfig(temperature=0.1, use_dustbin=True, dustbin_init=1.0)
        assert cfg.backbone_precision == "fp16" and not cfg.backbone.trainable

    def test_parameter_counts(self):
        # mickey.md section 3 and 4.4: ViT-L 304,368,640 params; heads + dust-bin 42,550,785
        # trainable + 4 frozen det_head parameters (1 + 1 + 1 + 9 elements)
        assert _num_params(mickey_vitl14()) == (304_368_640, 42_550_785 + 12)


class TestSmallConfigs:
    def test_vits14(self):
        cfg = mickey_vits14()
        bb = cfg.backbone
        assert (bb.arch, bb.embed_dim, bb.depth) == ("vits14", 384, 12)
        assert cfg.heads == HeadsConfig()

    def test_small_is_a_few_mb(self):
        backbone, heads = _num_params(mickey_small())
        assert mickey_small().backbone.trainable
        assert mickey_small().backbone_precision == "fp32"
        assert (backbone, heads) == (2_157_888, 2_675_469)
        assert (backbone + heads) * 4 / 2**20 < 20

    def test_tiny(self):
        cfg = mickey_tiny()
        assert (cfg.backbone.embed_dim, cfg.backbone.depth, cfg.backbone.num_heads) == (32, 2, 2)
        assert cfg.heads.blocks_dim == (32, 32, 32, 16)
        assert (cfg.heads.attention_heads, cfg.heads.attention_layers) == (4, 1)
        assert _num_params(cfg) == (88_352, 305_293)


class TestGetModelConfig:
    @pytest.mark.parametrize("name", NAMES)
    def test_by_name(self, name):
        assert get_model_config(name).name == name

    def test_unknown_lists_valid_names(self):
        with pytest.raises(ValueError, match="mickey_small.*mickey_tiny"):
            get_model_config("mickey_huge")


class TestDictRoundTrip:
    @pytest.mark.parametrize("name", NAMES)
    def test_round_trip(self, name):
        cfg = get_model_config(name)
        data = cfg.to_dict()
        assert data["heads"]["blocks_dim"] == list(cfg.heads.blocks_dim)
        assert MickeyConfig.from_dict(data) == cfg

    def test_unknown_key(self):
        data = mickey_tiny().to_dict()
        data["heads"]["blok_dim"] = [1, 2, 3, 4]
        with pytest.raises(ConfigError, match="blok_dim.*valid keys"):
            MickeyConfig.from_dict(data)


class TestValidation:
    def test_arch_dims_must_match(self):
        with pytest.raises(ConfigError, match="backbone_config\\('vits14'\\)"):
            BackboneConfig(arch="vits14")

    def test_backbone_config_factory(self):
        cfg = backbone_config("vitg14")
        assert (cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.ffn) == (1536, 40, 24, "swiglu")
        with pytest.raises(ConfigError, match="unknown DINOv2 arch"):
            backbone_config("vith14")

    def test_bad_values(self):
        with pytest.raises(ConfigError, match="divisible"):
            BackboneConfig(arch="custom", embed_dim=30, num_heads=4)
        with pytest.raises(ConfigError, match="attention_heads"):
            HeadsConfig(blocks_dim=(8, 8, 12, 4), attention_heads=8)
        with pytest.raises(ConfigError, match="backbone_precision"):
            replace(mickey_tiny(), backbone_precision="fp8")
        with pytest.raises(ConfigError, match="temperature"):
            MatcherConfig(temperature=0.0)
