import math

import pytest
import torch

from mickey_ros.geometry.metrics import virtual_points
from mickey_ros.train.config import CurriculumConfig, LossConfig
from mickey_ros.train.loss import (
    clip_loss,
    correspondence_supervision,
    curriculum_mask,
    depth_supervision,
    expected_loss,
    gt_matches,
    log_probs_of,
    matched_depth_supervision,
    null_loss_value,
    objective_over_pairs,
    pose_loss,
    reinforce_surrogate,
    sample_depth_at,
    topk_percent,
    vcre_px,
)

EYE = torch.eye(3, dtype=torch.float64)
ZERO = torch.zeros(3, dtype=torch.float64)


def _K(f: float, c: float = 50.0) -> torch.Tensor:
    return torch.tensor([[f, 0.0, c], [0.0, f, c], [0.0, 0.0, 1.0]], dtype=torch.float64)


ONE_POINT = torch.tensor([[0.0, 0.0, 2.0]], dtype=torch.float64)


class TestVcrePx:
    def test_exact_pose_gives_sqrt_eps(self):
        err = vcre_px(EYE, ZERO, EYE, ZERO, _K(100.0), virtual_points())
        assert err.item() == pytest.approx(1e-3, rel=1e-9)  # sqrt(0 + 1e-6)

    def test_translation_error_hand_computed(self):
        # P = (0, 0, 2) -> (50, 50); round trip (0.2, 0, 2) -> (60, 50): 10 px
        t = torch.tensor([0.2, 0.0, 0.0], dtype=torch.float64)
        err = vcre_px(EYE, t, EYE, ZERO, _K(100.0), ONE_POINT)
        assert err.item() == pytest.approx(math.sqrt(100.0 + 1e-6), rel=1e-9)

    def test_both_coordinates_clamped_to_720(self):
        # round trip (40, 40, 2) -> (2050, 2050), clamped to (720, 720): distance 670 * sqrt(2)
        t = torch.tensor([40.0, 40.0, 0.0], dtype=torch.float64)
        err = vcre_px(EYE, t, EYE, ZERO, _K(100.0), ONE_POINT)
        assert err.item() == pytest.approx(math.sqrt(2 * 670.0**2 + 1e-6), rel=1e-9)
        err_small = vcre_px(EYE, t, EYE, ZERO, _K(100.0), ONE_POINT, clamp_px=100.0)
        assert err_small.item() == pytest.approx(math.sqrt(2 * 50.0**2 + 1e-6), rel=1e-9)

    def test_batched_shape(self):
        R = EYE.expand(2, 5, 3, 3)
        t = torch.zeros(2, 5, 3, dtype=torch.float64)
        err = vcre_px(R, t, EYE, ZERO, _K(100.0).expand(2, 1, 3, 3), virtual_points())
        assert err.shape == (2, 5)


class TestPoseLoss:
    t = torch.tensor([0.2, 0.0, 0.0], dtype=torch.float64)

    def test_symmetric_averages_both_directions(self):
        # cam0 (f=100): 10 px; inverse direction with K1 (f=300): 30 px -> mean 20 px
        cfg = LossConfig(symmetric_vcre=True)
        loss = pose_loss(EYE, self.t, EYE, ZERO, _K(100.0), _K(300.0), ONE_POINT, cfg)
        e0, e1 = math.sqrt(100 + 1e-6), math.sqrt(900 + 1e-6)
        assert loss.item() == pytest.approx(math.tanh((e0 + e1) / 2 / 80.0), rel=1e-9)

    def test_release_one_directional(self):
        cfg = LossConfig(symmetric_vcre=False)
        loss = pose_loss(EYE, self.t, EYE, ZERO, _K(100.0), _K(300.0), ONE_POINT, cfg)
        assert loss.item() == pytest.approx(math.tanh(math.sqrt(100 + 1e-6) / 80.0), rel=1e-9)

    def test_raw_vcre_without_soft_clipping(self):
        """Issue 18: the official loss without soft clipping is not clamped at 90 px."""
        cfg = LossConfig(soft_clipping=False, symmetric_vcre=False)
        t = torch.tensor([4.0, 0.0, 0.0], dtype=torch.float64)  # (50, 50) -> (250, 50): 200 px
        loss = pose_loss(EYE, t, EYE, ZERO, _K(100.0), _K(100.0), ONE_POINT, cfg)
        assert loss.item() == pytest.approx(math.sqrt(200.0**2 + 1e-6), rel=1e-12)


