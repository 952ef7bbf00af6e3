import math

import numpy as np
import pytest
import torch

from mickey_ros.geometry.pose import (
    axis_angle_to_rotmat,
    invert_transform,
    make_transform,
    pose_from_quat_wxyz,
    quat_wxyz_to_rotmat,
    quat_wxyz_to_xyzw,
    quat_xyzw_to_wxyz,
    relative_pose,
    rotation_angle,
    rotation_angle_deg,
    rotmat_to_quat_wxyz,
    split_transform,
    transform_points,
)

F64 = torch.float64


def random_quat_wxyz(n: int, seed: int) -> torch.Tensor:
    q = torch.randn(n, 4, generator=torch.Generator().manual_seed(seed), dtype=F64)
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[:, :1] < 0, -q, q)


def random_transform(batch: tuple[int, ...], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    R = axis_angle_to_rotmat(torch.randn(*batch, 3, generator=g, dtype=F64))
    return make_transform(R, torch.randn(*batch, 3, generator=g, dtype=F64))


def rot_z(angle: float) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=F64)


# rotations by pi about several axes: the w = 0 branch of the quaternion extraction
HALF_TURNS = [
    torch.diag(torch.tensor(d, dtype=F64)) for d in ([1, -1, -1], [-1, 1, -1], [-1, -1, 1])
]


class TestQuatOrder:
    def test_known_value(self):
        q_wxyz = torch.tensor([1.0, 2.0, 3.0, 4.0])
        assert quat_wxyz_to_xyzw(q_wxyz).tolist() == [2.0, 3.0, 4.0, 1.0]
        assert quat_xyzw_to_wxyz(torch.tensor([2.0, 3.0, 4.0, 1.0])).tolist() == [1, 2, 3, 4]

    def test_round_trip(self):
        q = torch.randn(2, 5, 4, dtype=F64)
        assert torch.equal(quat_xyzw_to_wxyz(quat_wxyz_to_xyzw(q)), q)


class TestQuatWxyzToRotmat:
    def test_known_value(self):
        half = math.sqrt(0.5)
        R = quat_wxyz_to_rotmat(torch.tensor([half, 0.0, 0.0, half], dtype=F64))  # 90 deg about z
        assert torch.allclose(R, rot_z(math.pi / 2), atol=1e-15)

    def test_unnormalised_input_and_orthonormal_output(self):
        q = random_quat_wxyz(100, 0)
        R = quat_wxyz_to_rotmat(3.7 * q)
        assert torch.allclose(R, quat_wxyz_to_rotmat(q), atol=1e-14)
        eye = torch.eye(3, dtype=F64).expand(100, 3, 3)
        assert torch.allclose(R @ R.transpose(-1, -2), eye, atol=1e-14)
        assert torch.allclose(torch.linalg.det(R), torch.ones(100, dtype=F64), atol=1e-14)

    def test_q_and_minus_q_agree(self):
        q = random_quat_wxyz(10, 1)
        assert torch.allclose(quat_wxyz_to_rotmat(q), quat_wxyz_to_rotmat(-q), atol=1e-15)


class TestRotmatToQuatWxyz:
    def test_round_trip_random(self):
        q = random_quat_wxyz(1000, 2)
        assert (rotmat_to_quat_wxyz(quat_wxyz_to_rotmat(q)) - q).abs().max() < 1e-12

    @pytest.mark.parametrize("k", range(3))
    def test_half_turns(self, k):
        q = rotmat_to_quat_wxyz(HALF_TURNS[k])
        expected = torch.zeros(4, dtype=F64)
        expected[k + 1] = 1.0
        assert torch.allclose(q, expected, atol=1e-12)

    def test_near_half_turn_round_trip(self):
        axis = torch.tensor([1.0, 2.0, -2.0], dtype=F64) / 3
        R = axis_angle_to_rotmat(axis * (math.pi - 1e-7))
        assert (quat_wxyz_to_rotmat(rotmat_to_quat_wxyz(R)) - R).abs().max() < 1e-12

    def test_w_non_negative_and_batch_shape(self):
        R = axis_angle_to_rotmat(torch.randn(4, 6, 3, dtype=F64) * 2)
        q = rotmat_to_quat_wxyz(R)
        assert q.shape == (4, 6, 4) and (q[..., 0] >= 0).all()


