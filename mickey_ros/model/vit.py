"""DINOv2 vision transformer with the official parameter names and position-embedding interpolation.

Written from the DINOv2 facts in ``shared/reference/mickey.md`` section 3 so that the hub weight
files (``dinov2_vit{s,b,l,g}14_pretrain.pth``) load with ``strict=True`` and no key map, and so
that MicKey checkpoints map 1:1 (prefix ``compute_matches.extractor.dinov2_<arch>.``).

Numerics that matter for checkpoint fidelity:
    * pre-norm blocks ``x += ls1(attn(norm1(x)))``, ``x += ls2(mlp(norm2(x)))``, LayerNorm eps 1e-6,
      exact GELU, LayerScale, biases everywhere;
    * the position table (37 x 37 for 518 px) is interpolated exactly as the official code does:
      bicubic with ``scale_factor=((gh + 0.1) / 37, (gw + 0.1) / 37)``, not ``size=(gh, gw)``;
    * reduced precision casts the whole module (weights and input), not autocast.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mickey_ros.model.config import BackboneConfig

LAYER_NORM_EPS = 1e-6  # dinov2: partial(nn.LayerNorm, eps=1e-6)
INTERPOLATE_OFFSET = 0.1  # dinov2 hub default interpolate_offset
LAYER_SCALE_INIT = 1.0  # dinov2 hub: init_values=1.0


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens: Conv2d(3, C, p, stride p) then flatten (no norm)."""

    def __init__(self, patch_size: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, image: Tensor) -> Tensor:
        """(B, 3, H, W) -> (B, H/p * W/p, C), row-major tokens."""
        return self.proj(image).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (keys ``qkv``, ``proj``)."""

    def __init__(self, dim: int, num_heads: int, use_sdpa: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.use_sdpa = use_sdpa
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        """(B, N, C) -> (B, N, C)."""
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, N, head_dim)
        if self.use_sdpa:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            out = self.reference_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(B, N, C))

    def reference_attention(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Plain softmax attention (the official non-xformers path), (B, h, N, d) each."""
        attn = (q * self.scale) @ k.transpose(-2, -1)
        return attn.softmax(dim=-1) @ v


class Mlp(nn.Module):
    """fc1 -> exact GELU -> fc2."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        """(B, N, C) -> (B, N, C)."""
        return self.fc2(self.act(self.fc1(x)))


class SwiGLUFFN(nn.Module):
    """SwiGLU feed-forward of ViT-g (keys ``w12``, ``w3``); hidden rounded as in DINOv2."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        hidden = (int(hidden * 2 / 3) + 7) // 8 * 8
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        """(B, N, C) -> (B, N, C)."""
        x1, x2 = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(x1) * x2)


class LayerScale(nn.Module):
    """Per-channel learned scale (key ``gamma``)."""

    def __init__(self, dim: int, init_value: float = LAYER_SCALE_INIT) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init_value))

    def forward(self, x: Tensor) -> Tensor:
        """(..., C) -> (..., C)."""
        return x * self.gamma


class Block(nn.Module):
    """Pre-norm transformer block with LayerScale on both residual branches."""

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        dim, hidden = config.embed_dim, int(config.embed_dim * config.mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, config.num_heads, config.use_sdpa)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, hidden) if config.ffn == "mlp" else SwiGLUFFN(dim, hidden)
        self.ls2 = LayerScale(dim)

    def forward(self, x: Tensor) -> Tensor:
        """(B, N, C) -> (B, N, C)."""
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


