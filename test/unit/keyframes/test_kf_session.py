"""keyframes.session (library mode of the session) and ``replay --keyframes`` on a real bag."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from kf_helpers import K, pose_at, textured

from mickey_ros.keyframes import KeyframeLibrary, LibraryLocalizer, LocalizerConfig
from mickey_ros.keyframes.session import LibrarySession
from mickey_ros.relocalization.session import Frame, SessionConfig

MAP_TO_ODOM = SessionConfig(tf_mode="map_to_odom", min_confidence=0.0)
ANYWHERE = LocalizerConfig(min_confidence=0.0, prior_radius_m=1e4, prior_max_angle_deg=180.0)


@pytest.fixture(scope="module")
def library(tmp_path_factory, estimator, source) -> KeyframeLibrary:
    lib = KeyframeLibrary.create(tmp_path_factory.mktemp("kf") / "lib", estimator, source)
    for i in range(3):
        lib.add(textured(i), K, pose_at(5.0 * i))
    return lib


def _frame(seed: int, stamp_ns: int = 10**9) -> Frame:
    return Frame(textured(seed), K, stamp_ns, "camera_optical_frame")


class TestLibrarySession:
    def test_pose_in_the_map_from_the_winning_keyframe(self, library):
        session = LibrarySession(LibraryLocalizer(library, ANYWHERE), MAP_TO_ODOM)
        result = session.process(_frame(1), now_ns=10**9, T_odom_camera=np.eye(4))
        assert result.publish and session.last is not None
        T_map_kf = session.last.keyframe.T_map_camera
        np.testing.assert_allclose(result.pose.T_parent_child,
                                   T_map_kf @ result.relative.T_parent_child, atol=1e-12)
        assert (result.pose.parent, result.transforms[0].parent) == ("map", "map")
        assert session.reference.frame_id == session.last.keyframe.id  # names the keyframe used
        np.testing.assert_array_equal(session.reference.rgb, library.image(session.last.index))

    def test_odometry_moves_the_last_fix_into_the_prior(self, library):
        session = LibrarySession(LibraryLocalizer(library, ANYWHERE), MAP_TO_ODOM)
        first = session.process(_frame(1), now_ns=10**9, T_odom_camera=np.eye(4))
        moved = pose_at(0.5)
        session.process(_frame(1, 2 * 10**9), now_ns=2 * 10**9, T_odom_camera=moved)
        np.testing.assert_allclose(session.prior, first.pose.T_parent_child @ moved, atol=1e-12)
        assert session.last.mode == "prior"
        session.reset()
        session.process(_frame(1, 3 * 10**9), now_ns=3 * 10**9, T_odom_camera=moved)
        assert session.prior is None and session.last.mode == "retrieval"
        # the keyframe used before the reset is the reference again, pixels and all
        assert session.reference.frame_id == session.last.keyframe.id
        np.testing.assert_array_equal(session.reference.rgb, library.image(session.last.index))

    def test_empty_library(self, tmp_path, estimator, source):
        empty = KeyframeLibrary.create(tmp_path / "empty", estimator, source)
        session = LibrarySession(LibraryLocalizer(empty), MAP_TO_ODOM)
        result = session.process(_frame(0), now_ns=10**9)
        assert not result.publish and session.stats.rejected == 1
        assert result.status == (f"keyframe library {tmp_path / 'empty'} has no usable keyframe: "
                                 "build one with `mickey-ros keyframes build` or capture one")

    def test_set_reference_is_refused(self, library):
        session = LibrarySession(LibraryLocalizer(library), MAP_TO_ODOM)
        with pytest.raises(ValueError, match="library mode: keyframes come from the keyframe "
                                             "library"):
            session.set_reference(_frame(0))


@pytest.fixture(scope="module")
def robot_bag(tmp_path_factory):
    from mickey_ros.synth.render import EGLUnavailableError
    from mickey_ros.synth.rosbag import write_robot_bag

    path = tmp_path_factory.mktemp("bag") / "robot"
    try:
        return write_robot_bag(path, seconds=2.0, rate_hz=3.0, size_wh=(140, 112),
                               progress=False)
    except EGLUnavailableError as err:
        pytest.skip(f"no EGL for rendering: {err}")


class TestReplayWithLibrary:
    def test_bag_to_library_to_replay(self, robot_bag, tmp_path, estimator, source):
        from mickey_ros.keyframes.build import build_library, read_posed_bags
        from mickey_ros.relocalization.params import NodeParams
        from mickey_ros.replay.run import ReplayConfig, replay

        lines = []
        keyframes = read_posed_bags([robot_bag], "odom", min_distance_m=0.02,
                                    min_sharpness=0.0, warn=lines.append)
        lib = build_library(tmp_path / "lib", estimator, source, keyframes)
        assert len(lib) >= 2 and lib.entries[0].source.startswith("robot /camera/image_raw @ ")
        node = NodeParams()
        cfg = ReplayConfig(keyframes=str(tmp_path / "lib"), node=node, ground_truth_tf=True,
                           world_frame="odom", progress=False, csv=str(tmp_path / "r.csv"),
                           keyframes_options=LocalizerConfig(k=2))
        result = replay(cfg, robot_bag, tmp_path / "out", estimator=estimator)
        assert len(result.records) == 6
        assert result.tf_issues.count == 0
        # the CSV names the keyframe each frame used and the runner-up's confidence
        with open(tmp_path / "r.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        ids = {e.id for e in lib.entries}
        assert [r["keyframe"] in ids for r in rows] == [True] * 6
        assert [r["runner_up_confidence"] for r in rows] == [
            f"{r.runner_up_confidence:.3f}" for r in result.records]
        # ground truth is the camera in the map (here odom): the first frame sits at its origin
        first = result.records[0].T_ref_query_gt
        np.testing.assert_allclose(first[:3, 3], lib.entries[0].T_map_camera[:3, 3], atol=1e-6)

    def test_missing_library_is_one_line(self, robot_bag, tmp_path, capsys):
        from mickey_ros.cli.main import main

        code = main(["replay", str(robot_bag), "--keyframes", str(tmp_path / "none"),
                     "--model-config", "mickey_tiny", "--device", "cpu", "--no-progress",
                     "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2
        assert err[-1] == (f"mickey-ros replay: error: keyframe library {tmp_path / 'none'} does "
                           "not exist; build one with `mickey-ros keyframes build --images DIR "
                           "--poses poses.txt --out LIB`")
