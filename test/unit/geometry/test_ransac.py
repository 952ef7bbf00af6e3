import dataclasses

import pytest
import torch

from mickey_ros.geometry import ransac, sampling
from mickey_ros.geometry.pose import axis_angle_to_rotmat, rotation_angle
from mickey_ros.geometry.ransac import (
    PoseSolution,
    SolverConfig,
    probability_problems,
    refine_with_inliers,
    residuals,
    sample_correspondences,
    sample_minimal_sets,
    soft_inlier_count,
    solve_pose,
)
from mickey_ros.utils.config import ConfigError, config_from_dict

SMALL = SolverConfig(num_samples=128)


def make_scene(B=2, N0=256, N1=256, outlier_ratio=0.5, noise_m=0.003, seed=0, background=1e-4):
    """3D matches with a known T_query_ref; P is one-hot on the (partly wrong) partners.

    Returns P (B, N0, N1), X_ref (B, N0, 3), X_query (B, N1, 3), R_gt (B, 3, 3), t_gt (B, 3).
    """
    g = torch.Generator().manual_seed(seed)
    box = torch.tensor([4.0, 3.0, 4.0])
    X_ref = torch.rand(B, N0, 3, generator=g) * box + torch.tensor([-2.0, -1.5, 2.0])
    X_query = torch.rand(B, N1, 3, generator=g) * box + torch.tensor([-2.0, -1.5, 2.0])
    R_gt = axis_angle_to_rotmat(torch.randn(B, 3, generator=g) * 0.3)
    t_gt = torch.randn(B, 3, generator=g) * 0.5
    K = min(N0, N1)
    P = torch.full((B, N0, N1), background)
    for b in range(B):
        ri, qj = torch.randperm(N0, generator=g)[:K], torch.randperm(N1, generator=g)[:K]
        noise = noise_m * torch.randn(K, 3, generator=g)
        X_query[b, qj] = X_ref[b, ri] @ R_gt[b].T + t_gt[b] + noise
        wrong = torch.rand(K, generator=g) < outlier_ratio
        partner = torch.where(wrong, torch.randint(0, N1, (K,), generator=g), qj)
        P[b, ri, partner] = 1.0
    return P, X_ref, X_query, R_gt, t_gt


def pose_errors(sol: PoseSolution, R_gt, t_gt):
    angle_deg = torch.rad2deg(rotation_angle(sol.R @ R_gt.transpose(-1, -2)))
    return angle_deg, (sol.t - t_gt).norm(dim=-1)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class TestSolverConfig:
    def test_defaults_are_official(self):
        assert dataclasses.astuple(SolverConfig())[:8] == (20, 100, 2048, 3, 4, 0.15, 0.3, 5.0)
        assert SolverConfig().sampler == "exponential_keys"  # same law as the official sampler

    @pytest.mark.parametrize(
        "field, value, match",
        [
            ("it_matches", 0, "it_matches"),
            ("th_inlier", -0.1, "th_inlier"),
            ("min_set_size", 2, "min_set_size"),
            ("num_samples", 2, "num_samples"),
            ("num_refinements", -1, "num_refinements"),
            ("sampler", "gumbel", "sampler"),
        ],
    )
    def test_exception(self, field, value, match):
        with pytest.raises(ConfigError, match=match):
            SolverConfig(**{field: value})

    def test_from_dict(self):
        assert config_from_dict(SolverConfig, {"num_samples": 512}).num_samples == 512