class TestAxisAngleToRotmat:
    def test_known_value(self):
        R = axis_angle_to_rotmat(torch.tensor([0.0, 0.0, 0.3], dtype=F64))
        assert torch.allclose(R, rot_z(0.3), atol=1e-15)

    def test_zero_and_tiny_angles(self):
        assert torch.equal(axis_angle_to_rotmat(torch.zeros(3, dtype=F64)), torch.eye(3, dtype=F64))
        v = torch.tensor([1e-9, -2e-9, 3e-9], dtype=F64)
        skew = torch.tensor([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]], dtype=F64)
        assert torch.allclose(axis_angle_to_rotmat(v), torch.eye(3, dtype=F64) + skew, atol=1e-17)

    def test_gradient_finite_at_zero(self):
        v = torch.zeros(3, dtype=F64, requires_grad=True)
        axis_angle_to_rotmat(v).sum().backward()
        assert torch.isfinite(v.grad).all()


class TestRotationAngle:
    @pytest.mark.parametrize("angle", [0.0, 1e-6, 0.5, 2.0, 3.0, math.pi])
    def test_known_angles(self, angle):
        axis = torch.tensor([2.0, -1.0, 2.0], dtype=F64) / 3
        R = axis_angle_to_rotmat(axis * angle)
        assert abs(rotation_angle(R).item() - angle) < 1e-12

    def test_half_turn_matrices(self):
        angles = rotation_angle(torch.stack(HALF_TURNS))
        assert torch.allclose(angles, torch.full((3,), math.pi, dtype=F64))


class TestRotationAngleDeg:
    @pytest.mark.parametrize("angle", [0.0, 0.5, 2.0, 3.0])
    def test_known_angles_of_rotations_and_transforms(self, angle):
        axis = torch.tensor([2.0, -1.0, 2.0], dtype=F64) / 3
        R = axis_angle_to_rotmat(axis * angle).numpy()
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = R, [1.0, 2.0, 3.0]
        assert rotation_angle_deg(R) == pytest.approx(math.degrees(angle), abs=1e-6)
        assert rotation_angle_deg(T) == rotation_angle_deg(R)


class TestMakeSplitTransform:
    def test_round_trip_and_layout(self):
        T = random_transform((2, 3), 3)
        R, t = split_transform(T)
        assert torch.equal(make_transform(R, t), T)
        assert T[..., 3, :].tolist() == [[[0, 0, 0, 1]] * 3] * 2

    def test_gradient_flows(self):
        R = torch.eye(3, dtype=F64, requires_grad=True)
        t = torch.ones(3, dtype=F64, requires_grad=True)
        make_transform(R, t).sum().backward()
        assert R.grad.sum() == 9 and t.grad.sum() == 3


class TestInvertTransform:
    def test_inverse(self):
        T = random_transform((5,), 4)
        eye = torch.eye(4, dtype=F64).expand(5, 4, 4)
        assert torch.allclose(T @ invert_transform(T), eye, atol=1e-14)
        assert torch.allclose(invert_transform(invert_transform(T)), T, atol=1e-14)


class TestTransformPoints:
    def test_matches_homogeneous_product(self):
        T = random_transform((2,), 5)
        X = torch.randn(2, 7, 3, dtype=F64)
        X_h = torch.cat([X, torch.ones(2, 7, 1, dtype=F64)], dim=-1)
        expected = (X_h @ T.transpose(-1, -2))[..., :3]
        assert torch.allclose(transform_points(T, X), expected, atol=1e-14)


class TestPoseFromQuatWxyz:
    def test_map_free_line(self):
        # the example line of the Map-free README: q_wxyz then t
        q_wxyz = torch.tensor([0.981085, 0.020694, 0.191351, 0.020694], dtype=F64)
        t = torch.tensor([-1.108672, -0.215504, 1.129422], dtype=F64)
        T = pose_from_quat_wxyz(q_wxyz, t)
        assert torch.allclose(T[:3, :3], quat_wxyz_to_rotmat(q_wxyz)) and torch.equal(T[:3, 3], t)
        assert torch.allclose(rotmat_to_quat_wxyz(T[:3, :3]), q_wxyz / q_wxyz.norm(), atol=1e-12)


class TestRelativePose:
    def test_maps_reference_points_to_query(self):
        T_ref_world, T_query_world = random_transform((3,), 6), random_transform((3,), 7)
        X_world = torch.randn(3, 10, 3, dtype=F64)
        T_query_ref = relative_pose(T_ref_world, T_query_world)
        X_query = transform_points(T_query_ref, transform_points(T_ref_world, X_world))
        assert torch.allclose(X_query, transform_points(T_query_world, X_world), atol=1e-13)

    def test_matches_issue_22_formula(self):
        # Map-free ground truth: R_ab = R_b R_a^T, t_ab = t_b - R_ab t_a (mickey issue #22)
        T_a, T_b = random_transform((), 8), random_transform((), 9)
        (R_a, t_a), (R_b, t_b) = split_transform(T_a), split_transform(T_b)
        R_ab = R_b @ R_a.T
        expected = make_transform(R_ab, t_b - R_ab @ t_a)
        assert torch.allclose(relative_pose(T_a, T_b), expected, atol=1e-14)
