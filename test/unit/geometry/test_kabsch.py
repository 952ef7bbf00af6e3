import pytest
import torch

from mickey_ros.geometry.kabsch import is_degenerate, kabsch, kabsch_with_singular_values
from mickey_ros.geometry.pose import axis_angle_to_rotmat, rotation_angle


def random_rigid(batch: tuple[int, ...], seed: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    R = axis_angle_to_rotmat(torch.randn(*batch, 3, generator=g, dtype=dtype))
    t = torch.randn(*batch, 3, generator=g, dtype=dtype)
    return R, t


def random_points(batch: tuple[int, ...], N: int, seed: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*batch, N, 3, generator=g, dtype=dtype) * 2 + torch.tensor([0, 0, 5.0])


def apply(R, t, X):
    return X @ R.transpose(-1, -2) + t.unsqueeze(-2)


class TestKabsch:
    @pytest.mark.parametrize("batch, N", [((), 3), ((2,), 50), ((2, 4, 5), 8)])
    def test_shape(self, batch, N):
        X = random_points(batch, N, 0, torch.float32)
        R, t = kabsch(X, X + 1, torch.ones(*batch, N))
        assert R.shape == (*batch, 3, 3) and t.shape == (*batch, 3)
        assert R.dtype == torch.float32

    def test_recovers_random_rigid_transforms_float64(self):
        R_gt, t_gt = random_rigid((64,), 1)
        X_ref = random_points((64,), 20, 2)
        R, t = kabsch(X_ref, apply(R_gt, t_gt, X_ref))
        assert (R - R_gt).abs().max() < 1e-10
        assert (t - t_gt).abs().max() < 1e-10

    def test_minimal_set_of_three(self):
        R_gt, t_gt = random_rigid((16,), 3)
        X_ref = random_points((16,), 3, 4)
        R, t = kabsch(X_ref, apply(R_gt, t_gt, X_ref))
        assert (R - R_gt).abs().max() < 1e-10 and (t - t_gt).abs().max() < 1e-10

    def test_zero_weight_outliers_are_ignored(self):
        R_gt, t_gt = random_rigid((8,), 5)
        X_ref = random_points((8,), 40, 6)
        X_query = apply(R_gt, t_gt, X_ref)
        X_query[:, 25:] += 10 * torch.randn(8, 15, 3, dtype=torch.float64)  # gross outliers
        weights = torch.ones(8, 40, dtype=torch.float64)
        weights[:, 25:] = 0
        R, t = kabsch(X_ref, X_query, weights)
        assert (R - R_gt).abs().max() < 1e-10 and (t - t_gt).abs().max() < 1e-10
        R_bad, _ = kabsch(X_ref, X_query)
        assert (R_bad - R_gt).abs().max() > 1e-2  # the outliers do matter without weights

    def test_weights_scale_invariant_and_match_uniform(self):
        X_ref = random_points((4,), 30, 7)
        X_query = random_points((4,), 30, 8)
        R1, t1 = kabsch(X_ref, X_query)
        R2, t2 = kabsch(X_ref, X_query, torch.full((4, 30), 7.5, dtype=torch.float64))
        assert torch.allclose(R1, R2, atol=1e-12) and torch.allclose(t1, t2, atol=1e-12)

    def test_reflection_gives_proper_rotation(self):
        X_ref = random_points((10,), 12, 9)
        mirror = torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))
        R, _ = kabsch(X_ref, X_ref @ mirror)  # best orthogonal fit would be the reflection
        det = torch.linalg.det(R)
        assert torch.allclose(det, torch.ones(10, dtype=torch.float64), atol=1e-12)
        eye = torch.eye(3, dtype=torch.float64).expand(10, 3, 3)
        assert torch.allclose(R.transpose(-1, -2) @ R, eye, atol=1e-12)

    def test_noise_within_bound(self):
        R_gt, t_gt = random_rigid((32,), 10, torch.float32)
        X_ref = random_points((32,), 200, 11, torch.float32)
        noise = 0.01 * torch.randn(32, 200, 3, generator=torch.Generator().manual_seed(12))
        R, t = kabsch(X_ref, apply(R_gt, t_gt, X_ref) + noise)
        angle_deg = torch.rad2deg(rotation_angle(R @ R_gt.transpose(-1, -2)))
        assert angle_deg.max() < 0.1  # 1 cm noise on a ~4 m cloud of 200 points
        assert (t - t_gt).norm(dim=-1).max() < 0.01

    def test_gradcheck(self):
        X_ref = random_points((2,), 6, 13).requires_grad_()
        X_query = random_points((2,), 6, 14).requires_grad_()
        weights = torch.rand(2, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(15))
        weights.requires_grad_()
        assert torch.autograd.gradcheck(lambda a, b, w: kabsch(a, b, w), (X_ref, X_query, weights))

    def test_exception(self):
        X = torch.zeros(2, 5, 3)
        with pytest.raises(ValueError, match="X_ref must have shape"):
            kabsch(torch.zeros(2, 5, 2), torch.zeros(2, 5, 2))
        with pytest.raises(ValueError, match="X_query must have the shape"):
            kabsch(X, torch.zeros(2, 4, 3))
        with pytest.raises(ValueError, match=r"weights must have shape \(2, 5\)"):
            kabsch(X, X, torch.ones(2, 4))


class TestKabschWithSingularValues:
    def test_matches_kabsch_and_orders_singular_values(self):
        X_ref, X_query = random_points((5,), 10, 16), random_points((5,), 10, 17)
        R, t, S = kabsch_with_singular_values(X_ref, X_query)
        R2, t2 = kabsch(X_ref, X_query)
        assert torch.equal(R, R2) and torch.equal(t, t2)
        assert S.shape == (5, 3) and (S[:, :-1] >= S[:, 1:]).all() and (S >= 0).all()

    def test_three_points_have_rank_two(self):
        X_ref = random_points((4,), 3, 18)
        _, _, S = kabsch_with_singular_values(X_ref, X_ref + 1)
        assert (S[:, 2] < 1e-12 * S[:, 0]).all() and (S[:, 1] > 1e-3 * S[:, 0]).all()


class TestIsDegenerate:
    def test_colinear_and_repeated_points(self):
        line = torch.linspace(0, 1, 3, dtype=torch.float64)[:, None] * torch.tensor([1.0, 2, 3])
        repeated = torch.ones(3, 3, dtype=torch.float64)
        good = random_points((), 3, 19)
        X_ref = torch.stack([line, repeated, good])
        _, _, S = kabsch_with_singular_values(X_ref, X_ref + 0.5)
        assert is_degenerate(S).tolist() == [True, True, False]

    def test_non_finite_is_degenerate(self):
        S = torch.tensor([[float("nan"), 1.0, 0.0], [3.0, 2.0, 1.0], [float("inf"), 1.0, 1.0]])
        assert is_degenerate(S).tolist() == [True, False, True]

    def test_exception(self):
        with pytest.raises(ValueError, match="singular_values"):
            is_degenerate(torch.ones(4, 2))
