"""Replay outputs and early checks (issue 28): where the default bag goes, a missing world frame
refused before any frame runs, and output bags that another replay writes at the same time."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_replay import FRAMES, PoseDouble, _cfg, read_bag, write_scene_bag

from mickey_ros.replay.run import default_output, replay

ESTIMATE = "/mickey_relocalizer/estimate"


@pytest.fixture(scope="module")
def scene_bag(tmp_path_factory):
    return write_scene_bag(tmp_path_factory.mktemp("outputs") / "scene")


def _leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name or ".old-" in p.name)


class TestDefaultOutput:
    def test_beside_the_recording_never_inside(self, scene_bag, monkeypatch):
        """A storage file of a rosbag2 directory (or '.' inside it) got an output inside it."""
        beside = scene_bag.parent.resolve() / "scene-replay-custom-relative"
        (storage,) = scene_bag.glob("*.db3")
        assert default_output(_cfg(), storage) == beside
        monkeypatch.chdir(scene_bag)
        assert default_output(_cfg(), Path(".")) == beside

    def test_bare_mcap_file_gets_its_stem(self, tmp_path):
        (tmp_path / "run.mcap").write_bytes(b"\x89MCAP0\r\n")
        assert default_output(_cfg(), tmp_path / "run.mcap") == (
            tmp_path.resolve() / "run-replay-custom-relative")


class TestGroundTruthFrames:
    @pytest.mark.parametrize("field, flag", [("world_frame", "--world"),
                                             ("camera_frame", "--camera-frame")])
    def test_unknown_frame_stops_before_any_frame(self, tmp_path, scene_bag, field, flag):
        """It was reported after the whole bag had been processed."""
        double = PoseDouble()
        with pytest.raises(ValueError) as err:
            replay(_cfg(**{field: "map"}), scene_bag, tmp_path / "o", double)
        assert str(err.value) == (
            f"ground-truth {field} 'map' ({flag}) is not in the bag's TF; its frames are "
            "['base_link', 'camera_link', 'camera_optical_frame', 'odom']; pass one of them")
        assert double.calls == 0 and list(tmp_path.iterdir()) == []


class _OtherReplay(PoseDouble):
    """Another process writes ``out`` while this replay runs (here: once the keyframe is set)."""

    def __init__(self, out, source):
        super().__init__()
        self.out, self.source = out, source

    def set_reference(self, image, K):
        super().set_reference(image, K)
        if not self.out.exists():
            shutil.copytree(self.source, self.out)


class TestConcurrentReplays:
    def test_overwrite_while_another_replay_writes(self, tmp_path, scene_bag):
        """The second writer failed with "already exists" although --overwrite was given."""
        other = replay(_cfg(max_frames=2), scene_bag, tmp_path / "other", PoseDouble()).out_bag
        out = tmp_path / "o"
        result = replay(_cfg(overwrite=True, reference_frame_index=0, reference_topic=""),
                        scene_bag, out, _OtherReplay(out, other))
        assert result.out_bag == out and len(read_bag(out)[ESTIMATE]) == FRAMES
        assert _leftovers(tmp_path) == []

    def test_default_name_taken_meanwhile_gets_the_next_free_one(self, tmp_path, scene_bag):
        bag = shutil.copytree(scene_bag, tmp_path / "scene")
        other = replay(_cfg(max_frames=2), bag, tmp_path / "other", PoseDouble()).out_bag
        taken = default_output(_cfg(), bag)
        result = replay(_cfg(reference_frame_index=0, reference_topic=""), bag, None,
                        _OtherReplay(taken, other))
        assert result.out_bag == taken.with_name(taken.name + "-2")
        assert len(read_bag(taken)[ESTIMATE]) == 2  # the other bag: untouched
        assert len(read_bag(result.out_bag)[ESTIMATE]) == FRAMES

    def test_given_out_taken_meanwhile_says_so_and_keeps_the_result(self, tmp_path, scene_bag):
        other = replay(_cfg(max_frames=2), scene_bag, tmp_path / "other", PoseDouble()).out_bag
        out = tmp_path / "o"
        with pytest.raises(FileExistsError) as err:
            replay(_cfg(reference_frame_index=0, reference_topic=""), scene_bag, out,
                   _OtherReplay(out, other))
        (kept,) = _leftovers(tmp_path)
        assert str(err.value) == (f"cannot write {out}: another process created it while this "
                                  "one ran; this run's output is kept as "
                                  f"{tmp_path / kept / 'o'}")
        assert len(read_bag(tmp_path / kept / "o")[ESTIMATE]) == FRAMES

    def test_a_failed_replay_leaves_nothing(self, tmp_path, scene_bag):
        class Broken(PoseDouble):
            def estimate(self, image, K):
                raise OSError(28, "No space left on device")

        with pytest.raises(OSError, match="No space left"):
            replay(_cfg(), scene_bag, tmp_path / "o", Broken())
        assert list(tmp_path.iterdir()) == []
