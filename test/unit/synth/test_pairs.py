from __future__ import annotations

import json

import numpy as np
import pytest

from mickey_ros.geometry.pose import rotation_angle_deg
from mickey_ros.synth.cameras import PairSamplingConfig, hard_pair_config
from mickey_ros.synth.overlap import pair_overlap, reproject_depth, stride_for
from mickey_ros.synth.pairs import (
    OVERLAP_POINTS,
    PairRenderer,
    PairSamplingError,
    list_pairs,
    read_pair,
    save_pair,
    write_pairs,
)

SMALL_WH = (160, 120)  # same as conftest.SMALL_WH
EASY = PairSamplingConfig(
    baseline_m=(0.1, 0.8), rotation_deg=(0.0, 15.0), overlap=(0.5, 1.0), pairs_per_scene=2
)


def covisible_agreement(pair, rel_tol: float = 0.01) -> float:
    """Fraction of co-visible pixels of view 0 whose moved depth matches view 1's depth.

    Co-visible: lands inside view 1 on a surface and is not hidden behind it (z <= d1 (1 + tol)).
    A wrong K, pose or depth shows up as points *in front of* what view 1 sees.
    """
    rep = reproject_depth(pair.depth0, pair.K0, pair.depth1, pair.K1, pair.T_1_0)
    covisible = rep.inside & (rep.depth_b > 0) & (rep.z_b <= (1 + rel_tol) * rep.depth_b)
    return float(rep.agrees(rel_tol)[covisible].mean())


class TestPairRenderer:
    def test_fixture_matches_module_constants(self, easy_config, small_wh):
        assert easy_config == EASY and small_wh == SMALL_WH

    def test_shapes_and_types(self, easy_pairs):
        W, H = SMALL_WH
        for pair in easy_pairs:
            assert pair.rgb0.shape == pair.rgb1.shape == (H, W, 3) and pair.rgb0.dtype == np.uint8
            assert pair.depth0.shape == (H, W) and pair.depth1.dtype == np.float32
            assert pair.K0.shape == (3, 3) and pair.K0.dtype == np.float64
            assert pair.T_1_0.shape == (4, 4) and pair.T_1_0.dtype == np.float64
            np.testing.assert_allclose(pair.T_1_0[3], [0, 0, 0, 1])
            np.testing.assert_allclose(
                pair.T_1_0[:3, :3] @ pair.T_1_0[:3, :3].T, np.eye(3), atol=1e-9
            )
        assert [p.info["scene"] for p in easy_pairs] == ["room", "room", "courtyard", "courtyard"]

    def test_pose_and_overlap_ranges(self, easy_pairs):
        for pair in easy_pairs:
            baseline = np.linalg.norm(pair.T_1_0[:3, 3])  # |C1 - C0| = |R^T t| = |t|
            assert EASY.baseline_m[0] <= baseline <= EASY.baseline_m[1]
            assert EASY.rotation_deg[0] <= rotation_angle_deg(pair.T_1_0) <= EASY.rotation_deg[1]
            assert EASY.overlap[0] <= pair.overlap <= EASY.overlap[1]
            assert pair.info["baseline_m"] == pytest.approx(baseline)

    def test_depth_reprojects_through_gt_pose(self, easy_pairs):
        for pair in easy_pairs:
            assert covisible_agreement(pair) >= 0.95
            assert (
                covisible_agreement(
                    pair.__class__(
                        pair.rgb1,
                        pair.rgb0,
                        pair.K1,
                        pair.K0,
                        np.linalg.inv(pair.T_1_0),
                        pair.depth1,
                        pair.depth0,
                        pair.overlap,
                    )
                )
                >= 0.95
            )

    def test_wrong_pose_is_detected(self, easy_pairs):
        pair = easy_pairs[0]
        shifted = pair.T_1_0.copy()
        shifted[:3, 3] *= 1.2  # a 20 % scale error in the translation
        wrong = pair.__class__(
            pair.rgb0, pair.rgb1, pair.K0, pair.K1, shifted, pair.depth0, pair.depth1, pair.overlap
        )
        assert covisible_agreement(wrong) < 0.9

    def test_overlap_is_recomputable(self, easy_pairs):
        pair = easy_pairs[1]
        stride = stride_for(SMALL_WH, OVERLAP_POINTS)
        assert stride == 2
        overlap = pair_overlap(pair.depth0, pair.K0, pair.depth1, pair.K1, pair.T_1_0, stride)
        assert overlap == pytest.approx(pair.overlap)

    def test_byte_identical_for_seed_and_index(self, egl, easy_pairs):
        with PairRenderer(SMALL_WH, seed=3, config=EASY) as fresh:
            # out of order: the scene and poses depend on (seed, index) only
            again = fresh.render_pair(2)
        ref = easy_pairs[2]
        for name in ("rgb0", "rgb1", "depth0", "depth1", "K0", "K1", "T_1_0"):
            assert getattr(again, name).tobytes() == getattr(ref, name).tobytes(), name

    def test_different_seed_differs(self, egl, easy_pairs):
        with PairRenderer(SMALL_WH, seed=4, config=EASY) as other:
            pair = other.render_pair(0)
        assert pair.rgb0.tobytes() != easy_pairs[0].rgb0.tobytes()
        assert not np.allclose(pair.T_1_0, easy_pairs[0].T_1_0)

    def test_hard_pairs_are_metres_and_tens_of_degrees_apart(self, egl):
        cfg = hard_pair_config()
        with PairRenderer(SMALL_WH, seed=0, config=cfg) as hard:
            pair = hard.render_pair(0)
        assert 20.0 <= rotation_angle_deg(pair.T_1_0) <= 60.0
        assert 1.0 <= np.linalg.norm(pair.T_1_0[:3, 3]) <= 6.0
        assert 0.1 <= pair.overlap <= 0.6 and pair.info["scene"] == "courtyard"

    def test_robot_camera_profile_bounds_both_views(self, egl):
        # a level robot camera: fixed height band, a few degrees down, no roll, in both views
        cfg = PairSamplingConfig(scene="room", camera_height_m=(0.9, 1.0), pitch_deg=(-12.0, -4.0),
                                 max_roll_deg=0.0)
        with PairRenderer(SMALL_WH, seed=3, config=cfg) as robot:
            pairs = [robot.render_pair(i) for i in range(3)]
        for pair in pairs:
            assert all(-12.0 <= p <= -4.0 for p in pair.info["pitch_deg"]), pair.info
            heights = pair.info["camera_height_m"]
            assert all(0.9 - 1e-9 <= z <= 1.0 + 1e-9 for z in heights), pair.info

    def test_exceptions(self, egl):
        with pytest.raises(ValueError, match="size_wh"):
            PairRenderer((16, 16))
        with pytest.raises(ValueError, match="seed"):
            PairRenderer(SMALL_WH, seed=-1)
        impossible = PairSamplingConfig(
            baseline_m=(0.0, 0.01), rotation_deg=(50.0, 60.0), max_tries=10
        )
        with (
            PairRenderer(SMALL_WH, config=impossible) as renderer,
            pytest.raises(PairSamplingError, match="widen"),
        ):
            renderer.render_pair(0)

    def test_gives_up_after_max_scenes_and_names_every_range(self, egl, monkeypatch):
        impossible = PairSamplingConfig(baseline_m=(0.0, 0.01), rotation_deg=(50.0, 60.0),
                                        max_tries=5, max_scenes=3)
        with PairRenderer(SMALL_WH, config=impossible) as renderer:
            tried = []
            scene = renderer._scene
            monkeypatch.setattr(renderer, "_scene", lambda g, a: tried.append(a) or scene(g, a))
            with pytest.raises(PairSamplingError) as err:
                renderer.render_pair(7)
        assert tried == [0, 1, 2]
        for text in ("pair 7", "in 3 scenes", "pitch (-20.0, 10.0) deg",
                     "camera height (1.0, 1.8) m", "raise max_scenes"):
            assert text in str(err.value)


