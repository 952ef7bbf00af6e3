"""MicKey's training loss: soft-clipped VCRE, expected loss with a null hypothesis, curriculum.

All functions are pure torch and batched over any leading dimensions. The formulas and constants
follow ``shared/reference/mickey.md`` section 8.3/8.4 (official HEAD unless a flag says otherwise).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mickey_ros.geometry.camera import backproject, project
from mickey_ros.train.config import CurriculumConfig, LossConfig

_PROJ_EPS = 1e-16  # official: z + 1e-16 in the projection
_NORM_EPS = 1e-6  # official: sqrt(sum of squares + 1e-6)
_LOG_EPS = 1e-16  # official: log(P + 1e-16) in REINFORCE


def vcre_px(
    R: Tensor,
    t: Tensor,
    R_gt: Tensor,
    t_gt: Tensor,
    K: Tensor,
    virtual_points: Tensor,
    clamp_px: float = 720.0,
) -> Tensor:
    """Virtual-correspondence reprojection error as used by the training loss.

    Each virtual point P (in camera-0 coordinates) is moved by the estimate into camera 1 and back
    to camera 0 with the ground truth; the pixel distance between P and its round trip is averaged.

    Args:
        R: (..., 3, 3) estimated rotation, camera 0 -> camera 1.
        t: (..., 3) estimated translation, metres.
        R_gt: (..., 3, 3) ground-truth rotation (broadcastable to ``R``).
        t_gt: (..., 3) ground-truth translation.
        K: (..., 3, 3) intrinsics of image 0 at the resolution the pixels are measured in.
        virtual_points: (P, 3) points in camera-0 coordinates, metres (196 in MicKey).
        clamp_px: both pixel coordinates are clamped to [0, clamp_px] (official: 720).

    Returns:
        (...) mean distance in pixels.
    """
    X = virtual_points.to(R)  # (P, 3)
    X_est_1 = X @ R.transpose(-1, -2) + t.unsqueeze(-2)  # (..., P, 3)
    X_back_0 = (X_est_1 - t_gt.unsqueeze(-2)) @ R_gt  # R_gt^T (Y - t_gt), row-vector form
    uv = project(X.expand_as(X_back_0), K, _PROJ_EPS).clamp(0.0, clamp_px)
    uv_est = project(X_back_0, K, _PROJ_EPS).clamp(0.0, clamp_px)
    dist = torch.sqrt(((uv - uv_est) ** 2).sum(-1) + _NORM_EPS)
    return dist.mean(-1)


def _invert(R: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    R_inv = R.transpose(-1, -2)
    return R_inv, -(R_inv @ t.unsqueeze(-1)).squeeze(-1)


def pose_loss(
    R: Tensor,
    t: Tensor,
    R_gt: Tensor,
    t_gt: Tensor,
    K0: Tensor,
    K1: Tensor,
    virtual_points: Tensor,
    config: LossConfig,
) -> Tensor:
    """Clipped VCRE loss per hypothesis.

    Args:
        R: (..., 3, 3) hypotheses' rotations, camera 0 -> camera 1.
        t: (..., 3) hypotheses' translations, metres.
        R_gt: ground-truth rotation, broadcastable to ``R``.
        t_gt: ground-truth translation, broadcastable to ``t``.
        K0: (..., 3, 3) original intrinsics of image 0 (broadcastable).
        K1: (..., 3, 3) original intrinsics of image 1 (broadcastable).
        virtual_points: (P, 3) virtual points, metres.
        config: ``symmetric_vcre`` (HEAD) averages both directions, else only camera 0 (release).

    Returns:
        (...) loss: ``tanh(E / soft_clip_scale_px)``, or ``E`` without soft clipping.
    """
    err = vcre_px(R, t, R_gt, t_gt, K0, virtual_points, config.clamp_px)
    if config.symmetric_vcre:
        R_inv, t_inv = _invert(R, t)
        R_gt_inv, t_gt_inv = _invert(R_gt, t_gt)
        err_1 = vcre_px(R_inv, t_inv, R_gt_inv, t_gt_inv, K1, virtual_points, config.clamp_px)
        err = 0.5 * (err + err_1)
    return clip_loss(err, config)


def clip_loss(err_px: Tensor, config: LossConfig) -> Tensor:
    """Soft clipping ``tanh(E / 80)`` of a VCRE value in pixels, or ``E`` itself without it.

    Without soft clipping the official loss is the raw VCRE (not clamped: ``max_loss_px`` is
    only the null hypothesis's loss), bounded in practice by the [0, 720] px projection clamp.
    """
    if config.soft_clipping:
        return torch.tanh(err_px / config.soft_clip_scale_px)
    return err_px


def null_loss_value(config: LossConfig) -> float:
    """Loss of the null hypothesis: 0.8 with soft clipping, 90 px without (official)."""
    return config.max_loss_soft if config.soft_clipping else config.max_loss_px


def expected_loss(scores: Tensor, losses: Tensor, num_samples: int, config: LossConfig) -> Tensor:
    """Soft-max expected loss over the hypotheses of each draw, with the optional null hypothesis.

    Args:
        scores: (..., H) soft-inlier counts of the hypotheses.
        losses: (..., H) per-hypothesis losses.
        num_samples: correspondences per draw; the null hypothesis scores
            ``null_inlier_fraction * num_samples`` (official 0.35 * 512 = 179.2).
        config: temperature (official 20) and null-hypothesis settings.

    Returns:
        (...) expected loss of each draw.
    """
    if config.null_hypothesis:
        null_value = config.null_inlier_fraction * num_samples
        null_score = scores.new_full(scores.shape[:-1] + (1,), null_value)
        null = losses.new_full(losses.shape[:-1] + (1,), null_loss_value(config))
        scores = torch.cat([scores, null_score], dim=-1)
        losses = torch.cat([losses, null], dim=-1)
    weights = torch.softmax(scores / config.score_temperature, dim=-1)
    return (weights * losses).sum(-1)


def reinforce_surrogate(log_probs: Tensor, draw_losses: Tensor) -> tuple[Tensor, Tensor]:
    """Score-function surrogate whose gradient w.r.t. log P is (1/M) sum_m (l_m - b) 1[in draw m].

    Args:
        log_probs: (B, M, S) log correspondence probabilities of the sampled correspondences.
        draw_losses: (B, M) expected loss of each draw (detached inside).

    Returns:
        surrogate (B,) whose gradient is the REINFORCE estimate, and baseline b (B,) = mean_m l_m.
    """
    baseline = draw_losses.mean(-1)
    advantage = (draw_losses - baseline.unsqueeze(-1)).detach()  # (B, M)
    surrogate = (advantage * log_probs.sum(-1)).mean(-1)
    return surrogate, baseline


def objective_over_pairs(baseline: Tensor, surrogate: Tensor, keep: Tensor) -> Tensor:
    """The paper's objective of a batch with the official normalisation over pairs.

    The direct term (the baseline, differentiated through Kabsch and the VCRE) is averaged over
    the kept pairs; the REINFORCE surrogate, already divided by the number of draws, is summed
    over them. So the REINFORCE gradient of a pair does not shrink with the number of kept pairs
    ``k``, while the direct one is divided by ``k`` (official; the balance matters because the
    global gradient-norm clip at 5 is always active).

    Args:
        baseline: (B,) mean expected loss of each pair's draws (with gradient).
        surrogate: (B,) REINFORCE surrogate of each pair (:func:`reinforce_surrogate`).
        keep: (B,) bool, the pairs the curriculum keeps (at least one).

    Returns:
        () objective.
    """
    return baseline[keep].mean() + surrogate[keep].sum()


def log_probs_of(P: Tensor, idx_ref: Tensor, idx_query: Tensor) -> Tensor:
    """Gather log(P + 1e-16) at sampled correspondences.

    Args:
        P: (B, N0, N1) correspondence probabilities (with gradient).
        idx_ref: (B, M, S) sampled reference indices.
        idx_query: (B, M, S) sampled query indices.

    Returns:
        (B, M, S) log-probabilities.
    """
    B, N0, N1 = P.shape
    flat = (idx_ref * N1 + idx_query).flatten(1)  # (B, M*S)
    picked = torch.gather(P.flatten(1), 1, flat).view_as(idx_ref)
    return torch.log(picked + _LOG_EPS)


def topk_percent(epoch: int, config: CurriculumConfig) -> float:
    """Curriculum percentage for an epoch: 30 -> +5 per epoch -> 80 (official)."""
    return min(config.topk_init + config.topk_step * epoch, config.topk_max)


def curriculum_mask(baseline: Tensor, percent: float) -> Tensor:
    """Keep the ``k = max(floor(B * percent / 100), 1)`` pairs with the lowest loss.

    Args:
        baseline: (B,) per-pair loss.
        percent: share of the batch to keep, in percent.

    Returns:
        (B,) bool mask with exactly k True entries (ties broken by lower index).

    The official code keeps the pairs whose loss is strictly below the (k+1)-th smallest, which
    is the same set unless losses tie at the k-th place; there it keeps fewer than k pairs (none
    when all B losses are equal, an empty mean). Keeping exactly k is a deliberate deviation:
    every step trains on k pairs, and the summed REINFORCE term keeps the scale of k pairs.
    """
    B = baseline.shape[0]
    k = max(int(math.floor(B * percent / 100.0 + 1e-9)), 1)
    order = torch.argsort(baseline.detach(), stable=True)
    mask = torch.zeros(B, dtype=torch.bool, device=baseline.device)
    mask[order[:k]] = True
    return mask


# --- optional ground-truth supervision for a warm-up (not in the paper; weights 0 by default) ---


def sample_depth_at(depth_map: Tensor, kpts: Tensor) -> Tensor:
    """Nearest-pixel lookup of a depth map at keypoints.

    Args:
        depth_map: (B, H, W) metres, 0 where unknown.
        kpts: (B, N, 2) pixel (x, y); points outside the map read 0.

    Returns:
        (B, N) depth.
    """
    B, H, W = depth_map.shape
    col, row = kpts[..., 0].floor().long(), kpts[..., 1].floor().long()
    inside = (col >= 0) & (col < W) & (row >= 0) & (row < H)
    flat = (row.clamp(0, H - 1) * W + col.clamp(0, W - 1))  # (B, N)
    depth = torch.gather(depth_map.flatten(1), 1, flat)
    return torch.where(inside, depth, torch.zeros_like(depth))


def log_depth_error(depth: Tensor, depth_gt: Tensor, min_depth_m: float = 0.05) -> Tensor:
    """``log z - log z_gt`` elementwise, both clamped at ``min_depth_m`` inside the log (an
    untrained head outputs depths around 0, some negative; unknown GT depth is 0)."""
    return torch.log(depth.clamp(min=min_depth_m)) - torch.log(depth_gt.clamp(min=min_depth_m))


def supervised_depth(depth_gt: Tensor, max_depth_m: float) -> Tensor:
    """Where a GT depth supervises: known (> 0; 0 = unknown) and nearer than ``max_depth_m``
    (far background such as sky is left out). Bool, the shape of ``depth_gt``."""
    return (depth_gt > 0) & (depth_gt < max_depth_m)


def depth_supervision(
    depth_pred: Tensor, depth_gt: Tensor, max_depth_m: float = 100.0, min_depth_m: float = 0.05
) -> Tensor:
    """Mean ``|log z - log z_gt|`` over keypoints with a known GT depth (scale-symmetric).

    Predictions below ``min_depth_m`` (an untrained head outputs values around 0, some negative)
    are clamped inside the log and pulled up by a linear term ``min_depth_m - z``, so the
    gradient is defined everywhere. Unlike a relative L1 error, the log error does not favour
    under-estimates.

    Args:
        depth_pred: (B, N) predicted depth, metres.
        depth_gt: (B, N) GT depth, metres; <= 0 or >= ``max_depth_m`` (e.g. sky) is ignored.
        max_depth_m: farthest supervised depth.
        min_depth_m: clamp of the prediction inside the log.

    Returns:
        () loss, 0 when no keypoint has a GT depth.
    """
    valid = supervised_depth(depth_gt, max_depth_m)
    err = (log_depth_error(depth_pred, depth_gt, min_depth_m).abs()
           + (min_depth_m - depth_pred).clamp(min=0.0))
    return (err * valid).sum() / valid.sum().clamp(min=1)


def gt_matches(
    kpts_ref: Tensor,
    depth_map_ref: Tensor,
    depth_map_query: Tensor,
    K_ref: Tensor,
    K_query: Tensor,
    T_query_ref: Tensor,
    grid_hw_query: tuple[int, int],
    patch_size: int,
    tolerance: float,
) -> tuple[Tensor, Tensor]:
    """Ground-truth query cell of every reference keypoint, from GT depth and pose.

    A reference keypoint is lifted with its GT depth, moved into the query camera and projected;
    it is valid when it lands inside the query feature grid and the query's GT depth there agrees
    with the projected depth within ``tolerance`` (relative), i.e. it is not occluded.

    Args:
        kpts_ref: (B, N0, 2) reference keypoints, pixels.
        depth_map_ref: (B, H, W) reference GT depth, metres (0 = unknown).
        depth_map_query: (B, H, W) query GT depth.
        K_ref: (B, 3, 3) network-input intrinsics of the reference image.
        K_query: (B, 3, 3) network-input intrinsics of the query image.
        T_query_ref: (B, 4, 4) ground-truth pose.
        grid_hw_query: (h, w) of the query feature grid.
        patch_size: cell size in pixels (14).
        tolerance: relative depth tolerance for visibility (e.g. 0.05).

    Returns:
        target (B, N0) int64 flat query cell index (0 where invalid) and valid (B, N0) bool.
    """
    h, w = grid_hw_query
    z_ref = sample_depth_at(depth_map_ref, kpts_ref)
    X_ref = backproject(kpts_ref, z_ref, K_ref)
    X_query = X_ref @ T_query_ref[:, :3, :3].transpose(-1, -2) + T_query_ref[:, None, :3, 3]
    uv = project(X_query, K_query)
    z_seen = sample_depth_at(depth_map_query, uv)
    z_proj = X_query[..., 2]
    inside = (uv[..., 0] >= 0) & (uv[..., 0] < w * patch_size)
    inside &= (uv[..., 1] >= 0) & (uv[..., 1] < h * patch_size)
    visible = (z_ref > 0) & (z_proj > 0) & (z_seen > 0)
    visible &= (z_seen - z_proj).abs() <= tolerance * z_proj
    valid = inside & visible
    cell = (uv[..., 1] / patch_size).floor().long() * w + (uv[..., 0] / patch_size).floor().long()
    return torch.where(valid, cell, torch.zeros_like(cell)), valid


def matched_depth_supervision(
    depth_ref: Tensor, depth_query: Tensor, gt_ref: Tensor, gt_query: Tensor, target: Tensor,
    valid: Tensor, max_depth_m: float = 100.0, min_depth_m: float = 0.05,
) -> Tensor:
    """Mean ``|e_ref - e_query|`` of the log-depth errors ``e = log z - log z_gt`` of GT matches.

    A 3D-3D fit needs the two views to agree on a point more than it needs either to be right:
    an error both views share scales the point along both rays and moves it by that fraction of
    the baseline only, while a disagreement moves it by that fraction of its depth. The query
    side is the keypoint of the reference keypoint's GT cell (``gt_matches``), a point near the
    same 3D point; its own GT depth makes the errors comparable.

    Args:
        depth_ref: (B, N0) predicted reference depth, metres.
        depth_query: (B, N1) predicted query depth.
        gt_ref: (B, N0) GT depth at the reference keypoints (0 = unknown).
        gt_query: (B, N1) GT depth at the query keypoints.
        target: (B, N0) int64 query cell of each reference keypoint.
        valid: (B, N0) bool, a visible GT match.
        max_depth_m: farthest GT depth used, as ``depth_supervision``.
        min_depth_m: clamp of the predictions inside the log, as ``depth_supervision``.

    Returns:
        () loss, 0 when no match has both GT depths (0 < z_gt < ``max_depth_m``).
    """
    gt_matched = torch.gather(gt_query, 1, target)
    err_query = torch.gather(log_depth_error(depth_query, gt_query, min_depth_m), 1, target)
    keep = valid & supervised_depth(gt_ref, max_depth_m) & supervised_depth(gt_matched, max_depth_m)
    diff = (log_depth_error(depth_ref, gt_ref, min_depth_m) - err_query).abs()
    return (diff * keep).sum() / keep.sum().clamp(min=1)


def correspondence_supervision(match_probs: Tensor, target: Tensor, valid: Tensor) -> Tensor:
    """Mean negative log dual-softmax probability of the GT query cell of each valid keypoint.

    Args:
        match_probs: (B, N0, N1) dual-softmax matrix (without keypoint scores).
        target: (B, N0) int64 query cell index.
        valid: (B, N0) bool.

    Returns:
        () loss, 0 when no keypoint is valid.
    """
    picked = torch.gather(match_probs, 2, target.unsqueeze(-1)).squeeze(-1)
    nll = -torch.log(picked + 1e-12)
    return (nll * valid).sum() / valid.sum().clamp(min=1)
