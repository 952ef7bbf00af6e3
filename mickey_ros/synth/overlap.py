"""Depth reprojection between two cameras: co-visibility, overlap scores and GT checks (numpy).

Convention:
    ``T_b_a`` (4, 4) maps camera-a points into camera b: X_b = R X_a + t, metres. Depth maps hold
    camera z in metres with 0 where there is no surface. Pixel centres sit at integer coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Reprojection:
    """Pixels of view a (with depth) moved into view b.

    Attributes:
        uv_a: (N, 2) pixel coordinates in a (x, y), integers.
        uv_b: (N, 2) projected coordinates in b, float.
        z_b: (N,) depth of the moved points in b, metres.
        depth_b: (N,) depth that b itself sees at the nearest pixel (0 outside b or no surface).
        inside: (N,) bool, projection lands inside b in front of the camera.
    """

    uv_a: np.ndarray
    uv_b: np.ndarray
    z_b: np.ndarray
    depth_b: np.ndarray
    inside: np.ndarray

    def agrees(self, rel_tol: float) -> np.ndarray:
        """(N,) bool: inside b, b sees a surface there, and its depth matches within ``rel_tol``."""
        seen = self.inside & (self.depth_b > 0)
        return seen & (np.abs(self.z_b - self.depth_b) <= rel_tol * np.maximum(self.depth_b, 1e-9))


def reproject_depth(
    depth_a: np.ndarray,
    K_a: np.ndarray,
    depth_b: np.ndarray,
    K_b: np.ndarray,
    T_b_a: np.ndarray,
    stride: int = 1,
) -> Reprojection:
    """Back-project every ``stride``-th pixel of a with its depth and project it into b.

    Args:
        depth_a: (Ha, Wa) camera-z depth of view a, metres, 0 = none.
        K_a: (3, 3) intrinsics of a.
        depth_b: (Hb, Wb) depth of view b.
        K_b: (3, 3) intrinsics of b.
        T_b_a: (4, 4) pose of a's frame in b's (X_b = R X_a + t).
        stride: sample every stride-th row and column of a.

    Returns:
        A ``Reprojection`` over the sampled pixels of a that have depth.
    """
    v, u = np.mgrid[0 : depth_a.shape[0] : stride, 0 : depth_a.shape[1] : stride]
    z = depth_a[v, u].astype(np.float64)
    keep = z > 0
    u, v, z = u[keep], v[keep], z[keep]
    rays = np.linalg.solve(K_a, np.stack([u, v, np.ones_like(z)]))  # (3, N)
    X_b = T_b_a[:3, :3] @ (rays * z) + T_b_a[:3, 3:4]
    z_b = X_b[2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv_b = (K_b @ X_b)[:2] / z_b
    Hb, Wb = depth_b.shape
    ub, vb = np.round(uv_b[0]), np.round(uv_b[1])
    inside = (z_b > 1e-6) & (ub >= 0) & (ub < Wb) & (vb >= 0) & (vb < Hb)
    seen = np.zeros_like(z_b)
    seen[inside] = sample_depth(depth_b, uv_b[0][inside], uv_b[1][inside])
    return Reprojection(np.stack([u, v], 1), uv_b.T, z_b, seen, inside)


def _inverse(depth: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.where(depth > 0, 1.0 / np.maximum(depth, 1e-12), 0.0)


def sample_depth(depth: np.ndarray, u: np.ndarray, v: np.ndarray, planar_tol: float = 0.01):
    """Depth at sub-pixel (u, v): bilinear in inverse depth on a planar patch, else nearest pixel.

    Inverse depth is affine in pixel coordinates on a plane, so interpolating it is exact inside a
    planar facet, even one seen at a grazing angle. The patch counts as planar when the second
    differences of inverse depth along the row and column through the 2 x 2 neighbours, and their
    cross difference, are all below ``planar_tol`` times the local inverse depth; at edges, or next
    to empty pixels, the nearest pixel is used instead.

    >>> d = 1.0 / np.tile([1.0, 2.0, 3.0, 4.0], (4, 1))  # a plane: inverse depth 1 -> 4 along u
    >>> round(float(sample_depth(d, np.array([1.5]), np.array([1.5]))[0]), 6)
    0.4
    """
    H, W = depth.shape
    rows = np.clip(np.round(v), 0, H - 1).astype(int)
    nearest = depth[rows, np.clip(np.round(u), 0, W - 1).astype(int)]
    u0 = np.clip(np.floor(u), 0, W - 2).astype(int)
    v0 = np.clip(np.floor(v), 0, H - 2).astype(int)
    fu, fv = np.clip(u - u0, 0, 1), np.clip(v - v0, 0, 1)
    cols4 = np.clip(u0[None] + np.arange(-1, 3)[:, None], 0, W - 1)  # (4, N)
    rows4 = np.clip(v0[None] + np.arange(-1, 3)[:, None], 0, H - 1)
    along_u, along_v = _inverse(depth[v0[None], cols4]), _inverse(depth[rows4, u0[None]])
    w4 = _inverse(
        np.stack([depth[v0, u0], depth[v0, u0 + 1], depth[v0 + 1, u0], depth[v0 + 1, u0 + 1]])
    )
    second_u = along_u[:-2] - 2 * along_u[1:-1] + along_u[2:]  # (2, N) along the row
    second_v = along_v[:-2] - 2 * along_v[1:-1] + along_v[2:]  # (2, N) along the column
    cross = (w4[0] + w4[3] - w4[1] - w4[2])[None]
    curvature = np.abs(np.concatenate([second_u, second_v, cross])).max(axis=0)
    valid = (along_u > 0).all(axis=0) & (along_v > 0).all(axis=0) & (w4 > 0).all(axis=0)
    planar = valid & (curvature <= planar_tol * w4.mean(axis=0))
    weights = np.stack([(1 - fu) * (1 - fv), fu * (1 - fv), (1 - fu) * fv, fu * fv])
    with np.errstate(divide="ignore", invalid="ignore"):
        bilinear = 1.0 / (weights * w4).sum(axis=0)
    return np.where(planar, bilinear, nearest)


def covisible_fraction(
    depth_a: np.ndarray,
    K_a: np.ndarray,
    depth_b: np.ndarray,
    K_b: np.ndarray,
    T_b_a: np.ndarray,
    stride: int = 4,
    rel_tol: float = 0.05,
) -> float:
    """Fraction of a's surface pixels that b sees unoccluded (depth agrees within ``rel_tol``)."""
    rep = reproject_depth(depth_a, K_a, depth_b, K_b, T_b_a, stride)
    return float(rep.agrees(rel_tol).mean()) if len(rep.z_b) else 0.0


