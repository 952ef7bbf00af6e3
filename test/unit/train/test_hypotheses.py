import torch

from mickey_ros.geometry.pose import axis_angle_to_rotmat
from mickey_ros.train.config import HypothesisConfig
from mickey_ros.train.hypotheses import (
    gather_points,
    generate_hypotheses,
    minimal_set_masks,
    refine_masks,
)

CFG = HypothesisConfig(num_draws=3, num_samples=40, num_hypotheses=5, set_size=8)


def _scene(B: int = 2, N: int = 30, outliers: int = 0, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    X_ref = torch.rand(B, N, 3, generator=g) * 2 + torch.tensor([-1.0, -1.0, 2.0])
    R = axis_angle_to_rotmat(torch.tensor([[0.0, 0.2, 0.05]])).expand(B, 3, 3)
    t = torch.tensor([0.3, -0.1, 0.2]).expand(B, 3)
    X_query = X_ref @ R.transpose(-1, -2) + t.unsqueeze(1)
    if outliers:
        X_query[:, :outliers] += 2.0
    return X_ref, X_query, R, t


class TestGatherPoints:
    def test_values(self):
        X = torch.arange(2 * 4 * 3.0).view(2, 4, 3)
        idx = torch.tensor([[[3, 0]], [[1, 1]]])
        out = gather_points(X, idx)
        assert out.shape == (2, 1, 2, 3)
        assert torch.equal(out[0, 0, 0], X[0, 3]) and torch.equal(out[1, 0, 1], X[1, 1])


class TestMinimalSetMasks:
    def test_one_hot_union(self):
        masks = minimal_set_masks(torch.tensor([[[[0, 2]]]]), 4)
        assert masks.tolist() == [[[[1.0, 0.0, 1.0, 0.0]]]]


class TestRefineMasks:
    def test_grows_to_all_inliers(self):
        X_ref, X_query, _, _ = _scene(B=1, N=20, outliers=5)
        X0, X1 = X_ref.unsqueeze(1), X_query.unsqueeze(1)  # (1, 1, 20, 3)
        start = torch.zeros(1, 1, 1, 20)
        start[..., 5:13] = 1.0  # 8 clean correspondences
        final = refine_masks(X0, X1, start, 0.15, 4)
        # round 0 fits the 8 and finds all 15 inliers (> 8): F = M_0; round 1 finds 15 again
        assert final.sum().item() == 8.0

    def test_outlier_set_keeps_minimal_mask(self):
        X_ref, X_query, _, _ = _scene(B=1, N=20, outliers=8)
        start = torch.zeros(1, 1, 1, 20)
        start[..., :8] = 1.0  # all outliers, shifted consistently: a rigid fit with 8 inliers
        final = refine_masks(X_ref.unsqueeze(1), X_query.unsqueeze(1), start, 0.15, 4)
        assert torch.equal(final, start)


class TestGenerateHypotheses:
    def test_recovers_pose_and_scores(self):
        X_ref, X_query, R, t = _scene()
        P = torch.eye(30).expand(2, 30, 30) + 1e-6  # true matches dominate
        g = torch.Generator().manual_seed(0)
        hyp = generate_hypotheses(P, X_ref, X_query, CFG, g)
        assert hyp.R.shape == (2, 3, 5, 3, 3) and hyp.scores.shape == (2, 3, 5)
        assert hyp.idx_ref.shape == (2, 3, 40)
        best = hyp.scores.flatten(1).argmax(1)
        R_best = hyp.R.flatten(1, 2)[torch.arange(2), best]
        assert torch.allclose(R_best, R, atol=1e-4)
        assert (hyp.scores.max() > 25).item()

    def test_gradient_reaches_points(self):
        X_ref, X_query, _, _ = _scene()
        X_ref = (X_ref + 0.01 * torch.randn_like(X_ref)).requires_grad_(True)
        P = torch.rand(2, 30, 30)
        hyp = generate_hypotheses(P, X_ref, X_query, CFG, torch.Generator().manual_seed(1))
        (hyp.scores.sum() + hyp.t.sum()).backward()
        assert torch.isfinite(X_ref.grad).all() and X_ref.grad.abs().sum() > 0

    def test_same_seed_same_hypotheses(self):
        X_ref, X_query, _, _ = _scene()
        P = torch.rand(2, 30, 30)
        a = generate_hypotheses(P, X_ref, X_query, CFG, torch.Generator().manual_seed(3))
        b = generate_hypotheses(P, X_ref, X_query, CFG, torch.Generator().manual_seed(3))
        assert torch.equal(a.idx_ref, b.idx_ref) and torch.equal(a.R, b.R)
