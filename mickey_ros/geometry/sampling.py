"""Correspondence and minimal-set sampling for the probabilistic RANSAC (and training).

Both samplers (correspondences and minimal sets) draw without replacement with probability
proportional to their weights, using the caller's generator, so a seed fixes the result. The
method is a parameter: ``"exponential_keys"`` (the default, the speed path: Efraimidis-Spirakis,
the top-k of ``log(u) / p``) or ``"multinomial"`` (``torch.multinomial``, the reference path the
official code uses); both draw from the same distribution (a test compares their inclusion
frequencies), but not the same indices for a seed. Memory stays bounded by sampling in chunks of
draws.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mickey_ros.utils.checks import check_shape

# Rows x categories per sampler call: the temporaries (random keys and topk buffers) take about
# 20 bytes per element, so this bounds them to about 80 MiB.
_MULTINOMIAL_BUDGET = 1 << 22
# "exponential_keys" (default, the speed path) draws the same distribution as "multinomial"
# (torch.multinomial without replacement, the reference path) 2-3x faster on CPU.
SAMPLERS = ("exponential_keys", "multinomial")


def _exponential_keys_top_k(probs: Tensor, k: int, generator: torch.Generator | None) -> Tensor:
    """K distinct indices per row, sampled without replacement with probability ∝ ``probs``.

    Efraimidis-Spirakis: the k largest keys log(u)/p, u ~ U(0, 1), are a weighted sample without
    replacement (the same law torch.multinomial implements); zero weights get key -inf.
    """
    u = torch.rand(probs.shape, generator=generator, device=probs.device, dtype=probs.dtype)
    keys = u.clamp_min_(torch.finfo(probs.dtype).tiny).log_().div_(probs)
    return keys.topk(k, dim=-1, sorted=False).indices


def _multinomial_rows(
    probs: Tensor,
    num_draws: int,
    num_samples: int,
    generator: torch.Generator | None,
    method: str = "exponential_keys",
) -> Tensor:
    """(B, n) -> (B, num_draws, num_samples): each row sampled num_draws times, no replacement.

    Draws are sampled in chunks so that the sampler's (draws, n) temporaries stay bounded.
    """
    if method not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {method!r}")
    B, n = probs.shape
    chunk = max(1, _MULTINOMIAL_BUDGET // n)
    rows = torch.arange(B * num_draws, device=probs.device) // num_draws  # pair of each draw
    out = []
    for s in range(0, B * num_draws, chunk):
        block = probs[rows[s : s + chunk]]
        if method == "multinomial":
            out.append(torch.multinomial(block, num_samples, False, generator=generator))
        else:
            out.append(_exponential_keys_top_k(block, num_samples, generator))
    return torch.cat(out).view(B, num_draws, num_samples)


def _sampling_weights(w: Tensor, min_positive: int) -> Tensor:
    """Detached copy of ``w`` (..., n) fit for torch.multinomial, scaled to max 1 per row.

    NaN/Inf/negative entries become 0; rows with fewer than ``min_positive`` positive entries
    become uniform (the caller reports those rows as invalid).
    """
    w = torch.where(torch.isfinite(w) & (w > 0), w.detach(), 0.0)
    starved = (w > 0).sum(dim=-1, keepdim=True) < min_positive
    w.masked_fill_(starved, 1.0)
    # sampling is scale-invariant; scaling avoids underflow of tiny probabilities
    return w.div_(w.amax(dim=-1, keepdim=True))


def sample_correspondences(
    P: Tensor,
    num_draws: int,
    num_samples: int,
    generator: torch.Generator | None = None,
    method: str = "exponential_keys",
) -> tuple[Tensor, Tensor, Tensor]:
    """Draw ``num_draws`` sets of ``num_samples`` distinct correspondences per pair, prob ∝ P.

    Without replacement over the flattened ``N0 * N1`` matrix, by ``method``. Rows and
    columns that are zero in every pair of the batch are dropped first (an exact shortcut: they
    can never be drawn), which halves the work at 720x540 where border keypoints have p = 0.

    Args:
        P: (B, N0, N1) non-negative correspondence probabilities (need not sum to 1).
        num_draws: M, independent draws per pair.
        num_samples: S, correspondences per draw (without replacement).
        generator: torch.Generator on P's device; None uses the global RNG.
        method: one of ``SAMPLERS`` (same distribution; "multinomial" is the reference path).

    Returns:
        idx_ref (B, M, S) int64 into N0, idx_query (B, M, S) int64 into N1, and the sampled
        ``P[idx_ref, idx_query]`` (B, M, S) (differentiable w.r.t. P). A pair with fewer than S
        positive finite entries is sampled uniformly instead; check it with
        :func:`probability_problems` first.

    Raises:
        ValueError: on a wrong shape or if ``num_samples > N0 * N1``.
    """
    dims = check_shape(P, "B N0 N1", "P")
    B, N0, N1 = dims["B"], dims["N0"], dims["N1"]
    if num_samples > N0 * N1:
        raise ValueError(f"num_samples={num_samples} exceeds the {N0}x{N1} correspondences in P")
    probs = _sampling_weights(P.flatten(1), num_samples).view(B, N0, N1)
    rows = (probs.amax(dim=(0, 2)) > 0).nonzero()[:, 0]
    cols = (probs.amax(dim=(0, 1)) > 0).nonzero()[:, 0]
    if len(rows) < N0 or len(cols) < N1:
        probs = probs.index_select(1, rows).index_select(2, cols)  # (B, n0, n1)
    flat_idx = _multinomial_rows(probs.flatten(1), num_draws, num_samples, generator, method)
    idx_ref = rows[torch.div(flat_idx, len(cols), rounding_mode="floor")]
    idx_query = cols[flat_idx % len(cols)]
    weights = P.flatten(1).gather(1, (idx_ref * N1 + idx_query).flatten(1))
    return idx_ref, idx_query, weights.view(B, num_draws, num_samples)


def sample_minimal_sets(
    weights: Tensor,
    num_hypotheses: int,
    set_size: int,
    generator: torch.Generator | None = None,
    method: str = "exponential_keys",
) -> Tensor:
    """Draw ``num_hypotheses`` minimal sets of distinct samples per draw, prob ∝ ``weights``.

    Args:
        weights: (B, M, S) non-negative weights of each draw's samples.
        num_hypotheses: H, minimal sets per draw.
        set_size: k, samples per set (without replacement within a set).
        generator: torch.Generator on the weights' device; None uses the global RNG.
        method: one of ``SAMPLERS``.

    Returns:
        (B, M, H, k) int64 indices into S. Draws with fewer than k positive finite weights are
        sampled uniformly.

    Raises:
        ValueError: on a wrong shape or if ``set_size > S``.
    """
    dims = check_shape(weights, "B M S", "weights")
    B, M, S = dims["B"], dims["M"], dims["S"]
    if set_size > S:
        raise ValueError(f"set_size={set_size} exceeds the S={S} samples per draw")
    w = _sampling_weights(weights, set_size).view(B * M, S)
    sets = _multinomial_rows(w, num_hypotheses, set_size, generator, method)
    return sets.view(B, M, num_hypotheses, set_size)