class TestWritePairs:
    def test_files_index_and_round_trip(self, egl, tmp_path, easy_pairs):
        out = write_pairs(tmp_path / "pairs", 2, SMALL_WH, seed=3, config=EASY, progress=False)
        names = sorted(p.name for p in out.iterdir())
        assert names == [
            "pair_00000.npz",
            "pair_00000_0.jpg",
            "pair_00000_1.jpg",
            "pair_00001.npz",
            "pair_00001_0.jpg",
            "pair_00001_1.jpg",
            "pairs.json",
        ]
        index = json.loads((out / "pairs.json").read_text())
        assert index["count"] == 2 and index["size_wh"] == list(SMALL_WH) and index["seed"] == 3
        assert index["config"]["baseline_m"] == list(EASY.baseline_m)
        assert list_pairs(out) == [out / "pair_00000.npz", out / "pair_00001.npz"]
        loaded = read_pair(out / "pair_00001.npz")
        for name in ("rgb0", "rgb1", "depth0", "depth1", "K0", "K1", "T_1_0"):
            assert getattr(loaded, name).tobytes() == getattr(easy_pairs[1], name).tobytes()
        assert loaded.overlap == easy_pairs[1].overlap
        assert loaded.info["scene"] == easy_pairs[1].info["scene"]
        with pytest.raises(FileExistsError, match="new --out"):
            write_pairs(out, 1, SMALL_WH, progress=False)


class TestReadPair:
    def test_save_read_round_trip(self, tmp_path, easy_pairs):
        path = save_pair(tmp_path / "p.npz", easy_pairs[0])
        loaded = read_pair(path)
        assert loaded.info == json.loads(json.dumps(easy_pairs[0].info))
        np.testing.assert_array_equal(loaded.depth1, easy_pairs[0].depth1)

    def test_exceptions(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="does not exist"):
            read_pair(tmp_path / "missing.npz")
        np.savez(tmp_path / "other.npz", rgb0=np.zeros(3))
        with pytest.raises(ValueError, match="missing"):
            read_pair(tmp_path / "other.npz")
