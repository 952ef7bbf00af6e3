import collections
import os
import sys
import types
from dataclasses import replace

import pytest
import torch

from mickey_ros.model.checkpoint import (
    CheckpointError,
    ForeignObject,
    UnsafeCheckpointError,
    checkpoint_metadata,
    load_checkpoint,
    load_state_dict_file,
    save_checkpoint,
)
from mickey_ros.model.config import mickey_tiny
from mickey_ros.model.mickey import MicKey

PREFIX = "compute_matches.extractor.dinov2_custom."


@pytest.fixture(scope="module")
def model() -> MicKey:
    torch.manual_seed(0)
    net = MicKey(mickey_tiny())
    with torch.no_grad():  # non-trivial BN statistics and dust-bin, so a bad load shows
        net.train().extract(torch.rand(2, 3, 98, 112))
        net.matcher.dustbin_score.fill_(0.7)
    return net.eval()


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return torch.rand(1, 3, 98, 112, generator=torch.Generator().manual_seed(1))


def _outputs(net: MicKey, image: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        f = net.extract(image)
        return [f.kpts, f.depth, f.scores, f.descriptors, net.match(f, f)]


def _assert_same_outputs(a: MicKey, b: MicKey, image: torch.Tensor) -> None:
    for x, y in zip(_outputs(a, image), _outputs(b, image)):
        assert torch.equal(x, y)


def _official_files(model: MicKey, tmp_path, **extra):
    """An official-layout Lightning checkpoint (dinov2 keys stripped) + a hub-format DINOv2 file."""
    sd = model.state_dict()
    heads = collections.OrderedDict((k, v) for k, v in sd.items() if "dinov2" not in k)
    ckpt = {"epoch": 3, "global_step": 1200, "pytorch-lightning_version": "2.1.0",
            "state_dict": heads,
            "optimizer_states": [{"state": {0: {"exp_avg": torch.zeros(3)}}}], **extra}
    dino = {k[len(PREFIX):]: v for k, v in sd.items() if k.startswith(PREFIX)}
    torch.save(ckpt, tmp_path / "mickey.ckpt")
    torch.save(dino, tmp_path / "dinov2_custom_pretrain.pth")
    return tmp_path / "mickey.ckpt", tmp_path / "dinov2_custom_pretrain.pth"


def _save_with_foreign_module(obj, path, module_name: str, **classes) -> None:
    """torch.save ``obj`` whose classes live in a module that is gone again at load time."""
    packages = [module_name.rsplit(".", i)[0] for i in range(module_name.count("."), -1, -1)]
    module = types.ModuleType(module_name)
    for name, cls in classes.items():
        cls.__module__, cls.__qualname__ = module_name, name
        setattr(module, name, cls)
    sys.modules.update({p: types.ModuleType(p) for p in packages[:-1]}, **{module_name: module})
    try:
        torch.save(obj, path)
    finally:
        for p in packages:
            del sys.modules[p]


class TestSaveCheckpoint:
    def test_layout(self, model, tmp_path):
        path = save_checkpoint(tmp_path / "sub" / "m.ckpt", model, extra={"epoch": 2})
        raw = torch.load(path, weights_only=True)
        assert raw["epoch"] == 2 and raw["mickey_ros"]["format"] == 1
        assert raw["mickey_ros"]["model_config"] == mickey_tiny().to_dict()
        assert list(raw["state_dict"]) == list(model.state_dict())  # custom ViT: backbone kept
        assert not (tmp_path / "sub" / "m.ckpt.tmp").exists()

    def test_official_stripping(self, model, tmp_path):
        path = save_checkpoint(tmp_path / "m.ckpt", model, include_backbone=False)
        keys = list(torch.load(path, weights_only=True)["state_dict"])
        assert keys == [k for k in model.state_dict() if "dinov2" not in k] and len(keys) > 100

    def test_lightning_checkpoint_with_metadata(self, model, image, tmp_path):
        # what a LightningModule's on_save_checkpoint adds: the file then needs no model_config
        sd = model.state_dict()
        torch.save({"state_dict": sd, "mickey_ros": checkpoint_metadata(model, True)},
                   tmp_path / "pl.ckpt")
        loaded, config = load_checkpoint(tmp_path / "pl.ckpt")
        assert config == mickey_tiny()
        _assert_same_outputs(model, loaded, image)

    def test_reserved_extra_keys(self, model, tmp_path):
        with pytest.raises(ValueError, match="reserved key"):
            save_checkpoint(tmp_path / "m.ckpt", model, extra={"state_dict": {}})


class TestLoadCheckpoint:
    def test_round_trip_identical_outputs(self, model, image, tmp_path):
        path = save_checkpoint(tmp_path / "m.ckpt", model)
        loaded, config = load_checkpoint(path)
        assert config == model.config and not loaded.training
        assert not any(p.requires_grad for p in loaded.backbone.parameters())
        _assert_same_outputs(model, loaded, image)

    def test_official_layout_with_dinov2_file(self, model, image, tmp_path):
        ckpt, dino = _official_files(model, tmp_path)
        loaded, config = load_checkpoint(ckpt, dino, model_config=mickey_tiny())
        assert config == mickey_tiny()
        _assert_same_outputs(model, loaded, image)

    def test_lightning_wrapper_prefix(self, model, image, tmp_path):
        sd = {"model." + k: v for k, v in model.state_dict().items()}
        torch.save({"state_dict": sd}, tmp_path / "wrapped.ckpt")
        loaded, _ = load_checkpoint(tmp_path / "wrapped.ckpt", model_config=mickey_tiny())
        _assert_same_outputs(model, loaded, image)

    def test_precision_override_keeps_fp32_weights(self, model, tmp_path):
        path = save_checkpoint(tmp_path / "m.ckpt", model)
        loaded, config = load_checkpoint(path, backbone_precision="bf16")
        assert config.backbone_precision == "bf16"
        assert torch.equal(loaded.backbone.pos_embed, model.backbone.pos_embed)

    def test_missing_dinov2_says_pass_the_file(self, model, tmp_path):
        ckpt, _ = _official_files(model, tmp_path)
        with pytest.raises(CheckpointError, match="--dinov2-weights.*never downloaded"):
            load_checkpoint(ckpt, model_config=mickey_tiny())

    def test_official_default_is_vitl14(self, model, tmp_path):
        ckpt, dino = _official_files(model, tmp_path)
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(ckpt, dino)  # tiny weights, official (ViT-L) architecture
        message = str(err.value)
        assert "model mickey_vitl14" in message and "dinov2_custom_pretrain.pth" in message
        assert "... and" in message  # long key lists are capped

    def test_one_error_lists_every_problem(self, model, tmp_path):
        sd = dict(model.state_dict())
        del sd["compute_matches.extractor.det_head.eps"]
        sd["compute_matches.extractor.det_head.bogus"] = torch.zeros(1)
        sd["compute_matches.matcher.matching_mat.dustbin_score"] = torch.zeros(2)
        torch.save({"state_dict": sd}, tmp_path / "bad.ckpt")
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(tmp_path / "bad.ckpt", model_config=mickey_tiny())
        message = str(err.value)
        assert f"checkpoint {tmp_path / 'bad.ckpt'}" in message
        assert "1 missing key(s) [compute_matches.extractor.det_head.eps]" in message
        assert "1 unexpected key(s) [compute_matches.extractor.det_head.bogus]" in message
        assert "matching_mat.dustbin_score (2,) vs model ()" in message

    def test_wrong_dinov2_file_is_named(self, model, tmp_path):
        ckpt, dino = _official_files(model, tmp_path)
        sd = torch.load(dino, weights_only=True)
        sd["register_tokens"] = torch.zeros(1, 4, 32)
        torch.save(sd, dino)
        with pytest.raises(CheckpointError, match="DINOv2 weight file .*unexpected key.*register"):
            load_checkpoint(ckpt, dino, model_config=mickey_tiny())


class TestSafeUnpickling:
    def test_foreign_hyper_parameters_still_load(self, model, image, tmp_path):
        class CfgNode(dict):  # stands in for yacs.config.CfgNode
            pass

        class Namespace:
            pass

        hp, ns = CfgNode(MODEL="MicKey", DINOV2=CfgNode(FLOAT16=True)), Namespace()
        ns.lr = 1e-4
        ckpt = model.state_dict()
        obj = {"state_dict": {k: v for k, v in ckpt.items() if "dinov2" not in k},
               "hyper_parameters": {"cfg": hp, "args": ns}}
        _save_with_foreign_module(obj, tmp_path / "f.ckpt", "yacs_gone.config",
                                  CfgNode=CfgNode, Namespace=Namespace)
        dino = tmp_path / "d.pth"
        torch.save({k[len(PREFIX):]: v for k, v in ckpt.items() if k.startswith(PREFIX)}, dino)
        loaded, _ = load_checkpoint(tmp_path / "f.ckpt", dino, model_config=mickey_tiny())
        _assert_same_outputs(model, loaded, image)
        assert len(load_state_dict_file(tmp_path / "f.ckpt")) == len(obj["state_dict"])

    def test_foreign_objects_are_inert_stubs(self, tmp_path):
        class Cfg(dict):
            pass

        _save_with_foreign_module({"state_dict": {}, "hp": Cfg(A=1)}, tmp_path / "f.ckpt",
                                  "gone_pkg", Cfg=Cfg)
        from mickey_ros.model.checkpoint import _read_checkpoint

        hp = _read_checkpoint(tmp_path / "f.ckpt")["hp"]
        assert isinstance(hp, ForeignObject) and hp.foreign_name == "gone_pkg.Cfg"
        assert hp.foreign_items == {"A": 1}

    @pytest.mark.parametrize("target", ["system", "eval"])
    def test_code_execution_is_refused(self, tmp_path, target):
        marker = tmp_path / "pwned"

        class Payload:
            def __reduce__(self):
                if target == "system":
                    return (os.system, (f"touch {marker}",))
                return (eval, (f"open({str(marker)!r}, 'w').close()",))

        torch.save({"state_dict": {"a": torch.zeros(1)}, "x": Payload()}, tmp_path / "evil.ckpt")
        with pytest.raises(UnsafeCheckpointError, match=f"call (posix|nt|builtins)\\.{target}"):
            load_checkpoint(tmp_path / "evil.ckpt", model_config=mickey_tiny())
        assert not marker.exists()

    def test_truncated_file(self, model, tmp_path):
        path = save_checkpoint(tmp_path / "m.ckpt", model)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        with pytest.raises(CheckpointError, match="truncated or corrupt"):
            load_checkpoint(path)

    def test_missing_and_garbage_files(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="does not exist"):
            load_checkpoint(tmp_path / "nope.ckpt")
        (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint at all")
        with pytest.raises(CheckpointError, match="truncated or corrupt"):
            load_state_dict_file(tmp_path / "junk.ckpt")


class TestLoadStateDictFile:
    def test_hub_and_lightning_layouts(self, tmp_path):
        torch.save({"a": torch.ones(2)}, tmp_path / "hub.pth")
        torch.save({"state_dict": {"b": torch.ones(1)}, "epoch": 1}, tmp_path / "pl.ckpt")
        assert list(load_state_dict_file(tmp_path / "hub.pth")) == ["a"]
        assert list(load_state_dict_file(tmp_path / "pl.ckpt")) == ["b"]

    def test_non_tensor_entries(self, tmp_path):
        torch.save({"a": torch.ones(2), "epoch": 3}, tmp_path / "mixed.pth")
        with pytest.raises(CheckpointError, match="not tensors.*epoch"):
            load_state_dict_file(tmp_path / "mixed.pth")

    def test_newer_format_is_refused(self, model, tmp_path):
        torch.save({"state_dict": {}, "mickey_ros": {"format": 99}}, tmp_path / "new.ckpt")
        with pytest.raises(CheckpointError, match="newer mickey_ros"):
            load_checkpoint(tmp_path / "new.ckpt")

    def test_config_override_wins(self, model, tmp_path):
        path = save_checkpoint(tmp_path / "m.ckpt", model)
        other = replace(mickey_tiny(), name="renamed")
        assert load_checkpoint(path, model_config=other)[1].name == "renamed"
