"""Training and validation pairs: the Map-free layout (real or converted data) and synthetic scenes.

Every dataset yields the same dict per pair (tensors, collated by the default collate):

* ``image0``, ``image1``: (3, H, W) float [0, 1], resized to the configured size;
* ``K0``, ``K1``: (3, 3) intrinsics of the resized images (used to back-project keypoints);
* ``K0_orig``, ``K1_orig``: (3, 3) original intrinsics (the VCRE loss and metrics work in the
  original pixels, as the official code does);
* ``T_1_0``: (4, 4) ground truth ``X_1 = T_1_0 X_0`` (image 0 = reference, metres);
* ``image_size``: (2,) original (W, H) of the query image, for the Map-free VCRE clamp;
* ``depth0``, ``depth1``: (H, W) ground-truth z in metres, 0 = unknown (synthetic data only).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from mickey_ros.mapfree.dataset import list_scenes
from mickey_ros.train.config import DataConfig
from mickey_ros.utils.images import resize_with_intrinsics, to_tensor


def make_sample(
    rgb0: np.ndarray,
    rgb1: np.ndarray,
    K0: np.ndarray,
    K1: np.ndarray,
    T_1_0: np.ndarray,
    size_wh: tuple[int, int],
    depth0: np.ndarray | None = None,
    depth1: np.ndarray | None = None,
) -> dict[str, torch.Tensor]:
    """Resize a pair to ``size_wh`` and pack it as the training dict described in the module doc."""
    img0, K0_net = resize_with_intrinsics(rgb0, K0, size_wh)
    img1, K1_net = resize_with_intrinsics(rgb1, K1, size_wh)
    sample = {
        "image0": to_tensor(img0),
        "image1": to_tensor(img1),
        "K0": torch.as_tensor(K0_net, dtype=torch.float32),
        "K1": torch.as_tensor(K1_net, dtype=torch.float32),
        "K0_orig": torch.as_tensor(K0, dtype=torch.float32),
        "K1_orig": torch.as_tensor(K1, dtype=torch.float32),
        "T_1_0": torch.as_tensor(T_1_0, dtype=torch.float32),
        "image_size": torch.tensor([rgb1.shape[1], rgb1.shape[0]], dtype=torch.float32),
    }
    if depth0 is not None and depth1 is not None:
        W, H = size_wh
        for key, depth in (("depth0", depth0), ("depth1", depth1)):
            depth = np.nan_to_num(np.asarray(depth, dtype=np.float32), nan=0.0, posinf=0.0)
            if depth.shape != (H, W):  # nearest: never blend depths across occlusion edges
                depth = cv2.resize(depth, (W, H), interpolation=cv2.INTER_NEAREST)
            sample[key] = torch.from_numpy(np.ascontiguousarray(depth))
    return sample


class MapFreePairs(Dataset):
    """Pairs of a Map-free-layout split.

    Training (``pairs="overlap"``): the pairs of each scene's ``overlaps.npz`` with
    ``min_overlap < overlap < max_overlap``. Validation (``pairs="reference"``): the reference frame
    against every ``query_step``-th query frame, as the benchmark evaluates.
    """

    def __init__(self, data_root: str | Path, split: str, config: DataConfig, pairs: str) -> None:
        if pairs not in ("overlap", "reference"):
            raise ValueError(f"pairs must be 'overlap' or 'reference', got {pairs!r}")
        self.size_wh = (config.width, config.height)
        self.depth_suffix, self.depth_scale = config.depth_suffix, config.depth_metres_per_unit
        self.scenes = list_scenes(data_root, split)
        if not self.scenes:
            raise FileNotFoundError(f"no scenes in {Path(data_root) / split}")
        self.items: list[tuple[int, str, str]] = []  # (scene index, frame 0, frame 1)
        for s, scene in enumerate(self.scenes):
            if pairs == "overlap":
                found = scene.overlap_pairs(config.min_overlap, config.max_overlap)
                self.items += [(s, p.frame_a, p.frame_b) for p in found]
            else:
                ref = scene.reference_frame
                self.items += [(s, ref, q) for q in scene.query_frames(config.val_query_step)]
        if not self.items:
            raise ValueError(
                f"no {pairs} pairs in {Path(data_root) / split} with overlap in "
                f"({config.min_overlap}, {config.max_overlap}); widen data.min_overlap/max_overlap"
            )

    def __len__(self) -> int:
        return len(self.items)

    def scene_index(self) -> list[int]:
        """Scene index of every item (for :class:`SceneBalancedSampler`)."""
        return [s for s, _, _ in self.items]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        s, frame0, frame1 = self.items[index]
        scene = self.scenes[s]
        T_1_0 = scene.T_query_ref(frame0, frame1)
        depths = (None, None)
        if self.depth_suffix:
            depths = tuple(
                scene.load_depth(f, self.depth_suffix, self.depth_scale) for f in (frame0, frame1)
            )
        return make_sample(
            scene.load_rgb(frame0),
            scene.load_rgb(frame1),
            scene.K(frame0),
            scene.K(frame1),
            T_1_0,
            self.size_wh,
            *depths,
        )


class SceneBalancedSampler(Sampler[int]):
    """Official ``scene_balance`` sampler: ``per_scene`` items per scene, with replacement.

    Each epoch draws anew and shuffles (Map-free train: 460 x 100 = 46,000 pairs per epoch).
    """

    def __init__(self, scene_of_item: list[int], per_scene: int, seed: int) -> None:
        self.per_scene, self.seed, self.epoch = per_scene, seed, 0
        scenes = sorted(set(scene_of_item))
        self.items = [np.flatnonzero(np.asarray(scene_of_item) == s) for s in scenes]

    def set_epoch(self, epoch: int) -> None:
        """Change the draw (called by the training loop at every epoch start)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.per_scene * len(self.items)

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        picks = np.concatenate([rng.choice(items, self.per_scene) for items in self.items])
        return iter(rng.permutation(picks).tolist())