class TestSampleCorrespondences:
    def test_shapes_distinct_and_weights(self):
        P, *_ = make_scene(B=2, N0=40, N1=30, seed=1)
        idx_ref, idx_query, w = sample_correspondences(P, 5, 300, seeded(0))
        assert idx_ref.shape == idx_query.shape == w.shape == (2, 5, 300)
        assert idx_ref.max() < 40 and idx_query.max() < 30
        flat = idx_ref * 30 + idx_query
        assert all(len(set(row.tolist())) == 300 for row in flat.view(10, 300))  # no duplicates
        assert torch.equal(w, P[torch.arange(2)[:, None, None], idx_ref, idx_query])

    def test_respects_zeros(self):
        g = seeded(2)
        P = torch.rand(3, 30, 30, generator=g) * (torch.rand(3, 30, 30, generator=g) < 0.3)
        P[:, :, 0] = 0  # a query keypoint with p = 0 everywhere
        idx_ref, idx_query, w = sample_correspondences(P, 4, 200, seeded(0))
        assert (w > 0).all() and (idx_query != 0).all()

    def test_frequencies_proportional_to_P(self):
        P = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
        idx_ref, idx_query, _ = sample_correspondences(P, 20000, 1, seeded(3))
        freq = torch.bincount((idx_ref * 2 + idx_query).flatten(), minlength=4) / 20000
        assert torch.allclose(freq, torch.tensor([0.1, 0.2, 0.3, 0.4]), atol=0.015)

    def test_seeded_and_chunked(self, monkeypatch):
        P, *_ = make_scene(B=2, N0=50, N1=50, seed=4)
        a = sample_correspondences(P, 6, 100, seeded(5))
        b = sample_correspondences(P, 6, 100, seeded(5))
        assert all(torch.equal(x, y) for x, y in zip(a, b))
        monkeypatch.setattr(sampling, "_MULTINOMIAL_BUDGET", 5000)  # 2 draws per multinomial call
        idx_ref, idx_query, w = sample_correspondences(P, 6, 100, seeded(5))
        assert (w > 0).all() and len(set((idx_ref[1, 5] * 50 + idx_query[1, 5]).tolist())) == 100

    def test_weights_are_differentiable(self):
        P = torch.rand(1, 10, 10, generator=seeded(6)).requires_grad_()
        _, _, w = sample_correspondences(P, 2, 20, seeded(0))
        w.sum().backward()
        assert P.grad.sum() == 40

    def test_exception(self):
        with pytest.raises(ValueError, match="P must have shape"):
            sample_correspondences(torch.ones(10, 10), 1, 5)
        with pytest.raises(ValueError, match="exceeds the 3x3"):
            sample_correspondences(torch.ones(1, 3, 3), 1, 10)


class TestSamplers:
    """The exponential-keys speed path against torch.multinomial (the reference path)."""

    @pytest.mark.parametrize("k", [1, 2, 3])
    def test_same_inclusion_frequencies(self, k):
        probs = torch.tensor([[0.05, 0.1, 0.15, 0.3, 0.4, 0.0]]).expand(20000, -1)
        freq = {}
        for method in sampling.SAMPLERS:
            idx = sampling._multinomial_rows(probs, 1, k, seeded(1), method).flatten(0, 1)
            assert all(len(set(row)) == k for row in idx[:200].tolist())  # no replacement
            assert not (idx == 5).any()  # zero weight is never drawn
            freq[method] = torch.bincount(idx.flatten(), minlength=6) / len(idx)
        assert torch.allclose(freq["exponential_keys"], freq["multinomial"], atol=0.015)

    def test_solver_recovers_pose_with_either_sampler(self):
        P, X_ref, X_query, R_gt, t_gt = make_scene(B=1, N0=300, N1=300, seed=7)
        for method in sampling.SAMPLERS:
            config = SolverConfig(num_samples=256, it_matches=10, it_ransac=50, sampler=method)
            sol = solve_pose(P, X_ref, X_query, config, seeded(0))
            assert bool(sol.valid[0])
            assert (sol.t[0] - t_gt[0]).norm() < 0.01


class TestSampleMinimalSets:
    def test_shape_distinct_and_respects_zeros(self):
        w = torch.rand(2, 3, 50, generator=seeded(7))
        w[..., :20] = 0
        sets = sample_minimal_sets(w, 100, 8, seeded(8))
        assert sets.shape == (2, 3, 100, 8) and (sets >= 20).all() and sets.max() < 50
        assert (sets.sort(-1).values.diff(dim=-1) > 0).all()  # distinct within each set

    def test_proportional_to_weights(self):
        w = torch.tensor([[[1.0, 0.0, 3.0]]])
        sets = sample_minimal_sets(w, 20000, 1, seeded(9))
        assert abs((sets == 2).float().mean().item() - 0.75) < 0.015

    def test_starved_draw_falls_back_to_uniform(self):
        w = torch.zeros(1, 1, 10)
        w[0, 0, 3] = float("nan")
        sets = sample_minimal_sets(w, 50, 3, seeded(10))
        assert sets.shape == (1, 1, 50, 3) and (sets.sort(-1).values.diff(dim=-1) > 0).all()

    def test_exception(self):
        with pytest.raises(ValueError, match="set_size=4 exceeds"):
            sample_minimal_sets(torch.ones(1, 1, 3), 2, 4)
        with pytest.raises(ValueError, match="weights must have shape"):
            sample_minimal_sets(torch.ones(3, 4), 2, 2)