def pair_overlap(
    depth0: np.ndarray,
    K0: np.ndarray,
    depth1: np.ndarray,
    K1: np.ndarray,
    T_1_0: np.ndarray,
    stride: int = 4,
    rel_tol: float = 0.05,
) -> float:
    """Symmetric co-visibility in [0, 1]: the smaller of the two directional fractions.

    ``min`` rather than mean so a pair where one view sees a small part of the other's wide view
    counts as low overlap, like Map-free's co-visibility scores.
    """
    T_0_1 = np.linalg.inv(T_1_0)
    f01 = covisible_fraction(depth0, K0, depth1, K1, T_1_0, stride, rel_tol)
    f10 = covisible_fraction(depth1, K1, depth0, K0, T_0_1, stride, rel_tol)
    return min(f01, f10)


def stride_for(size_wh: tuple[int, int], points: int) -> int:
    """Pixel stride that samples about ``points`` pixels of a (W, H) image (at least 1).

    >>> stride_for((540, 720), 6000), stride_for((160, 120), 6000)
    (8, 2)
    """
    return max(1, round(float(np.sqrt(size_wh[0] * size_wh[1] / points))))


def subsample_depth(depth: np.ndarray, K: np.ndarray, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep every ``stride``-th pixel; K maps to the kept grid (pixel i <-> full pixel stride*i).

    Returns:
        depth (ceil(H/s), ceil(W/s)) and K (3, 3) with rows 0 and 1 divided by ``stride``.

    >>> d, K = subsample_depth(np.ones((8, 6), np.float32), np.diag([100.0, 100.0, 1.0]), 2)
    >>> d.shape, float(K[0, 0])  # exact: 100 / 2
    ((4, 3), 50.0)
    """
    K_sub = np.array(K, np.float64)
    K_sub[:2] /= stride
    return np.ascontiguousarray(depth[::stride, ::stride]), K_sub


def overlap_matrix(
    depths: np.ndarray,
    Ks: np.ndarray,
    T_cam_world: np.ndarray,
    rel_tol: float = 0.05,
) -> np.ndarray:
    """Directional co-visibility between all views of one scene, vectorised over targets.

    Args:
        depths: (F, H, W) depth maps (e.g. from ``subsample_depth``), metres, 0 = none.
        Ks: (F, 3, 3) intrinsics matching ``depths``.
        T_cam_world: (F, 4, 4) world-to-camera poses.
        rel_tol: relative depth agreement that counts as "seen".

    Returns:
        (F, F) float64: entry [a, b] = fraction of a's surface pixels that b sees (diagonal 1).
    """
    F, H, W = depths.shape
    out = np.eye(F)
    v, u = np.mgrid[0:H, 0:W]
    for a in range(F):
        keep = depths[a] > 0
        if not keep.any():
            continue
        z = depths[a][keep].astype(np.float64)
        X_cam = np.linalg.solve(Ks[a], np.stack([u[keep], v[keep], np.ones_like(z)])) * z
        R_a, t_a = T_cam_world[a, :3, :3], T_cam_world[a, :3, 3:4]
        X_world = R_a.T @ (X_cam - t_a)  # (3, N)
        X_b = T_cam_world[:, :3, :3] @ X_world + T_cam_world[:, :3, 3:4]  # (F, 3, N)
        z_b = X_b[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = np.einsum("fij,fjn->fin", Ks[:, :2], X_b) / z_b[:, None]
        ub, vb = np.round(uv[:, 0]), np.round(uv[:, 1])
        inside = (z_b > 1e-6) & (ub >= 0) & (ub < W) & (vb >= 0) & (vb < H)
        frame_idx = np.broadcast_to(np.arange(F)[:, None], z_b.shape)
        seen = np.zeros_like(z_b)
        seen[inside] = depths[frame_idx[inside], vb[inside].astype(int), ub[inside].astype(int)]
        agree = inside & (seen > 0) & (np.abs(z_b - seen) <= rel_tol * seen)
        out[a] = agree.mean(axis=1)
        out[a, a] = 1.0
    return out
