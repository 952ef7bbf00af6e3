"""mickey_ros.utils.outputs (issue 28): staged output directories renamed into place, safe
against another process writing the same output (two demos in one workdir, racing replays)."""

from __future__ import annotations

import argparse
import os

import pytest
import yaml

from mickey_ros.utils import outputs
from mickey_ros.utils.outputs import publish_directory, staging_path


def _dir(path, text: str):
    path.mkdir(parents=True)
    (path / "metadata.yaml").write_text(text)
    return path


class TestStagingPath:
    def test_unique_and_beside(self, tmp_path):
        final = tmp_path / "bag"
        names = {staging_path(final) for _ in range(50)}
        assert len(names) == 50
        assert all(p.name == "bag" and p.parent.parent == tmp_path
                   and p.parent.name.startswith(f"bag.partial-{os.getpid()}-") for p in names)

    def test_a_bag_published_from_it_has_its_storage_file_named_after_it(self, tmp_path):
        """rosbags names the storage file after the directory: no staging name in the bag."""
        from rosbags.rosbag2 import Reader

        from mickey_ros.bags.writer import open_writer

        final = tmp_path / "drive"
        staging = staging_path(final)
        with open_writer(staging, "mcap"):
            pass
        publish_directory(staging, final)
        assert os.listdir(tmp_path) == ["drive"]
        assert sorted(os.listdir(final)) == ["drive.mcap", "metadata.yaml"]
        info = yaml.safe_load((final / "metadata.yaml").read_text())
        assert info["rosbag2_bagfile_information"]["relative_file_paths"] == ["drive.mcap"]
        with Reader(final) as reader:
            assert reader.message_count == 0

    def test_discard_staging_leaves_nothing(self, tmp_path):
        staging = _dir(staging_path(tmp_path / "bag"), "half")
        outputs.discard_staging(staging)
        assert os.listdir(tmp_path) == []


class TestPublishDirectory:
    def test_moves_into_place(self, tmp_path):
        staging = _dir(staging_path(tmp_path / "bag"), "new")
        assert publish_directory(staging, tmp_path / "bag") == tmp_path / "bag"
        assert os.listdir(tmp_path) == ["bag"]

    @pytest.mark.parametrize("how, kept", [("keep_existing", "first"), ("replace", "second")])
    def test_existing_final_kept_or_replaced(self, tmp_path, how, kept):
        _dir(tmp_path / "bag", "first")
        staging = _dir(staging_path(tmp_path / "bag"), "second")
        publish_directory(staging, tmp_path / "bag", **{how: True})
        assert os.listdir(tmp_path) == ["bag"]
        assert (tmp_path / "bag" / "metadata.yaml").read_text() == kept

    def test_refuses_what_it_may_not_replace(self, tmp_path):
        (tmp_path / "bag").mkdir()
        staging = _dir(staging_path(tmp_path / "bag"), "new")
        with pytest.raises(FileExistsError) as err:
            publish_directory(staging, tmp_path / "bag", replace=True,
                              replaceable=lambda p: (p / "metadata.yaml").is_file())
        assert str(err.value) == (f"cannot replace {tmp_path / 'bag'}: it is not what this "
                                  f"command writes; this run's output is kept as "
                                  f"{staging}")
        assert (staging / "metadata.yaml").read_text() == "new"

    def test_another_process_publishes_between_check_and_rename(self, tmp_path, monkeypatch):
        """The rename fails (the name is taken after the check): moved aside and retried."""
        real_rename, calls = os.rename, []

        def racing_rename(src, dst):
            calls.append(dst)
            if len(calls) == 1:
                _dir(dst, "other")
            real_rename(src, dst)

        monkeypatch.setattr(outputs.os, "rename", racing_rename)
        staging = _dir(staging_path(tmp_path / "bag"), "mine")
        publish_directory(staging, tmp_path / "bag", replace=True)
        assert len(calls) == 2 and os.listdir(tmp_path) == ["bag"]
        assert (tmp_path / "bag" / "metadata.yaml").read_text() == "mine"


class TestRemoveStaleStaging:
    def test_dead_runs_removed_live_runs_and_other_names_kept(self, tmp_path, dead_pid):
        final = tmp_path / "out[1]"  # glob characters in the name are literal
        live = _dir(staging_path(final), "at work")
        dead = _dir(tmp_path / f"out[1].partial-{dead_pid}-0badf00d", "killed")
        other = _dir(tmp_path / f"out1.partial-{dead_pid}-0badf00d", "another output's")
        assert outputs.remove_stale_staging(final) == [dead]
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.parent.name, other.name])

    def test_a_new_staging_path_clears_what_killed_runs_left(self, tmp_path, dead_pid):
        dead = _dir(tmp_path / f"bag.partial-{dead_pid}-0badf00d", "killed")
        new = staging_path(tmp_path / "bag")
        assert not dead.exists() and new.parent.name.startswith(f"bag.partial-{os.getpid()}-")


class TestDemoBag:
    def _args(self, tmp_path) -> argparse.Namespace:
        return argparse.Namespace(render_size=(64, 48), seed=0, seconds=1.0, rate=2.0,
                                  storage="mcap", no_progress=True, workdir=tmp_path)

    def test_two_demos_render_the_same_bag(self, tmp_path, monkeypatch, capsys):
        """Both used ``<name>.partial``: the second failed on the first's internal files."""
        from mickey_ros.cli import demo
        from mickey_ros.synth import rosbag

        args = self._args(tmp_path)
        bag = tmp_path / "robot-seed0-1s-2hz-64x48-mcap"
        written = []

        def fake_render(path, **kwargs):  # the other demo finishes first, meanwhile
            written.append(path)
            _dir(path, "this demo")
            if len(written) == 1:
                _dir(bag, "other demo")

        monkeypatch.setattr(rosbag, "write_robot_bag", fake_render)
        assert demo.demo_bag(args, tmp_path) == bag
        assert written[0] != tmp_path / f"{bag.name}.partial"
        assert os.listdir(tmp_path) == [bag.name]
        assert (bag / "metadata.yaml").read_text() == "other demo"

    def test_interrupted_render_leaves_nothing(self, tmp_path, monkeypatch, capsys):
        from mickey_ros.cli import demo
        from mickey_ros.synth import rosbag

        def interrupted(path, **kwargs):
            _dir(path, "half")
            raise KeyboardInterrupt

        monkeypatch.setattr(rosbag, "write_robot_bag", interrupted)
        with pytest.raises(KeyboardInterrupt):
            demo.demo_bag(self._args(tmp_path), tmp_path)
        assert os.listdir(tmp_path) == []