class TestResiduals:
    def test_known_value(self):
        X_ref = torch.zeros(1, 2, 3, dtype=torch.float64)
        X_query = torch.tensor([[[0.3, 0.4, 0.0], [0.0, 0.0, 0.0]]], dtype=torch.float64)
        R, t = torch.eye(3, dtype=torch.float64)[None], torch.zeros(1, 3, dtype=torch.float64)
        r = residuals(R, t, X_ref, X_query)
        assert torch.allclose(r, torch.tensor([[(0.25 + 1e-6) ** 0.5, 1e-3]], dtype=torch.float64))

    def test_broadcasts_over_hypotheses(self):
        _, X_ref, X_query, R_gt, t_gt = make_scene(B=2, N0=20, N1=20, outlier_ratio=0, noise_m=0)
        R = torch.stack([torch.eye(3).expand(2, 3, 3), R_gt], dim=1)  # (B, H=2, 3, 3)
        t = torch.stack([torch.zeros(2, 3), t_gt], dim=1)
        Xq = X_query.new_zeros(2, 20, 3)
        for b in range(2):  # reorder so that row k of both sets corresponds
            Xq[b] = X_ref[b] @ R_gt[b].T + t_gt[b]
        r = residuals(R, t, X_ref[:, None], Xq[:, None])
        assert r.shape == (2, 2, 20)
        assert (r[:, 1] < 2e-3).all() and (r[:, 0] > 2e-3).any()


class TestSoftInlierCount:
    def test_values(self):
        res = torch.tensor([[0.3, 0.3, 0.0, 10.0]])
        beta = 5 / 0.3
        expected = 1.0 + torch.sigmoid(torch.tensor([beta * 0.3, -beta * 9.7])).sum()
        assert torch.allclose(soft_inlier_count(res, 0.3), expected[None])
        assert torch.allclose(soft_inlier_count(res, 0.3, beta_scale=0.0), torch.tensor([2.0]))

    def test_gradient_rewards_small_residuals(self):
        res = torch.tensor([0.1, 0.2]).requires_grad_()
        soft_inlier_count(res, 0.15).backward()
        assert (res.grad < 0).all()


class TestRefineWithInliers:
    def test_refines_perturbed_pose_ignoring_outliers(self):
        _, X_ref, _, R_gt, t_gt = make_scene(B=3, N0=200, N1=200, seed=11)
        g = seeded(12)
        noise = 0.003 * torch.randn(3, 200, 3, generator=g)
        X_query = X_ref @ R_gt.transpose(-1, -2) + t_gt[:, None] + noise
        X_query[:, 100:] = torch.rand(3, 100, 3, generator=g) * 4  # 50 % outliers
        R0 = axis_angle_to_rotmat(torch.tensor([0.0, 0.01, 0.0])) @ R_gt  # 0.6 deg off
        R, t, mask = refine_with_inliers(R0, t_gt + 0.05, X_ref, X_query, 0.15, 4, 3)
        angle_deg = torch.rad2deg(rotation_angle(R @ R_gt.transpose(-1, -2)))
        assert angle_deg.max() < 0.1 and (t - t_gt).norm(dim=-1).max() < 0.005
        assert mask.shape == (3, 200) and mask[:, :100].sum(1).min() >= 95
        assert mask[:, 100:].sum() < 10  # only outliers that happen to fall near the pose

    def test_no_rounds_or_too_few_inliers_returns_input(self):
        _, X_ref, X_query, R_gt, t_gt = make_scene(B=1, N0=30, N1=30, seed=13)
        for rounds, min_inliers in [(0, 3), (4, 1000)]:
            R, t, mask = refine_with_inliers(R_gt, t_gt, X_ref, X_query, 0.15, rounds, min_inliers)
            assert torch.equal(R, R_gt) and torch.equal(t, t_gt) and not mask.any()

    def test_broadcasts_points_over_hypotheses(self):
        _, X_ref, _, R_gt, t_gt = make_scene(B=1, N0=50, N1=50, seed=14)
        X_query = X_ref @ R_gt[0].T + t_gt[0]
        R0 = torch.stack([R_gt[0], torch.eye(3)])[None]  # (1, H=2, 3, 3): good and bad start
        t0 = torch.stack([t_gt[0], torch.zeros(3)])[None]
        R, t, mask = refine_with_inliers(R0, t0, X_ref[:, None], X_query[:, None], 0.15, 4, 3)
        assert R.shape == (1, 2, 3, 3) and mask.shape == (1, 2, 50)
        assert mask[0, 0].all() and (R[0, 0] - R_gt[0]).abs().max() < 1e-5


