"""Procedural places: furnished rooms and courtyards surrounded by building facades.

World frame: z up, metres, floor / ground at z = 0, scene centred on the origin. Each generator
takes a numpy ``Generator`` (so the same seed gives the same place) and optional ``keep_clear``
annuli ``(x, y, r_in, r_out)`` where no object may stand, which keeps camera paths free.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mickey_ros.synth.primitives import SKY_LAYER, Material, MeshBuilder
from mickey_ros.synth.textures import TextureBank, TextureInfo

SCENE_KINDS = ("room", "courtyard")
# Half width/depth ranges of the generated places and the margin cameras keep from their edges.
HALF_EXTENT_M = {"room": (2.5, 5.5), "courtyard": (8.0, 16.0)}
CAMERA_MARGIN_M = {"room": 0.3, "courtyard": 0.5}


def max_camera_span_m(kind: str, camera_height_m: tuple[float, float]) -> float:
    """The largest distance two cameras can be apart in a ``kind`` place (its widest diagonal).

    >>> round(max_camera_span_m("room", (1.0, 1.8)), 1)
    14.7
    """
    half = HALF_EXTENT_M[kind][1] - CAMERA_MARGIN_M[kind]
    return float(np.sqrt(2 * (2 * half) ** 2 + (camera_height_m[1] - camera_height_m[0]) ** 2))
KeepClear = tuple[tuple[float, float, float, float], ...]


@dataclass(frozen=True)
class Light:
    """One light shared by every view of a scene.

    Attributes:
        vector: (4,) homogeneous: w = 1 a point light at xyz, w = 0 a sun shining *from* xyz.
        colour: RGB intensity.
        ambient: fraction of light that reaches every surface regardless of orientation.
    """

    vector: np.ndarray
    colour: tuple[float, float, float]
    ambient: float


@dataclass(frozen=True)
class Scene:
    """Geometry and camera-placement limits of one place.

    Attributes:
        kind: ``"room"`` or ``"courtyard"``.
        vertices: (N, 12) float32 triangle soup (see ``primitives``).
        light: the shared light.
        bounds_xy: (x_min, x_max, y_min, y_max) where cameras may stand.
        max_camera_z: highest camera centre (below the ceiling).
        obstacles: (M, 4) footprint circles ``x, y, radius, top_z`` of objects.
        poi: (3,) point of interest (the monument, or the room centre at eye height).
    """

    kind: str
    vertices: np.ndarray
    light: Light
    bounds_xy: tuple[float, float, float, float]
    max_camera_z: float
    obstacles: np.ndarray
    poi: np.ndarray

    def is_free(self, points: np.ndarray, margin: float = 0.3) -> np.ndarray:
        """(N,) bool: camera centres ``points`` (N, 3) clear of walls and objects by ``margin``."""
        p = np.atleast_2d(points)
        x0, x1, y0, y1 = self.bounds_xy
        inside = (p[:, 0] > x0) & (p[:, 0] < x1) & (p[:, 1] > y0) & (p[:, 1] < y1)
        inside &= (p[:, 2] > 0.2) & (p[:, 2] < self.max_camera_z)
        if len(self.obstacles):
            o = self.obstacles
            d = np.linalg.norm(p[:, None, :2] - o[None, :, :2], axis=2)
            blocked = (d < o[None, :, 2] + margin) & (p[:, None, 2] < o[None, :, 3] + margin)
            inside &= ~blocked.any(axis=1)
        return inside


class _Placer:
    """Random materials and collision-free footprints for one scene being built."""

    def __init__(self, rng: np.random.Generator, bank: TextureBank, keep_clear: KeepClear):
        self.rng, self.bank, self.keep_clear = rng, bank, keep_clear
        self.mesh = MeshBuilder()
        self.obstacles: list[tuple[float, float, float, float]] = []

    def material(self, category: str, jitter: float = 1.0) -> tuple[Material, TextureInfo]:
        """A random texture of ``category`` with its colour jittered (``jitter`` 0 keeps it)."""
        choices = self.bank.by_category(category)
        info = choices[int(self.rng.integers(len(choices)))]
        brightness = 1 + jitter * self.rng.uniform(-0.15, 0.1)
        tint = (
            np.asarray(info.colour) * brightness * (1 + jitter * self.rng.uniform(-0.04, 0.04, 3))
        )
        metres = None if category == "poster" else info.metres
        return Material(float(info.layer), tuple(float(v) for v in tint), metres), info

    def footprint_ok(self, x: float, y: float, radius: float) -> bool:
        for cx, cy, r_in, r_out in self.keep_clear:
            d = np.hypot(x - cx, y - cy)
            if d + radius > r_in and d - radius < r_out:
                return False
        return all(np.hypot(x - ox, y - oy) > radius + r for ox, oy, r, _ in self.obstacles)

    def spot(self, extent: tuple[float, float], radius: float, tries: int = 30):
        """A free footprint centre inside +-extent, or None."""
        for _ in range(tries):
            x, y = self.rng.uniform(-extent[0], extent[0]), self.rng.uniform(-extent[1], extent[1])
            if self.footprint_ok(x, y, radius):
                return x, y
        return None

    def add_box(self, xy, z0, size, yaw, category="object", top_z=None) -> None:
        mats = [self.material(category)[0] for _ in range(6)] if category == "object" else None
        self.mesh.box(xy, z0, size, yaw, mats or self.material(category)[0])
        radius = 0.5 * float(np.hypot(size[0], size[1]))
        self.obstacles.append((xy[0], xy[1], radius, top_z if top_z is not None else z0 + size[2]))

    def poster(self, centre: np.ndarray, along: np.ndarray, width: float) -> None:
        """A photo on a vertical wall; ``along`` is the wall's unit direction (left to right)."""
        mat, info = self.material("poster", 0.0)
        height = width / info.aspect
        half = along * width / 2
        up = np.array([0.0, 0.0, height / 2])
        self.mesh.quad(
            np.array(
                [centre - half + up, centre + half + up, centre + half - up, centre - half - up]
            ),
            mat,
        )


