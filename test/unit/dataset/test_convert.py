"""Tests for ``mickey-ros dataset`` (issue 27): bags -> Map-free layout, and every bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from dataset_bags import T_BASE_LINK, T_LINK_OPTICAL, drive, texture, write_quick_bag

from mickey_ros.cli.main import main as cli
from mickey_ros.dataset import convert
from mickey_ros.mapfree.dataset import list_scenes
from mickey_ros.synth.rosbag import START_NS, plan_robot_drive, write_robot_bag
from mickey_ros.train.config import DataConfig
from mickey_ros.train.data import MapFreePairs

SIZE = (160, 120)


def run(capsys, *args) -> tuple[int, str, str]:
    code = cli(["dataset", *map(str, args), "--no-progress"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def refused(capsys, out: Path, *args) -> str:
    """Exit 2 with one error line, and nothing left at ``out`` or beside it."""
    code, _, err = run(capsys, *args, "--out", out)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mickey-ros dataset: error: "), err
    assert not out.exists() and not list(out.parent.glob(f"*{out.name}.partial*"))
    return lines[0]


def sources(scene) -> list[tuple[str, str, str, int]]:
    rows = []
    for line in (scene.root / "sources.txt").read_text().splitlines():
        name, rest = line.split(" ", 1)
        bag, topic, stamp = rest.rsplit(" ", 2)
        rows.append((name, bag, topic, int(stamp)))
    return rows


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("rendered")
    return {
        "depth": write_robot_bag(root / "sq", seconds=16, rate_hz=5, size_wh=SIZE, depth=True,
                                 progress=False),
        "mcap": write_robot_bag(root / "mc", seconds=16, rate_hz=5, size_wh=SIZE,
                                storage="mcap", compressed=True, progress=False),
        "body": write_robot_bag(root / "body", seconds=16, rate_hz=5, size_wh=SIZE,
                                optical_frame_in_tf=False, progress=False),
    }


def assert_ground_truth(out: Path, atol: float = 2e-6) -> int:
    """Every pose of every scene equals the renderer's, world = fixed frame or the reference."""
    gt = plan_robot_drive(0, SIZE)
    checked = 0
    for split in ("train", "val"):
        for scene in list_scenes(out, split):
            rows = sources(scene)
            T_odom = {n: gt.T_odom_optical((s - START_NS) / 1e9) for n, _, _, s in rows}
            world = np.eye(4) if split == "train" else T_odom["seq0/frame_00000.jpg"]
            for name, _, _, _ in rows:
                expected = np.linalg.inv(T_odom[name]) @ world
                np.testing.assert_allclose(scene.T_cam_world(name), expected, atol=atol)
                checked += 1
    return checked


