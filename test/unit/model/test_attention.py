import math

import pytest
import torch

from mickey_ros.model.attention import (
    EncoderLayer,
    PositionEncodingSine,
    SelfAttentionStack,
    elu_feature_map,
    linear_attention,
    sine_position_table,
)


def _naive_linear_attention(q, k, v, eps=1e-6):
    """O(L*S) re-computation of the same formula, per query, in float64."""
    Q, K = elu_feature_map(q), elu_feature_map(k)  # (B, L, H, D), (B, S, H, D)
    S = v.shape[1]
    A = torch.einsum("blhd,bshd->bhls", Q, K)  # un-normalised similarities
    msg = torch.einsum("bhls,bshv->blhv", A, v / S)
    norm = A.sum(dim=-1).permute(0, 2, 1)[..., None] + eps  # (B, L, H, 1)
    return msg / norm * S


class TestLinearAttention:
    @pytest.mark.parametrize("L, S", [(12, 12), (5, 9)])
    def test_equals_naive(self, L, S):
        g = torch.Generator().manual_seed(0)
        q = torch.randn(2, L, 4, 8, generator=g, dtype=torch.float64)
        k = torch.randn(2, S, 4, 8, generator=g, dtype=torch.float64)
        v = torch.randn(2, S, 4, 6, generator=g, dtype=torch.float64)
        out = linear_attention(q, k, v)
        assert out.shape == (2, L, 4, 6)
        assert (out - _naive_linear_attention(q, k, v)).abs().max().item() < 1e-12

    def test_convex_combination_of_values(self):
        # eps aside, each message is a weighted mean of the values with positive weights
        q, k = torch.randn(1, 7, 2, 4), torch.randn(1, 7, 2, 4)
        v = torch.rand(1, 7, 2, 3) + 1.0
        out = linear_attention(q, k, v, eps=0.0)
        assert out.min() >= v.min() - 1e-5 and out.max() <= v.max() + 1e-5

    def test_feature_map_positive(self):
        assert elu_feature_map(torch.tensor([-50.0, 0.0, 2.0])).tolist() == pytest.approx(
            [math.exp(-50.0), 1.0, 3.0])


class TestSinePositionTable:
    def test_official_interleave_and_one_based_coords(self):
        pe = sine_position_table(128, 5, 6)
        row, col = 3, 4
        x, y = col + 1, row + 1
        for k in (0, 7, 31):
            w = 10000 ** (-2 * k / 64)
            assert pe[4 * k, row, col].item() == pytest.approx(math.sin(x * w), abs=1e-5)
            assert pe[4 * k + 1, row, col].item() == pytest.approx(math.cos(x * w), abs=1e-5)
            assert pe[4 * k + 2, row, col].item() == pytest.approx(math.sin(y * w), abs=1e-5)
            assert pe[4 * k + 3, row, col].item() == pytest.approx(math.cos(y * w), abs=1e-5)

    def test_values_independent_of_table_size(self):
        big = sine_position_table(16, 40, 50)
        assert torch.equal(big[:, :7, :9], sine_position_table(16, 7, 9))


class TestPositionEncodingSine:
    def test_not_in_state_dict(self):
        module = PositionEncodingSine(8)
        module(torch.zeros(1, 8, 3, 4))
        assert list(module.state_dict()) == [] and module.pe.shape == (8, 64, 64)

    def test_adds_table_and_grows(self):
        module = PositionEncodingSine(8)
        small = module(torch.zeros(2, 8, 3, 4))
        big = module(torch.zeros(1, 8, 70, 5))
        assert module.pe.shape == (8, 128, 64)
        assert torch.equal(small[1], sine_position_table(8, 3, 4))
        assert torch.equal(big[0], sine_position_table(8, 70, 5))


class TestEncoderLayer:
    def test_formula(self):
        torch.manual_seed(0)
        layer = EncoderLayer(16, 4)
        x = torch.randn(2, 10, 16)
        B, L, C = x.shape
        q = layer.q_proj(x).view(B, L, 4, 4)
        k = layer.k_proj(x).view(B, L, 4, 4)
        v = layer.v_proj(x).view(B, L, 4, 4)
        msg = layer.norm1(layer.merge(_naive_linear_attention(q, k, v).reshape(B, L, C)))
        expected = x + layer.norm2(layer.mlp(torch.cat([x, msg], dim=2)))
        assert (layer(x, x) - expected).abs().max().item() < 1e-5

    def test_official_keys(self):
        keys = list(EncoderLayer(16, 4).state_dict())
        assert keys == [
            "q_proj.weight", "k_proj.weight", "v_proj.weight", "merge.weight", "mlp.0.weight",
            "mlp.2.weight", "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias"]


class TestSelfAttentionStack:
    def test_zero_layers_is_position_encoding(self):
        stack = SelfAttentionStack(8, 2, 0, pos_encoding=True)
        x = torch.randn(2, 8, 3, 5)
        assert torch.equal(stack(x), x + sine_position_table(8, 3, 5))

    def test_row_major_tokens(self):
        torch.manual_seed(0)
        stack = SelfAttentionStack(8, 2, 1, pos_encoding=False)
        x = torch.randn(1, 8, 3, 5)
        tokens = x.flatten(2).transpose(1, 2)
        expected = stack.layers[0](tokens, tokens)[0, 2 * 5 + 4]
        assert (stack(x)[0, :, 2, 4] - expected).abs().max().item() < 1e-6

    def test_xavier_init(self):
        torch.manual_seed(0)
        weight = SelfAttentionStack(128, 8, 1).layers[0].mlp[0].weight
        bound = math.sqrt(6 / (256 + 256))
        assert weight.abs().max().item() <= bound and weight.abs().max().item() > 0.9 * bound
