"""Pose-error metrics of the Map-free benchmark and the ScanNet relative-pose protocol.

Per-frame errors are batched torch (any leading dims, any device) so training validation can use
them on the GPU; aggregations (precision/recall AUC, AUC at thresholds) are numpy. No I/O.

Convention:
    Poses are ``T_query_ref`` / Map-free world-to-camera with the reference camera as world:
    ``X_query = R X_ref + t``, metres. The Map-free evaluator compares *camera centres*
    ``c = -R^T t`` (camera-to-world form), not translation vectors.
    Facts: reference/mapfree_benchmark.md §1.4 and §3.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from mickey_ros.geometry.pose import invert_transform, rotmat_to_quat_wxyz, transform_points

# VCRE grid (metres, query camera frame): 7 x 4 x 7 = 196 points, official reprojection.py values
_GRID_X = [0.3 * i for i in range(-3, 4)]
_GRID_Y = [0.3 * i for i in (-1.5, -0.5, 0.5, 1.5)]
_GRID_Z = [1.8 + 0.3 * i for i in range(7)]


def virtual_points(
    dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"
) -> Tensor:
    """The 196 virtual points of the VCRE metric, in the query camera frame.

    Returns:
        (196, 3) points, x in {-0.9..0.9}, y in {-0.45..0.45}, z in {1.8..3.6} metres.
    """
    x, y, z = (torch.tensor(v, dtype=dtype, device=device) for v in (_GRID_X, _GRID_Y, _GRID_Z))
    X, Y, Z = torch.meshgrid(x, y, z, indexing="ij")
    return torch.stack([X, Y, Z], dim=-1).reshape(-1, 3)


def camera_centre(R_cam_world: Tensor, t_cam_world: Tensor) -> Tensor:
    """Camera centre ``c = -R^T t`` (..., 3) of a world-to-camera pose R (..., 3, 3), t (..., 3)."""
    return -(R_cam_world.transpose(-1, -2) @ t_cam_world.unsqueeze(-1)).squeeze(-1)


def translation_error(R_est: Tensor, t_est: Tensor, R_gt: Tensor, t_gt: Tensor) -> Tensor:
    """Map-free translation error: distance between the camera centres, metres.

    Args:
        R_est: (..., 3, 3) estimated rotation R_query_ref.
        t_est: (..., 3) estimated translation t_query_ref, metres.
        R_gt: (..., 3, 3) ground-truth rotation.
        t_gt: (..., 3) ground-truth translation.

    Returns:
        (...,) ``||c_est - c_gt||`` with ``c = -R^T t`` in the reference frame.
    """
    return (camera_centre(R_est, t_est) - camera_centre(R_gt, t_gt)).norm(dim=-1)


def quat_angle_error_deg(q_est_wxyz: Tensor, q_gt_wxyz: Tensor) -> Tensor:
    """Rotation error ``2 asin(||vec(q_est * q_gt^-1)||)`` in degrees, in [0, 180].

    Both quaternions are normalised first; the result is insensitive to their sign.

    Args:
        q_est_wxyz: (..., 4) scalar-first quaternion.
        q_gt_wxyz: (..., 4) scalar-first quaternion.

    Returns:
        (...,) angle in degrees.
    """
    q_e = q_est_wxyz / q_est_wxyz.norm(dim=-1, keepdim=True)
    q_g = q_gt_wxyz / q_gt_wxyz.norm(dim=-1, keepdim=True)
    w1, v1 = q_e[..., :1], q_e[..., 1:]
    w2, v2 = q_g[..., :1], -q_g[..., 1:]  # inverse of a unit quaternion = conjugate
    vec = w1 * v2 + w2 * v1 + torch.linalg.cross(v1, v2, dim=-1)
    return torch.rad2deg(2 * torch.asin(vec.norm(dim=-1).clamp(max=1.0)))


def rotation_error_deg(R_est: Tensor, R_gt: Tensor) -> Tensor:
    """Geodesic rotation error (...,) in degrees between (..., 3, 3) rotations, via quaternions."""
    return quat_angle_error_deg(rotmat_to_quat_wxyz(R_est), rotmat_to_quat_wxyz(R_gt))


def _project_clamped(X_cam: Tensor, K: Tensor, width: float, height: float) -> Tensor:
    uvw = X_cam @ K.transpose(-1, -2)  # (..., N, 3)
    uv = uvw[..., :2] / uvw[..., 2:]
    return torch.stack([uv[..., 0].clamp(0, width), uv[..., 1].clamp(0, height)], dim=-1)


def vcre(
    T_est_query_ref: Tensor, T_gt_query_ref: Tensor, K_query: Tensor, width: float, height: float
) -> Tensor:
    """Virtual correspondence reprojection error (pixels) of the Map-free benchmark.

    The 196 ``virtual_points()`` live in the ground-truth query camera; they are projected with
    ``K_query`` directly and after the round trip ``T_est @ inv(T_gt)``; both projections are
    clamped to ``[0, width] x [0, height]``, so the error is at most the image diagonal.

    Args:
        T_est_query_ref: (..., 4, 4) estimated pose.
        T_gt_query_ref: (..., 4, 4) ground-truth pose.
        K_query: (3, 3) or (..., 3, 3) intrinsics of the query image at its original size.
        width: image width in pixels (Map-free: from the last intrinsics line).
        height: image height in pixels.

    Returns:
        (...,) mean pixel distance over the 196 points.
    """
    for name, x, tail in (
        ("T_est_query_ref", T_est_query_ref, (4, 4)),
        ("T_gt_query_ref", T_gt_query_ref, (4, 4)),
        ("K_query", K_query, (3, 3)),
    ):
        if tuple(x.shape[-2:]) != tail or x.ndim < 2:
            raise ValueError(
                f"{name} must have shape (..., {tail[0]}, {tail[1]}), got {tuple(x.shape)}"
            )
    P_query = virtual_points(T_gt_query_ref.dtype, T_gt_query_ref.device)
    K = K_query.to(T_gt_query_ref.dtype)
    T_est_gt = T_est_query_ref @ invert_transform(T_gt_query_ref)  # gt query cam -> est query cam
    uv_gt = _project_clamped(P_query, K, width, height)
    uv_est = _project_clamped(transform_points(T_est_gt, P_query), K, width, height)
    return (uv_est - uv_gt).norm(dim=-1).mean(dim=-1)


def translation_angle_error_deg(t_est: Tensor, t_gt: Tensor, ignore_sign: bool = True) -> Tensor:
    """Angle (...,) in degrees between translation directions (..., 3).

    With ``ignore_sign`` (the ScanNet protocol) the angle is ``min(theta, 180 - theta)``, which
    forgives the sign ambiguity of essential-matrix methods. Zero-length vectors give 0.
    """
    cos = (t_est * t_gt).sum(-1) / (t_est.norm(dim=-1) * t_gt.norm(dim=-1)).clamp_min(1e-12)
    angle = torch.rad2deg(torch.acos(cos.clamp(-1.0, 1.0)))
    return torch.minimum(angle, 180 - angle) if ignore_sign else angle


def scale_ratio(t_est: Tensor, t_gt: Tensor) -> Tensor:
    """Symmetric scale ratio ``max(|t_est|/|t_gt|, |t_gt|/|t_est|)`` (...,) >= 1 (inf if 0)."""
    n_est, n_gt = t_est.norm(dim=-1), t_gt.norm(dim=-1)
    return torch.maximum(n_est / n_gt, n_gt / n_est).nan_to_num(nan=math.inf, posinf=math.inf)


def precision_recall_curve(
    is_correct: np.ndarray, confidence: np.ndarray, num_failures: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Precision against coverage as the Map-free evaluator builds it.

    Estimates are sorted by confidence (highest first); at each distinct confidence the kept
    frames are those with confidence >= it; precision = correct kept / kept and recall = kept /
    (N + num_failures). The curve starts at (recall 0, precision 1).

    Args:
        is_correct: (N,) bool, the estimate passes the threshold.
        confidence: (N,) non-negative confidence, higher = more confident.
        num_failures: frames without an estimate; they only enlarge the recall denominator.

    Returns:
        recall (M + 1,), precision (M + 1,) for M distinct confidences, recall increasing.
    """
    is_correct = np.asarray(is_correct, dtype=bool)
    confidence = np.asarray(confidence, dtype=np.float64)
    if is_correct.shape != confidence.shape or is_correct.ndim != 1:
        raise ValueError(
            f"is_correct and confidence must be (N,) arrays, got {is_correct.shape} and "
            f"{confidence.shape}"
        )
    order = np.argsort(-confidence, kind="stable")
    conf_sorted, correct_sorted = confidence[order], is_correct[order]
    # last index of each group of equal confidence: the frames kept at that threshold
    group_end = np.flatnonzero(np.r_[conf_sorted[1:] != conf_sorted[:-1], True])
    kept = group_end + 1
    tp = np.cumsum(correct_sorted)[group_end]
    total = len(confidence) + num_failures
    recall = np.r_[0.0, kept / max(total, 1)]
    precision = np.r_[1.0, tp / kept]
    return recall, precision


