"""Tests for mickey_ros.dataset.pairs and frames' convention check (issue 27)."""

from __future__ import annotations

import numpy as np
import pytest

from mickey_ros.dataset.config import DatasetConfig, DatasetError
from mickey_ros.dataset.frames import FrameRecord, camera_orientation, resolve_convention
from mickey_ros.dataset.pairs import (
    PairTable,
    candidate_mask,
    eval_groups,
    score_pairs,
    split_blocks,
)
from mickey_ros.synth.rosbag import R_LINK_OPTICAL

K = np.array([[100.0, 0.0, 79.5], [0.0, 100.0, 59.5], [0.0, 0.0, 1.0]])  # 160x120


def _pose(x: float = 0.0, yaw_deg: float = 0.0) -> np.ndarray:
    """Optical camera at (x, 0, 1) in a z-up fixed frame, looking along +x turned by yaw."""
    c, s = np.cos(np.radians(yaw_deg)), np.sin(np.radians(yaw_deg))
    T = np.eye(4)
    T[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ R_LINK_OPTICAL
    T[:3, 3] = [0.0, x, 1.0]  # x of the camera image = -y of the fixed frame
    return T


def _frame(i: int, T: np.ndarray, depth: float | None = None) -> FrameRecord:
    record = FrameRecord(i, 0, i, T, K, (160, 120), "bag", "/img")
    if depth is not None:
        record.depth_small = np.full((30, 40), depth, np.float32)
        record.K_small = K.copy()
        record.K_small[:2] /= 4
    return record


class TestCandidateMask:
    def test_baseline_and_angle_limits(self):
        T = np.stack([_pose(0), _pose(1.0), _pose(3.5), _pose(0, yaw_deg=70)])
        ok = candidate_mask(T, max_baseline_m=2.0, max_angle_deg=60.0)
        assert ok.tolist() == [[False, True, False, False], [True, False, False, False],
                               [False, False, False, False], [False, False, False, False]]


class TestScorePairs:
    @pytest.mark.parametrize("shift", [0.0, 0.5, 1.0])
    def test_prior_and_depth_mean_the_same(self, shift):
        """A fronto-parallel wall at the prior depth: both sources give 1 - fx b / (D W)."""
        cfg = DatasetConfig(prior_depth_m=4.0)
        expected = 1 - 100.0 * shift / (4.0 * 160)
        prior = score_pairs([_frame(0, _pose(0)), _frame(1, _pose(shift))], cfg)
        depth = score_pairs([_frame(0, _pose(0), 4.0), _frame(1, _pose(shift), 4.0)], cfg)
        assert prior.source.tolist() == [1] and depth.source.tolist() == [0]
        assert prior.overlap[0] == pytest.approx(expected, abs=0.03)
        assert depth.overlap[0] == pytest.approx(expected, abs=0.03)
        assert prior.baseline_m[0] == pytest.approx(shift)

    def test_occluded_depth_is_not_seen(self):
        """b's depth disagrees (a wall 1 m in front): nothing of a is co-visible."""
        cfg = DatasetConfig()
        pairs = score_pairs([_frame(0, _pose(0), 4.0), _frame(1, _pose(0.2), 3.0)], cfg)
        assert pairs.overlap.tolist() == [0.0]

    def test_mixed_depth_falls_back_to_the_prior(self):
        pairs = score_pairs([_frame(0, _pose(0), 4.0), _frame(1, _pose(0.2))], DatasetConfig())
        assert pairs.source.tolist() == [1]

    def test_one_frame(self):
        assert len(score_pairs([_frame(0, _pose(0))], DatasetConfig()).a) == 0


class TestSplitBlocks:
    def test_three_blocks_with_guards(self):
        stamps = np.arange(21) * 10**9
        split = split_blocks(stamps, (0.5, 0.25, 0.25), guard_s=2.0)
        assert split.tolist() == [0] * 10 + [-1] + [1] * 4 + [-1] + [2] * 5


class TestEvalGroups:
    def test_greedy_reference_and_queries(self):
        pairs = PairTable(np.array([0, 0, 1, 3]), np.array([1, 2, 2, 4]),
                          np.array([0.5, 0.1, 0.9, 0.4]), np.zeros(4, int), np.zeros(4),
                          np.zeros(4))
        groups, alone = eval_groups(6, pairs, min_overlap=0.2)
        assert groups == [(0, [1]), (3, [4])] and alone == 2  # frames 2 and 5


class TestResolveConvention:
    def test_orientations(self):
        body = np.eye(4)
        assert camera_orientation(_pose(0)) == "optical" and camera_orientation(body) == "body"
        down = np.eye(4)
        down[:3, :3] = [[1, 0, 0], [0, -1, 0], [0, 0, -1]]  # optical z pointing down
        assert camera_orientation(down) == "unknown"

    def test_auto_detects(self):
        assert resolve_convention(_pose(0), "cam_optical", "auto") == "optical"
        assert resolve_convention(np.eye(4), "camera_link", "auto") == "body"

    def test_wrong_choice_is_refused(self):
        with pytest.raises(DatasetError, match="has its z axis up in the fixed frame"):
            resolve_convention(np.eye(4), "camera_link", "optical")
        with pytest.raises(DatasetError, match="already has its y axis down"):
            resolve_convention(_pose(0), "cam_optical", "body")

    def test_looking_down_needs_the_name_or_a_choice(self):
        down = np.eye(4)
        down[:3, :3] = [[1, 0, 0], [0, -1, 0], [0, 0, -1]]
        assert resolve_convention(down, "down_optical_frame", "auto") == "optical"
        with pytest.raises(DatasetError, match="cannot tell whether camera frame 'down'"):
            resolve_convention(down, "down", "auto")
        assert resolve_convention(down, "down", "optical") == "optical"
