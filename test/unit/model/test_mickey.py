from dataclasses import replace
from pathlib import Path

import pytest
import torch

from mickey_ros.model.config import mickey_tiny, mickey_vitl14, mickey_vits14
from mickey_ros.model.mickey import MicKey, MicKeyFeatures

TSV = Path("/work/shared/reference/mickey_state_dict_keys.tsv")
TSV = TSV if TSV.is_file() else Path(__file__).parents[3] / "shared/reference" / TSV.name


def _tiny(**kw) -> MicKey:
    torch.manual_seed(0)
    return MicKey(replace(mickey_tiny(), **kw)).eval()


def _tsv_rows() -> list[list[str]]:
    if not TSV.is_file():
        pytest.skip(f"reference key table {TSV} not available")
    return [line.rstrip("\n").split("\t") for line in TSV.read_text().splitlines(True)
            if not line.startswith("#")]


class TestMicKeyStateDict:
    def test_vitl14_equals_reference_table(self):
        rows = _tsv_rows()
        with torch.device("meta"):
            model = MicKey(replace(mickey_vitl14(), backbone_precision="fp32"))
        sd = model.state_dict()
        assert len(rows) == 678
        assert list(sd) == [r[0] for r in rows]
        assert [(str(tuple(v.shape)), str(v.dtype)) for v in sd.values()] == [
            (r[1], f"torch.{r[2]}") for r in rows]

    def test_released_checkpoint_keys_are_the_non_dinov2_rows(self):
        rows = _tsv_rows()
        released = [r[0] for r in rows if r[3] == "yes"]
        assert len(released) == 335
        assert released == [r[0] for r in rows if "dinov2" not in r[0]]

    def test_backbone_attribute_names(self):
        with torch.device("meta"):
            keys = list(MicKey(mickey_vits14()).state_dict())
        assert keys[0] == "compute_matches.extractor.dinov2_vits14.cls_token"
        assert list(_tiny().state_dict())[0] == "compute_matches.extractor.dinov2_custom.cls_token"


class TestEncode:
    def test_shape_and_top_left_crop(self):
        model = _tiny()
        image = torch.rand(2, 3, 130, 113)
        feats = model.encode(image)
        assert feats.shape == (2, 32, 9, 8) and feats.dtype == torch.float32
        assert torch.equal(feats, model.encode(image[..., :126, :112].contiguous()))

    def test_bad_input(self):
        model = _tiny()
        with pytest.raises(ValueError, match="image must have shape"):
            model.encode(torch.rand(3, 98, 98))
        with pytest.raises(ValueError, match="at least 98 px"):
            model.encode(torch.rand(1, 3, 84, 200))
        with pytest.raises(ValueError, match="float tensor"):
            model.encode(torch.zeros(1, 3, 98, 98, dtype=torch.uint8))


class TestDecode:
    def test_output_properties(self):
        model = _tiny()
        f = model.decode(torch.randn(2, 32, 8, 10))
        N = 80
        assert isinstance(f, MicKeyFeatures) and f.grid_hw == (8, 10)
        assert (f.kpts.shape, f.depth.shape, f.scores.shape, f.descriptors.shape) == (
            (2, N, 2), (2, N), (2, N), (2, N, 32))
        assert (f.scores.sum(1) - 1).abs().max().item() < 1e-6
        assert ((f.scores == 0).sum(1) == N - 2 * 4).all()
        assert (f.descriptors.norm(dim=-1) - 1).abs().max().item() < 1e-6
        cols, rows = torch.arange(N) % 10, torch.arange(N) // 10
        assert ((f.kpts[..., 0] > 14 * cols) & (f.kpts[..., 0] < 14 * (cols + 1))).all()
        assert ((f.kpts[..., 1] > 14 * rows) & (f.kpts[..., 1] < 14 * (rows + 1))).all()
        assert torch.equal(f.depth_map.flatten(1), f.depth)
        assert torch.equal(f.score_map.flatten(1), f.scores)

    def test_wrong_channels(self):
        with pytest.raises(ValueError, match="feats must have shape"):
            _tiny().decode(torch.randn(1, 16, 8, 8))


