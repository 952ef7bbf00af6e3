"""Dense depth supervision: a training-only head that reads a log depth per pixel off the cells.

The keypoint depth term (``loss.depth_supervision``) gives the network one depth label per
feature cell, at its keypoint. With ground-truth depth maps (the renderer, an RGB-D camera)
every pixel has a label: this head maps each cell's backbone feature linearly (a 1 x 1 conv) to
the log depths of its ``patch x patch`` pixels, and its loss trains the backbone to carry the
depth of the whole cell, edges included (196 labels per cell instead of 1). It is not part of
MicKey: inference never runs it, exported and strict-loaded checkpoints do not contain it
(``MicKeyTrainingModule`` keeps its weights beside the state dict, for resuming).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mickey_ros.train.loss import supervised_depth

# a typical indoor depth (e ~ 2.7 m): the starting prediction of every pixel
INITIAL_LOG_DEPTH = 1.0


class DenseDepthHead(nn.Module):
    """(B, C, h, w) backbone cells -> (B, h * patch, w * patch) log depth.

    The 1 x 1 conv starts at zero weight, so the backbone receives no gradient from this head
    until the head has learned to read it: adding the term to a trained network does not first
    push its features towards a random readout.

    Args:
        channels: backbone feature width ``C``.
        patch_size: pixels per cell side (14 for MicKey).
    """

    def __init__(self, channels: int, patch_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.to_pixels = nn.Conv2d(channels, patch_size * patch_size, 1)
        nn.init.zeros_(self.to_pixels.weight)
        nn.init.constant_(self.to_pixels.bias, INITIAL_LOG_DEPTH)

    def forward(self, cells: Tensor) -> Tensor:
        return F.pixel_shuffle(self.to_pixels(cells), self.patch_size)[:, 0]

    def loss(self, cells: Tensor, depth_gt: Tensor, max_depth_m: float = 100.0) -> Tensor:
        """Mean ``|log z - log z_gt|`` over the pixels of the cells with a known GT depth.

        Args:
            cells: (B, C, h, w) backbone features of the top-left ``h * patch x w * patch``
                crop of the image (``MicKey.encode``).
            depth_gt: (B, H, W) GT depth map of the whole image, metres; <= 0 or >=
                ``max_depth_m`` (sky, holes) is ignored.
            max_depth_m: farthest supervised depth.

        Returns:
            () loss, 0 when no pixel has a GT depth.
        """
        log_z = self(cells)
        gt = depth_gt[:, : log_z.shape[1], : log_z.shape[2]]
        if gt.shape[-2:] != log_z.shape[-2:]:
            raise ValueError(f"depth map {tuple(depth_gt.shape[-2:])} (H, W) is smaller than the "
                             f"{tuple(log_z.shape[-2:])} px the cells cover: pass the depth map "
                             "of the image the backbone saw")
        known = supervised_depth(gt, max_depth_m)
        err = (log_z - gt.clamp(min=1e-3).log()).abs()
        return (err * known).sum() / known.sum().clamp(min=1)