class TestClipLoss:
    def test_values(self):
        err = torch.tensor([0.0, 80.0, 1000.0])
        assert torch.allclose(clip_loss(err, LossConfig()), torch.tanh(err / 80.0))
        raw = clip_loss(err, LossConfig(soft_clipping=False))
        assert raw.tolist() == [0.0, 80.0, 1000.0]  # official: no clamp without soft clipping


class TestNullLossValue:
    def test_official_values(self):
        assert null_loss_value(LossConfig()) == 0.8
        assert null_loss_value(LossConfig(soft_clipping=False)) == 90.0


class TestExpectedLoss:
    def test_without_null(self):
        # weights softmax([0, 20 ln 3] / 20) = [1/4, 3/4]
        scores = torch.tensor([0.0, 20.0 * math.log(3.0)])
        losses = torch.tensor([0.4, 0.8])
        out = expected_loss(scores, losses, 512, LossConfig(null_hypothesis=False))
        assert out.item() == pytest.approx(0.25 * 0.4 + 0.75 * 0.8, rel=1e-6)

    def test_null_hypothesis_scores_035_of_samples(self):
        # S = 100 -> null score 35 = both scores: three equal weights, null loss 0.8
        scores = torch.tensor([[35.0, 35.0]])
        losses = torch.tensor([[0.2, 0.5]])
        out = expected_loss(scores, losses, 100, LossConfig())
        assert out.shape == (1,)
        assert out.item() == pytest.approx((0.2 + 0.5 + 0.8) / 3, rel=1e-6)

    def test_null_caps_loss_of_bad_draws(self):
        # official 512 samples: null score 179.2 dominates hypotheses with 20 soft inliers
        out = expected_loss(torch.tensor([20.0]), torch.tensor([1.0]), 512, LossConfig())
        w_null = 1 / (1 + math.exp((20.0 - 179.2) / 20.0))
        assert out.item() == pytest.approx(w_null * 0.8 + (1 - w_null) * 1.0, rel=1e-5)


class TestReinforceSurrogate:
    def test_gradient_is_advantage_over_m(self):
        log_probs = torch.zeros(1, 2, 3, requires_grad=True)
        draw_losses = torch.tensor([[0.2, 0.6]])
        surrogate, baseline = reinforce_surrogate(log_probs, draw_losses)
        assert baseline.item() == pytest.approx(0.4)
        surrogate.sum().backward()
        expected = torch.tensor([[-0.2, 0.2]]).unsqueeze(-1).expand(1, 2, 3) / 2
        assert torch.allclose(log_probs.grad, expected)


class TestObjectiveOverPairs:
    def test_official_normalisation(self):
        """Issue 18: REINFORCE summed over the kept pairs, the direct term averaged."""
        baseline = torch.tensor([0.2, 0.4, 0.6, 0.8], requires_grad=True)
        surrogate = torch.tensor([0.1, -0.2, 0.3, 0.5], requires_grad=True)
        keep = torch.tensor([True, False, True, True])
        out = objective_over_pairs(baseline, surrogate, keep)
        assert out.item() == pytest.approx((0.2 + 0.6 + 0.8) / 3 + (0.1 + 0.3 + 0.5), rel=1e-6)
        out.backward()
        assert baseline.grad.tolist() == pytest.approx([1 / 3, 0.0, 1 / 3, 1 / 3])
        assert surrogate.grad.tolist() == [1.0, 0.0, 1.0, 1.0]

    def test_reinforce_gradient_is_advantage_over_draws_per_kept_pair(self):
        # with k = 2 kept pairs, d/d log P = (l_m - b) / M per pair, not divided by k
        log_probs = torch.zeros(3, 2, 1, requires_grad=True)
        draw_losses = torch.tensor([[0.2, 0.6], [0.1, 0.5], [0.9, 0.9]])
        surrogate, baseline = reinforce_surrogate(log_probs, draw_losses)
        keep = torch.tensor([True, True, False])
        objective_over_pairs(baseline, surrogate, keep).backward()
        expected = torch.tensor([[-0.1, 0.1], [-0.1, 0.1], [0.0, 0.0]]).unsqueeze(-1)
        assert torch.allclose(log_probs.grad, expected)