def _room_shell(pl: _Placer, half_w: float, half_d: float, height: float) -> None:
    floor = pl.material("floor")[0]
    walls = [pl.material("wall")[0] for _ in range(2)]
    corners = [(-half_w, -half_d), (half_w, -half_d), (half_w, half_d), (-half_w, half_d)]
    for i, (a, b) in enumerate(zip(corners, corners[1:] + corners[:1])):
        top_a, top_b = np.r_[a, height], np.r_[b, height]
        pl.mesh.quad(np.array([top_a, top_b, np.r_[b, 0.0], np.r_[a, 0.0]]), walls[i % 2])
        along = (np.asarray(b) - np.asarray(a)) / np.linalg.norm(np.subtract(b, a))
        inward = np.array([-along[1], along[0], 0.0]) * 0.01
        for t in np.sort(pl.rng.uniform(0.1, 0.9, pl.rng.integers(1, 5))):
            centre = np.r_[np.asarray(a) + t * np.subtract(b, a), pl.rng.uniform(1.3, 1.9)] + inward
            pl.poster(centre, np.r_[along, 0.0], pl.rng.uniform(0.5, 1.4))
    pl.mesh.quad(
        np.array(
            [[-half_w, half_d, 0], [half_w, half_d, 0], [half_w, -half_d, 0], [-half_w, -half_d, 0]]
        ),
        floor,
    )
    ceiling = pl.material("ceiling")[0]
    pl.mesh.quad(
        np.array(
            [
                [-half_w, -half_d, height],
                [half_w, -half_d, height],
                [half_w, half_d, height],
                [-half_w, half_d, height],
            ]
        ),
        ceiling,
    )


