import math

import numpy as np
import pytest
import torch

from mickey_ros.geometry.metrics import (
    auc_at_thresholds,
    camera_centre,
    precision_and_auc,
    precision_recall_curve,
    quat_angle_error_deg,
    recall_at,
    rotation_error_deg,
    scale_ratio,
    translation_angle_error_deg,
    translation_error,
    vcre,
    virtual_points,
)
from mickey_ros.geometry.pose import (
    axis_angle_to_rotmat,
    invert_transform,
    make_transform,
    rotmat_to_quat_wxyz,
)


def random_rotations(n: int, seed: int = 0, max_angle: float = math.pi) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    axis = torch.nn.functional.normalize(
        torch.randn(n, 3, generator=g, dtype=torch.float64), dim=-1
    )
    angle = torch.rand(n, 1, generator=g, dtype=torch.float64) * max_angle
    return axis_angle_to_rotmat(axis * angle)


def random_transforms(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + 100)
    return make_transform(
        random_rotations(n, seed), torch.randn(n, 3, generator=g, dtype=torch.float64)
    )


K_MAPFREE = torch.tensor([[600.0, 0, 270], [0, 600, 360], [0, 0, 1]], dtype=torch.float64)
W, H = 540, 720


class TestVirtualPoints:
    def test_grid(self):
        P = virtual_points()
        assert P.shape == (196, 3)
        assert sorted({round(v, 6) for v in P[:, 0].tolist()}) == [
            -0.9,
            -0.6,
            -0.3,
            0.0,
            0.3,
            0.6,
            0.9,
        ]
        assert sorted({round(v, 6) for v in P[:, 1].tolist()}) == [-0.45, -0.15, 0.15, 0.45]
        assert sorted({round(v, 6) for v in P[:, 2].tolist()}) == [
            1.8,
            2.1,
            2.4,
            2.7,
            3.0,
            3.3,
            3.6,
        ]

    def test_dtype_device(self):
        assert virtual_points(torch.float32).dtype == torch.float32


class TestTranslationError:
    def test_equals_centre_distance(self):
        T = random_transforms(5)
        R, t = T[:, :3, :3], T[:, :3, 3]
        shift = torch.tensor([0.3, -0.4, 0.0], dtype=torch.float64)  # 0.5 m in the world
        t_shifted = t - (R @ shift[:, None]).squeeze(-1)  # camera centre moves by +shift
        err = translation_error(R, t_shifted, R, t)
        torch.testing.assert_close(err, torch.full((5,), 0.5, dtype=torch.float64))
        torch.testing.assert_close(
            camera_centre(R, t_shifted) - camera_centre(R, t), shift.expand(5, 3)
        )

    def test_invariant_to_common_rotation(self):
        T_est, T_gt = random_transforms(8, seed=1), random_transforms(8, seed=2)
        W_world = make_transform(
            random_rotations(1, seed=3)[0], torch.zeros(3, dtype=torch.float64)
        )
        # the same world rotation applied to both poses: T_cam_world' = T_cam_world @ W^-1
        T_est2, T_gt2 = T_est @ invert_transform(W_world), T_gt @ invert_transform(W_world)
        e1 = translation_error(T_est[:, :3, :3], T_est[:, :3, 3], T_gt[:, :3, :3], T_gt[:, :3, 3])
        e2 = translation_error(
            T_est2[:, :3, :3], T_est2[:, :3, 3], T_gt2[:, :3, :3], T_gt2[:, :3, 3]
        )
        torch.testing.assert_close(e1, e2)
        assert e1.min() > 0.1

    def test_zero_at_gt(self):
        T = random_transforms(3)
        assert translation_error(T[:, :3, :3], T[:, :3, 3], T[:, :3, :3], T[:, :3, 3]).max() < 1e-12


