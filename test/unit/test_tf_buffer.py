"""Tests for mickey_ros.bags.tf_buffer (issue 5): ROS-free TF tree with tf2 lookup semantics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rosbags.typesys import Stores, get_typestore

from mickey_ros.geometry.pose import axis_angle_to_rotmat, rotation_angle
from mickey_ros.bags.tf_buffer import TfBuffer, TfLookupError, slerp_xyzw

TS = get_typestore(Stores.ROS2_JAZZY)
T_ = TS.types


def _T(rotvec=(0.0, 0.0, 0.0), t=(0.0, 0.0, 0.0)) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = axis_angle_to_rotmat(torch.tensor(rotvec, dtype=torch.float64)).numpy()
    T[:3, 3] = t
    return T


def _angle_deg(R: np.ndarray) -> float:
    return float(np.rad2deg(rotation_angle(torch.from_numpy(R)).item()))


def _tf_msg(edges: list[tuple[str, str, int, tuple, tuple]]):
    transforms = []
    for parent, child, stamp_ns, t, q_xyzw in edges:
        sec, nsec = divmod(stamp_ns, 10**9)
        transforms.append(T_["geometry_msgs/msg/TransformStamped"](
            header=T_["std_msgs/msg/Header"](
                stamp=T_["builtin_interfaces/msg/Time"](sec=sec, nanosec=nsec), frame_id=parent),
            child_frame_id=child,
            transform=T_["geometry_msgs/msg/Transform"](
                translation=T_["geometry_msgs/msg/Vector3"](x=t[0], y=t[1], z=t[2]),
                rotation=T_["geometry_msgs/msg/Quaternion"](
                    x=q_xyzw[0], y=q_xyzw[1], z=q_xyzw[2], w=q_xyzw[3])),
        ))
    return T_["tf2_msgs/msg/TFMessage"](transforms=transforms)


@pytest.fixture
def robot() -> TfBuffer:
    """odom -> base_link (dynamic, 0..2 s) -> camera_link -> camera_optical_frame (static)."""
    buf = TfBuffer()
    for k in range(3):
        buf.add_transform("odom", "base_link", k * 10**9, _T((0, 0, 0.2 * k), (1.0 * k, 0, 0)))
    buf.add_transform("base_link", "camera_link", 0, _T(t=(0.1, 0, 0.5)), static=True)
    optical = _T((-np.pi / 2, 0, 0)) @ _T((0, 0, 0))  # rotation only, REP-103 optical
    buf.add_transform("camera_link", "camera_optical_frame", 0, optical, static=True)
    return buf


class TestSlerpXyzw:
    def test_endpoints(self):
        q0, q1 = np.array([0, 0, 0, 1.0]), np.array([0, 0.6, 0, 0.8])
        np.testing.assert_allclose(slerp_xyzw(q0, q1, 0.0), q0, atol=1e-12)
        np.testing.assert_allclose(slerp_xyzw(q0, q1, 1.0), q1, atol=1e-12)

    def test_constant_angular_rate(self):
        q1 = np.r_[np.sin(0.5) * np.array([1.0, 0, 0]), np.cos(0.5)]  # 1 rad about x
        for alpha in (0.25, 0.5, 0.9):
            q = slerp_xyzw(np.array([0, 0, 0, 1.0]), q1, alpha)
            assert 2 * np.arccos(q[3]) == pytest.approx(alpha, abs=1e-12)
            assert np.linalg.norm(q) == pytest.approx(1.0, abs=1e-12)

    def test_shortest_arc_with_flipped_sign(self):
        q0 = np.array([0, 0, 0, 1.0])
        q1 = -np.r_[np.sin(0.1) * np.array([0, 0, 1.0]), np.cos(0.1)]  # 0.2 rad, negated
        q = slerp_xyzw(q0, q1, 0.5)
        assert 2 * np.arccos(abs(q[3])) == pytest.approx(0.1, abs=1e-9)


class TestAddTransform:
    def test_frames(self, robot):
        assert robot.frames == {"odom", "base_link", "camera_link", "camera_optical_frame"}

    def test_exception_non_finite(self):
        T = np.eye(4)
        T[0, 3] = np.nan
        with pytest.raises(ValueError, match="odom -> base_link"):
            TfBuffer().add_transform("odom", "base_link", 0, T)

    def test_exception_same_frame(self):
        with pytest.raises(ValueError, match="invalid TF edge"):
            TfBuffer().add_transform("a", "a", 0, np.eye(4))

    def test_out_of_order_samples_are_sorted(self):
        buf = TfBuffer()
        for stamp in (20, 0, 10):
            buf.add_transform("a", "b", stamp, _T(t=(float(stamp), 0, 0)))
        assert buf.lookup("a", "b", 15)[0, 3] == pytest.approx(15.0)

    def test_reparent_replaces_edge(self):
        buf = TfBuffer()
        buf.add_transform("a", "c", 0, _T(t=(1, 0, 0)))
        buf.add_transform("b", "c", 0, _T(t=(2, 0, 0)))
        assert buf.reparented == 1
        assert buf.lookup("b", "c", 0)[0, 3] == pytest.approx(2.0)
        with pytest.raises(TfLookupError, match="target frame 'a' does not exist"):
            buf.lookup("a", "c", 0)


class TestAddTfMessage:
    def test_static_and_dynamic(self):
        buf = TfBuffer()
        s = np.sin(np.pi / 4)
        n = buf.add_tf_message(_tf_msg([("odom", "base_link", 10**9, (1, 2, 3), (0, 0, 0, 1))]))
        n += buf.add_tf_message(
            _tf_msg([("base_link", "cam", 0, (0, 0, 1), (0, 0, s, s))]), static=True)
        assert n == 2
        T = buf.lookup("odom", "cam", 10**9)  # static edge valid at any stamp
        np.testing.assert_allclose(T[:3, 3], [1, 2, 4], atol=1e-12)
        np.testing.assert_allclose(T[:3, 0], [0, 1, 0], atol=1e-12)  # 90 deg about z

    def test_unnormalised_quaternion_is_normalised(self):
        buf = TfBuffer()
        buf.add_tf_message(_tf_msg([("a", "b", 0, (0, 0, 0), (0, 0, 0, 2.0))]))
        np.testing.assert_allclose(buf.lookup("a", "b", 0), np.eye(4), atol=1e-12)

    def test_exception_zero_quaternion_adds_nothing(self):
        buf = TfBuffer()
        msg = _tf_msg(
            [("a", "b", 0, (0, 0, 0), (0, 0, 0, 1)), ("a", "c", 0, (0, 0, 0), (0, 0, 0, 0))]
        )
        with pytest.raises(ValueError, match="a -> c has a zero or non-finite quaternion"):
            buf.add_tf_message(msg)
        assert buf.frames == set()

    def test_leading_slash_stripped(self):
        buf = TfBuffer()
        buf.add_tf_message(_tf_msg([("/odom", "/base_link", 0, (1, 0, 0), (0, 0, 0, 1))]))
        assert buf.lookup("odom", "/base_link", 0)[0, 3] == pytest.approx(1.0)


class TestLookup:
    def test_interpolation_translation_and_slerp(self, robot):
        T = robot.lookup("odom", "base_link", 1_500_000_000)
        np.testing.assert_allclose(T[:3, 3], [1.5, 0, 0], atol=1e-12)
        assert _angle_deg(T[:3, :3]) == pytest.approx(np.rad2deg(0.3), abs=1e-9)

    def test_chain_equals_manual_composition(self, robot):
        stamp = 2 * 10**9
        expected = (
            _T((0, 0, 0.4), (2.0, 0, 0)) @ _T(t=(0.1, 0, 0.5)) @ _T((-np.pi / 2, 0, 0))
        )
        np.testing.assert_allclose(robot.lookup("odom", "camera_optical_frame", stamp), expected,
                                   atol=1e-12)

    def test_inverse_direction(self, robot):
        stamp = 700_000_000
        T_ab = robot.lookup("odom", "camera_optical_frame", stamp)
        T_ba = robot.lookup("camera_optical_frame", "odom", stamp)
        np.testing.assert_allclose(T_ab @ T_ba, np.eye(4), atol=1e-12)

    def test_sibling_frames_via_common_ancestor(self, robot):
        robot.add_transform("base_link", "lidar", 0, _T(t=(0, 0, 1.0)), static=True)
        T = robot.lookup("lidar", "camera_link", 5 * 10**9)  # dynamic edge not on the path
        np.testing.assert_allclose(T[:3, 3], [0.1, 0, -0.5], atol=1e-12)

    def test_identity_same_frame(self, robot):
        np.testing.assert_allclose(robot.lookup("odom", "odom", 0), np.eye(4))

    @pytest.mark.parametrize("stamp, side", [(-1, "past"), (2 * 10**9 + 1, "future")])
    def test_exception_extrapolation(self, robot, stamp, side):
        match = f"extrapolation into the {side}: odom -> base_link"
        with pytest.raises(TfLookupError, match=match):
            robot.lookup("odom", "camera_optical_frame", stamp)

    def test_exception_unknown_frame_lists_frames(self, robot):
        with pytest.raises(TfLookupError, match=r"'camera_optical'.*base_link.*camera_link"):
            robot.lookup("odom", "camera_optical", 0)

    def test_exception_empty_buffer(self):
        with pytest.raises(TfLookupError, match="no /tf or /tf_static data"):
            TfBuffer().lookup("odom", "base_link", 0)

    def test_exception_disconnected(self, robot):
        robot.add_transform("map", "other", 0, np.eye(4), static=True)
        with pytest.raises(TfLookupError, match="roots are 'odom' and 'map'"):
            robot.lookup("odom", "other", 0)

    def test_max_gap_refuses_interpolating_across_a_hole(self, robot):
        """Issue 27: samples 1 s apart; a 0.5 s tolerance refuses, 1 s accepts, samples pass."""
        with pytest.raises(TfLookupError, match=r"gap in the TF data: odom -> base_link has no "
                           r"sample between 0.000 s and 1.000 s \(1000 ms > the 500 ms"):
            robot.lookup("odom", "camera_optical_frame", 500_000_000, max_gap_ns=500_000_000)
        T = robot.lookup("odom", "base_link", 500_000_000, max_gap_ns=10**9)
        np.testing.assert_allclose(T[:3, 3], [0.5, 0, 0], atol=1e-12)
        T = robot.lookup("odom", "base_link", 10**9, max_gap_ns=1)  # on a sample: no gap
        np.testing.assert_allclose(T[:3, 3], [1.0, 0, 0], atol=1e-12)

    def test_max_gap_ignores_static_edges(self, robot):
        T = robot.lookup("base_link", "camera_optical_frame", 5 * 10**9, max_gap_ns=1)
        np.testing.assert_allclose(T[:3, 3], [0.1, 0, 0.5], atol=1e-12)


class TestParent:
    def test_parent_root_and_unknown(self, robot):
        assert robot.parent("camera_optical_frame") == "camera_link"
        assert robot.parent("/base_link") == "odom"
        assert robot.parent("odom") is None and robot.parent("nowhere") is None


class TestCanTransform:
    def test_true_and_false(self, robot):
        assert robot.can_transform("odom", "camera_optical_frame", 10**9)
        assert not robot.can_transform("odom", "camera_optical_frame", 3 * 10**9)


class TestClear:
    def test_clear(self, robot):
        robot.clear()
        assert robot.frames == set()
        assert not robot.can_transform("odom", "base_link", 0)
