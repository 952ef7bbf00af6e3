"""mickey_ros.relocalization.health: diagnostics content of the node, checked without ROS."""

from __future__ import annotations

import numpy as np
import pytest

from mickey_ros.relocalization import health
from mickey_ros.relocalization.session import SessionStats

S = 1_000_000_000


def meter_with(times_s):
    meter = health.RateMeter(window_s=5.0)
    for t in times_s:
        meter.tick(int(t * S))
    return meter


class TestRateMeter:
    def test_rate(self):
        meter = meter_with(np.arange(0, 2.01, 0.1))  # 10 Hz for 2 s
        assert meter.rate_hz(2 * S) == pytest.approx(10.0)
        assert meter.count == 21

    def test_window_forgets_old_messages(self):
        meter = meter_with([0.0, 0.1, 0.2])
        assert meter.rate_hz(10 * S) == 0.0
        assert meter.silent_for_s(10 * S) == pytest.approx(9.8)

    def test_never(self):
        assert health.RateMeter().silent_for_s(S) is None


class TestLatencyStats:
    def test_window(self):
        stats = health.LatencyStats(window=3)
        assert (stats.mean_ms, stats.max_ms) == (0.0, 0.0)
        for ms in (100.0, 10.0, 20.0, 30.0):
            stats.add(ms)
        assert (stats.mean_ms, stats.max_ms) == (20.0, 30.0)


class TestInputEntry:
    def test_ok(self):
        entry = health.input_entry("input image", "/cam/image", meter_with([0.0, 0.5, 1.0]), 1,
                                   S, timeout_s=3.0)
        assert (entry.level, entry.message) == (health.OK, "2.0 Hz")
        assert entry.values == {"topic": "/cam/image", "publishers": "1", "rate_hz": "2.00",
                                "received": "3"}

    def test_publishers_but_no_data_is_a_qos_warning(self):
        entry = health.input_entry("input image", "/cam/image", health.RateMeter(), 2, S, 3.0)
        assert entry.level == health.WARN
        assert entry.message.startswith("2 publisher(s) on /cam/image but no data ever: QoS")

    def test_stopped(self):
        entry = health.input_entry("input image", "/img", meter_with([0.0]), 1, 10 * S, 3.0)
        assert entry.level == health.WARN and "no data for 10.0 s" in entry.message

    def test_no_publisher(self):
        entry = health.input_entry("input image", "/img", health.RateMeter(), 0, S, 3.0)
        assert entry.level == health.WARN and "no publisher on /img" in entry.message


class TestOtherEntries:
    def test_inference(self):
        latency, e2e = health.LatencyStats(), health.LatencyStats()
        latency.add(40.0)
        e2e.add(55.0)
        entry = health.inference_entry(latency, e2e, "cuda:0", {"allocated": 812.4})
        assert entry.message == "40 ms mean on cuda:0"
        assert entry.values["gpu_allocated_mb"] == "812" and entry.values["e2e_mean_ms"] == "55.0"

    def test_keyframe(self):
        missing = health.keyframe_entry(None, None, None)
        assert missing.level == health.WARN and "~/capture_reference" in missing.message
        entry = health.keyframe_entry("cam", 12.3, "topic reference/image")
        assert entry.level == health.OK and entry.values["age_s"] == "12.3"

    def test_quality(self):
        stats = SessionStats(processed=4, published=3, rejected=1, bad_frames=2,
                             last_reason="low confidence: ...", last_published=False,
                             last_inlier_ratio=0.01)
        entry = health.quality_entry(stats, dropped=7, min_confidence=0.05)
        assert entry.level == health.WARN
        assert entry.message == "last pose rejected: low confidence: ..."
        assert (entry.values["dropped_while_busy"], entry.values["bad_frames"]) == ("7", "2")
        stats.last_published = True
        assert health.quality_entry(stats, 7, 0.05).level == health.OK
        assert health.quality_entry(SessionStats(), 0, 0.05).message == "no frame processed yet"


class TestMatchesImage:
    def test_canvas(self):
        ref = np.zeros((20, 30, 3), np.uint8)
        query = np.full((24, 10, 3), 50, np.uint8)
        canvas = health.matches_image(ref, query, np.array([[0.0, 0.0]]), np.array([[9.0, 0.0]]))
        assert canvas.shape == (24, 40, 3)
        assert canvas[0, 15, 1] > 200 and canvas[0, 15, 0] == 0  # green line across the seam
        np.testing.assert_array_equal(canvas[23, 35], [50, 50, 50])  # query pixel untouched
