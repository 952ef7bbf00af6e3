"""Which keyframes to try for a live frame: near a pose prior, or by appearance without one.

Convention:
    Poses are ``T_map_camera`` (4, 4): camera centre ``T[:3, 3]``, viewing direction (optical z
    axis) ``T[:3, 2]``, both in the map frame.
"""

from __future__ import annotations

import numpy as np

from mickey_ros.keyframes.descriptor import rank_by_similarity


def view_angle_deg(T_map_a: np.ndarray, T_map_b: np.ndarray) -> np.ndarray:
    """Angles (M,) between the optical axes of ``T_map_a`` (4, 4) and ``T_map_b`` (M, 4, 4), deg."""
    cos = np.einsum("i,mi->m", T_map_a[:3, 2], np.asarray(T_map_b).reshape(-1, 4, 4)[:, :3, 2])
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def select_near_prior(
    T_map_prior: np.ndarray,
    T_map_keyframes: np.ndarray,
    k: int,
    radius_m: float,
    max_angle_deg: float,
) -> list[int]:
    """Up to ``k`` keyframes within ``radius_m`` and ``max_angle_deg`` of the prior, best first.

    Ranked by ``distance / radius_m + angle / max_angle_deg`` (both terms in [0, 1] inside the
    window), so a keyframe 1 m away looking the same way beats one beside the robot facing away.

    Args:
        T_map_prior: (4, 4) the live camera's pose guess in the map.
        T_map_keyframes: (M, 4, 4) keyframe camera poses.
        k: how many to return at most.
        radius_m: search radius around the prior's camera centre.
        max_angle_deg: largest angle between the optical axes.

    Returns:
        Indices into ``T_map_keyframes`` ([] when none is inside the window).
    """
    if len(T_map_keyframes) == 0:
        return []
    T = np.asarray(T_map_keyframes).reshape(-1, 4, 4)
    dist = np.linalg.norm(T[:, :3, 3] - T_map_prior[:3, 3], axis=1)
    angle = view_angle_deg(T_map_prior, T)
    inside = np.flatnonzero((dist <= radius_m) & (angle <= max_angle_deg))
    cost = dist[inside] / radius_m + angle[inside] / max_angle_deg
    return [int(i) for i in inside[np.argsort(cost, kind="stable")][:k]]


def select_by_appearance(
    query_descriptor: np.ndarray, descriptors: np.ndarray, k: int
) -> list[int]:
    """The ``k`` keyframes whose global descriptors (M, G) are most similar to the query (G,)."""
    order, _ = rank_by_similarity(query_descriptor, descriptors)
    return [int(i) for i in order[:k]]
