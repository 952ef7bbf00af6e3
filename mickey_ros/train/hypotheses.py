"""Training-time pose hypotheses: sampled correspondences, minimal sets, refinement, soft scores.

This is MicKey's vectorised training RANSAC (official HEAD, reference mickey.md section 8.3):

1. ``M`` draws of ``S`` distinct correspondences sampled from ``P`` (not differentiable; the
   REINFORCE term in :mod:`mickey_ros.train.loss` handles the sampling).
2. ``H`` hypotheses per draw, each a minimal set of ``set_size`` correspondences sampled
   proportionally to their ``P`` value.
3. Refinement without gradient: mask ``F = M_0`` = the minimal set, ``best = set_size``; round r
   fits Kabsch on ``M_r`` and counts hard inliers ``I_r``; if ``|I_r| > best`` then ``F = M_r``,
   ``M_{r+1} = I_r``, else that hypothesis stops.
4. The final pose is a weighted Kabsch on ``F`` *with* gradient w.r.t. the 3D points (so w.r.t.
   keypoint offsets and depths), scored by the differentiable soft-inlier count over the draw.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from mickey_ros.geometry.kabsch import kabsch
from mickey_ros.geometry.ransac import (
    residuals,
    sample_correspondences,
    sample_minimal_sets,
    soft_inlier_count,
)
from mickey_ros.train.config import HypothesisConfig


@dataclass
class Hypotheses:
    """Pose hypotheses of a batch of pairs (B pairs, M draws, H hypotheses, S samples per draw).

    Attributes:
        R: (B, M, H, 3, 3) rotations camera 0 -> camera 1 (differentiable w.r.t. the 3D points).
        t: (B, M, H, 3) translations, metres.
        scores: (B, M, H) soft-inlier counts over the draw's S correspondences (differentiable).
        idx_ref: (B, M, S) sampled reference keypoint indices.
        idx_query: (B, M, S) sampled query keypoint indices.
        num_inliers: (B, M, H) hard inlier count of the final fit (no gradient), for logging.
    """

    R: Tensor
    t: Tensor
    scores: Tensor
    idx_ref: Tensor
    idx_query: Tensor
    num_inliers: Tensor


def gather_points(X: Tensor, idx: Tensor) -> Tensor:
    """Pick points per draw: X (B, N, 3), idx (B, M, S) -> (B, M, S, 3)."""
    B, M, S = idx.shape
    flat = idx.reshape(B, M * S, 1).expand(-1, -1, 3)
    return torch.gather(X, 1, flat).view(B, M, S, 3)


def minimal_set_masks(sets: Tensor, num_samples: int) -> Tensor:
    """0/1 masks over a draw from minimal-set indices: (B, M, H, k) -> (B, M, H, S) float."""
    mask = torch.zeros(sets.shape[:-1] + (num_samples,), device=sets.device)
    return mask.scatter_(-1, sets, 1.0)


@torch.no_grad()
def refine_masks(
    X_ref: Tensor, X_query: Tensor, masks: Tensor, threshold_m: float, num_rounds: int
) -> Tensor:
    """Inlier refinement without gradient (official HEAD training variant).

    Args:
        X_ref: (B, M, S, 3) reference-camera points of each draw, metres.
        X_query: (B, M, S, 3) query-camera points.
        masks: (B, M, H, S) initial 0/1 masks (the minimal sets).
        threshold_m: hard inlier threshold (official 0.15 m).
        num_rounds: maximum refinement rounds (official 4).

    Returns:
        (B, M, H, S) 0/1 mask F whose weighted Kabsch fit had the most inliers.
    """
    H = masks.shape[2]
    X0 = X_ref.unsqueeze(2).expand(-1, -1, H, -1, -1)
    X1 = X_query.unsqueeze(2).expand(-1, -1, H, -1, -1)
    best_mask, current = masks, masks
    best = masks.sum(-1)
    active = torch.ones_like(best, dtype=torch.bool)
    for _ in range(num_rounds):
        R, t = kabsch(X0, X1, current)
        inliers = (residuals(R, t, X0, X1) <= threshold_m).float()  # (B, M, H, S)
        count = inliers.sum(-1)
        improved = active & (count > best)
        if not bool(improved.any()):
            break
        best_mask = torch.where(improved.unsqueeze(-1), current, best_mask)
        best = torch.where(improved, count, best)
        current = torch.where(improved.unsqueeze(-1), inliers, current)
        active = improved
    return best_mask


def generate_hypotheses(
    P: Tensor,
    X_ref: Tensor,
    X_query: Tensor,
    config: HypothesisConfig,
    generator: torch.Generator | None = None,
) -> Hypotheses:
    """Sample, refine and score pose hypotheses for each pair of a batch.

    Args:
        P: (B, N0, N1) correspondence probabilities; only used for sampling (detached here).
        X_ref: (B, N0, 3) back-projected reference keypoints, metres (with gradient).
        X_query: (B, N1, 3) back-projected query keypoints, metres (with gradient).
        config: draws, samples, hypotheses, minimal-set size, thresholds.
        generator: random source for all sampling (seeded per step for exact resume).

    Returns:
        :class:`Hypotheses` with ``B x M x H`` poses and scores.
    """
    P = P.detach().float()
    idx_ref, idx_query, weights = sample_correspondences(
        P, config.num_draws, config.num_samples, generator
    )
    sets = sample_minimal_sets(weights, config.num_hypotheses, config.set_size, generator)
    Y0, Y1 = gather_points(X_ref, idx_ref), gather_points(X_query, idx_query)  # (B, M, S, 3)
    masks = minimal_set_masks(sets, config.num_samples).to(Y0.dtype)
    final_masks = refine_masks(
        Y0.detach(), Y1.detach(), masks, config.refine_threshold_m, config.num_refinements
    )
    H = config.num_hypotheses
    Y0h = Y0.unsqueeze(2).expand(-1, -1, H, -1, -1)
    Y1h = Y1.unsqueeze(2).expand(-1, -1, H, -1, -1)
    R, t = kabsch(Y0h, Y1h, final_masks)
    res = residuals(R, t, Y0h, Y1h)  # (B, M, H, S)
    scores = soft_inlier_count(res, config.soft_inlier_threshold_m, config.beta_scale)
    num_inliers = (res.detach() <= config.refine_threshold_m).sum(-1)
    return Hypotheses(R, t, scores, idx_ref, idx_query, num_inliers)