class TestQuatAngleError:
    @pytest.mark.parametrize("angle_deg", [0.5, 5.0, 45.0, 120.0, 179.0])
    def test_equals_applied_axis_angle(self, angle_deg):
        R_gt = random_rotations(16, seed=4)
        g = torch.Generator().manual_seed(5)
        axis = torch.nn.functional.normalize(
            torch.randn(16, 3, generator=g, dtype=torch.float64), dim=-1
        )
        R_est = axis_angle_to_rotmat(axis * math.radians(angle_deg)) @ R_gt
        err = quat_angle_error_deg(rotmat_to_quat_wxyz(R_est), rotmat_to_quat_wxyz(R_gt))
        torch.testing.assert_close(
            err, torch.full((16,), angle_deg, dtype=torch.float64), atol=1e-5, rtol=0
        )

    def test_sign_and_scale_insensitive(self):
        q = rotmat_to_quat_wxyz(random_rotations(4, seed=6))
        assert quat_angle_error_deg(-3.0 * q, q).max() < 1e-5

    def test_matches_rotation_error_deg(self):
        R1, R2 = random_rotations(6, seed=7), random_rotations(6, seed=8)
        q1, q2 = rotmat_to_quat_wxyz(R1), rotmat_to_quat_wxyz(R2)
        torch.testing.assert_close(rotation_error_deg(R1, R2), quat_angle_error_deg(q1, q2))


class TestVcre:
    def test_zero_at_gt(self):
        T = random_transforms(4)
        assert vcre(T, T, K_MAPFREE, W, H).max() < 1e-9

    def test_bounded_by_diagonal(self):
        T_gt, T_est = random_transforms(64, seed=9), random_transforms(64, seed=10)
        T_est[:, :3, 3] *= 20  # far off, many points behind the camera or out of the image
        err = vcre(T_est, T_gt, K_MAPFREE, W, H)
        assert err.max() <= math.hypot(W, H) + 1e-9
        assert err.min() > 50

    def test_lateral_shift_value(self):
        # 25 cm lateral: about 54 px with fx = 600 at 540x720 (reference table, §1.4)
        T_gt = make_transform(
            torch.eye(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
        )
        T_est = T_gt.clone()
        T_est[0, 3] = 0.25
        err = float(vcre(T_est, T_gt, K_MAPFREE, W, H))
        assert 50 < err < 58
        T_est[0, 3] = 0.42
        assert float(vcre(T_est, T_gt, K_MAPFREE, W, H)) == pytest.approx(90, abs=4)

    def test_batched_intrinsics(self):
        T_gt, T_est = random_transforms(3, seed=11), random_transforms(3, seed=12)
        K = K_MAPFREE.expand(3, 3, 3)
        torch.testing.assert_close(vcre(T_est, T_gt, K, W, H), vcre(T_est, T_gt, K_MAPFREE, W, H))

    def test_exception(self):
        with pytest.raises(ValueError, match="T_est_query_ref"):
            vcre(torch.eye(3), torch.eye(4), K_MAPFREE, W, H)
        with pytest.raises(ValueError, match="K_query"):
            vcre(torch.eye(4), torch.eye(4), torch.eye(4), W, H)


class TestTranslationAngleError:
    def test_values(self):
        t = torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [1.0, 0, 0]])
        t_est = torch.tensor([[2.0, 0, 0], [0.0, 3, 0], [-1.0, 0, 0]])
        torch.testing.assert_close(
            translation_angle_error_deg(t_est, t), torch.tensor([0.0, 90.0, 0.0])
        )
        signed = translation_angle_error_deg(t_est, t, ignore_sign=False)
        torch.testing.assert_close(signed, torch.tensor([0.0, 90.0, 180.0]))


class TestScaleRatio:
    def test_symmetric(self):
        t = torch.tensor([[0.0, 0, 1.0], [0.0, 0, 1.0]])
        ratio = scale_ratio(torch.tensor([[0.0, 0, 2.0], [0.0, 0.5, 0]]), t)
        torch.testing.assert_close(ratio, torch.tensor([2.0, 2.0]))

    def test_zero_is_inf(self):
        assert scale_ratio(torch.zeros(1, 3), torch.ones(1, 3)).item() == math.inf