class TestLogProbsOf:
    def test_gathers_entries(self):
        P = torch.arange(12.0).view(1, 3, 4)
        idx_ref = torch.tensor([[[0, 2]]])
        idx_query = torch.tensor([[[1, 3]]])
        out = log_probs_of(P, idx_ref, idx_query)
        assert torch.allclose(out, torch.log(torch.tensor([[[1.0, 11.0]]]) + 1e-16))


class TestTopkPercent:
    @pytest.mark.parametrize(
        "epoch, expected", [(0, 30.0), (1, 35.0), (9, 75.0), (10, 80.0), (50, 80.0)]
    )
    def test_schedule(self, epoch, expected):
        assert topk_percent(epoch, CurriculumConfig()) == expected


class TestCurriculumMask:
    def test_keeps_lowest_k(self):
        baseline = torch.tensor([0.5, 0.1, 0.9, 0.3, 0.7, 0.2, 0.8, 0.6])
        mask = curriculum_mask(baseline, 30.0)  # k = floor(2.4) = 2
        assert mask.tolist() == [False, True, False, False, False, True, False, False]

    def test_at_least_one(self):
        mask = curriculum_mask(torch.tensor([0.3, 0.2, 0.9]), 30.0)  # floor(0.9) -> 1
        assert mask.tolist() == [False, True, False]

    def test_ties_keep_lower_index(self):
        mask = curriculum_mask(torch.tensor([0.5, 0.5, 0.5, 0.5]), 50.0)
        assert mask.tolist() == [True, True, False, False]


def _K_batch(f: float = 100.0, c: float = 50.0) -> torch.Tensor:
    return torch.tensor([[[f, 0.0, c], [0.0, f, c], [0.0, 0.0, 1.0]]])


class TestSampleDepthAt:
    def test_nearest_pixel_and_outside_zero(self):
        depth = torch.arange(12.0).view(1, 3, 4)
        kpts = torch.tensor([[[0.2, 0.9], [3.7, 2.1], [4.0, 0.0], [-0.5, 1.0]]])
        assert sample_depth_at(depth, kpts).tolist() == [[0.0, 11.0, 0.0, 0.0]]


class TestDepthSupervision:
    def test_log_error_over_known_depths(self):
        pred = torch.tensor([[1.0, 3.0, 5.0, 7.0]])
        gt = torch.tensor([[2.0, 3.0, 0.0, 500.0]])  # 0 unknown, 500 beyond max_depth_m
        assert depth_supervision(pred, gt, 100.0).item() == pytest.approx(math.log(2.0) / 2)

    def test_scale_symmetric(self):
        gt = torch.tensor([[2.0]])
        half, double = depth_supervision(gt / 2, gt), depth_supervision(gt * 2, gt)
        assert half.item() == pytest.approx(double.item())

    def test_negative_prediction_has_gradient(self):
        pred = torch.tensor([[-1.0]], requires_grad=True)
        loss = depth_supervision(pred, torch.tensor([[1.0]]), min_depth_m=0.05)
        assert loss.item() == pytest.approx(-math.log(0.05) + 1.05)
        loss.backward()
        assert pred.grad.item() == -1.0

    def test_no_known_depth_gives_zero(self):
        assert depth_supervision(torch.ones(1, 3), torch.zeros(1, 3)).item() == 0.0


