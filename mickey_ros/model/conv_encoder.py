"""Convolutional encoder for the CPU demo model: the ViT's (B, C, H/14, W/14) grid from a small CNN.

Ours, not in MicKey. A 4-layer ViT trained from scratch on a CPU learned little monocular depth
(docs/demo_model.md); a CNN with pixel-coordinate input channels learns the depth of a fixed camera
rig (largely a function of the image row) in minutes. It replaces ``dinov2_<arch>`` when
``config.backbone.arch == 'conv'``; the heads, matcher and checkpoint layout are unchanged.

Layout (``C = embed_dim``, ``n = depth`` residual blocks, ``n // 2`` at each scale)::

    [RGB normalised, x, y in [-1, 1]] -> 7x7 stride-7 conv (C/2) -> blocks at 1/7
    -> 3x3 stride-2 conv (C) -> dilated blocks at 1/14 (dilation 1, 2, 4, ...)
    -> + 1x1 conv of the image-wide mean (global context: room size, overall brightness)

Example:
    >>> from mickey_ros.model.config import mickey_demo_cnn
    >>> enc = ConvEncoder(mickey_demo_cnn().backbone).eval()
    >>> tuple(enc(torch.rand(2, 3, 238, 322)).shape)
    (2, 128, 17, 23)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mickey_ros.model.config import BackboneConfig
from mickey_ros.model.heads import ResBlock

STEM_STRIDE = 7  # then one stride-2 conv: 14 px per cell, the ViT's patch size
RGB_MEAN, RGB_STD = 0.45, 0.225  # ours: centre the [0, 1] input (no ImageNet statistics needed)
MAX_DILATION = 4  # 4 cells = 56 px at 1/14: wider rings lose more border than they add context


def pixel_coordinates(batch: int, height: int, width: int, like: Tensor) -> Tensor:
    """(batch, 2, height, width) pixel-centre x and y, each scaled to [-1, 1] over the image."""
    ys = (torch.arange(height, dtype=like.dtype, device=like.device) + 0.5) * (2.0 / height) - 1.0
    xs = (torch.arange(width, dtype=like.dtype, device=like.device) + 0.5) * (2.0 / width) - 1.0
    grid = torch.stack([xs.expand(height, width), ys[:, None].expand(height, width)])
    return grid.expand(batch, 2, height, width)


class ConvEncoder(nn.Module):
    """CNN backbone with the ViT's interface: (B, 3, H, W) in [0, 1] -> (B, C, H/14, W/14)."""

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        C, n = config.embed_dim, config.depth
        half = max(C // 2, 1)
        self.stem = nn.Sequential(
            nn.Conv2d(5, half, STEM_STRIDE, stride=STEM_STRIDE, bias=False),
            nn.BatchNorm2d(half), nn.ReLU(inplace=True))
        self.stage1 = nn.Sequential(*(ResBlock(half, half) for _ in range(n // 2)))
        self.down = nn.Sequential(
            nn.Conv2d(half, C, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C), nn.ReLU(inplace=True))
        dilations = [min(2 ** i, MAX_DILATION) for i in range(n - n // 2)]
        self.stage2 = nn.Sequential(*(ResBlock(C, C, dilation=d) for d in dilations))
        self.context = nn.Conv2d(C, C, 1)

    def forward(self, image: Tensor) -> Tensor:
        """(B, 3, H, W) float [0, 1], H and W multiples of 14 -> (B, C, H/14, W/14)."""
        B, _, H, W = image.shape
        if H % (2 * STEM_STRIDE) or W % (2 * STEM_STRIDE):
            raise ValueError(f"image is {H}x{W} (H x W); the conv encoder needs multiples of 14 "
                             "(MicKey.encode crops to them)")
        x = torch.cat([(image - RGB_MEAN) / RGB_STD, pixel_coordinates(B, H, W, image)], dim=1)
        x = self.stage2(self.down(self.stage1(self.stem(x))))
        return x + self.context(x.mean(dim=(2, 3), keepdim=True))