def _furniture(pl: _Placer, extent: tuple[float, float], count: int, max_height: float) -> None:
    rng = pl.rng
    for _ in range(count):
        kind = rng.choice(["crate", "cabinet", "table", "stack"])
        size = {
            "crate": (rng.uniform(0.4, 0.9), rng.uniform(0.4, 0.9), rng.uniform(0.4, 0.9)),
            "cabinet": (rng.uniform(0.6, 1.4), rng.uniform(0.4, 0.6), rng.uniform(0.9, 2.0)),
            "table": (rng.uniform(0.8, 1.8), rng.uniform(0.6, 1.0), 0.75),
            "stack": (rng.uniform(0.5, 0.8), rng.uniform(0.5, 0.8), rng.uniform(0.4, 0.7)),
        }[kind]
        xy = pl.spot(extent, 0.5 * float(np.hypot(size[0], size[1])))
        if xy is None:
            continue
        yaw = rng.uniform(0, np.pi)
        if kind == "table":
            pl.mesh.box(xy, 0.72, (size[0], size[1], 0.04), yaw, pl.material("object")[0], True)
            for sx, sy in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
                c, s = np.cos(yaw), np.sin(yaw)
                lx, ly = sx * (size[0] / 2 - 0.05), sy * (size[1] / 2 - 0.05)
                leg = (xy[0] + c * lx - s * ly, xy[1] + s * lx + c * ly)
                pl.mesh.box(leg, 0.0, (0.05, 0.05, 0.72), yaw, pl.material("object")[0])
            pl.obstacles.append((*xy, 0.5 * float(np.hypot(size[0], size[1])), 0.76))
        elif kind == "stack":
            pl.add_box(xy, 0.0, size, yaw)
            top = (size[0] * 0.8, size[1] * 0.8, size[2] * 0.8)
            pl.add_box(xy, size[2], top, yaw + rng.uniform(-0.4, 0.4), top_z=size[2] + top[2])
        else:
            pl.add_box(xy, 0.0, (size[0], size[1], min(size[2], max_height)), yaw)


def _cylinders(pl: _Placer, extent, count: int, height_range, radius_range, category="object"):
    for _ in range(count):
        radius = pl.rng.uniform(*radius_range)
        xy = pl.spot(extent, radius)
        if xy is not None:
            height = pl.rng.uniform(*height_range)
            pl.mesh.cylinder(xy, 0.0, radius, height, pl.material(category)[0])
            pl.obstacles.append((xy[0], xy[1], radius, height))


def _trees(pl: _Placer, extent, count: int) -> None:
    """Trunk and a foliage crown (a fat cylinder) on top."""
    for _ in range(count):
        crown = pl.rng.uniform(0.8, 1.6)
        xy = pl.spot(extent, crown)
        if xy is None:
            continue
        trunk = pl.rng.uniform(1.8, 3.0)
        pl.mesh.cylinder(xy, 0.0, pl.rng.uniform(0.1, 0.2), trunk, pl.material("object")[0], 10)
        pl.mesh.cylinder(xy, trunk, crown, pl.rng.uniform(1.2, 2.5), pl.material("foliage")[0])
        pl.obstacles.append((xy[0], xy[1], 0.4, trunk))


def _kiosks(pl: _Placer, extent, count: int) -> None:
    """Kiosks / vans: large boxes with photo-clad sides."""
    for _ in range(count):
        size = (pl.rng.uniform(1.8, 4.5), pl.rng.uniform(1.5, 2.2), pl.rng.uniform(1.5, 2.8))
        xy = pl.spot(extent, 0.5 * float(np.hypot(size[0], size[1])))
        if xy is None:
            continue
        sides = [pl.material(pl.rng.choice(["poster", "object"]), 0.3)[0] for _ in range(4)]
        pl.mesh.box(xy, 0.0, size, pl.rng.uniform(0, np.pi), sides + [pl.material("object")[0]] * 2)
        pl.obstacles.append((xy[0], xy[1], 0.5 * float(np.hypot(size[0], size[1])), size[2]))


def _slanted_boards(pl: _Placer, extent, count: int) -> None:
    """Boards and billboards leaning at 20-60 degrees from vertical."""
    for _ in range(count):
        width = pl.rng.uniform(0.6, 1.6)
        xy = pl.spot(extent, width / 2 + 0.4)
        if xy is None:
            continue
        yaw, tilt, length = pl.rng.uniform(0, 2 * np.pi), np.radians(pl.rng.uniform(20, 60)), 1.6
        along = np.array([np.cos(yaw), np.sin(yaw), 0.0])
        back = np.array([-along[1], along[0], 0.0])
        a = np.r_[xy, 0.0] - along * width / 2
        top = back * length * np.sin(tilt) + np.array([0, 0, length * np.cos(tilt)])
        pl.mesh.slanted_plane(
            a, a + along * width, top, pl.material(pl.rng.choice(["poster", "object"]))[0]
        )
        pl.obstacles.append((xy[0], xy[1], width / 2 + 0.4, length * np.cos(tilt)))