class TestProbabilityProblems:
    def test_reasons(self):
        P = torch.ones(5, 20, 20)
        P[1] = 0
        P[2, 0, 0] = float("nan")
        P[3, 0, 0] = -1.0
        X_ref, X_query = torch.zeros(5, 20, 3), torch.zeros(5, 20, 3)
        X_ref[4, :15] = float("inf")
        usable, reasons = probability_problems(P, X_ref, X_query, 128)
        assert reasons == [
            None,
            "only 0 correspondences have non-zero probability; 128 are sampled per draw - use a "
            "larger input image or lower solver.num_samples",
            "P has 1 NaN/Inf entries; correspondence probabilities must be finite",
            "P has 1 negative entries; correspondence probabilities must be >= 0",
            "only 100 correspondences have non-zero probability and finite 3D points (15 reference"
            " and 0 query points are NaN/Inf); 128 are sampled per draw - check the depths and "
            "intrinsics",
        ]
        assert usable[4, :15].sum() == 0 and usable[4, 15:].sum() == 100


class TestHypothesisScores:
    def test_equals_plain_path(self, monkeypatch):
        _, X_ref, X_query, *_ = make_scene(B=2, N0=60, N1=60, seed=15)
        Xr, Xq = X_ref.view(2, 3, 20, 3), X_query.view(2, 3, 20, 3)  # (B, M, S, 3)
        R = axis_angle_to_rotmat(torch.randn(2, 3, 7, 3, generator=seeded(16)))
        t = torch.randn(2, 3, 7, 3, generator=seeded(17))
        plain = soft_inlier_count(residuals(R, t, Xr[:, :, None], Xq[:, :, None]), 0.3, 5.0)
        monkeypatch.setattr(ransac, "_SCORE_BUDGET", 20 * 7 * 3 * 2)  # 2 draws per chunk
        fast = ransac._hypothesis_scores(R, t, Xr, Xq, 0.3, 5.0)
        assert torch.allclose(fast, plain, atol=1e-4)


