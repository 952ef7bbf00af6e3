import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mickey_ros.model.config import BackboneConfig, backbone_config
from mickey_ros.model.vit import DinoVisionTransformer, interpolate_pos_embed


def _vit(embed_dim=32, depth=2, num_heads=2, **kw) -> DinoVisionTransformer:
    torch.manual_seed(0)
    cfg = BackboneConfig(arch="custom", embed_dim=embed_dim, depth=depth, num_heads=num_heads, **kw)
    vit = DinoVisionTransformer(cfg).eval()
    with torch.no_grad():  # make LayerScale and the position table matter
        vit.pos_embed.normal_()
        for block in vit.blocks:
            block.ls1.gamma.uniform_(0.5, 1.5)
            block.ls2.gamma.uniform_(0.5, 1.5)
    return vit


def _cubic_taps(t: float, A: float = -0.75) -> list[float]:
    """Keys' cubic convolution weights for the 4 taps around a source position with fraction t."""
    near = lambda x: ((A + 2) * x - (A + 3)) * x * x + 1  # noqa: E731
    far = lambda x: ((A * x - 5 * A) * x + 8 * A) * x - 4 * A  # noqa: E731
    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def _bicubic_axis(table: np.ndarray, axis: int, out_len: int, scale: float) -> np.ndarray:
    """Independent float64 resampling: src = (dst + 0.5) / scale - 0.5, clamped taps."""
    n = table.shape[axis]
    rows = []
    for dst in range(out_len):
        src = (dst + 0.5) / scale - 0.5
        i0 = math.floor(src)
        taps = [min(max(i0 + k, 0), n - 1) for k in (-1, 0, 1, 2)]
        weights = _cubic_taps(src - i0)
        rows.append(sum(w * np.take(table, i, axis=axis) for w, i in zip(weights, taps)))
    return np.stack(rows, axis=axis)


def _official_pos_embed(pos_embed: torch.Tensor, gh: int, gw: int) -> np.ndarray:
    """(1 + gh*gw, C) table by the official rule, computed without F.interpolate."""
    table = pos_embed[0].double().numpy()
    M = math.isqrt(table.shape[0] - 1)
    grid = table[1:].reshape(M, M, -1)
    grid = _bicubic_axis(grid, 0, gh, (gh + 0.1) / M)
    grid = _bicubic_axis(grid, 1, gw, (gw + 0.1) / M)
    return np.concatenate([table[:1], grid.reshape(gh * gw, -1)])


def _manual_forward(vit: DinoVisionTransformer, image: torch.Tensor, pos: torch.Tensor):
    """The ViT forward with an externally supplied position table."""
    x = vit.patch_embed(image)
    x = torch.cat([vit.cls_token.expand(len(image), -1, -1), x], dim=1) + pos
    for block in vit.blocks:
        x = block(x)
    return vit.norm(x)[:, 1:]


def _hf_model_from(vit: DinoVisionTransformer):
    transformers = pytest.importorskip("transformers")
    C, heads = vit.cls_token.shape[-1], vit.blocks[0].attn.num_heads
    config = transformers.Dinov2Config(
        hidden_size=C, num_hidden_layers=len(vit.blocks), num_attention_heads=heads,
        intermediate_size=4 * C, image_size=518, patch_size=14, layer_norm_eps=1e-6,
    )
    hf = transformers.Dinov2Model(config).eval()
    target = hf.state_dict()
    mapped = {
        "embeddings.cls_token": vit.cls_token,
        "embeddings.mask_token": vit.mask_token.reshape(target["embeddings.mask_token"].shape),
        "embeddings.position_embeddings": vit.pos_embed,
        "embeddings.patch_embeddings.projection.weight": vit.patch_embed.proj.weight,
        "embeddings.patch_embeddings.projection.bias": vit.patch_embed.proj.bias,
        "layernorm.weight": vit.norm.weight,
        "layernorm.bias": vit.norm.bias,
    }
    for i, block in enumerate(vit.blocks):
        p = f"encoder.layer.{i}."
        q, k, v = block.attn.qkv.weight.chunk(3)
        qb, kb, vb = block.attn.qkv.bias.chunk(3)
        names = (["attention.q_proj", "attention.k_proj", "attention.v_proj", "attention.o_proj"]
                 if p + "attention.q_proj.weight" in target else
                 ["attention.attention.query", "attention.attention.key",
                  "attention.attention.value", "attention.output.dense"])
        for name, w, b in zip(names, (q, k, v, block.attn.proj.weight),
                              (qb, kb, vb, block.attn.proj.bias)):
            mapped[p + name + ".weight"], mapped[p + name + ".bias"] = w, b
        for ours, theirs in (("norm1", "norm1"), ("norm2", "norm2"), ("mlp.fc1", "mlp.fc1"),
                             ("mlp.fc2", "mlp.fc2")):
            module = block.get_submodule(ours)
            mapped[p + theirs + ".weight"] = module.weight
            mapped[p + theirs + ".bias"] = module.bias
        mapped[p + "layer_scale1.lambda1"] = block.ls1.gamma
        mapped[p + "layer_scale2.lambda1"] = block.ls2.gamma
    hf.load_state_dict({k: v.detach().clone() for k, v in mapped.items()}, strict=True)
    return hf


