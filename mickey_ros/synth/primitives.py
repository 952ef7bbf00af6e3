"""Triangle-soup mesh builder: textured quads, boxes, cylinders and slanted planes.

Every vertex is 12 float32: position (3, world metres, z up), normal (3), uv (2), texture layer (1,
``SKY_LAYER`` for the sky) and an RGB tint (3) that multiplies the texture. Tiled surfaces get
uv in metres / ``Material.metres`` so textures keep a physical scale; posters stretch once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VERTEX_FLOATS = 12
SKY_LAYER = -1.0


@dataclass(frozen=True)
class Material:
    """Texture layer, tint and tiling of a surface.

    Attributes:
        layer: texture-array layer, or ``SKY_LAYER``.
        tint: RGB multiplier in [0, 2].
        metres: world size of one texture repeat; ``None`` stretches the texture once (posters).
    """

    layer: float
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)
    metres: float | None = 1.0


class MeshBuilder:
    """Accumulates triangles; ``vertices()`` returns the (N, 12) float32 soup."""

    def __init__(self) -> None:
        self._chunks: list[np.ndarray] = []

    def vertices(self) -> np.ndarray:
        """All triangles so far, (N, 12) float32 with N a multiple of 3."""
        if not self._chunks:
            return np.zeros((0, VERTEX_FLOATS), np.float32)
        return np.concatenate(self._chunks).astype(np.float32)

    def quad(self, corners: np.ndarray, material: Material) -> None:
        """Add a planar quad.

        Args:
            corners: (4, 3) top-left, top-right, bottom-right, bottom-left as seen from the front.
            material: its texture; u runs along top-left -> top-right, v along top-left ->
                bottom-left.
        """
        p = np.asarray(corners, np.float64)
        right, down = p[1] - p[0], p[3] - p[0]
        normal = np.array(
            [
                down[1] * right[2] - down[2] * right[1],
                down[2] * right[0] - down[0] * right[2],
                down[0] * right[1] - down[1] * right[0],
            ]
        )
        normal /= max(float(np.sqrt(normal @ normal)), 1e-12)
        su, sv = 1.0, 1.0
        if material.metres is not None:
            su = float(np.sqrt(right @ right)) / material.metres
            sv = float(np.sqrt(down @ down)) / material.metres
        uv = np.array([[0, 0], [su, 0], [su, sv], [0, 0], [su, sv], [0, sv]], np.float64)
        self._add(p[[0, 1, 2, 0, 2, 3]], np.broadcast_to(normal, (6, 3)), uv, material)

    def box(
        self,
        centre_xy: tuple[float, float],
        z0: float,
        size: tuple[float, float, float],
        yaw: float,
        material: Material | list[Material],
        bottom: bool = False,
    ) -> None:
        """Add a box standing on ``z0``, rotated by ``yaw`` (rad) about z.

        Args:
            centre_xy: centre of the footprint.
            z0: height of the bottom face.
            size: (length along its x, width along its y, height), metres.
            yaw: rotation about the vertical axis.
            material: one material, or six (+x, -x, +y, -y, top, bottom).
            bottom: also add the bottom face (for floating boxes).
        """
        mats = material if isinstance(material, list) else [material] * 6
        hx, hy, h = size[0] / 2, size[1] / 2, size[2]
        c, s = np.cos(yaw), np.sin(yaw)
        R = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
        offset = np.array([centre_xy[0], centre_xy[1], z0])

        def world(points: list[tuple[float, float, float]]) -> np.ndarray:
            return np.asarray(points) @ R.T + offset

        faces = [
            [(hx, -hy, h), (hx, hy, h), (hx, hy, 0), (hx, -hy, 0)],
            [(-hx, hy, h), (-hx, -hy, h), (-hx, -hy, 0), (-hx, hy, 0)],
            [(hx, hy, h), (-hx, hy, h), (-hx, hy, 0), (hx, hy, 0)],
            [(-hx, -hy, h), (hx, -hy, h), (hx, -hy, 0), (-hx, -hy, 0)],
            [(-hx, hy, h), (hx, hy, h), (hx, -hy, h), (-hx, -hy, h)],
            [(-hx, -hy, 0), (hx, -hy, 0), (hx, hy, 0), (-hx, hy, 0)],
        ]
        for face, mat in zip(faces[: 6 if bottom else 5], mats):
            self.quad(world(face), mat)

    def cylinder(
        self,
        centre_xy: tuple[float, float],
        z0: float,
        radius: float,
        height: float,
        material: Material,
        segments: int = 20,
        cap: Material | None = None,
    ) -> None:
        """Add a vertical cylinder (side + top cap) standing on ``z0``."""
        angles = np.linspace(0.0, 2 * np.pi, segments + 1)
        ring = np.stack([np.cos(angles), np.sin(angles)], axis=1) * radius + np.asarray(centre_xy)
        su = 2 * np.pi * radius / (material.metres or 2 * np.pi * radius)
        sv = height / (material.metres or height)
        a, b = ring[:-1], ring[1:]  # (S, 2) segment ends, counter-clockwise
        z_bot, z_top = np.full((segments, 1), z0), np.full((segments, 1), z0 + height)
        corners = np.stack(
            [
                np.hstack([b, z_top]),
                np.hstack([a, z_top]),
                np.hstack([a, z_bot]),
                np.hstack([b, z_bot]),
            ],
            axis=1,
        )  # (S, 4, 3)
        mid = (angles[:-1] + angles[1:]) / 2
        normals = np.stack([np.cos(mid), np.sin(mid), np.zeros(segments)], axis=1)
        u1 = su * (segments - np.arange(segments)) / segments
        u0 = u1 - su / segments
        zeros, full = np.zeros(segments), np.full(segments, sv)
        uv = np.stack(
            [
                np.stack([u0, zeros], 1),
                np.stack([u1, zeros], 1),
                np.stack([u1, full], 1),
                np.stack([u0, full], 1),
            ],
            axis=1,
        )  # (S, 4, 2)
        idx = [0, 1, 2, 0, 2, 3]
        self._add(
            corners[:, idx].reshape(-1, 3),
            np.repeat(normals, 6, axis=0),
            uv[:, idx].reshape(-1, 2),
            material,
        )
        self._cap(ring, z0 + height, cap or material)

    def slanted_plane(
        self, bottom_a: np.ndarray, bottom_b: np.ndarray, top_offset: np.ndarray, material: Material
    ) -> None:
        """Add a tilted rectangle spanned by a bottom edge a->b and an offset to its top edge."""
        a, b, up = (np.asarray(v, np.float64) for v in (bottom_a, bottom_b, top_offset))
        self.quad(np.array([a + up, b + up, b, a]), material)

    def _cap(self, ring: np.ndarray, z: float, material: Material) -> None:
        centre = ring[:-1].mean(axis=0)
        scale = material.metres or 2 * np.max(np.linalg.norm(ring - centre, axis=1))
        n = len(ring) - 1
        xy = np.stack([np.broadcast_to(centre, (n, 2)), ring[:-1], ring[1:]], axis=1).reshape(-1, 2)
        p = np.hstack([xy, np.full((3 * n, 1), z)])
        self._add(p, np.tile([0.0, 0.0, 1.0], (3 * n, 1)), xy / scale, material)

    def _add(self, p: np.ndarray, n: np.ndarray, uv: np.ndarray, material: Material) -> None:
        out = np.empty((len(p), VERTEX_FLOATS))
        out[:, 0:3], out[:, 3:6], out[:, 6:8] = p, n, uv
        out[:, 8], out[:, 9:12] = material.layer, material.tint
        self._chunks.append(out)
