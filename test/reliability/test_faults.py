"""Faults of the catalogue in docs/reliability.md not already proven by a unit test (issue 9).

Session/node faults use model doubles (and the in-process ROS fake of test/unit/fake_ros.py for
the node's wiring); file faults use literal lines with the exact reason the user reads.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from rosbags.typesys import Stores, get_typestore

from mickey_ros.estimator.result import PoseEstimate
from mickey_ros.mapfree.files import (
    CameraIntrinsics,
    ParseReport,
    format_pose_line,
    intrinsics_matrix,
    lookup_intrinsics,
    read_intrinsics,
    read_poses,
    write_intrinsics,
)
from mickey_ros.relocalization import messages
from mickey_ros.utils.images import ImageError

TYPES = messages.MessageTypes.from_typestore(get_typestore(Stores.ROS2_JAZZY))
H, W = 48, 64
K = np.array([[60.0, 0.0, 32.0], [0.0, 60.0, 24.0], [0.0, 0.0, 1.0]])
OOM = "CUDA out of memory. Tried to allocate 2.00 GiB"


class _ScriptedEstimator:
    """PoseEstimator double: raises ``error`` when set, sleeps ``delay_s``, else a fixed pose."""

    def __init__(self) -> None:
        self.reference, self.calls, self.error, self.delay_s = None, 0, None, 0.0

    @property
    def has_reference(self) -> bool:
        return self.reference is not None

    def set_reference(self, image, K):
        self.reference = image

    def clear_reference(self):
        self.reference = None

    def estimate(self, image, K):
        self.calls += 1
        time.sleep(self.delay_s)
        if self.error is not None:
            raise self.error
        return PoseEstimate(valid=True, R=np.eye(3), t=np.array([0.1, 0.0, 0.5]),
                            confidence=600.0, num_inliers=500, num_samples=2048)

    def estimate_batch(self, images, Ks):
        return [self.estimate(im, k) for im, k in zip(images, Ks)]


def _fake_ros():
    path = Path(__file__).parents[1] / "unit" / "fake_ros.py"
    if not path.is_file():
        pytest.skip("test/unit/fake_ros.py (the node helper's ROS fake) is not there")
    spec = importlib.util.spec_from_file_location("mickey_reliability_fake_ros", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def node(monkeypatch):
    fake_ros = _fake_ros()
    fake_ros.install(monkeypatch)
    from mickey_ros.ros import node as node_module

    double = _ScriptedEstimator()
    monkeypatch.setattr(node_module, "load_estimator", lambda params, logger: double)
    instance = node_module.RelocalizeNode(parameter_overrides={})
    instance.double = double
    assert instance.start() and instance.state == "active"
    yield instance
    instance.release()
    fake_ros.forget_node_modules()  # no node module bound to the fakes stays behind
    sys.modules.pop("mickey_reliability_fake_ros", None)


def feed(node, prefix: str, stamp_ns: int) -> None:
    node.clock.ns += 10_000_000  # receive times 10 ms apart (see test_same_receive_time)
    rgb = np.random.default_rng(stamp_ns % 1000).integers(0, 256, (H, W, 3), dtype=np.uint8)
    image = messages.rgb_to_image_msg(TYPES, rgb, stamp_ns, "cam_optical")
    info = messages.camera_info_msg(TYPES, K, W, H, stamp_ns, "cam_optical")
    for topic, msg in ((f"{prefix}image", image), (f"{prefix}camera_info", info)):
        (subscription,) = node.subscribed(topic)
        subscription.callback(msg)


def wait_for(predicate, timeout_s: float = 10.0) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end and not predicate():
        time.sleep(0.01)
    return predicate()


def estimates(node) -> list:
    return [m for p in node.topic("/ns/mickey_relocalizer/estimate") for m in p.sent]


def with_keyframe(node):
    feed(node, "/ns/reference/", 1_000)
    assert wait_for(lambda: node.double.reference is not None)
    return node


class TestNodeSurvivesInferenceFaults:
    def test_gpu_out_of_memory_drops_the_frame_and_says_so(self, node):
        with_keyframe(node).double.error = torch.cuda.OutOfMemoryError(OOM)
        feed(node, "/ns/", 2_000_000_000)
        assert wait_for(lambda: len(estimates(node)) == 1)
        (estimate,) = estimates(node)
        assert not estimate.accepted and estimate.status.startswith(
            f"GPU out of memory, frame dropped ({OOM}); lower model.input_width/height")
        assert node.topic("/ns/mickey_relocalizer/relative_pose")[0].sent == []
        quality = node._updater.run()["pose quality"]
        assert quality.level == b"\x01" and "GPU out of memory" in quality.message
        assert (quality.values["processed"], quality.values["rejected"]) == ("1", "1")
        node.double.error = None  # memory is free again: the next frame is published
        feed(node, "/ns/", 3_000_000_000)
        assert wait_for(lambda: len(estimates(node)) == 2) and estimates(node)[1].accepted
        assert node.state == "active" and node._updater.run()["pose quality"].level == b"\x00"

    def test_bug_in_the_estimator_is_logged_with_traceback_and_counted(self, node):
        with_keyframe(node).double.error = AttributeError("'NoneType' has no attribute 'kpts'")
        feed(node, "/ns/", 2_000_000_000)
        stats = node._processor.session.stats
        assert wait_for(lambda: stats.bad_frames == 1)
        assert stats.last_reason == "unexpected AttributeError: 'NoneType' has no attribute 'kpts'"
        (level, text), = [r for r in node.logger.records if r[0] == "error"]
        assert "frame dropped" in text and "Traceback (most recent call last)" in text
        node.double.error = None
        feed(node, "/ns/", 3_000_000_000)
        assert wait_for(lambda: len(estimates(node)) == 1) and estimates(node)[0].accepted

    def test_frames_faster_than_inference_are_dropped_not_queued(self, node):
        with_keyframe(node).double.delay_s = 0.3
        for k in range(20):  # a 100 Hz camera against a ~3 Hz model
            feed(node, "/ns/", (k + 2) * 10_000_000)
            time.sleep(0.01)
        assert wait_for(lambda: len(estimates(node)) + node._processor.live.dropped == 20)
        processed, dropped = len(estimates(node)), node._processor.live.dropped
        assert processed <= 10 and dropped == 20 - processed  # at most one frame ever waits
        quality = node._updater.run()["pose quality"]
        assert quality.values["dropped_while_busy"] == str(dropped)
        last = messages.stamp_to_ns(estimates(node)[-1].header.stamp)
        assert last == 21 * 10_000_000  # the newest frame is the one processed last


class TestDiagnosticsUnderSimTime:
    def test_same_receive_time(self):
        """Under use_sim_time, frames arriving between two /clock ticks share one 'now'
        (was a ZeroDivisionError inside the diagnostics callback)."""
        from mickey_ros.relocalization.health import RateMeter

        meter = RateMeter()
        meter.tick(5_000_000_000)
        meter.tick(5_000_000_000)
        assert meter.rate_hz(5_000_000_000) == 0.0

    def test_clock_jump_back_restarts_the_window(self):
        """A bag loop: stamps from before the jump would never be trimmed (the soak showed the
        window growing to a whole loop) and gave a negative or wrong rate."""
        from mickey_ros.relocalization.health import RateMeter

        meter = RateMeter(window_s=5.0)
        for k in range(100):  # 10 Hz for 10 s
            meter.tick(20_000_000_000 + k * 100_000_000)
        for k in range(11):  # the bag loops back to t = 0 s, same 10 Hz
            meter.tick(k * 100_000_000)
        assert len(meter._times) == 11
        assert meter.rate_hz(1_000_000_000) == pytest.approx(10.0)

    def test_node_diagnostics_with_a_frozen_sim_clock(self, node):
        # the node measures rates on a steady clock (issue 28): frames between two /clock
        # ticks are 10 ms apart in wall time, not 0
        node.clock.ros_time_is_active = True
        node.clock.ns = 7_000_000_000
        for _ in range(3):  # three frames between two /clock ticks
            feed(node, "/ns/", 2_000_000_000)
            node.clock.ns = 7_000_000_000
            time.sleep(0.01)
        status = node._updater.run()
        assert 0.0 < float(status["input image"].values["rate_hz"]) <= 101.0


class TestKeyframeAndLiveFromDifferentCameras:
    def test_other_resolution_and_intrinsics_with_the_real_network(self):
        from mickey_ros.estimator.relative_pose import EstimatorConfig, RelativePoseEstimator
        from mickey_ros.geometry.ransac import SolverConfig
        from mickey_ros.model.config import mickey_tiny
        from mickey_ros.relocalization.session import Frame, RelocalizationSession

        solver = SolverConfig(it_matches=2, it_ransac=8, num_samples=64, num_refinements=1)
        estimator = RelativePoseEstimator.from_model_config(mickey_tiny(),
                                                            EstimatorConfig(solver=solver))
        session = RelocalizationSession(estimator)
        rng = np.random.default_rng(0)
        K_a = np.array([[70.0, 0, 35], [0, 70.0, 28], [0, 0, 1]])
        K_b = np.array([[40.0, 0, 27], [0, 45.0, 41], [0, 0, 1]])
        session.set_reference(Frame(rng.integers(0, 256, (112, 140, 3), dtype=np.uint8), K_a,
                                    1, "keyframe_camera"))
        result = session.process(Frame(rng.integers(0, 256, (168, 112, 3), dtype=np.uint8), K_b,
                                       2, "robot_camera"), now_ns=2)
        estimate = result.estimate
        assert estimate.valid or estimate.reason
        if estimate.valid:
            assert np.all(np.isfinite(estimate.R)) and np.all(np.isfinite(estimate.t))
        assert result.stamp_ns == 2 and result.camera_frame == "robot_camera"


class TestImageEdges:
    def test_yuv422_with_odd_width(self):
        msg = TYPES.Image(header=messages.header_msg(TYPES, 0, "cam"), height=3, width=3,
                          encoding="yuv422", is_bigendian=0, step=6,
                          data=np.zeros(18, np.uint8))
        with pytest.raises(ImageError, match="cannot convert yuv422 3x3 to RGB"):
            messages.image_msg_to_rgb(msg)

    def test_big_endian_flag_on_8_bit_image_is_ignored(self):
        rgb = np.arange(H * W * 3, dtype=np.uint8).reshape(H, W, 3)
        msg = messages.rgb_to_image_msg(TYPES, rgb, 0, "cam", "rgb8")
        msg.is_bigendian = 1
        np.testing.assert_array_equal(messages.image_msg_to_rgb(msg), rgb)


def _read(tmp_path: Path, text: str, kind: str) -> tuple[object, list[tuple[int, str]]]:
    path = tmp_path / f"{kind}.txt"
    path.write_text(text)
    report = ParseReport()
    if kind == "intrinsics":
        out = read_intrinsics(path, report)
    else:
        out = read_poses(path, report, with_confidence=kind == "submission")
    return out, [(line, reason) for _, line, reason in report.skipped]


class TestMapFreeFiles:
    def test_intrinsics_missing_fields_nan_and_bad_sizes(self, tmp_path):
        """Each reason names the bad field and value (issue 28: it said only what is allowed)."""
        table, skipped = _read(tmp_path, "\n".join([
            "seq0/frame_00000.jpg 500 500 270 360 540 720",
            "seq1/frame_00000.jpg 500 500 270 360 540",  # a missing field
            "seq1/frame_00001.jpg 500 nan 270 360 540 720",
            "seq1/frame_00002.jpg 500 500 270 360 540.5 720",  # not whole pixels
            "seq1/frame_00003.jpg 0 500 270 360 540 720",
            "seq0/frame_00000.jpg 400 400 270 360 540 720",  # duplicate: the first wins
            "# a comment line",
            "seq1/frame_00004.jpg -500 500 270 360 540 720",
            "seq1/frame_00005.jpg 500 500 x 360 540 720",
            "my frame.jpg 500 500 270 360 540 720",
            "seq1/frame_00006.jpg 500 500 270 360 540 0",
        ]), "intrinsics")
        assert list(table) == ["seq0/frame_00000.jpg"] and table["seq0/frame_00000.jpg"].K[0, 0] \
            == 500
        assert skipped == [
            (2, "expected 'name fx fy cx cy width height' (7 fields), got 6"),
            (3, "fy = nan is not a finite number"),
            (4, "width = 540.5 must be a whole number of pixels >= 1"),
            (5, "fx = 0 must be positive (focal length in pixels)"),
            (6, "duplicate frame 'seq0/frame_00000.jpg'; keeping the first"),
            (8, "fx = -500 must be positive (focal length in pixels)"),
            (9, "cx = 'x' is not a number"),
            (10, "frame name 'my frame.jpg' cannot appear in a Map-free file (its fields are "
                 "separated by spaces, so a name must be non-empty without whitespace); rename "
                 "the file"),
            (11, "height = 0 must be a whole number of pixels >= 1")]

    @pytest.mark.parametrize("value", ["nan", "0", "-800"])
    def test_lookup_names_the_bad_line_and_value(self, tmp_path, value):
        """Issue 28: a NaN, zero or negative focal said "no line for ref.png"."""
        path = tmp_path / "intrinsics.txt"
        path.write_text(f"query.png 800 800 80 60 160 120\nref.png {value} 800 80 60 160 120\n")
        with pytest.raises(ValueError) as err:
            lookup_intrinsics(path, tmp_path / "ref.png")
        reason = ("fx = nan is not a finite number" if value == "nan"
                  else f"fx = {value} must be positive (focal length in pixels)")
        assert str(err.value) == f"{path}:2: the line for ref.png is invalid: {reason}"
        assert lookup_intrinsics(path, Path("seq/query.png")).K[0, 0] == 800

    def test_lookup_matches_whole_path_components(self, tmp_path):
        """'my_ref.png' is not the line of 'ref.png' (a string suffix matched before)."""
        path = tmp_path / "intrinsics.txt"
        path.write_text("seq0/my_ref.png 100 100 80 60 160 120\n"
                        "seq0/ref.png 200 200 80 60 160 120\nseq1/ref.png 300 300 80 60 160 120\n")
        assert lookup_intrinsics(path, Path("data/seq1/ref.png")).K[0, 0] == 300
        assert lookup_intrinsics(path, Path("ref.png")).K[0, 0] == 200  # the first by file name
        with pytest.raises(ValueError, match=r"no line for y_ref.png in .*; it has \["):
            lookup_intrinsics(path, Path("y_ref.png"))

    def test_names_with_whitespace_refused_where_written_and_read(self, tmp_path):
        """Issue 28: a name with a space was written and then read as a broken line."""
        path = tmp_path / "intrinsics.txt"
        path.write_text("ref.png 800 800 80 60 160 120\n")
        message = ("frame name 'my ref.png' cannot appear in a Map-free file (its fields are "
                   "separated by spaces, so a name must be non-empty without whitespace); "
                   "rename the file")
        with pytest.raises(ValueError) as err:
            lookup_intrinsics(path, Path("my ref.png"))
        assert str(err.value) == message
        cam = CameraIntrinsics(intrinsics_matrix(800, 800, 80, 60), 160, 120)
        with pytest.raises(ValueError, match=re.escape(message)):
            write_intrinsics(tmp_path / "out.txt", {"my ref.png": cam})
        with pytest.raises(ValueError, match=re.escape(message)):
            format_pose_line("my ref.png", np.array([1.0, 0, 0, 0]), np.zeros(3))
        with pytest.raises(ValueError, match="frame name '' cannot appear"):
            format_pose_line("", np.array([1.0, 0, 0, 0]), np.zeros(3))
        assert not (tmp_path / "out.txt").exists()

    def test_directory_given_as_a_file(self, tmp_path):
        with pytest.raises(IsADirectoryError) as err:
            read_intrinsics(tmp_path)
        assert str(err.value) == f"intrinsics file {tmp_path} is a directory; pass a .txt file"

    def test_poses_missing_fields_nan_zero_and_non_unit_quaternions(self, tmp_path):
        entries, skipped = _read(tmp_path, "\n".join([
            "seq1/frame_00000.jpg 2 0 0 0 1 2 3",  # non-unit: kept as given
            "seq1/frame_00001.jpg 1 0 0 0 1 2",
            "seq1/frame_00002.jpg 1 0 0 nan 1 2 3",
            "seq1/frame_00003.jpg 0 0 0 0 1 2 3",
            "seq1/frame_00004.jpg 1e200 0 0 0 1 2 3",
            "seq1/frame_00000.jpg 1 0 0 0 0 0 0",
        ]), "poses")
        assert [e.name for e in entries] == ["seq1/frame_00000.jpg"]
        np.testing.assert_array_equal(entries[0].q_wxyz, [2.0, 0.0, 0.0, 0.0])
        assert skipped == [
            (2, "expected 8 space-separated fields, got 7"), (3, "non-numeric, NaN or Inf value"),
            (4, "quaternion has zero norm"),
            (5, "quaternion norm overflows; write a unit quaternion"),
            (6, "duplicate frame 'seq1/frame_00000.jpg'; keeping the first")]

    def test_non_unit_quaternion_scores_like_the_unit_one(self):
        from mickey_ros.geometry.metrics import quat_angle_error_deg
        from mickey_ros.geometry.pose import pose_from_quat_wxyz

        q = torch.tensor([0.9, 0.1, -0.3, 0.2], dtype=torch.float64)
        q_unit, t = q / q.norm(), torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
        assert quat_angle_error_deg(3.0 * q, q_unit).item() == pytest.approx(0.0, abs=1e-6)
        np.testing.assert_allclose(pose_from_quat_wxyz(3.0 * q, t),
                                   pose_from_quat_wxyz(q_unit, t), atol=1e-12)

    def test_submission_negative_confidence_and_tabs(self, tmp_path):
        entries, skipped = _read(tmp_path, "\n".join([
            "seq1/frame_00000.jpg 1 0 0 0 1 2 3 -1",
            "seq1/frame_00001.jpg\t1 0 0 0 1 2 3 5",
            "seq1/frame_00002.jpg  1 0 0 0 1 2 3 5",
            "seq1/frame_00003.jpg 1 0 0 0 1 2 3 5",
        ]), "submission")
        assert [e.name for e in entries] == ["seq1/frame_00003.jpg"]
        assert skipped == [(1, "confidence must be >= 0"),
                           (2, "expected 9 space-separated fields, got 8"),
                           (3, "expected 9 space-separated fields, got 10")]

    def test_binary_file(self, tmp_path):
        (tmp_path / "poses.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
        with pytest.raises(ValueError, match="poses.txt is not a UTF-8 text file"):
            read_poses(tmp_path / "poses.txt")
