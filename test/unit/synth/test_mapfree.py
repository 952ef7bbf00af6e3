from __future__ import annotations

import numpy as np
import pytest

from mickey_ros.mapfree.dataset import MapFreeScene
from mickey_ros.mapfree.files import format_pose_line
from mickey_ros.synth.mapfree import plan_mapfree_scene, pose_entry, write_mapfree_dataset
from mickey_ros.synth.render import Renderer
from mickey_ros.synth.textures import load_texture_bank
from mickey_ros.utils.images import load_rgb

SIZE_WH = (48, 64)  # portrait like Map-free's 540 x 720, tiny for the tests
FRAMES = 3


@pytest.fixture(scope="module")
def val_root(egl, tmp_path_factory):
    root = tmp_path_factory.mktemp("mapfree")
    write_mapfree_dataset(root, 1, FRAMES, "val", SIZE_WH, seed=1, first_scene_id=7, progress=False)
    return root


@pytest.fixture(scope="module")
def train_root(egl, tmp_path_factory):
    root = tmp_path_factory.mktemp("mapfree")
    write_mapfree_dataset(root, 1, FRAMES, "train", SIZE_WH, seed=1, progress=False)
    return root


class TestPoseEntry:
    def test_hand_computed_line(self):
        # camera rotated +90 deg about z: q_wxyz = (cos 45, 0, 0, sin 45); w first, then t
        T = np.eye(4)
        T[:3, :3] = [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
        T[:3, 3] = [1.0, 2.0, 3.0]
        entry = pose_entry("seq1/frame_00004.jpg", T)
        line = format_pose_line(entry.name, entry.q_wxyz, entry.t)
        assert (
            line
            == "seq1/frame_00004.jpg 0.707107 0.000000 0.000000 0.707107 1.000000 2.000000 3.000000"
        )


class TestWriteMapfreeDataset:
    def test_val_layout(self, val_root):
        scene_dir = val_root / "val" / "s00007"
        files = sorted(str(p.relative_to(scene_dir)) for p in scene_dir.rglob("*") if p.is_file())
        assert files == [
            "intrinsics.txt",
            "poses.txt",
            "seq0/frame_00000.jpg",
            "seq1/frame_00000.jpg",
            "seq1/frame_00001.jpg",
            "seq1/frame_00002.jpg",
        ]
        poses = (scene_dir / "poses.txt").read_text().splitlines()
        assert (
            poses[0]
            == "seq0/frame_00000.jpg 1.000000 0.000000 0.000000 0.000000 0.000000 0.000000 0.000000"
        )
        assert [line.split()[0] for line in poses] == files[2:]
        for line in (scene_dir / "intrinsics.txt").read_text().splitlines():
            tokens = line.split()
            assert len(tokens) == 7 and tokens[5:] == ["48", "64"]
        assert load_rgb(scene_dir / "seq1/frame_00002.jpg").shape == (64, 48, 3)

    def test_val_reads_with_the_project_reader(self, val_root):
        scene = MapFreeScene(val_root / "val" / "s00007")
        assert scene.has_ground_truth and scene.image_size == SIZE_WH
        assert scene.query_frames() == ["seq1/frame_00000.jpg"]  # every 5th line by position
        np.testing.assert_allclose(scene.T_cam_world(scene.reference_frame), np.eye(4), atol=1e-12)
        assert not scene.report.skipped

    def test_poses_are_world_to_camera_with_reference_as_world(self, egl, val_root):
        # re-render a query from its poses.txt entry (world = reference camera) and compare
        scene = MapFreeScene(val_root / "val" / "s00007")
        plan = plan_mapfree_scene(1, 7, "val", FRAMES)
        renderer = Renderer(load_texture_bank(), ctx=egl)
        renderer.set_scene(plan.scene)
        frame = "seq1/frame_00002.jpg"
        T_query_ref = scene.T_cam_world(frame)
        np.testing.assert_allclose(T_query_ref @ plan.T_ref_world, plan.seq1[2], atol=1e-5)
        rgb, _ = renderer.render(T_query_ref @ plan.T_ref_world, scene.K(frame), SIZE_WH)
        wrong, _ = renderer.render(
            np.linalg.inv(T_query_ref) @ plan.T_ref_world, scene.K(frame), SIZE_WH
        )
        renderer.release()
        image = load_rgb(scene.image_path(frame)).astype(float)
        assert np.abs(image - rgb).mean() < 10.0  # JPEG, noise and exposure jitter only
        assert np.abs(image - wrong).mean() > 2 * np.abs(image - rgb).mean()

    def test_scans_look_at_the_place_of_interest(self, val_root):
        # the optical axes of reference and queries (nearly) meet a few metres in front of both
        scene = MapFreeScene(val_root / "val" / "s00007")
        for frame in scene.frames("seq1"):
            T = scene.T_cam_world(frame)
            centre, axis = -T[:3, :3].T @ T[:3, 3], T[2, :3]
            A = np.stack([[0.0, 0.0, 1.0], -axis], axis=1)  # ref axis: origin + s e_z
            (s, r), *_ = np.linalg.lstsq(A, centre, rcond=None)
            gap = np.linalg.norm(s * np.array([0.0, 0.0, 1.0]) - (centre + r * axis))
            assert 2.0 < s < 8.0 and 2.0 < r < 8.0 and gap < 1.0

    def test_train_layout_and_overlaps(self, train_root):
        scene_dir = train_root / "train" / "s00000"
        names = [line.split()[0] for line in (scene_dir / "poses.txt").read_text().splitlines()]
        assert names == [f"seq{s}/frame_{f:05d}.jpg" for s in (0, 1) for f in range(FRAMES)]
        with np.load(scene_dir / "overlaps.npz") as data:
            assert sorted(data.files) == ["idxs", "overlaps"]
            idxs, overlaps = data["idxs"], data["overlaps"]
        assert idxs.ndim == 2 and idxs.shape[1] == 4 and overlaps.shape == (len(idxs),)
        assert np.issubdtype(idxs.dtype, np.integer)
        assert np.all((overlaps > 0) & (overlaps <= 1)) and len(idxs) >= FRAMES
        assert set(idxs[:, [0, 2]].ravel()) <= {0, 1} and idxs[:, [1, 3]].max() < FRAMES
        pairs = {(a, b, c, d) for a, b, c, d in idxs.tolist()}
        assert len(pairs) == len(idxs) and all((a, b) < (c, d) for a, b, c, d in pairs)
        scene = MapFreeScene(scene_dir)
        np.testing.assert_allclose(scene.T_cam_world("seq0/frame_00000.jpg"), np.eye(4), atol=1e-12)
        assert len(scene.overlap_pairs(0.0, 1.01)) == len(idxs)
        # neighbouring frames of one scan overlap more than frames far apart
        score = {(a, b, c, d): o for (a, b, c, d), o in zip(idxs.tolist(), overlaps)}
        assert score[(0, 0, 0, 1)] > score.get((0, 0, 0, 2), 0.0)

    def test_exceptions(self, val_root):
        with pytest.raises(FileExistsError, match="first-scene-id"):
            write_mapfree_dataset(val_root, 1, 2, "val", SIZE_WH, first_scene_id=7, progress=False)
        with pytest.raises(ValueError, match="split"):
            write_mapfree_dataset(val_root, 1, 2, "test", SIZE_WH, progress=False)
        with pytest.raises(ValueError, match=">= 2"):
            write_mapfree_dataset(val_root, 1, 1, "train", SIZE_WH, progress=False)
