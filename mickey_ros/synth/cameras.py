"""Camera poses and intrinsics for synthetic views: look-at, pair sampling by pose ranges.

Convention:
    ``T_cam_world`` (4, 4) maps world points (z up) into OpenCV camera coordinates (x right, y
    down, z forward), metres. The relative pose of a pair is ``T_1_0 = T_1_world @ inv(T_0_world)``
    (X_1 = R X_0 + t), the project's ``T_query_ref`` with view 0 as the reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mickey_ros.synth.scene import Scene, max_camera_span_m


@dataclass(frozen=True)
class PairSamplingConfig:
    """Ranges a rendered pair must satisfy, and the photometric jitter of each view.

    Defaults give moderate, always-solvable pairs; ``hard_pair_config()`` gives Map-free-like ones.
    """

    scene: str = "mixed"  # room | courtyard | mixed (alternates by pair index)
    baseline_m: tuple[float, float] = (0.1, 1.5)  # camera-centre distance
    rotation_deg: tuple[float, float] = (0.0, 30.0)  # relative rotation angle
    overlap: tuple[float, float] = (0.3, 1.0)  # symmetric co-visibility, see overlap.pair_overlap
    focal_ratio: tuple[float, float] = (0.75, 0.9)  # fx / max(W, H): a phone's 60-70 deg diagonal
    camera_height_m: tuple[float, float] = (1.0, 1.8)  # hand-held / robot-mounted heights
    pitch_deg: tuple[float, float] = (-20.0, 10.0)  # both views; negative looks down
    max_roll_deg: float = 5.0
    min_surface_fraction: float = 0.5  # per view, pixels that see geometry (not sky)
    min_depth_spread: float = 1.5  # per view, depth p90 / p10: rejects views of one blank wall
    gain: tuple[float, float] = (0.75, 1.25)  # per-view exposure
    white_balance: float = 0.05  # per-channel gain jitter
    noise_sigma: tuple[float, float] = (1.0, 3.0)  # per-view sensor noise, 8-bit units
    max_tries: int = 300  # candidate poses per scene before trying another scene
    pairs_per_scene: int = 4  # consecutive pair indices share a place (scene generation is ~25 ms)
    max_scenes: int = 8  # places tried for one pair before giving up (a narrow rig needs more)
    long_view_fraction: float = 0.0  # first views looking down the longest free line of the place

    def __post_init__(self) -> None:
        for name in (
            "baseline_m",
            "rotation_deg",
            "overlap",
            "focal_ratio",
            "camera_height_m",
            "pitch_deg",
            "gain",
            "noise_sigma",
        ):
            low, high = getattr(self, name)
            if not low <= high:
                raise ValueError(
                    f"PairSamplingConfig.{name} must be (min, max) with min <= max, "
                    f"got {(low, high)}"
                )
        if self.max_scenes < 1:
            raise ValueError(f"PairSamplingConfig.max_scenes must be >= 1, got {self.max_scenes}")
        if self.pairs_per_scene < 1:
            raise ValueError(
                f"PairSamplingConfig.pairs_per_scene must be >= 1, got {self.pairs_per_scene}"
            )
        if self.scene not in ("room", "courtyard", "mixed"):
            raise ValueError(
                f"PairSamplingConfig.scene must be room, courtyard or mixed, got {self.scene!r}"
            )
        if not 0.0 <= self.long_view_fraction <= 1.0:
            raise ValueError(f"PairSamplingConfig.long_view_fraction must lie in [0, 1], got "
                             f"{self.long_view_fraction}")
        if not 0.0 <= self.overlap[0] <= 1.0 or self.overlap[1] < 0.0:
            raise ValueError(f"PairSamplingConfig.overlap must lie in [0, 1], got {self.overlap}")
        self._check_baseline_fits()

    def _check_baseline_fits(self) -> None:
        """Refuse a baseline no place of ``scene`` can hold (it failed after rendering places)."""
        kinds = ("room", "courtyard") if self.scene == "mixed" else (self.scene,)
        spans = {kind: max_camera_span_m(kind, self.camera_height_m) for kind in kinds}
        too_far = [kind for kind, span in spans.items() if self.baseline_m[0] > span]
        if len(too_far) == len(kinds):  # mixed: the courtyards can still hold it
            courtyard = ("" if "courtyard" in too_far else " or use scene courtyard (up to "
                         f"{max_camera_span_m('courtyard', self.camera_height_m):.1f} m)")
            raise ValueError(
                f"PairSamplingConfig.baseline_m {self.baseline_m} cannot fit in a "
                f"{' or '.join(too_far)} scene, where cameras are at most "
                f"{max(spans[k] for k in too_far):.1f} m apart; lower the minimum baseline"
                f"{courtyard}"
            )


DEFAULT_PAIR_CONFIG = PairSamplingConfig()


def hard_pair_config(**overrides) -> PairSamplingConfig:
    """Map-free-like hard pairs: metres apart, tens of degrees, low overlap."""
    values = dict(
        baseline_m=(1.0, 6.0), rotation_deg=(20.0, 60.0), overlap=(0.1, 0.6), scene="courtyard"
    )
    values.update(overrides)
    return PairSamplingConfig(**values)


def look_at(eye: np.ndarray, target: np.ndarray, roll_rad: float = 0.0) -> np.ndarray:
    """World-to-camera (4, 4) of a camera at ``eye`` looking at ``target`` with z-up world.

    >>> T = look_at(np.zeros(3), np.array([0.0, 1.0, 0.0]))
    >>> np.allclose(T[:3, :3] @ [0.0, 1.0, 0.0], [0.0, 0.0, 1.0])  # the target direction is +z
    True
    """
    forward = np.asarray(target, np.float64) - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    if np.linalg.norm(right) < 1e-6:  # looking straight up or down
        right = np.array([1.0, 0.0, 0.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    c, s = np.cos(roll_rad), np.sin(roll_rad)
    right, down = c * right + s * down, -s * right + c * down
    T = np.eye(4)
    T[:3, :3] = np.stack([right, down, forward])
    T[:3, 3] = -T[:3, :3] @ eye
    return T


def camera_centre(T_cam_world: np.ndarray) -> np.ndarray:
    """(3,) world position of the camera."""
    return -T_cam_world[:3, :3].T @ T_cam_world[:3, 3]


def pitch_deg(T_cam_world: np.ndarray) -> float:
    """Elevation of the optical axis above the horizontal plane (z up), degrees.

    >>> round(pitch_deg(look_at(np.zeros(3), np.array([1.0, 0.0, -1.0]))), 6)
    -45.0
    """
    forward_z = float(np.clip(T_cam_world[2, 2], -1.0, 1.0))  # world z of the camera's +z axis
    return float(np.degrees(np.arcsin(forward_z)))


def sample_intrinsics(
    rng: np.random.Generator, size_wh: tuple[int, int], focal_ratio: tuple[float, float]
) -> np.ndarray:
    """K (3, 3) with fx = fy = ratio * max(W, H) and a principal point within 1 % of the centre."""
    W, H = size_wh
    f = rng.uniform(*focal_ratio) * max(W, H)
    cx = (W - 1) / 2 + rng.uniform(-0.01, 0.01) * W
    cy = (H - 1) / 2 + rng.uniform(-0.01, 0.01) * H
    return np.array([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]])


def _interesting_point(rng: np.random.Generator, scene: Scene) -> np.ndarray:
    """An object (or the point of interest) at a random height up to eye level."""
    if len(scene.obstacles) == 0 or rng.random() < 0.15:
        return scene.poi
    x, y, _, top = scene.obstacles[rng.integers(len(scene.obstacles))]
    return np.array([x, y, rng.uniform(0.3, max(0.4, min(top, 1.8)))])


LONG_VIEW_HEADINGS = 16  # candidate headings of a long view; the one with the farthest bound wins


def distance_to_bounds(xy: np.ndarray, heading: np.ndarray,
                       bounds_xy: tuple[float, float, float, float]) -> np.ndarray:
    """(N,) distance from the point ``xy`` (2,) inside the rectangle ``bounds_xy`` to its edge
    along each ``heading`` (N,) in radians.

    >>> dist = distance_to_bounds(np.zeros(2), np.array([0.0, np.pi / 2]), (-4, 4, -1, 1))
    >>> dist.round(6).tolist()
    [4.0, 1.0]
    """
    x0, x1, y0, y1 = bounds_xy
    c, s = np.cos(heading), np.sin(heading)
    with np.errstate(divide="ignore"):
        along_x = np.where(c > 0, (x1 - xy[0]) / c, np.where(c < 0, (x0 - xy[0]) / c, np.inf))
        along_y = np.where(s > 0, (y1 - xy[1]) / s, np.where(s < 0, (y0 - xy[1]) / s, np.inf))
    return np.minimum(along_x, along_y)


def sample_first_camera(
    rng: np.random.Generator, scene: Scene, cfg: PairSamplingConfig, tries: int = 50
) -> np.ndarray | None:
    """A free camera pose, or None.

    With probability ``cfg.long_view_fraction`` it stands anywhere and looks down the longest
    line of sight of ``LONG_VIEW_HEADINGS`` random headings (a robot driving down a room: far
    walls at 5-11 m, rare otherwise). Else, mostly (90 %), it looks at an object from 1.5-7 m so
    the view shows a place rather than a blank wall, and otherwise in a random horizontal
    direction. Pitch and roll follow ``cfg``.
    """
    x0, x1, y0, y1 = scene.bounds_xy
    for _ in range(tries):
        z = min(rng.uniform(*cfg.camera_height_m), scene.max_camera_z - 0.05)
        # no draw at fraction 0: the pairs of every earlier config stay the same
        if cfg.long_view_fraction > 0 and rng.random() < cfg.long_view_fraction:
            eye = np.array([rng.uniform(x0, x1), rng.uniform(y0, y1), z])
            headings = rng.uniform(0, 2 * np.pi, LONG_VIEW_HEADINGS)
            yaw = headings[int(np.argmax(distance_to_bounds(eye[:2], headings, scene.bounds_xy)))]
            pitch = np.radians(rng.uniform(*cfg.pitch_deg))
        elif rng.random() < 0.9:
            target = _interesting_point(rng, scene)
            heading = rng.uniform(0, 2 * np.pi)
            distance = rng.uniform(1.5, 7.0)
            eye = np.r_[target[:2] - distance * np.array([np.cos(heading), np.sin(heading)]), z]
            yaw = heading + np.radians(rng.uniform(-15, 15))
            pitch = np.arctan2(target[2] - z, distance) + np.radians(rng.uniform(-5, 5))
            if not within(np.degrees(pitch), cfg.pitch_deg):
                continue
        else:
            eye = np.array([rng.uniform(x0, x1), rng.uniform(y0, y1), z])
            yaw, pitch = rng.uniform(0, 2 * np.pi), np.radians(rng.uniform(*cfg.pitch_deg))
        if not scene.is_free(eye)[0]:
            continue
        direction = np.array(
            [np.cos(yaw) * np.cos(pitch), np.sin(yaw) * np.cos(pitch), np.sin(pitch)]
        )
        roll = np.radians(rng.uniform(-cfg.max_roll_deg, cfg.max_roll_deg))
        return look_at(eye, eye + direction, roll)
    return None


def sample_second_camera(
    rng: np.random.Generator,
    scene: Scene,
    cfg: PairSamplingConfig,
    T_0_world: np.ndarray,
    fixation: np.ndarray,
) -> np.ndarray | None:
    """A second pose orbiting ``fixation`` (a surface point seen by view 0), or None if it fails.

    The orbit angle is drawn from ``cfg.rotation_deg`` and the distance to the fixation is solved
    so the camera-centre distance equals a baseline drawn from ``cfg.baseline_m``; the look-at
    target is jittered. The caller re-checks the exact rotation, baseline and overlap.
    """
    eye0 = camera_centre(T_0_world)
    offset = eye0 - fixation
    d0 = float(np.linalg.norm(offset[:2]))
    if d0 < 0.3:
        return None
    alpha = np.radians(rng.uniform(*cfg.rotation_deg)) * rng.choice([-1.0, 1.0])
    baseline = rng.uniform(*cfg.baseline_m)
    disc = np.cos(alpha) ** 2 - 1 + (baseline / d0) ** 2
    if disc < 0:
        return None
    roots = [s for s in (np.cos(alpha) + np.sqrt(disc), np.cos(alpha) - np.sqrt(disc)) if s > 0.15]
    if not roots:
        return None
    scale = roots[int(rng.integers(len(roots)))]
    c, s = np.cos(alpha), np.sin(alpha)
    xy = fixation[:2] + scale * np.array(
        [c * offset[0] - s * offset[1], s * offset[0] + c * offset[1]]
    )
    z = np.clip(eye0[2] + rng.normal(0, 0.15), *cfg.camera_height_m)
    eye1 = np.array([xy[0], xy[1], min(z, scene.max_camera_z - 0.05)])
    if not scene.is_free(eye1)[0]:
        return None
    target = fixation + rng.normal(0, 0.08 * d0, 3)
    roll = np.radians(rng.uniform(-cfg.max_roll_deg, cfg.max_roll_deg))
    return look_at(eye1, target, roll)


def within(value: float, bounds: tuple[float, float]) -> bool:
    """``bounds[0] <= value <= bounds[1]``."""
    return bounds[0] <= value <= bounds[1]
