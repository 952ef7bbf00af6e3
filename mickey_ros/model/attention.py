"""LoFTR-style linear self-attention with a 2D sinusoidal position encoding (MicKey ``att_layer``).

Keys (per head): ``att_layer.layers.{i}.{q_proj,k_proj,v_proj,merge,mlp.0,mlp.2,norm1,norm2}``; the
position encoding is a non-persistent buffer, so it never appears in a state_dict.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LINEAR_ATTENTION_EPS = 1e-6  # official linear attention eps
PE_CACHE_STEP = 64  # ours: the position table grows in steps of 64 cells per axis


def elu_feature_map(x: Tensor) -> Tensor:
    """The positive feature map phi(z) = elu(z) + 1 of linear attention."""
    return F.elu(x) + 1


def linear_attention(query: Tensor, key: Tensor, value: Tensor,
                     eps: float = LINEAR_ATTENTION_EPS) -> Tensor:
    """Linear attention ``softmax``-free: phi(Q) (phi(K)^T V) normalised per query.

    ``V`` is divided by the source length S before the products and the result multiplied by S
    again (official numerics, keeps fp16 sums in range); ``eps`` is added to the normaliser.

    Args:
        query: (B, L, H, D) projected queries.
        key: (B, S, H, D) projected keys.
        value: (B, S, H, V) projected values.
        eps: added to the normaliser ``phi(Q_l) . sum_s phi(K_s)``.

    Returns:
        (B, L, H, V) messages.
    """
    Q, K = elu_feature_map(query), elu_feature_map(key)
    S = value.shape[1]
    values = value / S
    KV = torch.einsum("nshd,nshv->nhdv", K, values)  # (B, H, D, V)
    Z = 1 / (torch.einsum("nlhd,nhd->nlh", Q, K.sum(dim=1)) + eps)  # (B, L, H)
    return torch.einsum("nlhd,nhdv,nlh->nlhv", Q, KV, Z) * S


def sine_position_table(d_model: int, height: int, width: int) -> Tensor:
    """2D sinusoidal encoding (d_model, height, width) with 1-based cell coordinates.

    For k = 0 .. d_model/4 - 1 and w_k = 10000^(-2k / (d_model/2)): channel 4k = sin(x w_k),
    4k+1 = cos(x w_k), 4k+2 = sin(y w_k), 4k+3 = cos(y w_k), with x = column + 1, y = row + 1.

    >>> sine_position_table(4, 1, 2)[:, 0, 1].round(decimals=4)  # x = 2, y = 1, w_0 = 1
    tensor([ 0.9093, -0.4161,  0.8415,  0.5403])
    """
    ones = torch.ones(height, width)
    y_pos = ones.cumsum(0)[None]  # (1, H, W) values 1..H
    x_pos = ones.cumsum(1)[None]
    div_term = torch.exp(
        torch.arange(0, d_model // 2, 2).float() * (-math.log(10000.0) / (d_model // 2))
    )[:, None, None]
    pe = torch.zeros(d_model, height, width)
    pe[0::4] = torch.sin(x_pos * div_term)
    pe[1::4] = torch.cos(x_pos * div_term)
    pe[2::4] = torch.sin(y_pos * div_term)
    pe[3::4] = torch.cos(y_pos * div_term)
    return pe


class PositionEncodingSine(nn.Module):
    """Adds :func:`sine_position_table` to a (B, C, h, w) map.

    The official code precomputes a 256 x 256 table; each cell's value does not depend on the
    table size, so this cache starts empty and grows to the largest grid seen (no 256 limit).
    """

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.d_model = d_model
        self.register_buffer("pe", torch.zeros(d_model, 0, 0), persistent=False)

    def _table(self, h: int, w: int, device: torch.device) -> Tensor:
        cached_h, cached_w = self.pe.shape[1:]
        if h > cached_h or w > cached_w or self.pe.device != device or self.pe.is_meta:
            step = PE_CACHE_STEP
            size_h = max(cached_h, -(-h // step) * step)
            size_w = max(cached_w, -(-w // step) * step)
            self.pe = sine_position_table(self.d_model, size_h, size_w).to(device)
        return self.pe[:, :h, :w]

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, h, w) -> (B, C, h, w)."""
        return x + self._table(x.shape[2], x.shape[3], x.device).to(x.dtype)[None]


class EncoderLayer(nn.Module):
    """One linear-attention layer: message = norm2(mlp([x, norm1(merge(attn))])); out = x + msg."""

    def __init__(self, d_model: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, d_model, bias=False)
        self.merge = nn.Linear(d_model, d_model, bias=False)
        self.mlp = nn.Sequential(
            nn.Linear(2 * d_model, 2 * d_model, bias=False),
            nn.ReLU(True),
            nn.Linear(2 * d_model, d_model, bias=False),
        )
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, x: Tensor, source: Tensor) -> Tensor:
        """Attend from ``x`` (B, L, C) to ``source`` (B, S, C); returns (B, L, C)."""
        B, L, C = x.shape
        heads = (self.num_heads, C // self.num_heads)
        query = self.q_proj(x).view(B, L, *heads)
        key = self.k_proj(source).view(B, source.shape[1], *heads)
        value = self.v_proj(source).view(B, source.shape[1], *heads)
        message = linear_attention(query, key, value).reshape(B, L, C)
        message = self.norm1(self.merge(message))
        message = self.norm2(self.mlp(torch.cat([x, message], dim=2)))
        return x + message


class SelfAttentionStack(nn.Module):
    """Position encoding, then ``num_layers`` linear self-attention layers on the flattened map."""

    def __init__(self, d_model: int, num_heads: int, num_layers: int,
                 pos_encoding: bool = True) -> None:
        super().__init__()
        self.pos_encoding = PositionEncodingSine(d_model) if pos_encoding else None
        self.layers = nn.ModuleList(EncoderLayer(d_model, num_heads) for _ in range(num_layers))
        for param in self.parameters():
            if param.dim() > 1:
                nn.init.xavier_uniform_(param)

    def forward(self, feature_map: Tensor) -> Tensor:
        """(B, C, h, w) -> (B, C, h, w); tokens are row-major (row = y)."""
        B, C, h, w = feature_map.shape
        if self.pos_encoding is not None:
            feature_map = self.pos_encoding(feature_map)
        x = feature_map.flatten(2).transpose(1, 2)  # (B, h*w, C)
        for layer in self.layers:
            x = layer(x, x)
        return x.transpose(1, 2).reshape(B, C, h, w)