class TestMatchedDepthSupervision:
    def test_shared_error_costs_nothing_and_disagreement_its_log_ratio(self):
        gt_ref = torch.tensor([[2.0, 4.0, 3.0, 0.0, 6.0]])  # the fourth: unknown GT depth
        gt_query = torch.tensor([[1.0, 5.0, 8.0, 500.0]])  # the last: beyond max_depth_m
        target = torch.tensor([[1, 0, 2, 0, 3]])
        valid = torch.tensor([[True, True, False, True, True]])  # the third: no visible match
        # keypoint 0 (-> query 1): both views 10 % too far; keypoint 1 (-> query 0): the
        # reference exact, the query 2x too near
        depth_ref = gt_ref * torch.tensor([[1.1, 1.0, 3.0, 1.0, 2.0]])
        depth_query = gt_query * torch.tensor([[0.5, 1.1, 1.0, 1.0]])
        loss = matched_depth_supervision(depth_ref, depth_query, gt_ref, gt_query, target, valid,
                                         max_depth_m=100.0)
        assert loss.item() == pytest.approx(math.log(2.0) / 2, rel=1e-6)

    def test_gradient_reaches_both_views(self):
        depth_ref = torch.tensor([[2.0]], requires_grad=True)
        depth_query = torch.tensor([[3.0]], requires_grad=True)
        gt = torch.tensor([[2.5]])
        loss = matched_depth_supervision(depth_ref, depth_query, gt, gt,
                                         torch.zeros(1, 1, dtype=torch.long),
                                         torch.ones(1, 1, dtype=torch.bool))
        loss.backward()
        assert depth_ref.grad.item() == pytest.approx(-1 / 2.0)
        assert depth_query.grad.item() == pytest.approx(1 / 3.0)

    def test_no_valid_match_gives_zero(self):
        z = torch.ones(1, 2)
        assert matched_depth_supervision(z, z, z, z, torch.zeros(1, 2, dtype=torch.long),
                                         torch.zeros(1, 2, dtype=torch.bool)).item() == 0.0


class TestGtMatches:
    def test_plane_shifted_sideways(self):
        # plane at z = 2 m, X_1 = X_0 + (0.28, 0, 0): u shifts by 100 * 0.28 / 2 = 14 px
        depth = torch.full((1, 56, 56), 2.0)
        T = torch.eye(4).unsqueeze(0)
        T[0, 0, 3] = 0.28
        kpts = torch.tensor([[[7.0, 7.0], [21.0, 35.0], [49.0, 7.0]]])
        target, valid = gt_matches(kpts, depth, depth, _K_batch(), _K_batch(), T, (4, 4), 14, 0.05)
        # (7, 7) -> (21, 7): cell (0, 1) = 1; (21, 35) -> (35, 35): cell (2, 2) = 10;
        # (49, 7) -> (63, 7) leaves the 56 px grid
        assert valid.tolist() == [[True, True, False]]
        assert target[valid].tolist() == [1, 10]

    def test_occluded_point_is_invalid(self):
        depth0 = torch.full((1, 56, 56), 2.0)
        depth1 = torch.full((1, 56, 56), 1.0)  # something closer hides the plane in view 1
        T = torch.eye(4).unsqueeze(0)
        kpts = torch.tensor([[[7.0, 7.0]]])
        _, valid = gt_matches(kpts, depth0, depth1, _K_batch(), _K_batch(), T, (4, 4), 14, 0.05)
        assert valid.tolist() == [[False]]


class TestCorrespondenceSupervision:
    def test_nll_of_targets(self):
        probs = torch.tensor([[[0.5, 0.25], [0.1, 0.2]]])
        target = torch.tensor([[0, 1]])
        loss = correspondence_supervision(probs, target, torch.tensor([[True, True]]))
        assert loss.item() == pytest.approx(-(math.log(0.5) + math.log(0.2)) / 2, rel=1e-6)
        only_first = correspondence_supervision(probs, target, torch.tensor([[True, False]]))
        assert only_first.item() == pytest.approx(-math.log(0.5), rel=1e-6)