def precision_and_auc(
    is_correct: np.ndarray, confidence: np.ndarray, num_failures: int = 0
) -> tuple[float, float]:
    """Map-free precision and AUC (step-wise average precision over the coverage curve).

    Precision is correct / (N + failures); AUC = sum over the curve of delta-recall * precision.
    With a constant confidence AUC equals precision; a perfect ranking reaches P (1 + ln 1/P).

    Returns:
        (precision, auc), both 0 when there is nothing to evaluate.
    """
    total = len(is_correct) + num_failures
    if total == 0:
        return 0.0, 0.0
    recall, precision = precision_recall_curve(is_correct, confidence, num_failures)
    auc = float(np.sum(np.diff(recall) * precision[1:]))
    return float(np.sum(is_correct) / total), auc


def auc_at_thresholds(errors: np.ndarray, thresholds: list[float]) -> list[float]:
    """Area under the recall-vs-error curve up to each threshold, normalised to [0, 1].

    The ScanNet/SuperGlue construction: recall at the k-th smallest error is k / N, the curve is
    linear between those points (trapezoid rule) and flat from the last error below the threshold
    up to the threshold. Failures should be passed as ``inf`` so they count in N.

    Args:
        errors: (N,) non-negative errors (degrees or metres).
        thresholds: positive upper limits in the same unit.

    Returns:
        One AUC per threshold.
    """
    errors = np.sort(np.asarray(errors, dtype=np.float64))
    if errors.size == 0:
        return [0.0 for _ in thresholds]
    recall = np.arange(1, errors.size + 1) / errors.size
    errors, recall = np.r_[0.0, errors], np.r_[0.0, recall]
    aucs = []
    for threshold in thresholds:
        n_below = int(np.searchsorted(errors, threshold, side="left"))
        x = np.r_[errors[:n_below], threshold]
        y = np.r_[recall[:n_below], recall[n_below - 1]]
        aucs.append(float(np.trapezoid(y, x) / threshold))
    return aucs


def recall_at(
    t_err: np.ndarray, r_err: np.ndarray, t_threshold: float, r_threshold: float
) -> float:
    """Share (0..1) of entries with ``t_err < t_threshold`` and ``r_err < r_threshold`` (strict)."""
    t_err, r_err = np.asarray(t_err), np.asarray(r_err)
    if t_err.shape != r_err.shape:
        raise ValueError(f"t_err and r_err must have one shape, got {t_err.shape}, {r_err.shape}")
    if t_err.size == 0:
        return 0.0
    return float(np.mean((t_err < t_threshold) & (r_err < r_threshold)))
