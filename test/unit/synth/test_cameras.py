from __future__ import annotations

import numpy as np
import pytest

from mickey_ros.geometry.pose import relative_pose, rotation_angle_deg
from mickey_ros.synth.cameras import (
    PairSamplingConfig,
    camera_centre,
    distance_to_bounds,
    hard_pair_config,
    look_at,
    sample_first_camera,
    sample_intrinsics,
    sample_second_camera,
)
from mickey_ros.synth.scene import Light, Scene


def empty_scene(obstacles=()) -> Scene:
    light = Light(np.array([0.0, 0.0, 1.0, 0.0]), (1.0, 1.0, 1.0), 0.5)
    return Scene(
        "room",
        np.zeros((0, 12), np.float32),
        light,
        (-5.0, 5.0, -5.0, 5.0),
        2.5,
        np.asarray(obstacles, float).reshape(-1, 4),
        np.array([0.0, 0.0, 1.2]),
    )


class TestLookAt:
    def test_level_camera_axes(self):
        eye = np.array([1.0, 2.0, 1.5])
        T = look_at(eye, eye + np.array([0.0, 1.0, 0.0]))  # looking along world +y
        R = T[:3, :3]
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(R) == pytest.approx(1.0)
        np.testing.assert_allclose(R[2], [0, 1, 0], atol=1e-12)  # optical axis z = world +y
        np.testing.assert_allclose(R[1], [0, 0, -1], atol=1e-12)  # image down = world down
        np.testing.assert_allclose(R[0], [1, 0, 0], atol=1e-12)  # image right = world +x
        np.testing.assert_allclose(T[:3, :3] @ eye + T[:3, 3], 0.0, atol=1e-12)

    def test_roll_rotates_about_the_optical_axis(self):
        T0 = look_at(np.zeros(3), np.array([1.0, 0.0, 0.0]))
        T1 = look_at(np.zeros(3), np.array([1.0, 0.0, 0.0]), roll_rad=np.radians(10))
        np.testing.assert_allclose(T1[2, :3], T0[2, :3], atol=1e-12)
        assert rotation_angle_deg(relative_pose(T0, T1)) == pytest.approx(10.0)


class TestRelativePose:
    def test_hand_computed(self):
        # camera 0 at the origin looking +x; camera 1 one metre to its left (world +y), same view
        T0 = look_at(np.zeros(3), np.array([1.0, 0.0, 0.0]))
        T1 = look_at(np.array([0.0, 1.0, 0.0]), np.array([1.0, 1.0, 0.0]))
        T_1_0 = relative_pose(T0, T1)
        np.testing.assert_allclose(T_1_0[:3, :3], np.eye(3), atol=1e-12)
        # a point in camera 0 appears 1 m further right in camera 1 (x right = world -y)
        np.testing.assert_allclose(T_1_0[:3, 3], [1.0, 0.0, 0.0], atol=1e-12)
        np.testing.assert_allclose(camera_centre(T1), [0.0, 1.0, 0.0], atol=1e-12)


class TestSampleIntrinsics:
    def test_ranges(self):
        rng = np.random.default_rng(0)
        for _ in range(20):
            K = sample_intrinsics(rng, (540, 720), (0.75, 0.9))
            assert 540 <= K[0, 0] <= 648 and K[0, 0] == K[1, 1]
            assert abs(K[0, 2] - 269.5) <= 5.4 and abs(K[1, 2] - 359.5) <= 7.2


class TestPairSamplingConfig:
    def test_exceptions(self):
        with pytest.raises(ValueError, match="baseline_m"):
            PairSamplingConfig(baseline_m=(2.0, 1.0))
        with pytest.raises(ValueError, match="scene"):
            PairSamplingConfig(scene="forest")
        with pytest.raises(ValueError, match="pairs_per_scene"):
            PairSamplingConfig(pairs_per_scene=0)
        with pytest.raises(ValueError, match="max_scenes"):
            PairSamplingConfig(max_scenes=0)
        with pytest.raises(ValueError, match="overlap"):
            PairSamplingConfig(overlap=(1.5, 2.0))
        with pytest.raises(ValueError, match="long_view_fraction"):
            PairSamplingConfig(long_view_fraction=1.5)

    def test_hard_preset(self):
        cfg = hard_pair_config(overlap=(0.2, 0.5))
        assert cfg.rotation_deg == (20.0, 60.0) and cfg.baseline_m == (1.0, 6.0)
        assert cfg.overlap == (0.2, 0.5) and cfg.scene == "courtyard"


