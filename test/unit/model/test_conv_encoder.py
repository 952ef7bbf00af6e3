import pytest
import torch

from mickey_ros.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from mickey_ros.model.config import BackboneConfig, MickeyConfig, get_model_config, mickey_demo_cnn
from mickey_ros.model.conv_encoder import ConvEncoder, pixel_coordinates
from mickey_ros.model.mickey import MicKey
from mickey_ros.utils.config import ConfigError
from small_models import small_demo_cnn

PREFIX = "compute_matches.extractor.conv_encoder."


def test_pixel_coordinates_are_pixel_centres_in_minus_one_one():
    grid = pixel_coordinates(2, 2, 4, torch.zeros(()))
    assert grid.shape == (2, 2, 2, 4)
    assert grid[0, 0, 0].tolist() == [-0.75, -0.25, 0.25, 0.75]  # x along a row
    assert grid[1, 1, :, 0].tolist() == [-0.5, 0.5]  # y down a column


@pytest.mark.parametrize("hw", [(238, 322), (14, 28), (168, 224)])
def test_encoder_gives_the_vit_grid(hw):
    enc = ConvEncoder(mickey_demo_cnn().backbone).eval()
    with torch.no_grad():
        out = enc(torch.rand(1, 3, *hw))
    assert out.shape == (1, 128, hw[0] // 14, hw[1] // 14)
    assert torch.isfinite(out).all()


def test_encoder_rejects_sizes_that_are_not_multiples_of_14():
    enc = ConvEncoder(small_demo_cnn().backbone)
    with pytest.raises(ValueError, match="multiples of 14"):
        enc(torch.rand(1, 3, 30, 28))
    with pytest.raises(ConfigError, match="patch_size must be 14, got 16"):
        BackboneConfig(arch="conv", embed_dim=16, depth=2, num_heads=1, patch_size=16,
                       img_size=512)


def test_coordinates_let_the_encoder_tell_rows_apart():
    """A uniform grey image still gives row-dependent features (depth of a fixed rig)."""
    torch.manual_seed(0)
    enc = ConvEncoder(small_demo_cnn().backbone).eval()
    with torch.no_grad():
        out = enc(torch.full((1, 3, 112, 112), 0.5))
    rows = out[0].mean(dim=2)  # (C, h): per-row mean feature
    assert (rows[:, 0] - rows[:, -1]).abs().max() > 1e-3


def test_mickey_with_conv_encoder_extracts_features_on_the_crop():
    torch.manual_seed(0)
    model = MicKey(small_demo_cnn()).eval()
    assert model.extractor.backbone_name == "conv_encoder"
    feats = model.extract(torch.rand(2, 3, 100, 130))  # cropped to 98 x 126
    assert feats.grid_hw == (7, 9)
    assert feats.kpts.shape == (2, 63, 2)
    assert feats.descriptors.shape == (2, 63, 16)
    assert torch.allclose(feats.scores.sum(1), torch.ones(2))


def test_factory_is_registered_and_under_the_size_budget():
    cfg = get_model_config("mickey_demo_cnn")
    assert MickeyConfig.from_dict(cfg.to_dict()) == cfg
    params = sum(p.numel() for p in MicKey(cfg).parameters())
    assert params * 2 < 10e6  # fp16 export of the bundled checkpoint stays under 10 MB


def test_checkpoint_round_trip_rebuilds_the_cnn_from_the_embedded_config(tmp_path):
    torch.manual_seed(0)
    model = MicKey(small_demo_cnn())
    image = torch.rand(1, 3, 98, 112, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        model.train().extract(torch.rand(2, 3, 98, 112))  # non-trivial BN statistics
    model.eval()
    path = save_checkpoint(tmp_path / "cnn.ckpt", model)
    state = torch.load(path, weights_only=True)["state_dict"]
    assert sum(k.startswith(PREFIX) for k in state) == len(model.backbone.state_dict())
    loaded, cfg = load_checkpoint(path)  # no model config passed: the embedded one
    assert cfg == model.config and isinstance(loaded.backbone, ConvEncoder)
    assert list(loaded.state_dict()) == list(model.state_dict())
    with torch.no_grad():
        a, b = model.extract(image), loaded.extract(image)
    assert torch.equal(a.depth, b.depth) and torch.equal(a.descriptors, b.descriptors)


def test_strict_load_lists_missing_and_unexpected_encoder_keys(tmp_path):
    model = MicKey(small_demo_cnn())
    path = save_checkpoint(tmp_path / "cnn.ckpt", model)
    ckpt = torch.load(path, weights_only=True)
    ckpt["state_dict"].pop(PREFIX + "context.weight")
    ckpt["state_dict"][PREFIX + "extra.weight"] = torch.zeros(1)
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    msg = str(err.value)
    assert "missing" in msg and PREFIX + "context.weight" in msg
    assert "unexpected" in msg and PREFIX + "extra.weight" in msg
    assert "dinov2" not in msg.splitlines()[0]  # not told to pass a DINOv2 file