def _monument(pl: _Placer, centre: tuple[float, float]) -> np.ndarray:
    """The place of interest: pedestal, photo-clad block and column. Returns its centre (3,)."""
    rng = pl.rng
    base = rng.uniform(1.2, 2.0)
    pl.mesh.box(centre, 0.0, (base, base, 0.6), rng.uniform(0, np.pi), pl.material("object")[0])
    block = (base * 0.6, base * 0.6, rng.uniform(1.0, 1.8))
    yaw = rng.uniform(0, np.pi)
    pl.mesh.box(centre, 0.6, block, yaw, [pl.material("poster", 0.0)[0] for _ in range(6)])
    pl.mesh.cylinder(
        centre, 0.6 + block[2], base * 0.15, rng.uniform(0.8, 1.5), pl.material("object")[0]
    )
    pl.obstacles.append((centre[0], centre[1], base * 0.75, 3.5))
    return np.array([centre[0], centre[1], 1.4])


def make_room(
    rng: np.random.Generator,
    bank: TextureBank,
    keep_clear: KeepClear = (),
    monument: bool = False,
    half_extent: tuple[float, float] | None = None,
) -> Scene:
    """A furnished room 5-11 m wide (or 2 x ``half_extent``), 2.6-3.5 m high, one ceiling lamp."""
    half_w, half_d = rng.uniform(*HALF_EXTENT_M["room"]), rng.uniform(*HALF_EXTENT_M["room"])
    height = rng.uniform(2.6, 3.5)
    margin = CAMERA_MARGIN_M["room"]
    if half_extent is not None:
        half_w, half_d = half_extent
    pl = _Placer(rng, bank, keep_clear)
    _room_shell(pl, half_w, half_d, height)
    extent = (half_w - 0.4, half_d - 0.4)
    poi = _monument(pl, (0.0, 0.0)) if monument else np.array([0.0, 0.0, 1.2])
    _furniture(pl, extent, int(rng.integers(6, 14)), height - 0.3)
    _cylinders(pl, extent, int(rng.integers(0, 3)), (0.5, height), (0.15, 0.35))
    _slanted_boards(pl, extent, int(rng.integers(1, 3)))
    lamp = np.array(
        [rng.uniform(-half_w, half_w) / 2, rng.uniform(-half_d, half_d) / 2, height - 0.2, 1]
    )
    light = Light(lamp, (1.0, 0.95, 0.85), float(rng.uniform(0.3, 0.45)))
    return Scene(
        "room",
        pl.mesh.vertices(),
        light,
        (-half_w + margin, half_w - margin, -half_d + margin, half_d - margin),
        height - 0.3,
        np.asarray(pl.obstacles).reshape(-1, 4),
        poi,
    )


def _buildings(pl: _Placer, half_w: float, half_d: float) -> None:
    """1-3 buildings per side, 4-12 m high, facades facing the courtyard."""
    sides = [((-1, -1), (1, -1)), ((1, -1), (1, 1)), ((1, 1), (-1, 1)), ((-1, 1), (-1, -1))]
    for (ax, ay), (bx, by) in sides:
        a, b = np.array([ax * half_w, ay * half_d]), np.array([bx * half_w, by * half_d])
        cuts = np.sort(np.r_[0.0, pl.rng.uniform(0.2, 0.8, pl.rng.integers(0, 3)), 1.0])
        for t0, t1 in zip(cuts[:-1], cuts[1:]):
            p0, p1 = a + t0 * (b - a), a + t1 * (b - a)
            height = pl.rng.uniform(4.0, 12.0)
            mat = pl.material("facade")[0]
            pl.mesh.quad(
                np.array([np.r_[p0, height], np.r_[p1, height], np.r_[p1, 0.0], np.r_[p0, 0.0]]),
                mat,
            )
            along = (p1 - p0) / np.linalg.norm(p1 - p0)
            inward = np.r_[-along[1], along[0], 0.0] * 0.02
            for t in pl.rng.uniform(0.15, 0.85, pl.rng.integers(0, 3)):
                centre = np.r_[p0 + t * (p1 - p0), pl.rng.uniform(1.5, 3.0)] + inward
                pl.poster(centre, np.r_[along, 0.0], pl.rng.uniform(1.0, 2.5))
            out = np.array([(p1 - p0)[1], -(p1 - p0)[0]]) / np.linalg.norm(p1 - p0) * 8.0
            roof = pl.material("ceiling")[0]
            pl.mesh.quad(
                np.array(
                    [
                        np.r_[p0 + out, height],
                        np.r_[p1 + out, height],
                        np.r_[p1, height],
                        np.r_[p0, height],
                    ]
                ),
                roof,
            )