class TestDatasetFromRenderedBags:
    def test_depth_bag_gives_ground_truth_and_depth_pairs(self, rendered, tmp_path, capsys):
        out = tmp_path / "ds"
        code, stdout, err = run(capsys, rendered["depth"], "--out", out, "--image-topic",
                                "/camera/image_raw", "--depth-topic", "/camera/depth/image_raw")
        assert code == 0, err
        assert assert_ground_truth(out) > 15
        summary = json.loads((out / "summary.json").read_text())
        assert summary["frames_read"] == 80 and summary["camera_convention"] == "optical"
        assert summary["splits"]["train"]["sources"].startswith("depth: ")
        assert "prior" not in summary["splits"]["train"]["sources"]
        assert (out / "pairs.png").stat().st_size > 0 and (out / "trajectory.png").exists()
        assert "train: 1 scene(s)" in stdout
        train = list_scenes(out, "train")[0]
        assert (train.root / "seq0/frame_00000.depth.png").exists()
        config = DataConfig(source="mapfree", width=160, height=120, min_overlap=0.2,
                            max_overlap=0.9, val_query_step=1, depth_suffix=".depth.png")
        pairs = MapFreePairs(out, "train", config, "overlap")
        assert len(pairs) > 20 and pairs[0]["depth0"].shape == (120, 160)
        assert len(MapFreePairs(out, "val", config, "reference")) >= 2

    def test_sources_point_back_to_the_bag(self, rendered, tmp_path, capsys):
        out = tmp_path / "ds"
        assert run(capsys, rendered["mcap"], "--out", out)[0] == 0
        scene = list_scenes(out, "train")[0]
        rows = sources(scene)
        assert [r[0] for r in rows] == [e.name for e in scene.poses]
        assert {r[1] for r in rows} == {str(rendered["mcap"])}
        assert {r[2] for r in rows} == {"/camera/image_raw"}
        assert all((r[3] - START_NS) % 200_000_000 == 0 for r in rows)  # 5 Hz stamps

    def test_compressed_topic(self, rendered, tmp_path, capsys):
        out = tmp_path / "ds"
        code, _, err = run(capsys, rendered["mcap"], "--out", out, "--image-topic",
                           "/camera/image_raw/compressed")
        assert code == 0, err
        assert assert_ground_truth(out) > 15
        summary = json.loads((out / "summary.json").read_text())
        assert summary["image_topic"] == "/camera/image_raw/compressed"
        assert summary["splits"]["train"]["sources"].startswith("prior: ")

    def test_body_frame_is_detected_and_rotated(self, rendered, tmp_path, capsys):
        out = tmp_path / "ds"
        code, stdout, err = run(capsys, rendered["body"], "--out", out)
        assert code == 0, err
        assert assert_ground_truth(out) > 15  # the optical poses, not the body frame's
        assert "camera frame 'camera_link' is a body frame (x forward, z up): rotated" in stdout

    def test_body_frame_taken_for_optical_is_caught(self, rendered, tmp_path, capsys):
        line = refused(capsys, tmp_path / "ds", rendered["body"], "--camera-convention",
                       "optical")
        assert "camera frame 'camera_link' has its z axis up in the fixed frame: a body frame" \
            in line and "--camera-convention body" in line

    def test_optical_frame_taken_for_body_is_caught(self, rendered, tmp_path, capsys):
        line = refused(capsys, tmp_path / "ds", rendered["mcap"], "--camera-convention", "body")
        assert "already has its y axis down (REP 103 optical)" in line


