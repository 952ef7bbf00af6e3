"""What ``~/estimate`` and the replay say about a frame the quality gate rejected.

msg/RelativePose.msg: ``valid`` = the solver returned a pose, ``accepted`` = it also passed the
gate. A rejected-but-valid pose must carry the solver's ``T_ref_query`` (as the replay CSV does),
never an identity marked valid; only a frame without a usable pose gets identity and
``valid: false``.
"""

from __future__ import annotations

import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore

from mickey_ros.estimator.result import PoseEstimate
from mickey_ros.relocalization import messages
from mickey_ros.relocalization.session import Frame, RelocalizationSession, SessionConfig

K = np.array([[200.0, 0.0, 80.0], [0.0, 200.0, 60.0], [0.0, 0.0, 1.0]])
RGB = np.zeros((120, 160, 3), np.uint8)
T_QUERY_REF = np.eye(4)
T_QUERY_REF[:3, :3] = [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]  # 90 deg about z
T_QUERY_REF[:3, 3] = [0.3, -0.1, 1.2]


class Double:
    def __init__(self, estimate: PoseEstimate):
        self.result = estimate

    def set_reference(self, image, K):
        pass

    def estimate(self, image, K):
        return self.result


def process(estimate: PoseEstimate):
    session = RelocalizationSession(Double(estimate), SessionConfig(min_confidence=0.5))
    session.set_reference(Frame(RGB, K, 1_000, "ref_cam"))
    result = session.process(Frame(RGB, K, 2_000_000_000, "cam"), now_ns=2_000_000_000)
    types = messages.MessageTypes.from_typestore(get_typestore(Stores.ROS2_JAZZY))
    return result, messages.relative_pose_msg(types, result)


def test_gate_rejected_pose_is_the_solvers_pose():
    estimate = PoseEstimate(valid=True, R=T_QUERY_REF[:3, :3], t=T_QUERY_REF[:3, 3],
                            confidence=100.0, num_inliers=100, num_samples=2048)
    result, msg = process(estimate)
    assert (result.publish, result.has_pose, msg.valid, msg.accepted) == (False, True, True, False)
    assert msg.status.startswith("low confidence: inlier ratio 0.049 < min_confidence 0.500")
    expected = np.linalg.inv(T_QUERY_REF)
    np.testing.assert_allclose(result.relative.T_parent_child, expected, atol=1e-12)
    np.testing.assert_allclose(messages.transform_to_matrix(msg.transform), expected, atol=1e-9)
    assert result.transforms == []  # nothing on TF for a rejected pose


@pytest.mark.parametrize("estimate, status", [
    (PoseEstimate.invalid("too few matches"), "too few matches"),
    (PoseEstimate(valid=True, R=np.full((3, 3), np.nan), t=np.zeros(3), confidence=2000.0,
                  num_inliers=2000, num_samples=2048),
     "solver returned a non-finite or degenerate pose"),
])
def test_no_pose_is_identity_and_not_valid(estimate, status):
    result, msg = process(estimate)
    assert (result.has_pose, msg.valid, msg.accepted, msg.status) == (False, False, False, status)
    np.testing.assert_array_equal(messages.transform_to_matrix(msg.transform), np.eye(4))