def interpolate_pos_embed(pos_embed: Tensor, grid_hw: tuple[int, int]) -> Tensor:
    """Resample a square position table to a ``(gh, gw)`` token grid, as official DINOv2 does.

    The table is up-cast to fp32 and resized bicubically with the *scale factor*
    ``(g + 0.1) / M`` per axis (align_corners False, no antialias). PyTorch then emits
    ``floor(M * scale) = g`` samples but maps output to input with the given scale, which differs
    slightly from ``size=(gh, gw)``.

    Args:
        pos_embed: (1, 1 + M*M, C) table, CLS entry first.
        grid_hw: (gh, gw) token grid (rows = image y).

    Returns:
        (1, 1 + gh*gw, C) fp32 table (the caller casts to the token dtype).
    """
    table = pos_embed.float()
    M = math.isqrt(table.shape[1] - 1)
    gh, gw = grid_hw
    patch = table[:, 1:].reshape(1, M, M, -1).permute(0, 3, 1, 2)  # (1, C, M, M)
    patch = F.interpolate(
        patch,
        scale_factor=((gh + INTERPOLATE_OFFSET) / M, (gw + INTERPOLATE_OFFSET) / M),
        mode="bicubic",
        align_corners=False,
        antialias=False,
    )
    if patch.shape[-2:] != (gh, gw):
        raise RuntimeError(f"position embedding resampled to {tuple(patch.shape[-2:])}, "
                           f"expected {(gh, gw)}")
    patch = patch.permute(0, 2, 3, 1).reshape(1, gh * gw, -1)
    return torch.cat([table[:, :1], patch], dim=1)


class DinoVisionTransformer(nn.Module):
    """DINOv2 ViT (no registers) returning the final-LayerNorm patch tokens as a feature map.

    State-dict keys: ``cls_token``, ``pos_embed``, ``mask_token`` (unused, kept for strict
    loading), ``patch_embed.proj.*``, ``blocks.N.*``, ``norm.*``.
    """

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        C, p = config.embed_dim, config.patch_size
        self.patch_size = p
        self.patch_embed = PatchEmbed(p, C)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, C))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + (config.img_size // p) ** 2, C))
        self.mask_token = nn.Parameter(torch.zeros(1, C))
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.norm = nn.LayerNorm(C, eps=LAYER_NORM_EPS)
        self._init_weights()

    def _init_weights(self) -> None:
        """DINOv2 init (only matters for training from scratch; weight files overwrite it)."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        # dinov2 uses normal_(std=1e-6); truncating at +-2 changes nothing at that std and, unlike
        # normal_, stays cheap on the meta device used by load_checkpoint
        nn.init.trunc_normal_(self.cls_token, std=1e-6)
        for module in self.blocks.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def set_use_sdpa(self, enabled: bool) -> None:
        """Switch every block between SDPA (fast) and plain softmax attention (reference)."""
        for block in self.blocks:
            block.attn.use_sdpa = enabled

    def pos_embed_for(self, grid_hw: tuple[int, int], dtype: torch.dtype) -> Tensor:
        """Position table added to ``1 + gh*gw`` tokens: (1, 1 + gh*gw, C) in ``dtype``.

        The stored table is used unchanged only for the native square grid (official rule:
        ``tokens == M*M and H == W``).
        """
        M2 = self.pos_embed.shape[1] - 1
        gh, gw = grid_hw
        if gh * gw == M2 and gh == gw:
            return self.pos_embed
        return interpolate_pos_embed(self.pos_embed, grid_hw).to(dtype)

    def forward(self, image: Tensor) -> Tensor:
        """Final-LayerNorm patch tokens as a map.

        Args:
            image: (B, 3, H, W) with H, W multiples of the patch size, in the module's dtype.

        Returns:
            (B, C, H/p, W/p) features in the module's dtype, tokens row-major (row = y).
        """
        B, _, H, W = image.shape
        p = self.patch_size
        if H % p or W % p:
            raise ValueError(f"image size {H}x{W} must be a multiple of the patch size {p}")
        grid_hw = (H // p, W // p)
        x = self.patch_embed(image)
        x = torch.cat([self.cls_token.expand(B, -1, -1), x], dim=1)
        x = x + self.pos_embed_for(grid_hw, x.dtype)
        for block in self.blocks:
            x = block(x)
        tokens = self.norm(x)[:, 1:]  # (B, gh*gw, C), CLS dropped
        return tokens.transpose(1, 2).reshape(B, -1, *grid_hw)