class TestDatasetSplitsAndScenes:
    def test_time_blocks_with_a_guard(self, tmp_path, capsys):
        bag = write_quick_bag(tmp_path / "b", frames=100)
        out = tmp_path / "ds"
        code, _, err = run(capsys, bag, "--out", out, "--split", "0.7,0.15,0.15")
        assert code == 0, err
        stamps = {s: [r[3] for sc in list_scenes(out, s) for r in sources(sc)]
                  for s in ("train", "val", "test")}
        assert all(stamps.values())
        assert min(stamps["val"]) - max(stamps["train"]) >= 2e9  # --guard 2 s
        assert min(stamps["test"]) - max(stamps["val"]) >= 2e9

    def test_a_jump_starts_a_new_scene(self, tmp_path, capsys):
        def relocalised(t: float) -> np.ndarray:
            T = drive(t)
            T[1, 3] += 20.0 if t >= 10.0 else 0.0  # SLAM relocalisation after 10 s
            return T

        bag = write_quick_bag(tmp_path / "b", frames=100, pose=relocalised)
        out = tmp_path / "ds"
        assert run(capsys, bag, "--out", out)[0] == 0
        summary = json.loads((out / "summary.json").read_text())
        assert summary["jumps"] == 1 and summary["scenes"] == 2
        assert summary["splits"]["train"]["scenes"] == 2
        for scene in list_scenes(out, "train"):  # no pair across the jump
            y = [-scene.T_cam_world(n)[:3, :3].T @ scene.T_cam_world(n)[:3, 3]
                 for n, *_ in sources(scene)]
            assert np.ptp(np.array(y)[:, 1]) < 5.0

    def test_blurred_frame_dropped(self, tmp_path, capsys):
        def image(k: int) -> np.ndarray:
            rgb = texture(k)
            return cv2.GaussianBlur(rgb, (0, 0), 3.0) if k == 30 else rgb

        bag = write_quick_bag(tmp_path / "b", frames=60, image=image)
        out = tmp_path / "ds"
        assert run(capsys, bag, "--out", out)[0] == 0
        summary = json.loads((out / "summary.json").read_text())
        assert summary["dropped"]["blurred"] == 1
        assert START_NS + 30 * 200_000_000 not in [
            r[3] for s in ("train", "val") for sc in list_scenes(out, s) for r in sources(sc)]

    def test_two_bags_are_two_scenes(self, tmp_path, capsys):
        bags = [write_quick_bag(tmp_path / f"b{k}", frames=60) for k in range(2)]
        out = tmp_path / "ds"
        assert run(capsys, *bags, "--out", out)[0] == 0
        summary = json.loads((out / "summary.json").read_text())
        assert summary["scenes"] == 2 and summary["splits"]["train"]["scenes"] == 2

    def test_truncated_bag_converts_what_is_readable(self, tmp_path, capsys):
        bag = write_quick_bag(tmp_path / "b", frames=100, storage="mcap")
        mcap = next(bag.glob("*.mcap"))
        mcap.write_bytes(mcap.read_bytes()[: int(mcap.stat().st_size * 0.7)])
        out = tmp_path / "ds"
        code, stdout, err = run(capsys, bag, "--out", out)
        assert code == 0, err
        summary = json.loads((out / "summary.json").read_text())
        assert 40 <= summary["frames_read"] < 100
        assert "truncated or corrupt" in stdout and "converted what was readable" in stdout

    def test_odometry_topic(self, tmp_path, capsys):
        bag = write_quick_bag(tmp_path / "b", frames=60, odometry=True)
        out = tmp_path / "ds"
        assert run(capsys, bag, "--out", out, "--pose-topic", "/odom")[0] == 0
        scene = list_scenes(out, "train")[0]
        name, _, _, stamp = sources(scene)[3]
        T = drive((stamp - START_NS) / 1e9) @ T_BASE_LINK @ T_LINK_OPTICAL
        np.testing.assert_allclose(scene.T_cam_world(name), np.linalg.inv(T), atol=2e-6)


