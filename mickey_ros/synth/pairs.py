"""Rendered image pairs with exact K, relative pose, depth and co-visibility, and their files.

Convention:
    ``T_1_0`` (4, 4): X_1 = R X_0 + t in metres, i.e. ``T_query_ref`` with view 0 as the reference.
    Depth is camera z in metres, 0 where a pixel sees no surface (sky). K is OpenCV (pixel centres
    at integer coordinates). Pair ``index`` with a given ``seed`` always renders the same bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mickey_ros.geometry.pose import relative_pose, rotation_angle_deg
from mickey_ros.synth.cameras import (
    DEFAULT_PAIR_CONFIG,
    PairSamplingConfig,
    camera_centre,
    pitch_deg,
    sample_first_camera,
    sample_intrinsics,
    sample_second_camera,
    within,
)
from mickey_ros.synth.overlap import pair_overlap, stride_for
from mickey_ros.synth.render import Exposure, Renderer
from mickey_ros.synth.scene import Scene, make_scene
from mickey_ros.synth.textures import load_texture_bank
from mickey_ros.utils.config import config_to_dict
from mickey_ros.utils.images import scale_intrinsics

_ARRAYS = ("rgb0", "rgb1", "K0", "K1", "T_1_0", "depth0", "depth1", "overlap")
_LOW_RES = 4  # overlap pre-checks render at 1/4 size
OVERLAP_POINTS = 6000  # pixels per view sampled for the overlap score


@dataclass
class SyntheticPair:
    """One rendered pair.

    Attributes:
        rgb0, rgb1: (H, W, 3) uint8 images.
        K0, K1: (3, 3) float64 intrinsics.
        T_1_0: (4, 4) float64, X_1 = R X_0 + t, metres.
        depth0, depth1: (H, W) float32 camera z in metres, 0 where there is no surface.
        overlap: symmetric co-visibility in [0, 1] (``overlap.pair_overlap``).
        info: scene kind, baseline_m, rotation_deg, seed and index.
    """

    rgb0: np.ndarray
    rgb1: np.ndarray
    K0: np.ndarray
    K1: np.ndarray
    T_1_0: np.ndarray
    depth0: np.ndarray
    depth1: np.ndarray
    overlap: float
    info: dict = field(default_factory=dict)


def random_exposure(rng: np.random.Generator, cfg: PairSamplingConfig) -> Exposure:
    """Per-view gain, white balance and noise drawn from ``cfg``."""
    gain = rng.uniform(*cfg.gain) * (1 + rng.uniform(-cfg.white_balance, cfg.white_balance, 3))
    return Exposure(
        tuple(float(g) for g in gain),
        float(rng.uniform(*cfg.noise_sigma)),
        int(rng.integers(2**32)),
    )


def _fixation(rng: np.random.Generator, depth: np.ndarray, K: np.ndarray, T_cam_world: np.ndarray):
    """A world point seen near the image centre (random pixel of the central half with depth)."""
    H, W = depth.shape
    v, u = np.nonzero(depth[H // 4 : 3 * H // 4, W // 4 : 3 * W // 4] > 0)
    if len(v) == 0:
        return None
    i = int(rng.integers(len(v)))
    px = np.array([u[i] + W // 4, v[i] + H // 4, 1.0])
    X_cam = np.linalg.solve(K, px) * depth[v[i] + H // 4, u[i] + W // 4]
    return T_cam_world[:3, :3].T @ (X_cam - T_cam_world[:3, 3])


class PairSamplingError(ValueError):
    """No pair satisfies the configured ranges: a user's choice of ranges, said in one line."""