class SyntheticPairs(Dataset):
    """Synthetic pairs with exact depth, pre-rendered ``*.npz`` files or rendered on the fly.

    Args:
        config: image size and, for on-the-fly rendering, the pair count.
        seed: scene seed (train and validation use different seeds, so they share no scene).
        count: number of pairs when rendering on the fly.
        pairs_dir: folder of pair files written by ``mickey_ros.synth.pairs.write_pairs``; when
            given, those files are read (sorted by name) instead of rendering.
    """

    def __init__(
        self, config: DataConfig, seed: int, count: int, pairs_dir: str | Path | None = None
    ) -> None:
        self.size_wh = (config.width, config.height)
        self.seed, self.count, self.pair_config = seed, count, config.synthetic_pairs
        self.files: list[Path] | None = None
        if pairs_dir is not None:
            self.files = sorted(Path(pairs_dir).glob("*.npz"))
            if not self.files:
                raise FileNotFoundError(
                    f"no pair files (*.npz) in {pairs_dir}; write them with `mickey-ros synth`"
                )
        self._renderer = None  # created lazily: one GL context per worker process

    def __len__(self) -> int:
        return len(self.files) if self.files is not None else self.count

    def _render(self, index: int):
        from mickey_ros.synth.pairs import PairRenderer

        if self._renderer is None:
            self._renderer = PairRenderer(self.size_wh, self.seed, self.pair_config)
        return self._renderer.render_pair(index)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if self.files is not None:
            from mickey_ros.synth.pairs import read_pair

            pair = read_pair(self.files[index])
        else:
            pair = self._render(index)
        return make_sample(pair.rgb0, pair.rgb1, pair.K0, pair.K1, pair.T_1_0, self.size_wh,
                           pair.depth0, pair.depth1)


def _has_depth(config: DataConfig) -> bool:
    """Whether the samples of a source carry ``depth0``/``depth1``."""
    return config.source == "synthetic" or bool(config.depth_suffix)


class MixedPairs(Dataset):
    """A main training set followed by a rehearsal set, one index space.

    Items ``[0, len(main))`` are the main set's, the rest the rehearsal set's. When either source
    carries depth, a sample without it gets all-zero depth maps (0 = unknown: no supervision) so
    that both kinds collate into one batch.
    """

    def __init__(self, main: Dataset, rehearsal: Dataset, with_depth: bool) -> None:
        self.main, self.rehearsal, self.with_depth = main, rehearsal, with_depth

    def __len__(self) -> int:
        return len(self.main) + len(self.rehearsal)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        n_main = len(self.main)
        sample = self.main[index] if index < n_main else self.rehearsal[index - n_main]
        if self.with_depth and "depth0" not in sample:
            H, W = sample["image0"].shape[-2:]
            sample = {**sample, "depth0": torch.zeros(H, W), "depth1": torch.zeros(H, W)}
        return sample


def rehearsal_counts(num_batches: int, batch_size: int, fraction: float) -> np.ndarray:
    """Rehearsal items in each of ``num_batches`` batches: within one of ``fraction * batch_size``
    in every batch and exactly ``round(fraction * batch_size * n)`` over the first ``n`` batches.

    >>> rehearsal_counts(4, 4, 0.3).tolist()
    [1, 1, 2, 1]
    """
    cumulative = np.round(fraction * batch_size * np.arange(num_batches + 1))
    return np.diff(cumulative).astype(np.int64)