class TestPrecisionRecallCurve:
    def test_groups_equal_confidences(self):
        recall, precision = precision_recall_curve(
            np.array([True, False, True, True]), np.array([3.0, 2.0, 2.0, 1.0]), num_failures=1
        )
        np.testing.assert_allclose(recall, [0, 0.2, 0.6, 0.8])
        np.testing.assert_allclose(precision, [1, 1, 2 / 3, 3 / 4])

    def test_exception(self):
        with pytest.raises(ValueError, match="is_correct and confidence"):
            precision_recall_curve(np.ones(3, bool), np.ones(2))


class TestPrecisionAndAuc:
    def test_constant_confidence_auc_equals_precision(self):
        rng = np.random.default_rng(0)
        correct = rng.random(500) < 0.3
        precision, auc = precision_and_auc(correct, np.full(500, 7.0), num_failures=20)
        assert precision == pytest.approx(correct.sum() / 520)
        assert auc == pytest.approx(precision, abs=1e-12)

    @pytest.mark.parametrize("P", [0.45, 0.6, 0.79])
    def test_perfect_ranking_reaches_p_one_plus_ln(self, P):
        N = 20000
        correct = np.arange(N) < round(P * N)
        confidence = np.arange(N, 0, -1, dtype=float)  # every correct frame ranked first
        precision, auc = precision_and_auc(correct, confidence)
        assert precision == pytest.approx(P)
        assert auc == pytest.approx(P * (1 + math.log(1 / P)), abs=1e-3)

    def test_failures_lower_precision_and_ceiling(self):
        correct, confidence = np.ones(80, bool), np.linspace(1, 2, 80)
        assert precision_and_auc(correct, confidence) == (1.0, 1.0)
        precision, auc = precision_and_auc(correct, confidence, num_failures=20)
        assert precision == pytest.approx(0.8)
        assert auc == pytest.approx(0.8)  # recall stops at 80/100

    def test_low_confidence_guess_beats_missing(self):
        correct, confidence = np.array([True, True, False]), np.array([5.0, 4.0, 3.0])
        _, auc_missing = precision_and_auc(correct[:2], confidence[:2], num_failures=1)
        _, auc_guess = precision_and_auc(np.r_[correct[:2], True], np.r_[confidence[:2], 0.0])
        assert auc_guess >= auc_missing

    def test_empty(self):
        assert precision_and_auc(np.zeros(0, bool), np.zeros(0)) == (0.0, 0.0)


class TestAucAtThresholds:
    def test_single_error(self):
        # curve (0,0) -> (e,1) -> (t,1): area t - e/2
        assert auc_at_thresholds(np.array([2.0]), [5.0, 10.0]) == pytest.approx([0.8, 0.9])

    def test_perfect_and_failures(self):
        assert auc_at_thresholds(np.zeros(10), [5.0]) == pytest.approx([1.0])
        aucs = auc_at_thresholds(np.r_[np.zeros(5), np.full(5, np.inf)], [5.0, 20.0])
        assert aucs == pytest.approx([0.5, 0.5])

    def test_monotone_in_threshold(self):
        errors = np.random.default_rng(1).exponential(8.0, 300)
        aucs = auc_at_thresholds(errors, [5.0, 10.0, 20.0])
        assert aucs[0] < aucs[1] < aucs[2] < 1

    def test_empty(self):
        assert auc_at_thresholds(np.zeros(0), [5.0]) == [0.0]


class TestRecallAt:
    def test_strict_thresholds(self):
        t = np.array([0.1, 0.05, 0.05, np.inf])
        r = np.array([1.0, 5.0, 4.9, np.inf])
        assert recall_at(t, r, 0.1, 5.0) == pytest.approx(0.25)

    def test_exception(self):
        with pytest.raises(ValueError, match="same shape|one shape"):
            recall_at(np.zeros(2), np.zeros(3), 1.0, 1.0)
