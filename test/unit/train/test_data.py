from collections import Counter

import numpy as np
import pytest
import torch

from mickey_ros.synth.cameras import PairSamplingConfig
from mickey_ros.train.config import DataConfig
from mickey_ros.train.data import (
    MapFreePairs,
    MixedPairs,
    RehearsalSampler,
    SceneBalancedSampler,
    SyntheticPairs,
    build_datasets,
    make_sample,
    rehearsal_counts,
)


def _render_or_skip(fn, *args, **kwargs):
    pytest.importorskip("moderngl")
    from mickey_ros.synth.render import EGLUnavailableError

    try:
        return fn(*args, **kwargs)
    except EGLUnavailableError as err:
        pytest.skip(f"no headless OpenGL: {err}")


class TestMakeSample:
    def test_keys_shapes_and_scaled_K(self):
        rgb = np.zeros((48, 64, 3), np.uint8)
        K = np.array([[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]])
        depth = np.full((48, 64), 3.0, np.float32)
        s = make_sample(rgb, rgb, K, K, np.eye(4), (32, 24), depth, depth)
        assert sorted(s) == sorted(["image0", "image1", "K0", "K1", "K0_orig", "K1_orig", "T_1_0",
                                    "image_size", "depth0", "depth1"])
        assert s["image0"].shape == (3, 24, 32) and s["depth0"].shape == (24, 32)
        # pixel-centre convention: cx' = 0.5 * 31.5 + 0.25 - 0.5
        assert s["K0"][0, 2].item() == pytest.approx(15.5)
        assert s["K0_orig"][0, 0].item() == 50.0
        assert s["image_size"].tolist() == [64.0, 48.0]
        assert torch.all(s["depth1"] == 3.0)

    def test_nan_depth_becomes_unknown(self):
        rgb = np.zeros((24, 32, 3), np.uint8)
        depth = np.full((24, 32), np.nan, np.float32)
        s = make_sample(rgb, rgb, np.eye(3), np.eye(3), np.eye(4), (32, 24), depth, depth)
        assert torch.all(s["depth0"] == 0)

    def test_without_depth(self):
        rgb = np.zeros((24, 32, 3), np.uint8)
        s = make_sample(rgb, rgb, np.eye(3), np.eye(3), np.eye(4), (32, 24))
        assert "depth0" not in s


class TestSceneBalancedSampler:
    scenes = [0, 0, 0, 1, 2, 2]

    def test_draws_per_scene_each_epoch(self):
        sampler = SceneBalancedSampler(self.scenes, per_scene=5, seed=0)
        picks = list(sampler)
        assert len(picks) == len(sampler) == 15
        assert Counter(self.scenes[i] for i in picks) == {0: 5, 1: 5, 2: 5}

    def test_deterministic_and_changes_with_epoch(self):
        a, b = SceneBalancedSampler(self.scenes, 5, 0), SceneBalancedSampler(self.scenes, 5, 0)
        assert list(a) == list(b)
        b.set_epoch(1)
        assert list(a) != list(b)


@pytest.fixture(scope="module")
def mapfree_root(tmp_path_factory):
    from mickey_ros.synth.mapfree import write_mapfree_dataset

    root = tmp_path_factory.mktemp("mapfree")
    _render_or_skip(write_mapfree_dataset, root, 1, 3, "train", (112, 84), 0, progress=False,
                    depth_suffix=".depth.png")
    _render_or_skip(write_mapfree_dataset, root, 1, 6, "val", (112, 84), 1, progress=False)
    return root