class PairRenderer:
    """Renders pairs fast by keeping one EGL context and the texture bank on the GPU.

    Args:
        size_wh: (W, H) of both images.
        seed: base seed; pair ``index`` uses ``np.random.default_rng([seed, index])``.
        config: pose, overlap and photometric ranges.

    Raises:
        EGLUnavailableError: if no headless OpenGL context can be created.
    """

    def __init__(
        self,
        size_wh: tuple[int, int] = (540, 720),
        seed: int = 0,
        config: PairSamplingConfig = DEFAULT_PAIR_CONFIG,
    ):
        W, H = (int(v) for v in size_wh)
        if W < 32 or H < 32:
            raise ValueError(f"size_wh must be at least 32x32, got {W}x{H}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.size_wh, self.seed, self.config = (W, H), int(seed), config
        self.bank = load_texture_bank()
        self.renderer = Renderer(self.bank)
        self._low_wh = (max(W // _LOW_RES, 8), max(H // _LOW_RES, 8))
        self._scene_key: tuple[int, int] | None = None

    def render_pair(self, index: int) -> SyntheticPair:
        """Render pair ``index`` (deterministic in ``(seed, index)``).

        Raises:
            PairSamplingError: if no pose satisfies the config's ranges after many scenes.
        """
        rng = np.random.default_rng([self.seed, int(index)])
        group = int(index) // self.config.pairs_per_scene
        cfg = self.config
        for attempt in range(cfg.max_scenes):
            kind, scene = self._scene(group, attempt)
            pair = self._sample_in_scene(rng, scene)
            if pair is not None:
                pair.info.update(scene=kind, seed=self.seed, index=int(index))
                return pair
        raise PairSamplingError(
            f"pair {index}: no camera pair satisfies baseline {cfg.baseline_m} m, rotation "
            f"{cfg.rotation_deg} deg, overlap {cfg.overlap}, pitch {cfg.pitch_deg} deg and "
            f"camera height {cfg.camera_height_m} m in {cfg.max_scenes} scenes; widen these "
            "ranges (large rotations need large baselines) or raise max_scenes (a narrow rig "
            "succeeds in fewer places)"
        )

    def _scene(self, group: int, attempt: int) -> tuple[str, Scene]:
        """Scene ``(group, attempt)``, generated from its own seed and uploaded (cached)."""
        key = (group, attempt)
        if self._scene_key != key:
            kind = self.config.scene
            if kind == "mixed":
                kind = ("room", "courtyard")[(group + attempt) % 2]
            rng = np.random.default_rng([self.seed, group, attempt, 1])
            self.renderer.set_scene(make_scene(kind, rng, self.bank))
            self._scene_key = key
        return self.renderer.scene.kind, self.renderer.scene

    def close(self) -> None:
        """Free the GPU textures and buffers (the renderer cannot be used afterwards)."""
        self.renderer.release()

    def __enter__(self) -> PairRenderer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _low_res(self, K: np.ndarray) -> np.ndarray:
        return scale_intrinsics(
            K, self._low_wh[0] / self.size_wh[0], self._low_wh[1] / self.size_wh[1]
        )

    def _surface_ok(self, depth: np.ndarray) -> bool:
        """Enough surface (not sky) and enough depth range (not one blank wall)."""
        valid = depth[depth > 0]
        if len(valid) < self.config.min_surface_fraction * depth.size:
            return False
        p10, p90 = np.percentile(valid, [10, 90])
        return p90 >= self.config.min_depth_spread * p10

    def _sample_in_scene(self, rng: np.random.Generator, scene: Scene) -> SyntheticPair | None:
        cfg, tries = self.config, 0
        while tries < cfg.max_tries:
            tries += 1
            T0 = sample_first_camera(rng, scene, cfg)
            K0 = sample_intrinsics(rng, self.size_wh, cfg.focal_ratio)
            if T0 is None:
                continue
            _, low0 = self.renderer.render(T0, self._low_res(K0), self._low_wh, with_rgb=False)
            fixation = (
                _fixation(rng, low0, self._low_res(K0), T0) if self._surface_ok(low0) else None
            )
            for _ in range(6 if fixation is not None else 0):
                tries += 1
                pair = self._try_second(rng, scene, T0, K0, low0, fixation)
                if pair is not None:
                    return pair
        return None

    def _try_second(
        self,
        rng: np.random.Generator,
        scene: Scene,
        T0: np.ndarray,
        K0: np.ndarray,
        low0: np.ndarray,
        fixation: np.ndarray,
    ) -> SyntheticPair | None:
        """One second view for (T0, K0); the pair if every range holds, else None.

        Checks run cheapest first: pose ranges, a 1/4-size depth render and its overlap, and
        only then the two full renders and the exact overlap.
        """
        cfg = self.config
        T1 = sample_second_camera(rng, scene, cfg, T0, fixation)
        if T1 is None:
            return None
        T_1_0 = relative_pose(T0, T1)
        centres = (camera_centre(T0), camera_centre(T1))
        baseline = float(np.linalg.norm(centres[1] - centres[0]))
        angle = rotation_angle_deg(T_1_0)
        pitches = [pitch_deg(T0), pitch_deg(T1)]
        if not (
            within(baseline, cfg.baseline_m)
            and within(angle, cfg.rotation_deg)
            and within(pitches[1], cfg.pitch_deg)
        ):
            return None
        K1 = sample_intrinsics(rng, self.size_wh, cfg.focal_ratio)
        _, low1 = self.renderer.render(T1, self._low_res(K1), self._low_wh, with_rgb=False)
        if not self._surface_ok(low1):
            return None
        low_overlap = pair_overlap(
            low0,
            self._low_res(K0),
            low1,
            self._low_res(K1),
            T_1_0,
            stride_for(self._low_wh, OVERLAP_POINTS),
        )
        if not within(low_overlap, (cfg.overlap[0] - 0.05, cfg.overlap[1] + 0.05)):
            return None
        rgb0, depth0 = self.renderer.render(T0, K0, self.size_wh, random_exposure(rng, cfg))
        rgb1, depth1 = self.renderer.render(T1, K1, self.size_wh, random_exposure(rng, cfg))
        stride = stride_for(self.size_wh, OVERLAP_POINTS)
        overlap = pair_overlap(depth0, K0, depth1, K1, T_1_0, stride=stride)
        if not within(overlap, cfg.overlap):
            return None
        info = {
            "baseline_m": baseline,
            "rotation_deg": angle,
            "pitch_deg": pitches,
            "camera_height_m": [float(c[2]) for c in centres],
        }
        return SyntheticPair(rgb0, rgb1, K0, K1, T_1_0, depth0, depth1, overlap, info)


def save_pair(path: str | Path, pair: SyntheticPair) -> Path:
    """Write one pair as an uncompressed ``.npz`` holding every array plus ``info_json``.

    Uncompressed on purpose: zlib shrinks a 540 x 720 pair only from 5.4 to 4.1 MB (noisy float
    depth) at 10x the time, which would make writing slower than rendering.
    """
    path = Path(path)
    arrays = {name: getattr(pair, name) for name in _ARRAYS}
    arrays["overlap"] = np.float64(pair.overlap)
    arrays["info_json"] = np.array(json.dumps(pair.info))
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)  # a crash never leaves a truncated pair behind
    return path


def read_pair(path: str | Path) -> SyntheticPair:
    """Load a pair written by ``write_pairs`` / ``save_pair``.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the file lacks one of the pair arrays.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pair file {path} does not exist")
    with np.load(path, allow_pickle=False) as data:
        missing = [name for name in _ARRAYS if name not in data.files]
        if missing:
            raise ValueError(f"{path} is not a synthetic pair file: missing {missing}")
        values = {name: data[name] for name in _ARRAYS}
        info = json.loads(str(data["info_json"])) if "info_json" in data.files else {}
    values["overlap"] = float(values["overlap"])
    return SyntheticPair(**values, info=info)


def list_pairs(out_dir: str | Path) -> list[Path]:
    """The pair files listed in ``out_dir/pairs.json``, in index order."""
    index = json.loads((Path(out_dir) / "pairs.json").read_text())
    return [Path(out_dir) / entry["file"] for entry in index["pairs"]]


def _write_one(out: Path, index: int, pair: SyntheticPair, previews: bool) -> dict:
    """Save pair ``index`` (npz and optional previews); return its entry for pairs.json."""
    import cv2

    name = f"pair_{index:05d}"
    save_pair(out / f"{name}.npz", pair)
    if previews:  # JPEG: 6 ms vs 50 ms for PNG; the exact pixels are in the .npz
        for view, rgb in (("0", pair.rgb0), ("1", pair.rgb1)):
            cv2.imwrite(
                str(out / f"{name}_{view}.jpg"), rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95]
            )
    extra = {k: v for k, v in pair.info.items() if k not in ("seed", "index")}
    return {"file": f"{name}.npz", "overlap": round(pair.overlap, 4), **extra}


def write_pairs(
    out_dir: str | Path,
    count: int,
    size_wh: tuple[int, int] = (540, 720),
    seed: int = 0,
    config: PairSamplingConfig = DEFAULT_PAIR_CONFIG,
    previews: bool = True,
    progress: bool = True,
) -> Path:
    """Render ``count`` pairs into ``out_dir`` and return it.

    Writes ``pair_XXXXX.npz`` (rgb0, rgb1, K0, K1, T_1_0, depth0, depth1, overlap, info_json),
    optional ``pair_XXXXX_0.jpg`` / ``_1.jpg`` previews and ``pairs.json`` (settings and, per
    pair, file, overlap, baseline_m, rotation_deg, scene).

    Raises:
        FileExistsError: if ``out_dir`` already holds a ``pairs.json``.
        PairSamplingError: no pair satisfies ``config`` (before ``out_dir`` is created when
            the first pair fails).
    """
    from tqdm import tqdm

    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    out = Path(out_dir)
    if (out / "pairs.json").exists():
        raise FileExistsError(f"{out} already holds a pair set (pairs.json); choose a new --out")
    bar = tqdm(total=count, desc="synthetic pairs", unit="pair", disable=not progress)
    with PairRenderer(size_wh, seed, config) as renderer, bar:
        first = renderer.render_pair(0)  # EGL or impossible ranges fail before any file exists
        out.mkdir(parents=True, exist_ok=True)
        entries = []
        for index in range(count):
            pair = first if index == 0 else renderer.render_pair(index)
            entries.append(_write_one(out, index, pair, previews))
            bar.update()
    index_data = {
        "format": "mickey_ros synthetic pairs v1",
        "count": count,
        "size_wh": list(size_wh),
        "seed": seed,
        "config": config_to_dict(config),
        "pairs": entries,
    }
    (out / "pairs.json").write_text(json.dumps(index_data, indent=1))
    return out
