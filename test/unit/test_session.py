"""relocalization.session with a model double that returns a known pose (never the real network)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from mickey_ros.estimator.result import PoseEstimate
from mickey_ros.relocalization.session import (
    NO_REFERENCE,
    Frame,
    LatestFrameSlot,
    RelocalizationSession,
    SessionConfig,
)

K = np.array([[200.0, 0.0, 80.0], [0.0, 200.0, 60.0], [0.0, 0.0, 1.0]])
RGB = np.zeros((120, 160, 3), np.uint8)
STAMP = 5_000_000_000


def transform(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = q, rng.normal(size=3)
    return T


T_QUERY_REF = transform(1)


class PoseDouble:
    """PoseEstimator double: returns ``T_QUERY_REF`` with a given confidence, or raises."""

    def __init__(self, confidence=1024.0, num_samples=2048, valid=True, error=None, R=None):
        self.confidence, self.num_samples, self.valid = confidence, num_samples, valid
        self.error, self.R = error, R
        self.reference = None
        self.estimate_calls: list[np.ndarray] = []

    @property
    def has_reference(self):
        return self.reference is not None

    def set_reference(self, image, K):
        self.reference = (image, K)

    def clear_reference(self):
        self.reference = None

    def estimate(self, image, K):
        self.estimate_calls.append(K)
        if self.error is not None:
            raise self.error
        if not self.valid:
            return PoseEstimate.invalid("too few matches")
        R = T_QUERY_REF[:3, :3] if self.R is None else self.R
        return PoseEstimate(valid=True, R=R, t=T_QUERY_REF[:3, 3], confidence=self.confidence,
                            num_inliers=int(self.confidence), num_samples=self.num_samples)

    def estimate_batch(self, images, Ks):
        return [self.estimate(im, k) for im, k in zip(images, Ks)]


def session_with_reference(double=None, **config):
    session = RelocalizationSession(double or PoseDouble(), SessionConfig(**config))
    session.set_reference(Frame(RGB, K, 1_000_000_000, "ref_cam"))
    return session


def live(frame_id="camera_optical", stamp=STAMP):
    return Frame(RGB, K, stamp, frame_id)


class TestSessionConfig:
    @pytest.mark.parametrize("kwargs, text", [
        ({"tf_mode": "tf"}, "tf_mode must be one of"),
        ({"map_frame": "/map"}, "must be non-empty and not start with '/'"),
        ({"query_frame": ""}, "must be non-empty"),
        ({"min_confidence": 2.0}, "inlier ratio in \\[0, 1\\]"),
        ({"map_to_reference": (0, 0, 0, 0, 0, 0, 0)}, "non-zero quaternion"),
        ({"map_to_reference": (0, 0, 0, 1)}, "7 finite numbers"),
    ])
    def test_invalid(self, kwargs, text):
        with pytest.raises(ValueError, match=text):
            SessionConfig(**kwargs)


class TestProcessWithoutReference:
    def test_reported_not_published(self):
        double = PoseDouble()
        session = RelocalizationSession(double, SessionConfig())
        result = session.process(live(), STAMP)
        assert not result.publish and result.gate_reason == NO_REFERENCE
        assert result.transforms == [] and double.estimate_calls == []
        assert session.stats.rejected == 1 and session.stats.last_reason == NO_REFERENCE


class TestTfModes:
    def test_relative(self):
        result = session_with_reference(tf_mode="relative").process(live(), STAMP)
        assert result.publish and result.gate_reason is None and result.status == "ok"
        (edge,) = result.transforms
        assert (edge.parent, edge.child, edge.stamp_ns) == (
            "mickey_reference_optical", "mickey_query_optical", STAMP)
        # the edge carries T_ref_query: a point in the query camera maps into the reference camera
        X_query = np.array([0.3, -0.2, 2.0, 1.0])
        np.testing.assert_allclose(T_QUERY_REF @ edge.T_parent_child @ X_query, X_query)
        rel = result.relative
        assert (rel.parent, rel.child, rel.stamp_ns) == (edge.parent, edge.child, STAMP)
        np.testing.assert_allclose(rel.T_parent_child, np.linalg.inv(T_QUERY_REF), atol=1e-12)

    def test_attach_reference_hangs_keyframe_under_live_camera(self):
        result = session_with_reference(tf_mode="attach_reference").process(live(), STAMP)
        (edge,) = result.transforms
        assert (edge.parent, edge.child) == ("camera_optical", "mickey_reference_optical")
        np.testing.assert_allclose(edge.T_parent_child, T_QUERY_REF, atol=1e-12)
        # ~/relative_pose stays reference -> query whatever the TF mode
        np.testing.assert_allclose(result.relative.T_parent_child, np.linalg.inv(T_QUERY_REF),
                                   atol=1e-12)

    @pytest.mark.parametrize("frame_id", ["", "/camera"])
    def test_attach_reference_needs_a_valid_camera_frame(self, frame_id):
        result = session_with_reference(tf_mode="attach_reference").process(live(frame_id), STAMP)
        assert result.publish and result.transforms == []
        assert "not a TF frame" in result.tf_error

    def test_map_to_odom_composition(self):
        map_to_ref = (1.0, 2.0, 0.5, 0.0, 0.0, np.sin(0.4), np.cos(0.4))  # x y z qx qy qz qw
        session = session_with_reference(tf_mode="map_to_odom", map_to_reference=map_to_ref,
                                          transform_tolerance_s=0.25)
        T_odom_camera = transform(7)
        result = session.process(live(), STAMP, T_odom_camera=T_odom_camera)
        (edge,) = result.transforms
        assert (edge.parent, edge.child) == ("map", "odom")
        assert edge.stamp_ns == STAMP + 250_000_000  # future-dated as AMCL
        T_map_ref = session.T_map_ref
        np.testing.assert_allclose(T_map_ref[:3, 3], [1.0, 2.0, 0.5])
        np.testing.assert_allclose(T_map_ref[:2, :2], [[np.cos(0.8), -np.sin(0.8)],
                                                       [np.sin(0.8), np.cos(0.8)]], atol=1e-12)
        # map->odom composed with odom->camera gives the camera in the map: T_map_ref T_ref_query
        expected = T_map_ref @ np.linalg.inv(T_QUERY_REF)
        np.testing.assert_allclose(edge.T_parent_child @ T_odom_camera, expected, atol=1e-12)
        assert result.pose.parent == "map"
        np.testing.assert_allclose(result.pose.T_parent_child, expected, atol=1e-12)

    def test_map_to_odom_without_odometry(self):
        session = session_with_reference(tf_mode="map_to_odom")
        result = session.process(live(), STAMP, T_odom_camera=None)
        assert result.publish and result.transforms == []
        assert "no odom -> camera_optical transform" in result.tf_error
        assert session.rebroadcast(STAMP) == []

    def test_rebroadcast_last_map_to_odom(self):
        session = session_with_reference(tf_mode="map_to_odom", transform_tolerance_s=0.1)
        first = session.process(live(), STAMP, T_odom_camera=transform(2)).transforms[0]
        (again,) = session.rebroadcast(now_ns=9_000_000_000)
        assert again.stamp_ns == 9_100_000_000
        np.testing.assert_array_equal(again.T_parent_child, first.T_parent_child)

    @pytest.mark.parametrize("mode", ["relative", "attach_reference", "none"])
    def test_rebroadcast_only_for_map_to_odom(self, mode):
        session = session_with_reference(tf_mode=mode)
        session.process(live(), STAMP)
        assert session.rebroadcast(STAMP) == []

    def test_none_publishes_topics_only(self):
        result = session_with_reference(tf_mode="none").process(live(), STAMP)
        assert result.publish and result.transforms == []


class TestGate:
    @pytest.mark.parametrize("confidence, published", [(102.0, False), (102.4, True),
                                                       (2048.0, True)])
    def test_min_confidence_is_an_inlier_ratio(self, confidence, published):
        session = session_with_reference(PoseDouble(confidence=confidence), min_confidence=0.05)
        result = session.process(live(), STAMP)
        assert result.publish is published
        if not published:
            assert result.gate_reason.startswith("low confidence: inlier ratio 0.050 < ")
            assert "(soft-inlier sum 102 of 2048 sampled matches; hard inlier count " in (
                result.gate_reason)
            assert result.transforms == []
            # the solver's pose is still reported (~/estimate valid, not accepted; issue 14)
            np.testing.assert_allclose(result.relative.T_parent_child,
                                       np.linalg.inv(T_QUERY_REF), atol=1e-12)

    def test_invalid_estimate_reason_passes_through(self):
        result = session_with_reference(PoseDouble(valid=False)).process(live(), STAMP)
        assert not result.publish and result.gate_reason == "too few matches"

    @pytest.mark.parametrize("R", [np.zeros((3, 3)), np.full((3, 3), np.nan), -np.eye(3)])
    def test_degenerate_rotation(self, R):
        result = session_with_reference(PoseDouble(R=R)).process(live(), STAMP)
        assert not result.publish and "degenerate" in result.gate_reason

    def test_set_config_changes_gate(self):
        session = session_with_reference(PoseDouble(confidence=300.0), min_confidence=0.5)
        assert not session.process(live(), STAMP).publish
        session.set_config(SessionConfig(min_confidence=0.1))
        assert session.process(live(), STAMP).publish

    def test_wrong_camera_rejected_without_inference(self):
        double = PoseDouble()
        session = session_with_reference(double, expected_camera_frame="front_optical")
        result = session.process(live("rear_optical"), STAMP)
        assert not result.publish
        assert "'rear_optical', expected 'front_optical'" in result.gate_reason
        assert double.estimate_calls == []

    def test_covariance_scales_with_inlier_ratio(self):
        session = session_with_reference(PoseDouble(confidence=1024.0),
                                         covariance_translation_m=0.05,
                                         covariance_rotation_rad=0.02)
        cov = session.process(live(), STAMP).covariance
        np.testing.assert_allclose(np.diag(cov), [0.01] * 3 + [0.0016] * 3)
        np.testing.assert_array_equal(cov, np.diag(np.diag(cov)))


class TestEstimatorFailures:
    @pytest.mark.parametrize("error, text", [
        (torch.cuda.OutOfMemoryError("CUDA out of memory"), "GPU out of memory, frame dropped"),
        (ValueError("K must be finite"), "ValueError: K must be finite"),
        (RuntimeError("cuDNN error"), "inference failed with RuntimeError: cuDNN error"),
    ])
    def test_frame_dropped_session_survives(self, error, text):
        double = PoseDouble(error=error)
        session = session_with_reference(double)
        result = session.process(live(), STAMP)
        assert not result.publish and text in result.gate_reason
        double.error = None
        assert session.process(live(), STAMP).publish

    def test_bug_is_not_swallowed(self):
        session = session_with_reference(PoseDouble(error=AttributeError("bug")))
        with pytest.raises(AttributeError):
            session.process(live(), STAMP)


class TestBookkeeping:
    def test_original_k_reaches_estimator(self):
        double = PoseDouble()
        session_with_reference(double).process(live(), STAMP)
        np.testing.assert_array_equal(double.estimate_calls[0], K)

    def test_latency_and_stamps(self):
        result = session_with_reference().process(live(stamp=STAMP), now_ns=STAMP + 40_000_000)
        assert result.stamp_ns == STAMP and result.reference_stamp_ns == 1_000_000_000
        assert result.e2e_ms == pytest.approx(40.0 + result.inference_ms)

    def test_counters(self):
        session = session_with_reference(PoseDouble(confidence=10.0), min_confidence=0.5)
        session.process(live(), STAMP)
        session.set_config(SessionConfig(min_confidence=0.0))
        session.process(live(), STAMP)
        session.reject("undecodable image")
        stats = session.stats
        assert (stats.processed, stats.published, stats.rejected, stats.bad_frames) == (2, 1, 1, 1)
        assert stats.last_reason == "undecodable image" and stats.last_published

    def test_keyframe_age(self):
        session = session_with_reference()
        assert session.keyframe_age_s(3_500_000_000) == pytest.approx(2.5)
        assert RelocalizationSession(PoseDouble()).keyframe_age_s(0) is None


class TestReset:
    def test_clock_jump_clears_keyframe_and_map_to_odom(self):
        double = PoseDouble()
        session = session_with_reference(double, tf_mode="map_to_odom")
        session.process(live(), STAMP, T_odom_camera=np.eye(4))
        session.reset()
        assert session.reference is None and double.reference is None
        assert session.rebroadcast(STAMP) == [] and session.stats.resets == 1
        assert session.process(live(), STAMP).gate_reason == NO_REFERENCE

    def test_keep_reference(self):
        session = session_with_reference()
        session.reset(keep_reference=True)
        assert session.reference is not None and session.process(live(), STAMP).publish


class TestLatestFrameSlot:
    def test_drop_policy(self):
        slot = LatestFrameSlot()
        assert slot.take() is None
        assert [slot.put(k) for k in range(5)] == [False, True, True, True, True]
        assert slot.take() == 4 and slot.take() is None
        assert (slot.received, slot.dropped) == (5, 4)

    def test_clear_counts_as_dropped(self):
        slot = LatestFrameSlot()
        slot.put("a")
        slot.clear()
        slot.clear()
        assert slot.take() is None and slot.dropped == 1

    def test_take_waits_for_a_producer(self):
        slot = LatestFrameSlot()
        threading.Timer(0.05, slot.put, args=("frame",)).start()
        t0 = time.perf_counter()
        assert slot.take(timeout=5.0) == "frame"
        assert time.perf_counter() - t0 < 2.0

    def test_take_times_out(self):
        t0 = time.perf_counter()
        assert LatestFrameSlot().take(timeout=0.05) is None
        assert time.perf_counter() - t0 >= 0.04

    def test_close_wakes_consumer(self):
        slot = LatestFrameSlot()
        threading.Timer(0.05, slot.close).start()
        t0 = time.perf_counter()
        assert slot.take(timeout=5.0) is None
        assert time.perf_counter() - t0 < 2.0

    def test_fast_producer_never_queues(self):
        slot, taken = LatestFrameSlot(), []
        producer = threading.Thread(target=lambda: [slot.put(k) for k in range(2000)])
        producer.start()
        while producer.is_alive() or taken[-1:] != [1999]:
            item = slot.take(timeout=0.01)
            if item is not None:
                taken.append(item)
        producer.join()
        assert taken == sorted(taken) and taken[-1] == 1999
        assert slot.received == 2000 and slot.dropped == 2000 - len(taken)
