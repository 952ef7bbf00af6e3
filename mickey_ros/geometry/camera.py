"""Pinhole back-projection and projection, batched torch.

Convention:
    Pixel coordinates are ``(x, y) = (u, v)`` = (column, row) of the network-input image, with the
    pixel-centre convention of ``mickey_ros.utils.images.scale_intrinsics``. Camera frames are
OpenCV
    style (x right, y down, z forward), depths are metric z (not ray length). MicKey builds its
    3D keypoints as ``X = z K^-1 [u, v, 1]^T`` (reference mickey.md section 5).
"""

from __future__ import annotations

import torch
from torch import Tensor

from mickey_ros.utils.checks import check_shape


def backproject(kpts: Tensor, depth: Tensor, K: Tensor) -> Tensor:
    """Lift pixels with metric depth to 3D points in their camera frame.

    ``X = z * K^-1 [u, v, 1]^T``; K is inverted with ``torch.linalg.inv`` in the working dtype,
    as the reference does. Differentiable w.r.t. ``kpts``, ``depth`` and ``K``.

    Args:
        kpts: (B, N, 2) pixel coordinates (x, y).
        depth: (B, N) z in metres (any sign is passed through; MicKey's raw depth may be < 0).
        K: (B, 3, 3) intrinsics of the image the keypoints live in.

    Returns:
        (B, N, 3) points in the camera frame, metres.

    Raises:
        ValueError: on mismatched shapes.

    >>> K = torch.tensor([[[100.0, 0.0, 50.0], [0.0, 100.0, 40.0], [0.0, 0.0, 1.0]]])
    >>> X = backproject(torch.tensor([[[150.0, 40.0]]]), torch.tensor([[2.0]]), K)
    >>> torch.allclose(X, torch.tensor([[[2.0, 0.0, 2.0]]]), atol=1e-6)  # x = (150 - 50) / 100 * 2
    True
    """
    dims = check_shape(kpts, "B N 2", "kpts")
    check_shape(depth, "B N", "depth", dims)
    check_shape(K, "B 3 3", "K", dims)
    ones = torch.ones_like(kpts[..., :1])
    rays = torch.cat([kpts, ones], dim=-1) @ torch.linalg.inv(K).transpose(-1, -2)  # (B, N, 3)
    return rays * depth.unsqueeze(-1)


def project(X: Tensor, K: Tensor, eps: float = 1e-16) -> Tensor:
    """Project 3D camera-frame points to pixels: ``(K X)[:2] / ((K X)[2] + eps)``.

    The ``eps`` matches the reference's VCRE projection; points behind the camera are projected
    without any special handling (callers clamp or mask as they need).

    Args:
        X: (..., N, 3) points in the camera frame, metres.
        K: (..., 3, 3) intrinsics, leading dimensions broadcastable with X's.
        eps: added to the depth before dividing.

    Returns:
        (..., N, 2) pixel coordinates (x, y).

    Raises:
        ValueError: on mismatched shapes.

    >>> K = torch.tensor([[[100.0, 0.0, 50.0], [0.0, 100.0, 40.0], [0.0, 0.0, 1.0]]])
    >>> project(torch.tensor([[[2.0, 0.0, 2.0]]]), K).round(decimals=3)
    tensor([[[150.,  40.]]])
    """
    if X.ndim < 2 or X.shape[-1] != 3:
        raise ValueError(f"X must have shape (..., N, 3), got {tuple(X.shape)}")
    if K.ndim < 2 or K.shape[-2:] != (3, 3):
        raise ValueError(f"K must have shape (..., 3, 3), got {tuple(K.shape)}")
    uvw = X @ K.transpose(-1, -2)  # (..., N, 3)
    return uvw[..., :2] / (uvw[..., 2:] + eps)
