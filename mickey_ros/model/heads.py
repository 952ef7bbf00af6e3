"""MicKey's four heads (score, offset, depth, descriptor) and their post-processing.

Every head is ``resblock1..3 -> att_layer -> resblock4 -> final 1x1 conv`` on the backbone map,
with its own weights (official ``MicKey_Extractor``; ``shared/reference/mickey.md`` sections 4-5).
Attribute names and registration order reproduce the official state_dict keys.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mickey_ros.model.attention import SelfAttentionStack
from mickey_ros.model.config import HeadsConfig

SCORE_EPS = 1e-16  # official det_head.eps
DESCRIPTOR_EPS = 1e-10  # official: added inside the sqrt of the descriptor norm


class ResBlock(nn.Module):
    """Post-activation residual block: relu(bn2(conv2(relu(bn1(conv1 x)))) + shortcut(x)).

    Convs are 3x3, zero padding, no bias; the shortcut is a 1x1 conv (key ``shortcut.0``) only when
    the width changes. ``final_relu=False`` is used by the descriptor head's last block.
    ``dilation`` (ours, 1 in the official heads) widens both convs for the demo CNN encoder.
    """

    def __init__(self, c_in: int, c_out: int, use_bn: bool = True, final_relu: bool = True,
                 dilation: int = 1) -> None:
        super().__init__()
        self.final_relu = final_relu
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out) if use_bn else nn.Identity()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out) if use_bn else nn.Identity()
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Sequential()
        if c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        """(B, c_in, h, w) -> (B, c_out, h, w)."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out)) + self.shortcut(x)
        return self.relu(out) if self.final_relu else out


class ConvAttentionHead(nn.Module):
    """Trunk shared by all heads; ``out_name`` names the final 1x1 conv (None for descriptors)."""

    def __init__(self, in_dim: int, config: HeadsConfig, out_name: str | None,
                 out_dim: int = 0) -> None:
        super().__init__()
        c1, c2, c3, c4 = config.blocks_dim
        self.out_name = out_name
        self.resblock1 = ResBlock(in_dim, c1, config.use_bn)
        self.resblock2 = ResBlock(c1, c2, config.use_bn)
        self.resblock3 = ResBlock(c2, c3, config.use_bn)
        if out_name is None:
            self.resblock4 = ResBlock(c3, c3, config.use_bn, final_relu=False)
        else:
            self.resblock4 = ResBlock(c3, c4, config.use_bn)
            self.add_module(out_name, nn.Conv2d(c4, out_dim, 1, bias=False))
        self.att_layer = SelfAttentionStack(
            c3, config.attention_heads, config.attention_layers, config.pos_encoding
        )

    def forward(self, feature_map: Tensor) -> Tensor:
        """(B, C, h, w) backbone features -> (B, out_dim, h, w) raw head output."""
        x = self.resblock3(self.resblock2(self.resblock1(feature_map)))
        x = self.resblock4(self.att_layer(x))
        return x if self.out_name is None else getattr(self, self.out_name)(x)


class ScoreHead(ConvAttentionHead):
    """``det_head``: score logits, plus the official fixed parameters saved in checkpoints.

    ``eps`` is used by the spatial softmax; ``offset_par1``, ``offset_par2`` and ``ones_kernel``
    are unused but kept (frozen) so official checkpoints load strictly.
    """

    def __init__(self, in_dim: int, config: HeadsConfig) -> None:
        super().__init__(in_dim, config, "score", 1)
        self.eps = nn.Parameter(torch.tensor(SCORE_EPS), requires_grad=False)
        self.offset_par1 = nn.Parameter(torch.tensor(0.5), requires_grad=False)
        self.offset_par2 = nn.Parameter(torch.tensor(2.0), requires_grad=False)
        self.ones_kernel = nn.Parameter(torch.ones(1, 1, 3, 3), requires_grad=False)


def border_mask(grid_hw: tuple[int, int], border: int,
                device: torch.device | None = None) -> Tensor:
    """(h, w) bool, False on the ``border`` outermost rows and columns.

    >>> border_mask((7, 8), 3).sum().item()  # (7 - 6) * (8 - 6)
    2
    """
    h, w = grid_hw
    mask = torch.zeros(h, w, dtype=torch.bool, device=device)
    mask[border:h - border, border:w - border] = True
    return mask


def score_probabilities(logits: Tensor, temperature: float, border: int,
                        eps: Tensor | float = SCORE_EPS) -> Tensor:
    """Border-masked spatial softmax over the grid (official keypoint probability).

    ``p = m * exp((s - mean(s) - eps) / T) / (sum(m * exp(...)) + eps)`` with the mean detached and
    the mask ``m`` zero on the ``border`` outer cells, so p sums to 1 over the interior.

    Args:
        logits: (B, 1, h, w) score-head output.
        temperature: softmax temperature (100 official).
        border: number of zeroed border cells per side (3 official).
        eps: det_head.eps (1e-16).

    Returns:
        (B, h, w) probabilities.
    """
    s = logits[:, 0]
    shift = (s.mean(dim=(1, 2), keepdim=True) + eps).detach()
    e = torch.exp((s - shift) / temperature)
    e = e * border_mask(tuple(s.shape[1:]), border, s.device)
    return e / (e.sum(dim=(1, 2), keepdim=True) + eps)


def keypoints_from_offsets(offset_logits: Tensor, patch_size: int) -> Tensor:
    """Pixel positions ``p * (cell + sigmoid(offset))``, one per cell.

    Args:
        offset_logits: (B, 2, h, w), channel 0 = x, channel 1 = y.
        patch_size: cell size in pixels (14).

    Returns:
        (B, h*w, 2) (x, y) pixels of the network-input image, row-major cells.
    """
    B, _, h, w = offset_logits.shape
    rows = torch.arange(h, device=offset_logits.device, dtype=offset_logits.dtype)
    cols = torch.arange(w, device=offset_logits.device, dtype=offset_logits.dtype)
    grid_y, grid_x = torch.meshgrid(rows, cols, indexing="ij")
    cells = torch.stack([grid_x, grid_y])[None]  # (1, 2, h, w)
    kpts = patch_size * (cells + torch.sigmoid(offset_logits))
    return kpts.flatten(2).transpose(1, 2)


def depth_from_logits(depth_logits: Tensor, config: HeadsConfig) -> Tensor:
    """(B, 1, h, w) -> (B, h, w) metres: raw (official) or ``max_depth * sigmoid``."""
    depth = depth_logits[:, 0]
    return config.max_depth * torch.sigmoid(depth) if config.use_depth_sigmoid else depth


def normalize_descriptors(descriptor_map: Tensor) -> Tensor:
    """(B, D, h, w) -> (B, h*w, D) unit vectors, ``d / sqrt(|d|^2 + 1e-10)``."""
    d = descriptor_map.flatten(2).transpose(1, 2)
    return d / torch.sqrt((d * d).sum(dim=-1, keepdim=True) + DESCRIPTOR_EPS)
