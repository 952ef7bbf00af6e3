"""A global image descriptor pooled from MicKey's own per-cell descriptors (no extra network).

The keypoint scores weight each cell's L2-normalised descriptor (MicKey's detector already says
which cells are worth matching); the pooled vector is the whole image plus a 2 x 2 grid of its
quarters (coarse layout: the same furniture on the left or the right of the view), each part
power-normalised (signed square root, against bursts of repeated texture) and the result
L2-normalised, so similarity is a dot product in [-1, 1].
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

GRID = 2  # quarters per side of the spatial pooling


def _pool(desc: Tensor, weights: Tensor) -> Tensor:
    """Weighted mean of ``desc`` (h, w, D) with ``weights`` (h, w) -> (D,), power-normalised."""
    w = weights.clamp_min(0).unsqueeze(-1)
    v = (desc * w).sum((0, 1)) / w.sum().clamp_min(1e-12)
    v = v.sign() * v.abs().sqrt()
    return v / v.norm().clamp_min(1e-12)


def pooled_descriptor(descriptors: Tensor, scores: Tensor, grid_hw: tuple[int, int]) -> np.ndarray:
    """Global descriptor of one image.

    Args:
        descriptors: (N, D) per-cell descriptors, N = h * w, row-major.
        scores: (N,) keypoint probabilities (weights).
        grid_hw: (h, w).

    Returns:
        (D * (1 + GRID**2),) float32, unit L2 norm.
    """
    h, w = grid_hw
    desc = descriptors.float().reshape(h, w, -1)
    weights = scores.float().reshape(h, w) + 1e-6  # a zero-score image still pools something
    parts = [_pool(desc, weights)]
    rows = np.array_split(np.arange(h), GRID)
    cols = np.array_split(np.arange(w), GRID)
    for r in rows:
        for c in cols:
            block = desc[r[0] : r[-1] + 1, c[0] : c[-1] + 1]
            parts.append(_pool(block, weights[r[0] : r[-1] + 1, c[0] : c[-1] + 1]))
    v = torch.cat(parts)
    return (v / v.norm().clamp_min(1e-12)).cpu().numpy().astype(np.float32)


def rank_by_similarity(query: np.ndarray, library: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Library rows by decreasing similarity to ``query``.

    Args:
        query: (G,) global descriptor.
        library: (M, G) global descriptors of the keyframes.

    Returns:
        order (M,) int indices, similarity (M,) in that order.
    """
    if len(library) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    sim = library @ query
    order = np.argsort(-sim, kind="stable")
    return order, sim[order]