class RehearsalSampler(Sampler[int]):
    """Indices into :class:`MixedPairs`: every batch holds its rehearsal share.

    One epoch walks the main sampler's order once (in batches of ``batch_size - r``); the ``r``
    rehearsal items of each batch come from the rehearsal sampler's order (a permutation when it
    has none), repeated as needed. The draw is a pure function of ``(seed, epoch)``, so a resumed
    run draws what an uninterrupted one would.

    Args:
        main: the main set's sampler, or None for a permutation of its ``n_main`` items.
        n_main: items in the main set.
        rehearsal: the rehearsal set's sampler, or None for a permutation of its items.
        n_rehearsal: items in the rehearsal set.
        fraction: share of each batch from the rehearsal set, in (0, 1).
        batch_size: the training batch size.
        seed: the training seed.
    """

    def __init__(
        self, main: Sampler | None, n_main: int, rehearsal: Sampler | None, n_rehearsal: int,
        fraction: float, batch_size: int, seed: int,
    ) -> None:
        self.main, self.n_main, self.rehearsal, self.n_rehearsal = (
            main, n_main, rehearsal, n_rehearsal)
        self.fraction, self.batch_size, self.seed, self.epoch = fraction, batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Change the draw (called by the training loop at every epoch start)."""
        self.epoch = epoch
        for sampler in (self.main, self.rehearsal):
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)

    def _counts(self) -> np.ndarray:
        n_main = len(self.main) if self.main is not None else self.n_main
        # batches until the main order is used up: the main share is batch_size - r per batch
        mean_main = self.batch_size * (1.0 - self.fraction)
        counts = rehearsal_counts(int(np.ceil(n_main / mean_main)) + 1, self.batch_size,
                                  self.fraction)
        used = np.cumsum(self.batch_size - counts)
        return counts[: int(np.searchsorted(used, n_main, side="right"))]

    def __len__(self) -> int:
        return int(self.batch_size * len(self._counts()))

    def _order(self, sampler: Sampler | None, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.asarray(list(sampler) if sampler is not None else rng.permutation(n))

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch, 1])
        counts = self._counts()
        main = self._order(self.main, self.n_main, rng)
        rehearsal = self._order(self.rehearsal, self.n_rehearsal, rng)
        repeats = int(np.ceil(max(counts.sum(), 1) / len(rehearsal)))
        rehearsal = np.tile(rehearsal, repeats) + self.n_main
        order, m, r = [], 0, 0
        for count in counts:
            batch = np.concatenate([main[m: m + self.batch_size - count], rehearsal[r: r + count]])
            order += rng.permutation(batch).tolist()
            m, r = m + self.batch_size - count, r + count
        return iter(order)


def _train_source(
    config: DataConfig, data_dir: str | Path | None, seed: int
) -> tuple[Dataset, Sampler | None]:
    """Training set of one source and its sampler (None = plain shuffling)."""
    if config.source == "synthetic":
        train_dir = Path(data_dir) / "train" if data_dir is not None else None
        return SyntheticPairs(
            config, config.synthetic_train_seed, config.synthetic_train_pairs, train_dir
        ), None
    if data_dir is None:
        raise ValueError(
            "data.source 'mapfree' needs --data pointing at the folder with train/ and val/"
        )
    train = MapFreePairs(data_dir, config.train_split, config, "overlap")
    return train, SceneBalancedSampler(train.scene_index(), config.pairs_per_scene, seed)


def build_datasets(
    config: DataConfig, data_dir: str | Path | None, seed: int = 0, batch_size: int = 1
) -> tuple[Dataset, Dataset, Sampler | None]:
    """Training set, validation set and training sampler (None = plain shuffling).

    For ``source="synthetic"``, ``data_dir`` may hold ``train/`` and ``val/`` folders of
    pre-rendered pair files; without it, pairs are rendered on the fly. With ``data.rehearsal``
    the training set is a :class:`MixedPairs` and every batch of ``batch_size`` draws
    ``data.rehearsal_fraction`` of its items from the rehearsal source (:class:`RehearsalSampler`).
    """
    train, sampler = _train_source(config, data_dir, seed)
    if config.source == "synthetic":
        val_dir = Path(data_dir) / "val" if data_dir is not None else None
        val = SyntheticPairs(config, config.synthetic_val_seed, config.synthetic_val_pairs, val_dir)
    else:
        val = MapFreePairs(data_dir, config.val_split, config, "reference")
    r = config.rehearsal
    if r is None:
        return train, val, sampler
    old, old_sampler = _train_source(r, config.rehearsal_dir or None, seed)
    mixed = MixedPairs(train, old, _has_depth(config) or _has_depth(r))
    mixed_sampler = RehearsalSampler(sampler, len(train), old_sampler, len(old),
                                     config.rehearsal_fraction, batch_size, seed)
    return mixed, val, mixed_sampler
