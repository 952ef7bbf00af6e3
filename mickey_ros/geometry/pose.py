"""Rigid-transform and quaternion conversions, batched torch.

Convention:
    ``T_b_a`` (..., 4, 4) maps points from frame ``a`` into ``b``: ``X_b = R_b_a X_a + t_b_a``.
    MicKey's output is ``T_query_ref``; Map-free poses are world-to-camera ``T_cam_world`` with the
    reference camera as world. Quaternions are Hamilton, unit norm; ``q_wxyz`` is scalar-first
    (Map-free files), ``q_xyzw`` is scalar-last (ROS messages).
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch
from torch import Tensor

ArrayT = TypeVar("ArrayT", np.ndarray, Tensor)


def quat_wxyz_to_xyzw(q_wxyz: Tensor) -> Tensor:
    """(..., 4) scalar-first -> (..., 4) scalar-last."""
    return torch.cat([q_wxyz[..., 1:], q_wxyz[..., :1]], dim=-1)


def quat_xyzw_to_wxyz(q_xyzw: Tensor) -> Tensor:
    """(..., 4) scalar-last -> (..., 4) scalar-first."""
    return torch.cat([q_xyzw[..., 3:], q_xyzw[..., :3]], dim=-1)


def quat_wxyz_to_rotmat(q_wxyz: Tensor) -> Tensor:
    """Unit quaternion (..., 4) (w, x, y, z) -> rotation matrix (..., 3, 3).

    The quaternion is normalised first, so any non-zero scale is accepted.

    >>> R = quat_wxyz_to_rotmat(torch.tensor([0.5**0.5, 0.0, 0.0, 0.5**0.5]))  # 90 deg about z
    >>> torch.allclose(R, torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]]), atol=1e-6)
    True
    """
    q = q_wxyz / q_wxyz.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
        2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
        2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
    ]
    return torch.stack(rows, dim=-1).reshape(*q.shape[:-1], 3, 3)


def rotmat_to_quat_wxyz(R: Tensor) -> Tensor:
    """Rotation matrix (..., 3, 3) -> unit quaternion (..., 4) (w, x, y, z) with w >= 0.

    Uses the numerically stable branch on the largest of (w, x, y, z) (Shepperd's method).
    """
    m = R
    trace = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    # 4 * square of each component, one per candidate branch
    cand = torch.stack(
        [
            1 + trace,
            1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2],
            1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2],
            1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2],
        ],
        dim=-1,
    )
    s = 2 * torch.sqrt(cand.clamp_min(1e-12))
    q_w = torch.stack(
        [s[..., 0] / 4, (m[..., 2, 1] - m[..., 1, 2]) / s[..., 0],
         (m[..., 0, 2] - m[..., 2, 0]) / s[..., 0], (m[..., 1, 0] - m[..., 0, 1]) / s[..., 0]], -1)
    q_x = torch.stack(
        [(m[..., 2, 1] - m[..., 1, 2]) / s[..., 1], s[..., 1] / 4,
         (m[..., 0, 1] + m[..., 1, 0]) / s[..., 1], (m[..., 0, 2] + m[..., 2, 0]) / s[..., 1]], -1)
    q_y = torch.stack(
        [(m[..., 0, 2] - m[..., 2, 0]) / s[..., 2], (m[..., 0, 1] + m[..., 1, 0]) / s[..., 2],
         s[..., 2] / 4, (m[..., 1, 2] + m[..., 2, 1]) / s[..., 2]], -1)
    q_z = torch.stack(
        [(m[..., 1, 0] - m[..., 0, 1]) / s[..., 3], (m[..., 0, 2] + m[..., 2, 0]) / s[..., 3],
         (m[..., 1, 2] + m[..., 2, 1]) / s[..., 3], s[..., 3] / 4], -1)
    branch = cand.argmax(dim=-1, keepdim=True)  # (..., 1)
    q = torch.stack([q_w, q_x, q_y, q_z], dim=-2)  # (..., 4 branches, 4)
    q = torch.take_along_dim(q, branch[..., None].expand(*branch.shape, 4), dim=-2).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


def axis_angle_to_rotmat(axis_angle: Tensor) -> Tensor:
    """Rotation vector (..., 3) (axis * angle in radians) -> (..., 3, 3), Rodrigues' formula."""
    angle = axis_angle.norm(dim=-1, keepdim=True)
    half = angle / 2
    # sin(x/2)/x -> 1/2 for small x; the series keeps it exact at 0
    scale = torch.where(angle > 1e-8, torch.sin(half) / angle.clamp_min(1e-12), 0.5 - angle**2 / 48)
    q = torch.cat([torch.cos(half), axis_angle * scale], dim=-1)
    return quat_wxyz_to_rotmat(q)


def rotation_angle(R: Tensor) -> Tensor:
    """Geodesic angle (...,) in radians of rotation matrices (..., 3, 3), in [0, pi]."""
    q = rotmat_to_quat_wxyz(R)
    return 2 * torch.atan2(q[..., 1:].norm(dim=-1), q[..., 0].abs())


def rotation_angle_deg(R: np.ndarray) -> float:
    """Angle in degrees of a (3, 3) rotation, or of the rotation of a (4, 4) transform (numpy)."""
    cos = (np.trace(R[:3, :3]) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def make_transform(R: Tensor, t: Tensor) -> Tensor:
    """(..., 3, 3) rotation and (..., 3) translation -> (..., 4, 4) homogeneous transform."""
    T = torch.zeros(*R.shape[:-2], 4, 4, dtype=R.dtype, device=R.device)
    T[..., :3, :3] = R
    T[..., :3, 3] = t
    T[..., 3, 3] = 1
    return T


def split_transform(T: Tensor) -> tuple[Tensor, Tensor]:
    """(..., 4, 4) -> rotation (..., 3, 3), translation (..., 3)."""
    return T[..., :3, :3], T[..., :3, 3]


def invert_transform(T_b_a: ArrayT) -> ArrayT:
    """Exact inverse of rigid transforms (..., 4, 4): T_a_b = [R^T | -R^T t]; numpy or torch.

    >>> T = np.array([[0.0, -1, 0, 1], [1, 0, 0, 2], [0, 0, 1, 3], [0, 0, 0, 1]])
    >>> invert_transform(T)[:3, 3].round(6)
    array([-2.,  1., -3.])
    """
    R_inv = T_b_a[..., :3, :3].swapaxes(-1, -2)
    T_a_b = T_b_a * 0
    T_a_b[..., :3, :3] = R_inv
    T_a_b[..., :3, 3:] = -(R_inv @ T_b_a[..., :3, 3:])
    T_a_b[..., 3, 3] = 1
    return T_a_b


def transform_points(T_b_a: Tensor, X_a: Tensor) -> Tensor:
    """Apply (..., 4, 4) to points (..., N, 3) -> (..., N, 3)."""
    R, t = split_transform(T_b_a)
    return X_a @ R.transpose(-1, -2) + t.unsqueeze(-2)


def pose_from_quat_wxyz(q_wxyz: Tensor, t: Tensor) -> Tensor:
    """Map-free style (q_wxyz (..., 4), t (..., 3)) -> (..., 4, 4)."""
    return make_transform(quat_wxyz_to_rotmat(q_wxyz), t)


def relative_pose(T_a_world: ArrayT, T_b_world: ArrayT) -> ArrayT:
    """Relative transform T_b_a = T_b_world @ inv(T_a_world) from two world-to-camera poses.

    This is the Map-free/MicKey ground truth for the pair (a = reference, b = query).
    """
    return T_b_world @ invert_transform(T_a_world)


def transform_from_xyz_qxyzw(t_xyz: np.ndarray, q_xyzw: np.ndarray) -> np.ndarray:
    """ROS-style translation (3,) and quaternion (x, y, z, w), normalised -> (4, 4) float64."""
    q_wxyz = quat_xyzw_to_wxyz(torch.as_tensor(np.asarray(q_xyzw, dtype=np.float64)))
    T = np.eye(4)
    T[:3, :3] = quat_wxyz_to_rotmat(q_wxyz).numpy()
    T[:3, 3] = np.asarray(t_xyz, dtype=np.float64)
    return T


def rotmat_to_quat_xyzw(R: np.ndarray) -> np.ndarray:
    """(3, 3) rotation -> ROS-order unit quaternion (x, y, z, w) float64, w >= 0."""
    q_wxyz = rotmat_to_quat_wxyz(torch.as_tensor(np.asarray(R, dtype=np.float64)))
    return quat_wxyz_to_xyzw(q_wxyz).numpy()