class TestMapFreePairs:
    def test_overlap_filter_is_strict(self, mapfree_root):
        cfg = DataConfig(width=112, height=84)
        everything = MapFreePairs(mapfree_root, "train", cfg, "overlap")
        overlaps = sorted(p.overlap for p in everything.scenes[0].overlap_pairs())
        cut = overlaps[len(overlaps) // 2]
        some = MapFreePairs(mapfree_root, "train", DataConfig(min_overlap=cut), "overlap")
        assert len(some) == sum(o > cut for o in overlaps) < len(everything)

    def test_reference_pairs_every_5th_query(self, mapfree_root):
        val = MapFreePairs(mapfree_root, "val", DataConfig(width=112, height=84), "reference")
        assert [q for _, _, q in val.items] == ["seq1/frame_00000.jpg", "seq1/frame_00005.jpg"]
        sample = val[1]
        assert sample["image1"].shape == (3, 84, 112)
        assert torch.allclose(sample["T_1_0"][3], torch.tensor([0.0, 0.0, 0.0, 1.0]))

    def test_depth_suffix_loads_rgbd_depth_for_the_warm_up(self, mapfree_root):
        from mickey_ros.geometry.camera import backproject, project

        cfg = DataConfig(width=112, height=84, depth_suffix=".depth.png")
        pairs = MapFreePairs(mapfree_root, "train", cfg, "overlap")
        sample = pairs[0]
        d0, d1 = sample["depth0"], sample["depth1"]
        assert d0.shape == d1.shape == (84, 112) and d0.dtype == torch.float32
        # millimetre PNGs: the depth moves through the GT pose into the other view's depth
        v, u = torch.meshgrid(torch.arange(0, 84, 4.0), torch.arange(0, 112, 4.0), indexing="ij")
        uv = torch.stack([u, v], -1).reshape(-1, 2)
        z0 = d0[uv[:, 1].long(), uv[:, 0].long()]
        X0 = backproject(uv[None], z0[None], sample["K0"][None])[0]
        X1 = X0 @ sample["T_1_0"][:3, :3].T + sample["T_1_0"][:3, 3]
        uv1 = project(X1, sample["K1"]).round().long()
        inside = (z0 > 0) & (uv1[:, 0] >= 0) & (uv1[:, 0] < 112) & (uv1[:, 1] >= 0)
        inside &= (uv1[:, 1] < 84) & (X1[:, 2] > 0)
        z1 = d1[uv1[inside, 1], uv1[inside, 0]]
        agree = ((z1 - X1[inside, 2]).abs() < 0.02 * z1).float().mean()
        assert inside.sum() > 50 and agree > 0.8
        assert "depth0" not in MapFreePairs(mapfree_root, "train", DataConfig(), "overlap")[0]

    def test_missing_depth_file_names_it(self, mapfree_root):
        cfg = DataConfig(width=112, height=84, depth_suffix=".zed.png")
        with pytest.raises(FileNotFoundError, match=r"frame_00000\.zed\.png"):
            MapFreePairs(mapfree_root, "train", cfg, "overlap")[0]

    def test_empty_filter_names_the_fix(self, mapfree_root):
        with pytest.raises(ValueError, match="min_overlap"):
            MapFreePairs(mapfree_root, "train", DataConfig(min_overlap=0.99999), "overlap")


class TestSyntheticPairs:
    def test_reads_pair_files(self, tmp_path):
        from mickey_ros.synth.pairs import write_pairs

        _render_or_skip(write_pairs, tmp_path, 2, (96, 72), 5, previews=False, progress=False)
        data = SyntheticPairs(DataConfig(width=96, height=72), 5, 0, tmp_path)
        assert len(data) == 2
        sample = data[1]
        assert sample["depth0"].shape == (72, 96) and sample["depth0"].max() > 0

    def test_missing_files_name_the_fix(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="mickey-ros synth"):
            SyntheticPairs(DataConfig(), 0, 0, tmp_path)


class TestBuildDatasets:
    def test_mapfree_needs_data(self):
        with pytest.raises(ValueError, match="--data"):
            build_datasets(DataConfig(source="mapfree"), None)

    def test_synthetic_without_data_renders_on_the_fly(self):
        train, val, sampler = build_datasets(
            DataConfig(source="synthetic", synthetic_train_pairs=7, synthetic_val_pairs=3), None
        )
        assert (len(train), len(val), sampler) == (7, 3, None)
        assert train.seed != val.seed

    def test_synthetic_scene_kind_reaches_the_renderer(self):
        pytest.importorskip("moderngl")
        pairs = PairSamplingConfig(scene="room", pitch_deg=(-15.0, 0.0))
        train, _, _ = build_datasets(DataConfig(source="synthetic", width=96, height=72,
                                                synthetic_pairs=pairs), None)
        assert train.pair_config is pairs
        try:
            kinds = {train._render(i).info["scene"] for i in range(2)}
        except RuntimeError as err:  # EGLUnavailableError is a RuntimeError
            pytest.skip(f"no headless OpenGL: {err}")
        assert kinds == {"room"}


class TestRehearsalCounts:
    def test_each_batch_within_one_and_the_total_exact(self):
        counts = rehearsal_counts(100, 4, 0.3)
        assert set(counts.tolist()) == {1, 2} and counts.sum() == 120
        assert rehearsal_counts(5, 4, 0.5).tolist() == [2] * 5


class TestRehearsalSampler:
    def sampler(self, seed=0, fraction=0.5, n_main=40, batch_size=4):
        return RehearsalSampler(None, n_main, None, 1000, fraction, batch_size, seed)

    def test_every_batch_holds_its_share(self):
        order = np.array(list(self.sampler()))
        assert len(order) == len(self.sampler()) == 80  # 40 main items, as many rehearsal
        rehearsed = (order >= 40).reshape(-1, 4).sum(1)
        assert rehearsed.tolist() == [2] * 20
        assert sorted(order[order < 40].tolist()) == list(range(40))  # main: once per epoch
        assert len(set(order[order >= 40].tolist())) == 40 and order.max() < 1040

    def test_uneven_share_over_an_epoch(self):
        order = np.array(list(self.sampler(fraction=0.25, n_main=30)))
        assert len(order) == 40 and (order >= 30).sum() == 10
        assert sorted(order[order < 30].tolist()) == list(range(30))

    def test_deterministic_with_seed_and_epoch(self):
        a, b, c = self.sampler(seed=3), self.sampler(seed=3), self.sampler(seed=4)
        assert list(a) == list(b) and list(a) != list(c)
        b.set_epoch(1)
        assert list(b) != list(a)
        a.set_epoch(1)
        assert list(a) == list(b)  # a resumed run at epoch 1 draws what the first run did

    def test_wraps_a_main_sampler_and_passes_the_epoch(self):
        main = SceneBalancedSampler([0] * 5 + [1] * 5, per_scene=6, seed=0)
        sampler = RehearsalSampler(main, 10, None, 50, 0.5, 4, 0)
        sampler.set_epoch(2)
        assert main.epoch == 2
        order = np.array(list(sampler))
        assert len(order) == 24 and sorted(order[order < 10].tolist()) == sorted(main)


class TestMixedPairs:
    @staticmethod
    def sample(value, depth):
        s = {"image0": torch.full((3, 6, 8), value)}
        if depth:
            s["depth0"] = s["depth1"] = torch.ones(6, 8)
        return s

    def test_routes_indices_and_fills_missing_depth_with_unknown(self):
        main = [self.sample(0.0, False)] * 3
        rehearsal = [self.sample(1.0, True)] * 2
        mixed = MixedPairs(main, rehearsal, with_depth=True)
        assert len(mixed) == 5
        assert mixed[2]["image0"].max() == 0 and mixed[3]["image0"].min() == 1
        assert mixed[0]["depth0"].shape == (6, 8) and mixed[0]["depth1"].abs().sum() == 0
        assert mixed[4]["depth0"].min() == 1
        assert "depth0" not in MixedPairs(main, main, with_depth=False)[4]


class TestBuildDatasetsRehearsal:
    def test_mapfree_with_synthetic_rehearsal(self, mapfree_root):
        rehearsal = DataConfig(source="synthetic", width=112, height=84,
                               synthetic_train_pairs=500)
        cfg = DataConfig(width=112, height=84, pairs_per_scene=10, rehearsal=rehearsal,
                         rehearsal_fraction=0.5)
        train, val, sampler = build_datasets(cfg, mapfree_root, seed=1, batch_size=4)
        assert isinstance(train, MixedPairs) and isinstance(sampler, RehearsalSampler)
        n_main = len(train.main)
        assert len(train) == n_main + 500 and train.with_depth
        order = np.array(list(sampler))
        assert len(order) == 20 and (order >= n_main).reshape(-1, 4).sum(1).tolist() == [2] * 5
        assert isinstance(val, MapFreePairs)  # validation stays on the main source
        assert list(sampler) == list(build_datasets(cfg, mapfree_root, 1, 4)[2])

    def test_mapfree_rehearsal_reads_its_own_root(self, mapfree_root):
        cfg = DataConfig(width=112, height=84, rehearsal=DataConfig(width=112, height=84),
                         rehearsal_fraction=0.5, rehearsal_dir=str(mapfree_root))
        train, _, _ = build_datasets(cfg, mapfree_root, seed=0, batch_size=2)
        assert len(train) == 2 * len(train.main) and not train.with_depth