class TestDatasetBadInputs:
    def test_no_image_topic(self, tmp_path, capsys):
        bag = write_quick_bag(tmp_path / "b", frames=3, images=False)
        line = refused(capsys, tmp_path / "ds", bag)
        assert "no camera image topics in" in line and "/tf (TFMessage, 3)" in line

    def test_wrong_image_topic(self, tmp_path, capsys):
        bag = write_quick_bag(tmp_path / "b", frames=3)
        line = refused(capsys, tmp_path / "ds", bag, "--image-topic", "/cam/image")
        assert "image topic '/cam/image' is not in the bag" in line
        assert "/camera/image_raw (Image, 3)" in line

    def test_no_tf_path(self, tmp_path, capsys):
        bag = write_quick_bag(tmp_path / "b", frames=3)
        line = refused(capsys, tmp_path / "ds", bag, "--fixed-frame", "map")
        assert "no TF path from 'map' to the camera frame 'camera_optical_frame'" in line
        assert "'odom'" in line

    def test_camera_info_missing(self, tmp_path, capsys):
        bag = write_quick_bag(tmp_path / "b", frames=3, camera_info=False)
        assert "no camera_info for /camera/image_raw" in refused(capsys, tmp_path / "ds", bag)

    def test_camera_info_changes_size(self, tmp_path, capsys):
        bag = write_quick_bag(tmp_path / "b", frames=6,
                              size_at=lambda k: (160, 120) if k < 3 else (80, 60))
        line = refused(capsys, tmp_path / "ds", bag)
        assert "changes the image size from 160x120 to 80x60 at 1700000000.600 s" in line

    def test_robot_never_moves(self, tmp_path, capsys):
        bag = write_quick_bag(tmp_path / "b", frames=20, pose=lambda t: np.eye(4))
        line = refused(capsys, tmp_path / "ds", bag)
        assert "no training pairs: 1 keyframe(s), the camera moved at most 0.00 m" in line

    def test_poses_not_metric(self, tmp_path, capsys):
        bag = write_quick_bag(tmp_path / "b", frames=20, pose=lambda t: drive(t, speed=500.0))
        line = refused(capsys, tmp_path / "ds", bag)
        assert "the poses jump at 19 of 20 frames" in line and "are they metric" in line

    def test_fixed_frame_never_published(self, tmp_path, capsys):
        bag = write_quick_bag(tmp_path / "b", frames=6, tf_at=lambda k: False)
        line = refused(capsys, tmp_path / "ds", bag)
        assert "no TF path from 'odom' to the camera frame 'camera_optical_frame'" in line
        assert "frames: ['base_link', 'camera_link', 'camera_optical_frame']" in line

    def test_output_already_holds_a_dataset(self, tmp_path, capsys):
        bag = write_quick_bag(tmp_path / "b", frames=60)
        out = tmp_path / "ds"
        assert run(capsys, bag, "--out", out)[0] == 0
        before = sorted(p.relative_to(out) for p in out.rglob("*"))
        code, _, err = run(capsys, bag, "--out", out)
        assert code == 2 and f"output directory {out} already holds a dataset" in err
        assert sorted(p.relative_to(out) for p in out.rglob("*")) == before

    def test_output_not_empty(self, tmp_path, capsys):
        bag = write_quick_bag(tmp_path / "b", frames=60)
        out = tmp_path / "ds"
        out.mkdir()
        (out / "notes.txt").write_text("mine")
        code, _, err = run(capsys, bag, "--out", out)
        assert code == 2 and "exists and is not empty" in err
        assert [p.name for p in out.iterdir()] == ["notes.txt"]

    def test_staging_of_a_killed_run_is_removed_of_a_live_one_kept(
        self, tmp_path, capsys, dead_pid
    ):
        bag = write_quick_bag(tmp_path / "b", frames=60)
        stale = tmp_path / f"ds.partial-{dead_pid}-0badf00d"
        (stale / "train").mkdir(parents=True)
        (stale / "train" / "junk.txt").write_text("killed")
        live = tmp_path / f"ds.partial-{os.getpid()}-0000beef"  # another run at work
        live.mkdir()
        assert run(capsys, bag, "--out", tmp_path / "ds")[0] == 0
        assert not stale.exists() and not (tmp_path / "ds/train/junk.txt").exists()
        assert live.is_dir()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "ds", live.name]

    def test_another_conversion_publishes_first(self, tmp_path, capsys, monkeypatch):
        """The output is filled while this run converts: refused, this run's dataset kept."""
        bag = write_quick_bag(tmp_path / "b", frames=60)
        out = tmp_path / "ds"
        real = convert.collect_frames

        def collect_while_another_publishes(*args, **kwargs):
            (out / "train").mkdir(parents=True)
            return real(*args, **kwargs)

        monkeypatch.setattr(convert, "collect_frames", collect_while_another_publishes)
        code, _, err = run(capsys, bag, "--out", out)
        kept = [p for p in tmp_path.iterdir() if p.name.startswith("ds.partial-")]
        assert code == 2 and len(kept) == 1, err
        assert f"this run's output is kept as {kept[0] / 'ds'}; another conversion wrote {out}" in err
        assert (kept[0] / "ds/summary.json").is_file() and list(out.iterdir()) == [out / "train"]

    def test_bad_split(self, tmp_path, capsys):
        bag = write_quick_bag(tmp_path / "b", frames=3)
        line = refused(capsys, tmp_path / "ds", bag, "--split", "0.9,0.2")
        assert "--split needs 2 or 3 positive fractions summing to 1" in line