class TestDistanceToBounds:
    def test_hand_computed(self):
        bounds = (-4.0, 6.0, -1.0, 1.0)
        headings = np.radians([0.0, 90.0, 180.0, 270.0, 45.0])
        d = distance_to_bounds(np.array([1.0, 0.5]), headings, bounds)
        # +x: 5 m to x = 6; +y: 0.5 m to y = 1; -x: 5 m to x = -4; -y: 1.5 m; 45 deg: y first
        np.testing.assert_allclose(d, [5.0, 0.5, 5.0, 1.5, 0.5 * np.sqrt(2.0)], atol=1e-12)


class TestSampleCameras:
    def test_first_camera_is_free_and_within_pitch(self):
        scene = empty_scene([[0.0, 0.0, 1.0, 2.0]])
        rng = np.random.default_rng(1)
        cfg = PairSamplingConfig()
        for _ in range(20):
            T = sample_first_camera(rng, scene, cfg)
            assert T is not None and scene.is_free(camera_centre(T))[0]
            forward = T[2, :3]
            assert -21.0 <= np.degrees(np.arcsin(forward[2])) <= 11.0

    def test_long_views_look_down_the_long_axis(self):
        # a 10 x 2 m corridor: long views face along it, random headings mostly face a side wall
        scene = Scene("room", np.zeros((0, 12), np.float32),
                      Light(np.array([0.0, 0.0, 1.0, 0.0]), (1.0, 1.0, 1.0), 0.5),
                      (-5.0, 5.0, -1.0, 1.0), 2.5, np.zeros((0, 4)), np.array([0.0, 0.0, 1.2]))
        rng = np.random.default_rng(3)
        cfg = PairSamplingConfig(long_view_fraction=1.0)
        views = [sample_first_camera(rng, scene, cfg) for _ in range(200)]
        eyes = np.array([camera_centre(T)[:2] for T in views])
        yaws = np.array([np.arctan2(T[2, 1], T[2, 0]) for T in views])
        ahead = np.array([distance_to_bounds(e, np.array([y]), scene.bounds_xy)[0]
                          for e, y in zip(eyes, yaws)])
        random_ahead = np.array([distance_to_bounds(e, rng.uniform(0, 2 * np.pi, 1),
                                                    scene.bounds_xy)[0] for e in eyes])
        assert np.median(ahead) > 3.0 * np.median(random_ahead)
        assert np.median(np.abs(np.cos(yaws))) > 0.95  # within 18 deg of the corridor's axis

    def test_fraction_zero_draws_as_before(self):
        # no extra draw: every pair of an existing config is unchanged by the new option
        scene = empty_scene([[0.0, 0.0, 1.0, 2.0]])
        a = [sample_first_camera(np.random.default_rng(5), scene, PairSamplingConfig())
             for _ in range(3)]
        b = [sample_first_camera(np.random.default_rng(5), scene,
                                 PairSamplingConfig(long_view_fraction=0.0)) for _ in range(3)]
        for Ta, Tb in zip(a, b):
            np.testing.assert_array_equal(Ta, Tb)

    def test_second_camera_orbits_the_fixation(self):
        scene = empty_scene()
        cfg = PairSamplingConfig(baseline_m=(1.0, 2.0), rotation_deg=(10.0, 30.0))
        rng = np.random.default_rng(2)
        T0 = look_at(np.array([-3.0, 0.0, 1.5]), np.array([0.0, 0.0, 1.5]))
        found = [
            T
            for T in (
                sample_second_camera(rng, scene, cfg, T0, np.array([0.0, 0.0, 1.5]))
                for _ in range(50)
            )
            if T is not None
        ]
        assert len(found) > 10
        for T1 in found:
            # the fixation stays in front of camera 1, near its optical axis
            X = T1[:3, :3] @ [0.0, 0.0, 1.5] + T1[:3, 3]
            assert X[2] > 0 and np.hypot(X[0], X[1]) / X[2] < 0.5