class TestSolvePose:
    def test_recovers_pose_with_half_outliers(self):
        P, X_ref, X_query, R_gt, t_gt = make_scene(B=2, seed=20)
        sol = solve_pose(P, X_ref, X_query, SMALL, seeded(0))
        angle_deg, t_err = pose_errors(sol, R_gt, t_gt)
        assert sol.valid.tolist() == [True, True] and sol.reasons == [None, None]
        assert angle_deg.max() < 0.5 and t_err.max() < 0.01
        assert sol.R.shape == (2, 3, 3) and sol.t.shape == (2, 3) and sol.num_samples == 128
        assert ((sol.confidence > 30) & (sol.confidence <= 128)).all()
        assert sol.num_inliers.dtype == torch.long and (sol.num_inliers > 30).all()

    def test_inlier_indices_are_consistent(self):
        P, X_ref, X_query, *_ = make_scene(B=1, seed=21)
        sol = solve_pose(P, X_ref, X_query, SMALL, seeded(1))
        i, j = sol.inliers_ref[0], sol.inliers_query[0]
        assert len(i) == len(j) == sol.num_inliers[0]
        assert (P[0, i, j] > 0).all()
        assert (residuals(sol.R, sol.t, X_ref[:, i], X_query[:, j]) <= 0.15).all()

    def test_same_seed_identical_other_seed_close(self):
        P, X_ref, X_query, R_gt, t_gt = make_scene(B=1, seed=22)
        a = solve_pose(P, X_ref, X_query, SMALL, seeded(7))
        b = solve_pose(P, X_ref, X_query, SMALL, seeded(7))
        assert torch.equal(a.R, b.R) and torch.equal(a.t, b.t)
        assert torch.equal(a.confidence, b.confidence)
        for seed in (8, 9):
            sol = solve_pose(P, X_ref, X_query, SMALL, seeded(seed))
            angle_deg, t_err = pose_errors(sol, R_gt, t_gt)
            assert angle_deg.item() < 0.5 and t_err.item() < 0.01

    def test_bad_pairs_do_not_affect_others(self):
        P, X_ref, X_query, R_gt, t_gt = make_scene(B=3, seed=23)
        P[1] = 0
        X_ref[2] = float("nan")
        sol = solve_pose(P, X_ref, X_query, SMALL, seeded(2))
        assert sol.valid.tolist() == [True, False, False]
        assert sol.reasons[0] is None
        assert sol.reasons[1].startswith("only 0 correspondences have non-zero probability;")
        assert "256 reference and 0 query points are NaN/Inf" in sol.reasons[2]
        angle_deg, t_err = pose_errors(sol, R_gt, t_gt)
        assert angle_deg[0] < 0.5 and t_err[0] < 0.01
        assert torch.equal(sol.R[1:], torch.eye(3).expand(2, 3, 3)) and not sol.t[1:].any()
        assert sol.confidence[1:].tolist() == [0, 0] and sol.num_inliers[1:].tolist() == [0, 0]
        assert [len(i) for i in sol.inliers_ref[1:]] == [0, 0]

    def test_colinear_points_are_degenerate(self):
        P, X_ref, _, _, _ = make_scene(B=2, seed=24)
        X_ref[1, :, 1:] = 1.0  # every reference point on one line
        X_query = X_ref.clone()
        sol = solve_pose(P, X_ref, X_query, SMALL, seeded(3))
        assert sol.valid.tolist() == [True, False]
        assert sol.reasons[1] == (
            "all 2000 minimal-set hypotheses were degenerate (colinear or repeated 3D points)"
        )

    @pytest.mark.parametrize("N0, N1", [(200, 320), (320, 200)])
    def test_different_keypoint_counts(self, N0, N1):
        P, X_ref, X_query, R_gt, t_gt = make_scene(B=2, N0=N0, N1=N1, seed=25)
        sol = solve_pose(P, X_ref, X_query, SMALL, seeded(4))
        angle_deg, t_err = pose_errors(sol, R_gt, t_gt)
        assert sol.valid.all() and angle_deg.max() < 0.5 and t_err.max() < 0.01
        assert sol.inliers_ref[0].max() < N0 and sol.inliers_query[0].max() < N1

    def test_confidence_higher_for_clean_pair(self):
        clean = make_scene(B=1, outlier_ratio=0.1, seed=26)
        dirty = make_scene(B=1, outlier_ratio=0.7, seed=27)
        P, X_ref, X_query = (torch.cat([c, d]) for c, d in zip(clean[:3], dirty[:3]))
        sol = solve_pose(P, X_ref, X_query, SMALL, seeded(5))
        assert sol.valid.all() and 0 <= sol.confidence[1] < sol.confidence[0] <= 128

    def test_float64_stays_float64(self):
        P, X_ref, X_query, R_gt, t_gt = make_scene(B=1, seed=28)
        sol = solve_pose(P.double(), X_ref.double(), X_query.double(), SMALL, seeded(6))
        assert sol.R.dtype == sol.t.dtype == sol.confidence.dtype == torch.float64
        assert pose_errors(sol, R_gt.double(), t_gt.double())[1].item() < 0.01

    def test_official_defaults_at_full_size(self):
        # 51 x 38 grid as at 720x540; P is zero on the 3-cell border like MicKey's
        P, X_ref, X_query, R_gt, t_gt = make_scene(B=1, N0=1938, N1=1938, seed=29, background=1e-3)
        border = torch.zeros(51, 38, dtype=torch.bool)
        border[3:-3, 3:-3] = True
        P = P * border.flatten()[:, None] * border.flatten()[None, :]
        sol = solve_pose(P, X_ref, X_query, SolverConfig(), seeded(7))
        angle_deg, t_err = pose_errors(sol, R_gt, t_gt)
        assert sol.valid.item() and angle_deg.item() < 0.5 and t_err.item() < 0.01
        assert 0 < sol.confidence.item() <= 2048

    def test_too_small_input(self):
        P, X_ref, X_query, *_ = make_scene(B=1, N0=40, N1=40, seed=30)
        sol = solve_pose(P, X_ref, X_query)  # 1600 < 2048 correspondences exist at all
        assert not sol.valid.item() and sol.reasons[0] == (
            "only 1600 correspondences have non-zero probability; 2048 are sampled per draw - "
            "use a larger input image or lower solver.num_samples"
        )

    def test_exception(self):
        P, X_ref, X_query, *_ = make_scene(B=2, N0=10, N1=12)
        with pytest.raises(ValueError, match="X_query"):
            solve_pose(P, X_ref, X_query[:, :10])
        with pytest.raises(ValueError, match="X_ref"):
            solve_pose(P, X_ref[:1], X_query)
        with pytest.raises(ValueError, match="P must have shape"):
            solve_pose(P[0], X_ref, X_query)
