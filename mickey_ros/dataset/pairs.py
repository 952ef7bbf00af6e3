"""Co-visibility of frame pairs and the time-block splits of a converted dataset.

Overlap, the same quantity whatever the source, so ``data.min_overlap/max_overlap`` of a
fine-tune config mean one thing: the smaller of the two directional fractions of a view's sampled
pixels that land inside the other view, in front of it,

* ``depth``: with the bag's depth, each pixel at its measured depth, counted only where the other
  view's depth agrees within ``depth_tolerance`` (occlusion), as Map-free's co-visibility;
* ``prior``: without depth, each pixel on a fronto-parallel plane ``prior_depth_m`` away.

Only candidate pairs are scored: centres at most ``max_baseline_m`` apart and viewing directions
at most ``max_angle_deg`` apart.

Convention:
    ``T_fixed_camera`` (F, 4, 4) camera poses in the fixed frame; ``T_b_a = inv(T_b) @ T_a``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mickey_ros.dataset.config import DatasetConfig
from mickey_ros.dataset.frames import FrameRecord
from mickey_ros.synth.overlap import stride_for

SOURCES = ("depth", "prior")


@dataclass
class PairTable:
    """Scored pairs of one frame list (indices into it, a < b)."""

    a: np.ndarray  # (M,) int
    b: np.ndarray  # (M,) int
    overlap: np.ndarray  # (M,) float in [0, 1]
    source: np.ndarray  # (M,) int index into SOURCES
    baseline_m: np.ndarray  # (M,)
    angle_deg: np.ndarray  # (M,)

    def select(self, keep: np.ndarray) -> PairTable:
        """The rows where ``keep`` (M,) is True."""
        return PairTable(*(getattr(self, f)[keep] for f in self.__dataclass_fields__))

    def lookup(self) -> dict[tuple[int, int], float]:
        """{(a, b): overlap} both ways."""
        out = {}
        for a, b, o in zip(self.a.tolist(), self.b.tolist(), self.overlap.tolist()):
            out[a, b] = out[b, a] = o
        return out


def candidate_mask(T: np.ndarray, max_baseline_m: float, max_angle_deg: float) -> np.ndarray:
    """(F, F) symmetric bool: pairs (not self) within the baseline and viewing-angle limits.

    Args:
        T: (F, 4, 4) camera poses in the fixed frame.
    """
    centres, forward = T[:, :3, 3], T[:, :3, 2]
    centres = centres - centres.mean(axis=0)  # |a|^2 + |b|^2 - 2ab: (F, F), not (F, F, 3)
    sq = np.sum(centres**2, axis=1)
    dist_sq = sq[:, None] + sq[None] - 2.0 * centres @ centres.T
    cos = np.clip(forward @ forward.T, -1.0, 1.0)
    ok = (dist_sq <= max_baseline_m**2) & (cos >= np.cos(np.radians(max_angle_deg)))
    np.fill_diagonal(ok, False)
    return ok


def _points(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(3, N) camera-frame points of the pixels of ``depth`` (h, w) that have a depth."""
    v, u = np.nonzero(depth > 0)
    z = depth[v, u].astype(np.float64)
    return np.linalg.solve(K, np.stack([u, v, np.ones_like(z)])) * z


