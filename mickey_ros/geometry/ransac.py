"""MicKey's probabilistic RANSAC + Kabsch pose solver, vectorised over pairs, draws and hypotheses.

Algorithm (reference mickey.md section 7; details and validity reasons in docs/solver.md):
``it_matches`` draws of ``num_samples`` distinct correspondences sampled from ``P`` without
replacement (``geometry.sampling``: exponential keys by default, ``torch.multinomial`` as the
reference path, the same law); per draw ``it_ransac`` minimal sets of ``min_set_size``
correspondences sampled in proportion to their ``P``; unweighted Kabsch per set; soft-inlier score
on the draw's samples; the best of all hypotheses is refined with inlier-masked Kabsch; the
confidence is the final pose's soft-inlier count. The building blocks are public because the
training objective (section 8.3) reuses them with its own settings and with gradients.

Convention:
    Poses are ``T_query_ref``: ``X_query = R X_ref + t`` in metres.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from mickey_ros.geometry.kabsch import is_degenerate, kabsch, kabsch_with_singular_values
from mickey_ros.geometry.sampling import SAMPLERS, sample_correspondences, sample_minimal_sets
from mickey_ros.utils.checks import check_shape
from mickey_ros.utils.config import ConfigError

# Draws x samples x hypotheses x 3 per scoring chunk (64 MiB in float32).
_SCORE_BUDGET = 1 << 24


@dataclass(frozen=True)
class SolverConfig:
    """Probabilistic RANSAC settings; defaults are the official test-time values."""

    it_matches: int = 20  # official PROCRUSTES.IT_MATCHES
    it_ransac: int = 100  # official PROCRUSTES.IT_RANSAC
    num_samples: int = 2048  # official PROCRUSTES.NUM_SAMPLED_MATCHES
    min_set_size: int = 3  # official PROCRUSTES.NUM_CORR_3D_3D
    num_refinements: int = 4  # official PROCRUSTES.NUM_REFINEMENTS
    th_inlier: float = 0.15  # official PROCRUSTES.TH_INLIER (m)
    th_soft_inlier: float = 0.3  # official PROCRUSTES.TH_SOFT_INLIER (m)
    soft_beta: float = 5.0  # beta = soft_beta / threshold (official 5 / tau)
    # speed: weighted sampling without replacement by exponential keys (same distribution);
    # "multinomial" is torch.multinomial as in the official code
    sampler: str = "exponential_keys"

    def __post_init__(self) -> None:
        positive = ("it_matches", "it_ransac", "th_inlier", "th_soft_inlier", "soft_beta")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f"solver.{name} must be > 0, got {getattr(self, name)}")
        if self.min_set_size < 3:
            raise ConfigError(f"solver.min_set_size must be >= 3, got {self.min_set_size}")
        if self.num_samples < self.min_set_size:
            raise ConfigError(
                f"solver.num_samples ({self.num_samples}) must be >= solver.min_set_size "
                f"({self.min_set_size})"
            )
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"solver.sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        if self.num_refinements < 0:
            raise ConfigError(f"solver.num_refinements must be >= 0, got {self.num_refinements}")


@dataclass
class PoseSolution:
    """Output of :func:`solve_pose` for a batch of B pairs.

    Attributes:
        R: (B, 3, 3) R_query_ref; identity where invalid.
        t: (B, 3) t_query_ref in metres; zeros where invalid.
        confidence: (B,) soft-inlier count at ``th_inlier`` of the final pose over the winning
            draw's samples, in [0, num_samples] (the Map-free confidence); 0 where invalid.
        num_inliers: (B,) int64, hard inliers (residual <= th_inlier) of the final pose there.
        valid: (B,) bool.
        reasons: per pair, None if valid, else why not.
        inliers_ref: per pair, (K,) int64 indices into N0 of the final inlier correspondences.
        inliers_query: per pair, (K,) int64 indices into N1 (same order as ``inliers_ref``).
        num_samples: correspondences per draw (the confidence's upper bound).
    """

    R: Tensor
    t: Tensor
    confidence: Tensor
    num_inliers: Tensor
    valid: Tensor
    reasons: list[str | None]
    inliers_ref: list[Tensor]
    inliers_query: list[Tensor]
    num_samples: int


def residuals(R: Tensor, t: Tensor, X_ref: Tensor, X_query: Tensor) -> Tensor:
    """Alignment residuals ``sqrt(||R X_ref + t - X_query||^2 + 1e-6)`` (metres).

    Args:
        R: (..., 3, 3) R_query_ref.
        t: (..., 3) t_query_ref.
        X_ref: (..., S, 3) reference points; leading dims broadcast against R's.
        X_query: (..., S, 3) query points.

    Returns:
        (..., S) residuals; the 1e-6 (as in the reference) keeps the gradient finite at 0.
    """
    diff = X_ref @ R.transpose(-1, -2) + t.unsqueeze(-2) - X_query
    return torch.sqrt(diff.square().sum(dim=-1) + 1e-6)


def soft_inlier_count(res: Tensor, threshold: float, beta_scale: float = 5.0) -> Tensor:
    """Differentiable inlier count over the last dim, (..., S) -> (...,).

    ``sum_k sigmoid(beta (threshold - r_k))`` with ``beta = beta_scale / threshold``.
    """
    beta = beta_scale / threshold
    return torch.sigmoid(beta * (threshold - res)).sum(dim=-1)


def refine_with_inliers(
    R: Tensor,
    t: Tensor,
    X_ref: Tensor,
    X_query: Tensor,
    threshold: float,
    num_rounds: int,
    min_inliers: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """The reference's inlier refinement: refit with mask-weighted Kabsch while inliers grow.

    ``best`` starts at ``min_inliers``. Each round takes the hard inliers ``I`` (r <= threshold)
    of the current pose; where ``|I| >= min_inliers`` and ``|I| > best`` it sets ``best = |I|``
    and refits on ``I``; elsewhere that element stops for good. The loop ends after
    ``num_rounds`` or when nothing improved.

    Args:
        R: (..., 3, 3) initial R_query_ref.
        t: (..., 3) initial t_query_ref.
        X_ref: (..., S, 3) reference points; leading dims broadcast against R's.
        X_query: (..., S, 3) query points.
        threshold: inlier threshold, metres.
        num_rounds: maximum refits.
        min_inliers: the starting ``best`` (the minimal set size).

    Returns:
        R (..., 3, 3), t (..., 3) and the (..., S) bool mask the returned pose was fitted on (all
        False where no round was accepted, i.e. where the input pose is returned). Refitting with
        ``kabsch(X_ref, X_query, mask.float())`` reproduces the pose with gradients.
    """
    lead = R.shape[:-2]
    X_ref = X_ref.expand(*lead, *X_ref.shape[-2:])
    X_query = X_query.expand(*lead, *X_query.shape[-2:])
    best = torch.full(lead, min_inliers, dtype=torch.long, device=R.device)
    active = torch.ones(lead, dtype=torch.bool, device=R.device)
    fit_mask = torch.zeros(X_ref.shape[:-1], dtype=torch.bool, device=R.device)
    for _ in range(num_rounds):
        inliers = residuals(R, t, X_ref, X_query) <= threshold
        count = inliers.sum(dim=-1)
        active = active & (count >= min_inliers) & (count > best)
        if not bool(active.any()):
            break
        R_fit, t_fit = kabsch(X_ref, X_query, inliers.to(X_ref.dtype))
        R = torch.where(active[..., None, None], R_fit, R)
        t = torch.where(active[..., None], t_fit, t)
        best = torch.where(active, count, best)
        fit_mask = torch.where(active[..., None], inliers, fit_mask)
    return R, t, fit_mask


def probability_problems(
    P: Tensor, X_ref: Tensor, X_query: Tensor, num_samples: int
) -> tuple[Tensor, list[str | None]]:
    """Find the pairs the solver cannot run on, and the usable part of P.

    A correspondence is usable when its P entry is finite and > 0 and both 3D points are finite.
    A pair is unusable if P holds NaN/Inf or negative entries, or fewer than ``num_samples``
    correspondences are usable (each draw samples that many distinct ones).

    Args:
        P: (B, N0, N1) correspondence probabilities.
        X_ref: (B, N0, 3) reference 3D points.
        X_query: (B, N1, 3) query 3D points.
        num_samples: correspondences per draw.

    Returns:
        P with unusable entries set to 0 (B, N0, N1), and per pair None or the reason.
    """
    finite_ref = torch.isfinite(X_ref).all(dim=-1)  # (B, N0)
    finite_query = torch.isfinite(X_query).all(dim=-1)  # (B, N1)
    finite_P = torch.isfinite(P)
    usable = finite_P & (P > 0) & finite_ref[:, :, None] & finite_query[:, None, :]
    stats = torch.stack(
        [
            P[0].numel() - finite_P.flatten(1).sum(1),
            (P < 0).flatten(1).sum(1),
            usable.flatten(1).sum(1),
            (~finite_ref).sum(1),
            (~finite_query).sum(1),
        ],
        dim=1,
    ).tolist()
    reasons = [_pair_reason(*row, num_samples) for row in stats]
    return torch.where(usable, P, 0.0), reasons


def _pair_reason(
    non_finite: int, negative: int, count: int, bad_ref: int, bad_query: int, num_samples: int
) -> str | None:
    if non_finite:
        return f"P has {non_finite} NaN/Inf entries; correspondence probabilities must be finite"
    if negative:
        return f"P has {negative} negative entries; correspondence probabilities must be >= 0"
    if count >= num_samples:
        return None
    if bad_ref or bad_query:
        return (
            f"only {count} correspondences have non-zero probability and finite 3D points "
            f"({bad_ref} reference and {bad_query} query points are NaN/Inf); {num_samples} are "
            "sampled per draw - check the depths and intrinsics"
        )
    return (
        f"only {count} correspondences have non-zero probability; {num_samples} are sampled per "
        "draw - use a larger input image or lower solver.num_samples"
    )


def _gather_points(X: Tensor, idx: Tensor) -> Tensor:
    """X (B, N, 3), idx (B, ...) int64 into N -> (B, ..., 3)."""
    batch = torch.arange(X.shape[0], device=X.device).view(-1, *[1] * (idx.ndim - 1))
    return X[batch, idx]


def _hypothesis_scores(
    R: Tensor, t: Tensor, X_ref: Tensor, X_query: Tensor, threshold: float, beta_scale: float
) -> Tensor:
    """Soft-inlier scores of every hypothesis of a draw on that draw's samples, no autograd.

    Equal to ``soft_inlier_count(residuals(R, t, X_ref[:, :, None], X_query[:, :, None]))`` but
    all H rotations are applied in one matmul and in place, in chunks of draws.

    Args:
        R: (B, M, H, 3, 3) hypotheses.
        t: (B, M, H, 3).
        X_ref: (B, M, S, 3) each draw's reference points.
        X_query: (B, M, S, 3) each draw's query points.
        threshold: soft-inlier threshold, metres.
        beta_scale: beta = beta_scale / threshold.

    Returns:
        (B, M, H) scores.
    """
    B, M, H = R.shape[:3]
    S = X_ref.shape[2]
    R_cols = R.permute(0, 1, 4, 2, 3).reshape(B * M, 3, H * 3)  # R_cols[j, 3h + i] = R_h[i, j]
    t, X_ref, X_query = t.flatten(0, 1), X_ref.flatten(0, 1), X_query.flatten(0, 1)
    beta = beta_scale / threshold
    chunk = max(1, _SCORE_BUDGET // (S * H * 3))
    scores = []
    for d in range(0, B * M, chunk):  # chunks of draws bound the (draws, S, H, 3) temporary
        sl = slice(d, d + chunk)
        diff = (X_ref[sl] @ R_cols[sl]).view(-1, S, H, 3)
        diff.add_(t[sl].unsqueeze(1)).sub_(X_query[sl].unsqueeze(2))
        res = diff.square_().sum(dim=-1).add_(1e-6).sqrt_()  # (draws, S, H)
        scores.append(res.neg_().add_(threshold).mul_(beta).sigmoid_().sum(dim=1))
    return torch.cat(scores).view(B, M, H)


class _Winner(NamedTuple):
    """Best hypothesis per pair and its draw."""

    R: Tensor  # (B, 3, 3)
    t: Tensor  # (B, 3)
    score: Tensor  # (B,), -inf where every hypothesis was degenerate
    idx_ref: Tensor  # (B, S) the winning draw's correspondences
    idx_query: Tensor  # (B, S)
    X_ref: Tensor  # (B, S, 3) their points
    X_query: Tensor  # (B, S, 3)


def _best_hypothesis(
    P: Tensor,
    X_ref: Tensor,
    X_query: Tensor,
    config: SolverConfig,
    generator: torch.Generator | None,
) -> _Winner:
    """Sample, fit and score all ``it_matches x it_ransac`` hypotheses; return the winner."""
    B, M, H = P.shape[0], config.it_matches, config.it_ransac
    idx_ref, idx_query, weights = sample_correspondences(
        P, M, config.num_samples, generator, config.sampler
    )
    Xr = _gather_points(X_ref, idx_ref)  # (B, M, S, 3)
    Xq = _gather_points(X_query, idx_query)
    sets = sample_minimal_sets(weights, H, config.min_set_size, generator, config.sampler)
    sets = sets.view(B * M, -1)
    Xr_sets = _gather_points(Xr.flatten(0, 1), sets).view(B, M, H, -1, 3)
    Xq_sets = _gather_points(Xq.flatten(0, 1), sets).view(B, M, H, -1, 3)
    R_h, t_h, sv = kabsch_with_singular_values(Xr_sets, Xq_sets)
    scores = _hypothesis_scores(R_h, t_h, Xr, Xq, config.th_soft_inlier, config.soft_beta)
    scores = torch.where(is_degenerate(sv) | ~torch.isfinite(scores), -torch.inf, scores)
    best_score, best = scores.flatten(1).max(dim=1)  # draw-major; ties -> first
    batch, draw = torch.arange(B, device=P.device), torch.div(best, H, rounding_mode="floor")
    return _Winner(
        R_h.flatten(1, 2)[batch, best],
        t_h.flatten(1, 2)[batch, best],
        best_score,
        *(x[batch, draw] for x in (idx_ref, idx_query, Xr, Xq)),
    )


@torch.no_grad()
def solve_pose(
    P: Tensor,
    X_ref: Tensor,
    X_query: Tensor,
    config: SolverConfig = SolverConfig(),  # noqa: B008 - frozen, so a shared default is safe
    generator: torch.Generator | None = None,
) -> PoseSolution:
    """Metric relative pose from correspondence probabilities and 3D keypoints (MicKey §7).

    Never raises for bad data: a pair whose P is unusable, whose hypotheses are all degenerate or
    whose final pose is not finite is returned invalid with a reason; the other pairs are
    unaffected. Runs in float32 (float64 inputs stay float64) on the inputs' device, without
    autograd. The same ``generator`` state gives a bit-identical result on the same device and
    batch (P is sampled with ``torch.multinomial``, so pair results depend on the batch order).

    Args:
        P: (B, N0, N1) correspondence probabilities >= 0 (need not be normalised).
        X_ref: (B, N0, 3) back-projected reference keypoints, metres.
        X_query: (B, N1, 3) back-projected query keypoints, metres.
        config: solver settings (official defaults).
        generator: torch.Generator on P's device; None uses the global RNG.

    Returns:
        A :class:`PoseSolution` with ``R, t = T_query_ref``.

    Raises:
        ValueError: on wrong shapes (a programming error, not a data problem).
    """
    dims = check_shape(P, "B N0 N1", "P")
    check_shape(X_ref, "B N0 3", "X_ref", dims)
    check_shape(X_query, "B N1 3", "X_query", dims)
    dtype = torch.promote_types(X_ref.dtype, torch.float32)
    P, X_ref, X_query = P.to(dtype), X_ref.to(dtype), X_query.to(dtype)
    P, reasons = probability_problems(P, X_ref, X_query, config.num_samples)
    out = _invalid_outputs(P.shape[0], dtype, P.device)
    ok = torch.tensor([r is None for r in reasons], device=P.device).nonzero()[:, 0]
    if len(ok):
        # unusable points have P = 0 now and are never sampled; zero them so no NaN can leak
        X_ref, X_query = torch.nan_to_num(X_ref), torch.nan_to_num(X_query)
        if len(ok) < len(reasons):
            P, X_ref, X_query = P[ok], X_ref[ok], X_query[ok]
        winner = _best_hypothesis(P, X_ref, X_query, config, generator)
        _store_solutions(out, reasons, ok, winner, config)
    return PoseSolution(**out, reasons=reasons, num_samples=config.num_samples)


def _store_solutions(
    out: dict, reasons: list[str | None], ok: Tensor, winner: _Winner, config: SolverConfig
) -> None:
    """Refine the winners of the pairs ``ok`` and write them and their reasons into ``out``."""
    Xr, Xq = winner.X_ref, winner.X_query
    R, t, _ = refine_with_inliers(
        winner.R, winner.t, Xr, Xq, config.th_inlier, config.num_refinements, config.min_set_size
    )
    res = residuals(R, t, Xr, Xq)  # (b, S)
    inliers = res <= config.th_inlier
    degenerate = ~torch.isfinite(winner.score)
    finite = torch.isfinite(R).flatten(1).all(1) & torch.isfinite(t).all(1)
    good = ~degenerate & finite
    b = ok[good]
    out["R"][b], out["t"][b], out["valid"][b] = R[good], t[good], True
    out["confidence"][b] = soft_inlier_count(res[good], config.th_inlier, config.soft_beta)
    out["num_inliers"][b] = inliers[good].sum(1)
    for k, pair in enumerate(ok.tolist()):  # per-pair lists only; the maths is batched
        reasons[pair] = _solution_reason(bool(degenerate[k]), bool(finite[k]), config)
        if reasons[pair] is None:
            out["inliers_ref"][pair] = winner.idx_ref[k][inliers[k]]
            out["inliers_query"][pair] = winner.idx_query[k][inliers[k]]


def _solution_reason(degenerate: bool, finite: bool, config: SolverConfig) -> str | None:
    if degenerate:
        return (
            f"all {config.it_matches * config.it_ransac} minimal-set hypotheses were degenerate "
            "(colinear or repeated 3D points)"
        )
    if not finite:
        return "the refined pose is not finite (NaN/Inf); check the 3D points"
    return None


def _invalid_outputs(B: int, dtype: torch.dtype, device: torch.device) -> dict:
    empty = torch.zeros(0, dtype=torch.long, device=device)
    return {
        "R": torch.eye(3, dtype=dtype, device=device).repeat(B, 1, 1),
        "t": torch.zeros(B, 3, dtype=dtype, device=device),
        "confidence": torch.zeros(B, dtype=dtype, device=device),
        "num_inliers": torch.zeros(B, dtype=torch.long, device=device),
        "valid": torch.zeros(B, dtype=torch.bool, device=device),
        "inliers_ref": [empty] * B,
        "inliers_query": [empty] * B,
    }