class TestExtractAndMatch:
    def test_extract_is_encode_then_decode(self):
        model = _tiny()
        image = torch.rand(1, 3, 112, 126)
        a, b = model.extract(image), model.decode(model.encode(image))
        assert torch.equal(a.kpts, b.kpts) and torch.equal(a.descriptors, b.descriptors)

    def test_match_different_sizes_and_broadcast(self):
        model = _tiny()
        with torch.no_grad():
            ref = model.extract(torch.rand(1, 3, 112, 112))  # 8 x 8
            query = model.extract(torch.rand(2, 3, 98, 126))  # 7 x 9
            P = model.match(ref, query)
        assert P.shape == (2, 64, 63)
        match = model.matcher(ref.descriptors.expand(2, -1, -1), query.descriptors)
        expected = match * ref.scores[:, :, None] * query.scores[:, None, :]
        assert torch.allclose(P, expected, rtol=1e-5, atol=0)
        assert (P[:, ref.scores[0] == 0] == 0).all()

    def test_forward(self):
        model = _tiny()
        with torch.no_grad():
            P, ref, query = model(torch.rand(1, 3, 98, 98), torch.rand(1, 3, 98, 98))
        assert P.shape == (1, 49, 49) and 0 < P.sum().item() <= 1


class TestFrozenBackbone:
    def test_frozen_stays_eval_and_gets_no_grad(self):
        model = _tiny().train()
        assert not model.backbone.training and model.extractor.det_head.training
        assert not any(p.requires_grad for p in model.backbone.parameters())
        feats = model.encode(torch.rand(1, 3, 98, 98))
        assert not feats.requires_grad
        f = model.decode(feats)
        f.scores.sum().backward()  # heads still train
        assert model.extractor.det_head.score.weight.grad is not None

    def test_set_backbone_trainable(self):
        model = _tiny().train()
        model.set_backbone_trainable(True)
        assert model.config.backbone.trainable and model.backbone.training
        model.extract(torch.rand(1, 3, 98, 98)).depth.sum().backward()
        assert model.backbone.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
        model.set_backbone_trainable(False)
        assert not model.backbone.training and not model.backbone.pos_embed.requires_grad
        assert not model.encode(torch.rand(1, 3, 98, 98)).requires_grad

    def test_trainable_backbone_trains(self):
        model = _tiny(backbone=replace(mickey_tiny().backbone, trainable=True)).train()
        assert model.backbone.training
        model.extract(torch.rand(1, 3, 98, 98)).depth.sum().backward()
        assert model.backbone.patch_embed.proj.weight.grad.abs().sum() > 0


class TestBackbonePrecision:
    @pytest.mark.parametrize("precision, tol", [("fp16", 5e-3), ("bf16", 4e-2)])
    def test_close_to_fp32(self, precision, tol):
        model = _tiny()
        image = torch.rand(1, 3, 98, 112)
        with torch.no_grad():
            ref = model.encode(image)
            model.set_backbone_precision(precision)
            low = model.encode(image)
        assert model.backbone.blocks[0].attn.qkv.weight.dtype == {
            "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
        assert low.dtype == torch.float32 and model.config.backbone_precision == precision
        assert ((low - ref).abs().max() / ref.abs().max()).item() < tol

    def test_applied_lazily(self):
        model = _tiny(backbone_precision="fp16")
        assert model.backbone.pos_embed.dtype == torch.float32  # loaded weights stay exact
        with torch.no_grad():
            model.encode(torch.rand(1, 3, 98, 98))
        assert model.backbone.pos_embed.dtype == torch.float16
        assert model.extractor.det_head.score.weight.dtype == torch.float32  # heads stay fp32
        with pytest.warns(UserWarning, match="already rounded"):
            model.set_backbone_precision("fp32")

    def test_unknown_precision(self):
        with pytest.raises(ValueError, match="precision must be one of"):
            _tiny().set_backbone_precision("fp8")
