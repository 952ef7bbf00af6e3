"""A ROS-free TF tree: stamped transforms in, interpolated lookups between any two frames out.

Replay uses it for the ground-truth camera poses (``odom -> base_link`` on ``/tf`` and the
``base_link -> ... -> camera_optical_frame`` chain on ``/tf_static``) and for ``tf_mode:
map_to_odom``, which needs the live camera in odom at the image stamp, as the node's tf2 buffer
does; ``bags.posed_images`` uses it for the pose of every camera frame of a bag.

Semantics follow tf2: every frame has at most one parent; static edges hold at all times; a dynamic
edge is interpolated between its two samples around the stamp (linear translation, slerp rotation)
and never extrapolated beyond its first or last sample (a ``TfLookupError`` says by how much).
``max_gap_ns`` also refuses to interpolate across a hole in the data (a dropped TF stream).

Convention:
    ``lookup(target, source, stamp_ns)`` returns ``T_target_source`` (4, 4): it maps points in the
    ``source`` frame into the ``target`` frame, i.e. the pose of ``source`` in ``target``, exactly
    like tf2's ``lookup_transform(target_frame, source_frame, time)``. A TF edge parent -> child
    carries ``T_parent_child``. Quaternions are (x, y, z, w) as in ROS messages.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mickey_ros.geometry.pose import (
    invert_transform,
    rotmat_to_quat_xyzw,
    transform_from_xyz_qxyzw,
)


class TfLookupError(LookupError):
    """A transform is not available: unknown frame, no connection, or extrapolation."""


def slerp_xyzw(q0_xyzw: np.ndarray, q1_xyzw: np.ndarray, alpha: float) -> np.ndarray:
    """Spherical linear interpolation of unit quaternions (4,), shortest arc, ``alpha`` in [0, 1].

    >>> np.round(slerp_xyzw(np.array([0, 0, 0, 1.0]), np.array([0, 0, 1.0, 0]), 0.5), 4)
    array([0.    , 0.    , 0.7071, 0.7071])
    """
    q0 = q0_xyzw / np.linalg.norm(q0_xyzw)
    q1 = q1_xyzw / np.linalg.norm(q1_xyzw)
    dot = float(np.dot(q0, q1))
    if dot < 0.0:  # q and -q are the same rotation: take the short way round
        q1, dot = -q1, -dot
    if dot > 0.9995:  # nearly parallel: lerp is exact to float precision and avoids 0/0
        q = q0 + alpha * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = np.arccos(np.clip(dot, -1.0, 1.0))
    return (np.sin((1 - alpha) * theta) * q0 + np.sin(alpha * theta) * q1) / np.sin(theta)


def _format_ns(ns: int) -> str:
    return f"{ns / 1e9:.3f} s"


@dataclass
class _Edge:
    """All samples of one parent -> child edge, sorted by stamp."""

    parent: str
    static: bool
    stamps: list[int] = field(default_factory=list)
    translations: list[np.ndarray] = field(default_factory=list)
    quats_xyzw: list[np.ndarray] = field(default_factory=list)

    def insert(self, stamp_ns: int, t: np.ndarray, q_xyzw: np.ndarray) -> None:
        if self.static:  # a static edge has one value; a newer message replaces it
            self.stamps, self.translations, self.quats_xyzw = [stamp_ns], [t], [q_xyzw]
            return
        i = bisect.bisect_left(self.stamps, stamp_ns)
        if i < len(self.stamps) and self.stamps[i] == stamp_ns:
            self.translations[i], self.quats_xyzw[i] = t, q_xyzw
            return
        self.stamps.insert(i, stamp_ns)
        self.translations.insert(i, t)
        self.quats_xyzw.insert(i, q_xyzw)

    def at(self, stamp_ns: int, child: str, max_gap_ns: int | None = None) -> np.ndarray:
        """``T_parent_child`` at ``stamp_ns`` (interpolated; TfLookupError outside the samples or
        between two samples more than ``max_gap_ns`` apart)."""
        if self.static:
            return transform_from_xyz_qxyzw(self.translations[0], self.quats_xyzw[0])
        first, last = self.stamps[0], self.stamps[-1]
        if not first <= stamp_ns <= last:
            side = "past" if stamp_ns < first else "future"
            raise TfLookupError(
                f"extrapolation into the {side}: {self.parent} -> {child} requested at "
                f"{_format_ns(stamp_ns)}, data from {_format_ns(first)} to {_format_ns(last)} "
                f"({abs(stamp_ns - (first if stamp_ns < first else last)) / 1e6:.1f} ms outside)"
            )
        i = bisect.bisect_left(self.stamps, stamp_ns)
        if self.stamps[i] == stamp_ns:
            return transform_from_xyz_qxyzw(self.translations[i], self.quats_xyzw[i])
        t0, t1 = self.stamps[i - 1], self.stamps[i]
        if max_gap_ns is not None and t1 - t0 > max_gap_ns:
            raise TfLookupError(
                f"gap in the TF data: {self.parent} -> {child} has no sample between "
                f"{_format_ns(t0)} and {_format_ns(t1)} ({(t1 - t0) / 1e6:.0f} ms > the "
                f"{max_gap_ns / 1e6:.0f} ms tolerance) around {_format_ns(stamp_ns)}"
            )
        alpha = (stamp_ns - t0) / (t1 - t0)
        t = (1 - alpha) * self.translations[i - 1] + alpha * self.translations[i]
        q_xyzw = slerp_xyzw(self.quats_xyzw[i - 1], self.quats_xyzw[i], alpha)
        return transform_from_xyz_qxyzw(t, q_xyzw)


class TfBuffer:
    """The TF tree of a recording, filled from ``tf2_msgs/TFMessage`` (``/tf`` and ``/tf_static``).

    Example:
        >>> buf = TfBuffer()
        >>> T = np.eye(4); T[:3, 3] = [1.0, 0.0, 0.0]
        >>> buf.add_transform("odom", "base_link", 0, T)
        >>> buf.add_transform("odom", "base_link", 10, 3 * T - 2 * np.eye(4))
        >>> np.allclose(buf.lookup("odom", "base_link", 5)[:3, 3], [2.0, 0.0, 0.0])  # halfway
        True
    """

    def __init__(self) -> None:
        self._edges: dict[str, _Edge] = {}
        self.reparented: int = 0  # children whose parent changed (tf2 would warn)

    @property
    def frames(self) -> set[str]:
        """Every frame named as a parent or a child."""
        return set(self._edges) | {edge.parent for edge in self._edges.values()}

    def clear(self) -> None:
        """Forget every transform (a bag loop / backwards clock jump)."""
        self._edges.clear()
        self.reparented = 0

    def add_transform(
        self, parent: str, child: str, stamp_ns: int, T_parent_child: np.ndarray,
        static: bool = False,
    ) -> None:
        """Insert one edge sample ``T_parent_child`` (4, 4) at ``stamp_ns``.

        Raises:
            ValueError: for an empty or equal frame pair or a non-finite transform.
        """
        T = np.asarray(T_parent_child, dtype=np.float64)
        if T.shape != (4, 4) or not np.all(np.isfinite(T)):
            raise ValueError(f"{parent} -> {child}: T_parent_child must be finite (4, 4)")
        self._insert(parent, child, int(stamp_ns), T[:3, 3].copy(), rotmat_to_quat_xyzw(T[:3, :3]),
                     static)

    def _insert(
        self, parent: str, child: str, stamp_ns: int, t: np.ndarray, q_xyzw: np.ndarray,
        static: bool,
    ) -> None:
        parent, child = parent.lstrip("/"), child.lstrip("/")  # tf2 strips a leading slash too
        if not parent or not child or parent == child:
            raise ValueError(f"invalid TF edge {parent!r} -> {child!r}")
        edge = self._edges.get(child)
        if edge is None or edge.parent != parent or edge.static != static:
            self.reparented += int(edge is not None)
            edge = self._edges[child] = _Edge(parent, static)
        edge.insert(stamp_ns, t, q_xyzw)

    def add_tf_message(self, msg: Any, static: bool = False) -> int:
        """Add every ``TransformStamped`` of a ``TFMessage`` (rosbags or rclpy); returns the count.

        Raises:
            ValueError: for a transform with a zero or non-finite quaternion (nothing is added
                from the message then).
        """
        samples = []
        for ts in msg.transforms:
            q, v = ts.transform.rotation, ts.transform.translation
            q_xyzw = np.array([q.x, q.y, q.z, q.w], dtype=np.float64)
            t = np.array([v.x, v.y, v.z], dtype=np.float64)
            norm = np.linalg.norm(q_xyzw)
            if not (np.all(np.isfinite(q_xyzw)) and np.all(np.isfinite(t))) or norm < 1e-9:
                raise ValueError(
                    f"TF {ts.header.frame_id} -> {ts.child_frame_id} has a zero or non-finite "
                    f"quaternion {q_xyzw.tolist()} / translation {t.tolist()}"
                )
            stamp_ns = int(ts.header.stamp.sec) * 1_000_000_000 + int(ts.header.stamp.nanosec)
            samples.append((ts.header.frame_id, ts.child_frame_id, stamp_ns, t, q_xyzw / norm))
        for parent, child, stamp_ns, t, q_xyzw in samples:
            self._insert(parent, child, stamp_ns, t, q_xyzw, static)
        return len(samples)

    def _chain(self, frame: str) -> list[str]:
        """``frame`` and its ancestors up to the root."""
        chain = [frame]
        while chain[-1] in self._edges:
            chain.append(self._edges[chain[-1]].parent)
            if len(chain) > len(self._edges) + 1:
                raise TfLookupError(f"the TF tree has a loop through {frame!r}")
        return chain

    def _to_ancestor(
        self, chain: list[str], stamp_ns: int, max_gap_ns: int | None = None
    ) -> np.ndarray:
        """``T_ancestor_frame`` along ``chain`` = [frame, parent, ..., ancestor]."""
        T = np.eye(4)
        for child in reversed(chain[:-1]):  # compose from the ancestor down
            T = T @ self._edges[child].at(stamp_ns, child, max_gap_ns)
        return T

    def parent(self, frame: str) -> str | None:
        """The parent of ``frame`` (None for a root or an unknown frame)."""
        edge = self._edges.get(frame.lstrip("/"))
        return None if edge is None else edge.parent

    def lookup(
        self, target: str, source: str, stamp_ns: int, max_gap_ns: int | None = None
    ) -> np.ndarray:
        """``T_target_source`` (4, 4) at ``stamp_ns``, chained through the common ancestor.

        ``max_gap_ns``: refuse to interpolate a dynamic edge between samples farther apart.

        Raises:
            TfLookupError: a frame is unknown, the two frames are not connected, or a dynamic
                edge on the path has no samples around ``stamp_ns`` (or only samples farther
                apart than ``max_gap_ns``); the message names the edge.
        """
        target, source = target.lstrip("/"), source.lstrip("/")
        known = self.frames
        for name, frame in (("target", target), ("source", source)):
            if frame not in known:
                raise TfLookupError(
                    f"{name} frame {frame!r} does not exist in the TF tree; frames: "
                    f"{sorted(known) or 'none (no /tf or /tf_static data)'}"
                )
        up_source, up_target = self._chain(source), self._chain(target)
        common = next((f for f in up_source if f in set(up_target)), None)
        if common is None:
            raise TfLookupError(
                f"{target!r} and {source!r} are not connected: their roots are "
                f"{up_target[-1]!r} and {up_source[-1]!r}"
            )
        T_common_source = self._to_ancestor(
            up_source[: up_source.index(common) + 1], stamp_ns, max_gap_ns
        )
        T_common_target = self._to_ancestor(
            up_target[: up_target.index(common) + 1], stamp_ns, max_gap_ns
        )
        return invert_transform(T_common_target) @ T_common_source

    def can_transform(self, target: str, source: str, stamp_ns: int) -> bool:
        """True when ``lookup`` would succeed."""
        try:
            self.lookup(target, source, stamp_ns)
        except TfLookupError:
            return False
        return True
