"""Weighted Kabsch (orthogonal Procrustes) alignment of 3D-3D correspondences, batched torch.

This is the pose fit inside MicKey's RANSAC (reference mickey.md section 7): unweighted on minimal
sets, weighted with a 0/1 inlier mask during refinement, and differentiated through during
training (section 8.3).

Convention:
    ``X_query ~ R_query_ref @ X_ref + t_query_ref`` (metres), i.e. ``T_query_ref``: the same
    direction as MicKey's output and ``mickey_ros.geometry.pose``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mickey_ros.utils.checks import check_shape

# Added to the weight sum, as in the reference, so that all-zero weights give zeros, not NaN.
_WEIGHT_EPS = 1e-16


def _check_points(X_ref: Tensor, X_query: Tensor, weights: Tensor | None) -> None:
    if X_ref.ndim < 2 or X_ref.shape[-1] != 3:
        raise ValueError(f"X_ref must have shape (..., N, 3), got {tuple(X_ref.shape)}")
    if X_query.shape != X_ref.shape:
        raise ValueError(
            f"X_query must have the shape of X_ref {tuple(X_ref.shape)}, got {tuple(X_query.shape)}"
        )
    if weights is not None and weights.shape != X_ref.shape[:-1]:
        raise ValueError(
            f"weights must have shape {tuple(X_ref.shape[:-1])} (X_ref without its last dim), "
            f"got {tuple(weights.shape)}"
        )


def _cross_covariance(
    X_ref: Tensor, X_query: Tensor, weights: Tensor | None
) -> tuple[Tensor, Tensor, Tensor]:
    """Centroids (..., 3) of both sets and the 3x3 cross-covariance (..., 3, 3)."""
    if weights is None:
        mu_ref, mu_query = X_ref.mean(dim=-2), X_query.mean(dim=-2)
        A, B = X_ref - mu_ref.unsqueeze(-2), X_query - mu_query.unsqueeze(-2)
        return mu_ref, mu_query, A.transpose(-1, -2) @ B
    # The reference normalises by sum|w| for the centroids but uses the raw weights in H; the
    # scale of H does not change R.
    w_hat = weights / (weights.abs().sum(dim=-1, keepdim=True) + _WEIGHT_EPS)
    mu_ref = (w_hat.unsqueeze(-1) * X_ref).sum(dim=-2)
    mu_query = (w_hat.unsqueeze(-1) * X_query).sum(dim=-2)
    A, B = X_ref - mu_ref.unsqueeze(-2), X_query - mu_query.unsqueeze(-2)
    return mu_ref, mu_query, (A * weights.unsqueeze(-1)).transpose(-1, -2) @ B


def kabsch_with_singular_values(
    X_ref: Tensor, X_query: Tensor, weights: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Like :func:`kabsch`, also returning the singular values of the cross-covariance.

    The singular values tell whether the fit is determined: see :func:`is_degenerate`.

    Args:
        X_ref: (..., N, 3) points in the reference camera frame, metres.
        X_query: (..., N, 3) corresponding points in the query camera frame.
        weights: (..., N) non-negative weights; None means uniform.

    Returns:
        R_query_ref (..., 3, 3), t_query_ref (..., 3) and singular values (..., 3), descending.
    """
    _check_points(X_ref, X_query, weights)
    mu_ref, mu_query, H = _cross_covariance(X_ref, X_query, weights)
    U, S, Vh = torch.linalg.svd(H)
    V = Vh.transpose(-1, -2)
    # Reflection fix: flip the axis of the smallest singular value when det(V U^T) = -1.
    det = torch.linalg.det(V @ U.transpose(-1, -2))
    sign = torch.where(det < 0, -torch.ones_like(det), torch.ones_like(det))
    ones = torch.ones_like(sign)
    D = torch.stack([ones, ones, sign], dim=-1)  # (..., 3), the diagonal of D
    R = (V * D.unsqueeze(-2)) @ U.transpose(-1, -2)
    t = mu_query - (R @ mu_ref.unsqueeze(-1)).squeeze(-1)
    return R, t, S


def kabsch(X_ref: Tensor, X_query: Tensor, weights: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Weighted rigid alignment ``X_query ~ R @ X_ref + t`` (no scale), least squares.

    With weights this is the reference's "mask" mode: ``w_hat = w / (sum|w| + 1e-16)`` gives the
    centroids, ``H = (X_ref - mu_ref)^T diag(w) (X_query - mu_query)``, ``H = U S V^T``,
    ``R = V diag(1, 1, sign det(V U^T)) U^T``, ``t = mu_query - R mu_ref``. Differentiable
    (through ``torch.linalg.svd``; gradients blow up when two singular values coincide, e.g. for
    near-degenerate minimal sets, which is why training skips non-finite gradients).

    Args:
        X_ref: (..., N, 3) points in the reference camera frame, metres.
        X_query: (..., N, 3) corresponding points in the query camera frame.
        weights: (..., N) non-negative weights (e.g. a 0/1 inlier mask); None means uniform.

    Returns:
        R_query_ref (..., 3, 3) with det = +1, t_query_ref (..., 3) in metres.

    Raises:
        ValueError: on mismatched shapes.

    Convention:
        ``T_query_ref`` as everywhere in mickey_ros (reference = world in Map-free terms).

    >>> X_ref = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    >>> R, t = kabsch(X_ref, X_ref + torch.tensor([0.0, 0.0, 2.0]))
    >>> torch.allclose(R, torch.eye(3), atol=1e-6), t.round(decimals=4).abs()
    (True, tensor([0., 0., 2.]))
    """
    R, t, _ = kabsch_with_singular_values(X_ref, X_query, weights)
    return R, t


def is_degenerate(singular_values: Tensor) -> Tensor:
    """Whether a Kabsch fit is undetermined: cross-covariance rank below 2, or non-finite.

    Rank 2 (three non-colinear points) fixes the rotation; rank <= 1 (colinear or repeated points)
    leaves a free rotation about the line. The rank uses ``torch.linalg.matrix_rank``'s default
    tolerance, ``sigma_max * 3 * eps(dtype)``, matching the reference's loop solver check.

    Args:
        singular_values: (..., 3) descending, from :func:`kabsch_with_singular_values`.

    Returns:
        (...,) bool.

    >>> is_degenerate(torch.tensor([[2.0, 1.0, 0.0], [2.0, 0.0, 0.0]]))
    tensor([False,  True])
    """
    check_shape(singular_values, "* " * (singular_values.ndim - 1) + "3", "singular_values")
    tol = singular_values[..., :1] * 3 * torch.finfo(singular_values.dtype).eps
    rank = (singular_values > tol).sum(dim=-1)
    return (rank < 2) | ~torch.isfinite(singular_values).all(dim=-1)
