from pathlib import Path

import cv2
import numpy as np
import pytest

from mickey_ros.mapfree.dataset import (
    MapFreeScene,
    OverlapPair,
    frame_name,
    frame_number,
    list_scenes,
)
from mickey_ros.mapfree.files import (
    CameraIntrinsics,
    PoseEntry,
    intrinsics_matrix,
    write_intrinsics,
    write_poses,
)

# seq1 frame numbers skip (no 3, 7, 11): line sampling differs from frame-number sampling
SEQ1_NUMBERS = [0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14]


def _quat_z(angle: float) -> np.ndarray:
    return np.array([np.cos(angle / 2), 0.0, 0.0, np.sin(angle / 2)])


def write_scene(
    root: Path, name: str = "s00460", zero_poses: bool = False, with_ref_line: bool = True
) -> Path:
    scene = root / name
    (scene / "seq0").mkdir(parents=True)
    (scene / "seq1").mkdir()
    frames = ["seq0/frame_00000.jpg"] + [frame_name(1, n) for n in SEQ1_NUMBERS]
    intrinsics = {}
    for i, frame in enumerate(frames):
        size = (30, 20) if i < len(frames) - 1 else (32, 24)  # the last line's W, H rule
        intrinsics[frame] = CameraIntrinsics(intrinsics_matrix(25 + i, 25 + i, 15, 10), *size)
        cv2.imwrite(str(scene / frame), np.full((24, 32, 3), i, np.uint8))
    poses = [
        PoseEntry(f, np.zeros(4) if zero_poses else _quat_z(0.1 * i), np.array([i, 0.0, 0.0]))
        for i, f in enumerate(frames)
        if with_ref_line or f.startswith("seq1")
    ]
    write_intrinsics(scene / "intrinsics.txt", intrinsics)
    write_poses(scene / "poses.txt", poses)
    return scene


class TestFrameNumber:
    def test_values(self):
        assert frame_number("seq1/frame_00042.jpg") == 42
        assert frame_name(1, 42) == "seq1/frame_00042.jpg"

    def test_exception(self):
        with pytest.raises(ValueError, match="frame_XXXXX"):
            frame_number("seq1/img42.jpg")


class TestListScenes:
    def test_sorted_and_filtered(self, tmp_path):
        for name in ("s00462", "s00460", "s00461"):
            write_scene(tmp_path / "val", name)
        (tmp_path / "val" / "notes").mkdir()  # no intrinsics.txt: not a scene
        assert [s.name for s in list_scenes(tmp_path, "val")] == ["s00460", "s00461", "s00462"]
        assert [s.name for s in list_scenes(tmp_path, "val", ["s00462", "s00460"])] == [
            "s00460",
            "s00462",
        ]

    def test_exception(self, tmp_path):
        write_scene(tmp_path / "val")
        with pytest.raises(FileNotFoundError, match=r"found splits: \['val'\]"):
            list_scenes(tmp_path, "test")
        with pytest.raises(FileNotFoundError, match="s09999"):
            list_scenes(tmp_path, "val", ["s09999"])


class TestMapFreeScene:
    def test_intrinsics_and_size(self, tmp_path):
        scene = MapFreeScene(write_scene(tmp_path))
        assert scene.name == "s00460"
        assert len(scene.intrinsics) == 13
        assert scene.image_size == (32, 24)  # from the last line only
        assert scene.K("seq1/frame_00001.jpg")[0, 0] == pytest.approx(27.0)
        with pytest.raises(ValueError, match="no intrinsics"):
            scene.K("seq1/frame_00003.jpg")

    @pytest.mark.parametrize("with_ref_line", [True, False])
    def test_query_frames_by_line_index(self, tmp_path, with_ref_line):
        scene = MapFreeScene(write_scene(tmp_path, with_ref_line=with_ref_line))
        # lines 0, 5, 10 of the seq1 lines -> frames 0, 6, 13 (frame-number sampling gives 0, 5, 10)
        assert scene.query_frames() == [frame_name(1, n) for n in (0, 6, 13)]
        assert scene.query_frames(1) == [frame_name(1, n) for n in SEQ1_NUMBERS]
        with pytest.raises(ValueError, match="sample_step"):
            scene.query_frames(0)

    def test_frames_of_each_scan(self, tmp_path):
        scene = MapFreeScene(write_scene(tmp_path))
        assert scene.frames("seq0") == ["seq0/frame_00000.jpg"]
        assert len(scene.frames("seq1")) == 12

    def test_poses_and_relative_pose(self, tmp_path):
        scene = MapFreeScene(write_scene(tmp_path))
        assert scene.has_ground_truth
        assert [p.name for p in scene.poses][:2] == ["seq0/frame_00000.jpg", "seq1/frame_00000.jpg"]
        T_a, T_b = (
            scene.T_cam_world("seq1/frame_00000.jpg"),
            scene.T_cam_world("seq1/frame_00002.jpg"),
        )
        T_b_a = scene.T_query_ref("seq1/frame_00000.jpg", "seq1/frame_00002.jpg")
        np.testing.assert_allclose(T_b_a @ T_a, T_b, atol=1e-12)
        np.testing.assert_allclose(T_a[:3, 3], [1.0, 0, 0])
        with pytest.raises(ValueError, match="no valid pose"):
            scene.pose("seq1/frame_00003.jpg")

    def test_test_split_has_no_ground_truth(self, tmp_path):
        scene = MapFreeScene(write_scene(tmp_path, zero_poses=True))
        assert not scene.has_ground_truth
        assert scene.poses == []
        assert len(scene.query_frames()) == 3  # frames are still listed
        assert scene.report.skipped == []

    def test_load_rgb(self, tmp_path):
        scene = MapFreeScene(write_scene(tmp_path))
        image = scene.load_rgb(scene.reference_frame)
        assert image.shape == (24, 32, 3) and image.dtype == np.uint8
        with pytest.raises(FileNotFoundError):
            scene.load_rgb("seq1/frame_00003.jpg")

    def test_overlap_pairs(self, tmp_path):
        scene = MapFreeScene(write_scene(tmp_path))
        idxs = np.array([[0, 0, 1, 4], [1, 1, 1, 2], [0, 0, 1, 12], [1, 5, 1, 6]])
        np.savez(scene.root / "overlaps.npz", idxs=idxs, overlaps=np.array([0.1, 0.5, 0.7, 0.9]))
        pairs = scene.overlap_pairs(0.2, 0.7)  # open interval: 0.7 is out
        assert pairs == [OverlapPair("seq1/frame_00001.jpg", "seq1/frame_00002.jpg", 0.5)]
        assert len(scene.overlap_pairs()) == 4

    def test_overlap_exceptions(self, tmp_path):
        scene = MapFreeScene(write_scene(tmp_path))
        with pytest.raises(FileNotFoundError, match="overlaps.npz"):
            scene.overlap_pairs()
        np.savez(scene.root / "overlaps.npz", idxs=np.zeros((2, 3)), overlaps=np.zeros(2))
        with pytest.raises(ValueError, match=r"\(M, 4\)"):
            scene.overlap_pairs()

    def test_missing_folder(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="does not exist"):
            MapFreeScene(tmp_path / "nope")