def _sky(mesh: MeshBuilder, size: float = 150.0) -> None:
    sky = Material(SKY_LAYER)
    mesh.box((0.0, 0.0), -size, (2 * size, 2 * size, 2 * size), 0.0, sky, bottom=True)


def make_courtyard(
    rng: np.random.Generator,
    bank: TextureBank,
    keep_clear: KeepClear = (),
    monument: bool = False,
    half_extent: tuple[float, float] | None = None,
) -> Scene:
    """An open courtyard 16-32 m across (or 2 x ``half_extent``) among buildings, under a sky."""
    half_w = rng.uniform(*HALF_EXTENT_M["courtyard"])
    half_d = rng.uniform(*HALF_EXTENT_M["courtyard"])
    margin = CAMERA_MARGIN_M["courtyard"]
    if half_extent is not None:
        half_w, half_d = half_extent
    pl = _Placer(rng, bank, keep_clear)
    ground = pl.material("ground")[0]
    g = 80.0
    pl.mesh.quad(np.array([[-g, g, 0], [g, g, 0], [g, -g, 0], [-g, -g, 0]]), ground)
    _buildings(pl, half_w, half_d)
    _sky(pl.mesh)
    extent = (half_w - 1.0, half_d - 1.0)
    poi = _monument(pl, (0.0, 0.0)) if monument else np.array([0.0, 0.0, 1.5])
    _kiosks(pl, extent, int(rng.integers(2, 6)))
    _trees(pl, extent, int(rng.integers(2, 7)))
    _furniture(pl, extent, int(rng.integers(4, 10)), 2.5)
    _cylinders(pl, extent, int(rng.integers(2, 6)), (2.0, 4.5), (0.08, 0.25))
    _cylinders(pl, extent, int(rng.integers(1, 4)), (0.6, 1.5), (0.4, 0.9), category="foliage")
    _slanted_boards(pl, extent, int(rng.integers(1, 4)))
    azimuth, elevation = rng.uniform(0, 2 * np.pi), np.radians(rng.uniform(25, 70))
    sun = np.array(
        [
            np.cos(azimuth) * np.cos(elevation),
            np.sin(azimuth) * np.cos(elevation),
            np.sin(elevation),
            0.0,
        ]
    )
    light = Light(sun, (1.05, 1.0, 0.92), float(rng.uniform(0.35, 0.5)))
    return Scene(
        "courtyard",
        pl.mesh.vertices(),
        light,
        (-half_w + margin, half_w - margin, -half_d + margin, half_d - margin),
        3.0,
        np.asarray(pl.obstacles).reshape(-1, 4),
        poi,
    )


def make_scene(
    kind: str,
    rng: np.random.Generator,
    bank: TextureBank,
    keep_clear: KeepClear = (),
    monument: bool = False,
    half_extent: tuple[float, float] | None = None,
) -> Scene:
    """Dispatch to ``make_room`` / ``make_courtyard``; ``kind`` must be one of ``SCENE_KINDS``."""
    if kind not in SCENE_KINDS:
        raise ValueError(f"scene kind must be one of {SCENE_KINDS}, got {kind!r}")
    maker = make_room if kind == "room" else make_courtyard
    return maker(rng, bank, keep_clear, monument, half_extent)