class TestDinoVisionTransformer:
    def test_official_key_names(self):
        keys = list(_vit(depth=1).state_dict())
        block = [f"blocks.0.{n}" for n in (
            "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight",
            "attn.proj.bias", "ls1.gamma", "norm2.weight", "norm2.bias", "mlp.fc1.weight",
            "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias", "ls2.gamma")]
        assert keys == ["cls_token", "pos_embed", "mask_token", "patch_embed.proj.weight",
                        "patch_embed.proj.bias", *block, "norm.weight", "norm.bias"]

    def test_vitg14_swiglu_shapes(self):
        with torch.device("meta"):
            vit = DinoVisionTransformer(backbone_config("vitg14"))
        sd = vit.state_dict()
        assert sd["blocks.39.mlp.w12.weight"].shape == (8192, 1536)  # hidden (4096 + 7)//8*8
        assert sd["blocks.39.mlp.w3.weight"].shape == (1536, 4096)
        assert sd["pos_embed"].shape == (1, 1370, 1536)

    def test_equals_hf_dinov2_at_518(self):
        vit = _vit(embed_dim=64, depth=2, num_heads=2)
        hf = _hf_model_from(vit)
        image = torch.rand(1, 3, 518, 518)
        with torch.no_grad():
            ours = vit(image)  # (1, 64, 37, 37)
            theirs = hf(pixel_values=image).last_hidden_state[:, 1:]  # (1, 1369, 64)
        theirs = theirs.transpose(1, 2).reshape(1, 64, 37, 37)
        assert (ours - theirs).abs().max().item() < 1e-5

    def test_row_major_feature_map(self):
        vit = _vit()
        image = torch.rand(2, 3, 98, 140)
        with torch.no_grad():
            fmap = vit(image)
            tokens = _manual_forward(vit, image, vit.pos_embed_for((7, 10), torch.float32))
        assert fmap.shape == (2, 32, 7, 10)
        assert torch.equal(fmap[1, :, 3, 8], tokens[1, 3 * 10 + 8])

    def test_sdpa_matches_reference_path(self):
        vit = _vit()
        image = torch.rand(2, 3, 112, 98)
        with torch.no_grad():
            fast = vit(image)
            vit.set_use_sdpa(False)
            reference = vit(image)
        assert not vit.blocks[0].attn.use_sdpa
        assert (fast - reference).abs().max().item() < 2e-5

    def test_size_must_be_multiple_of_patch(self):
        with pytest.raises(ValueError, match="multiple of the patch size 14"):
            _vit()(torch.rand(1, 3, 100, 98))


class TestInterpolatePosEmbed:
    @pytest.mark.parametrize("gh, gw", [(8, 11), (37, 30), (51, 38)])
    def test_matches_independent_bicubic(self, gh, gw):
        pos = torch.randn(1, 1370, 8)
        ours = interpolate_pos_embed(pos, (gh, gw))[0]
        expected = _official_pos_embed(pos, gh, gw)
        assert ours.shape == (1 + gh * gw, 8)
        assert np.abs(ours.double().numpy() - expected).max() < 2e-5

    def test_size_interpolation_differs(self):
        pos = torch.randn(1, 1370, 8)
        ours = interpolate_pos_embed(pos, (51, 38))[0, 1:]
        grid = pos[:, 1:].reshape(1, 37, 37, 8).permute(0, 3, 1, 2)
        by_size = F.interpolate(grid, size=(51, 38), mode="bicubic", align_corners=False)
        by_size = by_size.permute(0, 2, 3, 1).reshape(-1, 8)
        assert (ours - by_size).abs().max().item() > 0.1

    def test_native_grid_uses_table_unchanged(self):
        vit = _vit()
        assert vit.pos_embed_for((37, 37), torch.float32) is vit.pos_embed
        # a square grid of another size, and 1369 tokens in another layout, are interpolated
        assert vit.pos_embed_for((34, 34), torch.float32).shape == (1, 1 + 34 * 34, 32)

    def test_reduced_precision_upcasts_table(self):
        vit = _vit().half()
        pos16 = vit.pos_embed_for((9, 7), torch.float16)
        expected = interpolate_pos_embed(vit.pos_embed.float(), (9, 7)).half()
        assert pos16.dtype == torch.float16 and torch.equal(pos16, expected)

    def test_model_adds_official_table_at_714x532(self):
        vit = _vit()
        image = torch.rand(1, 3, 714, 532)
        pos = torch.from_numpy(_official_pos_embed(vit.pos_embed.detach(), 51, 38)).float()
        with torch.no_grad():
            ours = vit(image)
            expected = _manual_forward(vit, image, pos[None])
        expected = expected.transpose(1, 2).reshape(1, 32, 51, 38)
        assert ours.shape == (1, 32, 51, 38)
        assert (ours - expected).abs().max().item() < 1e-4