def _prior_grid(frame: FrameRecord, cfg: DatasetConfig) -> tuple[np.ndarray, np.ndarray]:
    """A constant ``prior_depth_m`` map on a coarse pixel grid and its (3, 3) K."""
    stride = stride_for(frame.size_wh, max(cfg.overlap_points // 4, 1))
    W, H = frame.size_wh
    depth = np.full((-(-H // stride), -(-W // stride)), cfg.prior_depth_m, np.float32)
    K = frame.K.copy()
    K[:2] /= stride
    return depth, K


def _seen_fraction(
    X_a: np.ndarray, T_b_a: np.ndarray, depth_b: np.ndarray, K_b: np.ndarray, rel_tol: float
) -> np.ndarray:
    """(C,) fraction of a's points inside each of C views b where b's own depth agrees within
    ``rel_tol`` (inf: inside and in front is enough).

    Args:
        X_a: (3, N) points in camera a. T_b_a: (C, 4, 4). depth_b: (C, h, w) metres, 0 = none.
        K_b: (C, 3, 3) intrinsics of the depth grids.
    """
    if X_a.shape[1] == 0:
        return np.zeros(len(T_b_a))
    X_b = T_b_a[:, :3, :3] @ X_a + T_b_a[:, :3, 3:4]  # (C, 3, N)
    z = X_b[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = np.einsum("cij,cjn->cin", K_b[:, :2], X_b) / z[:, None]
    C, H, W = depth_b.shape
    u, v = np.round(uv[:, 0]), np.round(uv[:, 1])
    inside = (z > 1e-6) & (u >= 0) & (u < W) & (v >= 0) & (v < H)  # (C, N)
    if np.isinf(rel_tol):
        return inside.mean(axis=1)
    c = np.broadcast_to(np.arange(C)[:, None], z.shape)
    seen = np.zeros_like(z)
    seen[inside] = depth_b[c[inside], v[inside].astype(int), u[inside].astype(int)]
    return ((seen > 0) & (np.abs(z - seen) <= rel_tol * seen)).mean(axis=1)


def score_pairs(frames: list[FrameRecord], cfg: DatasetConfig) -> PairTable:
    """Overlap (``depth`` when both frames have depth, else ``prior``) of every candidate pair."""
    if len(frames) < 2:
        empty = np.zeros(0)
        return PairTable(empty.astype(int), empty.astype(int), empty, empty.astype(int), empty,
                         empty)
    T = np.stack([f.T_fixed_camera for f in frames])
    ok = candidate_mask(T, cfg.max_baseline_m, cfg.max_angle_deg)
    has_depth = np.array([f.depth_small is not None for f in frames])
    if len({f.size_wh for f in frames}) > 1:
        raise ValueError("score_pairs needs frames of one image size (one camera)")
    prior = [_prior_grid(f, cfg) for f in frames]
    views = {"depth": [(f.depth_small, f.K_small) for f in frames], "prior": prior}
    stacked = {"prior": (np.stack([d for d, _ in prior]), np.stack([K for _, K in prior]))}
    if has_depth.all():
        stacked["depth"] = (np.stack([f.depth_small for f in frames]),
                            np.stack([f.K_small for f in frames]))
    T_inv = np.linalg.inv(T)
    directional = np.zeros(ok.shape, np.float32)  # [a, b]: fraction of a that b sees
    for a in range(len(frames)):
        others = np.flatnonzero(ok[a])
        for source, tol in (("depth", cfg.depth_tolerance), ("prior", np.inf)):
            use = has_depth[others] & has_depth[a] if source == "depth" else \
                ~(has_depth[others] & has_depth[a])
            sel = others[use]
            if len(sel):
                if source not in stacked:  # some frames without depth: stack what is needed
                    depth_b = np.stack([views[source][b][0] for b in sel])
                    K_b = np.stack([views[source][b][1] for b in sel])
                else:
                    depth_b, K_b = stacked[source][0][sel], stacked[source][1][sel]
                X_a = _points(*views[source][a])
                fractions = _seen_fraction(X_a, T_inv[sel] @ T[a], depth_b, K_b, tol)
                directional[a, sel] = fractions
    a, b = np.nonzero(np.triu(ok, k=1))
    overlap = np.minimum(directional[a, b], directional[b, a]).astype(np.float64)
    source = np.where(has_depth[a] & has_depth[b], 0, 1)
    baseline = np.linalg.norm(T[a, :3, 3] - T[b, :3, 3], axis=-1)
    cos = np.clip(np.sum(T[a, :3, 2] * T[b, :3, 2], axis=-1), -1.0, 1.0)
    return PairTable(a, b, overlap, source, baseline, np.degrees(np.arccos(cos)))


# ----------------------------------------------------------------------------- splits
def split_blocks(
    stamps_ns: np.ndarray, fractions: tuple[float, ...], guard_s: float
) -> np.ndarray:
    """Split index of each frame of one scene: contiguous time blocks in order, -1 for guard frames.

    Block k spans the fraction ``fractions[k]`` of the scene's duration; a frame closer than
    ``guard_s / 2`` to a block boundary is left out (-1) so no held-out frame neighbours a
    training frame.

    >>> split_blocks(np.arange(10) * 10**9, (0.8, 0.2), 2.0).tolist()
    [0, 0, 0, 0, 0, 0, 0, -1, -1, 1]
    """
    t = (stamps_ns - stamps_ns.min()) / 1e9
    edges = t.max() * np.cumsum(fractions)[:-1]
    split = np.searchsorted(edges, t, side="right")
    near = np.zeros(len(t), bool)
    for edge in edges:
        near |= np.abs(t - edge) < guard_s / 2
    return np.where(near, -1, split)


def eval_groups(
    count: int, pairs: PairTable, min_overlap: float
) -> tuple[list[tuple[int, list[int]]], int]:
    """Held-out scenes: (reference, queries sharing >= ``min_overlap`` with it), greedy in time.

    Every frame is used once: the first frame not yet used becomes a reference and takes every
    unused frame that overlaps it enough. Returns the groups and the count of frames left alone.
    """
    overlap = pairs.lookup()
    used = np.zeros(count, bool)
    groups, alone = [], 0
    for ref in range(count):
        if used[ref]:
            continue
        used[ref] = True
        queries = [q for q in range(count)
                   if not used[q] and overlap.get((ref, q), 0.0) >= min_overlap]
        used[queries] = True
        if queries:
            groups.append((ref, queries))
        else:
            alone += 1
    return groups, alone
