"""keyframes.library and keyframes.build: persistence, atomicity, model mismatch, bad files."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
from kf_helpers import FAST_SOLVER, K, pose_at, textured
from small_models import small_demo_cnn

from mickey_ros.estimator.relative_pose import (
    DEMO_CHECKPOINT,
    EstimatorConfig,
    RelativePoseEstimator,
)

from mickey_ros.keyframes import build as build_module
from mickey_ros.keyframes import library as library_module
from mickey_ros.keyframes.build import PosedKeyframe, build_library
from mickey_ros.keyframes.library import KeyframeLibrary, feature_source, file_sha256
from mickey_ros.keyframes.store import LibraryError, read_manifest


def _make(root, estimator, source, n=3) -> KeyframeLibrary:
    lib = KeyframeLibrary.create(root, estimator, source)
    for i in range(n):
        lib.add(textured(i), K, pose_at(float(i)), stamp_ns=i)
    return lib


class TestAdd:
    def test_persists_across_restart(self, tmp_path, estimator, source):
        lib = _make(tmp_path / "lib", estimator, source)
        lines = []
        again = KeyframeLibrary.open(tmp_path / "lib", estimator, source, lines.append)
        assert lines == [] and again.recomputed == 0
        assert [e.id for e in again.entries] == ["kf00000", "kf00001", "kf00002"]
        np.testing.assert_array_equal(again.poses, lib.poses)
        np.testing.assert_array_equal(again.descriptors, lib.descriptors)
        for a, b in zip(again.features, lib.features):
            assert a.feats.grid_hw == b.feats.grid_hw
            assert bool((a.feats.descriptors == b.feats.descriptors).all())
            assert bool((a.K == b.K).all())

    def test_stored_features_equal_fresh_ones(self, tmp_path, estimator, source):
        lib = _make(tmp_path / "lib", estimator, source, n=1)
        fresh = estimator.extract_features(textured(0), K)
        q = estimator.extract_features(textured(5), K)
        stored, computed = estimator.estimate_against(q, [lib.features[0], fresh])
        assert stored.confidence == computed.confidence
        np.testing.assert_array_equal(stored.t, computed.t)

    def test_interrupted_capture_leaves_library(self, tmp_path, estimator, source, monkeypatch):
        _make(tmp_path / "lib", estimator, source, n=2)
        lib = KeyframeLibrary.open(tmp_path / "lib", estimator, source)

        def crash(root, manifest):
            raise KeyboardInterrupt

        monkeypatch.setattr(library_module, "write_manifest", crash)
        with pytest.raises(KeyboardInterrupt):
            lib.add(textured(9), K, pose_at(9.0))
        monkeypatch.undo()
        again = KeyframeLibrary.open(tmp_path / "lib", estimator, source)
        assert len(again) == 2  # the orphan files of the third are ignored
        assert again.add(textured(9), K, pose_at(9.0)).id == "kf00002"

    def test_refused_image_writes_nothing(self, tmp_path, estimator, source):
        lib = _make(tmp_path / "lib", estimator, source, n=1)
        with pytest.raises(ValueError, match="T_map_camera must be a finite 4x4"):
            lib.add(textured(1), K, np.full((4, 4), np.nan))
        with pytest.raises(ValueError):
            lib.add(np.zeros((10, 10), np.uint8), K, pose_at(1.0))
        assert sorted(os.listdir(tmp_path / "lib/features")) == ["kf00000.npz"]
        assert len(read_manifest(tmp_path / "lib").keyframes) == 1


class TestOpen:
    def test_empty_library(self, tmp_path, estimator, source):
        KeyframeLibrary.create(tmp_path / "lib", estimator, source)
        assert len(KeyframeLibrary.open(tmp_path / "lib", estimator, source)) == 0

    def test_other_model_is_recomputed_never_reused(self, tmp_path, estimator, source):
        _make(tmp_path / "lib", estimator, source, n=2)
        other = dataclasses.replace(source, model="other.ckpt", checkpoint_sha256="cd" * 32)
        lines = []
        lib = KeyframeLibrary.open(tmp_path / "lib", estimator, other, lines.append)
        assert lines == [
            f"keyframe library {tmp_path / 'lib'} was built with {source.describe()}, not "
            f"{other.describe()}: recomputing the features of 2 keyframes from their images"]
        assert lib.recomputed == 2
        assert read_manifest(tmp_path / "lib").source == other  # persisted with the new source
        assert KeyframeLibrary.open(tmp_path / "lib", estimator, other).recomputed == 0

    def test_feature_file_of_another_model_is_recomputed(self, tmp_path, estimator, source):
        # an interrupted refresh: the manifest names this model, one file another
        _make(tmp_path / "lib", estimator, source, n=2)
        other = dataclasses.replace(source, checkpoint_sha256="cd" * 32)
        KeyframeLibrary.open(tmp_path / "lib", estimator, other, lambda _: None, persist=False)
        lib = KeyframeLibrary.create(tmp_path / "b", estimator, other)
        lib.add(textured(0), K, pose_at(0.0))
        os.replace(tmp_path / "b/features/kf00000.npz", tmp_path / "lib/features/kf00000.npz")
        assert KeyframeLibrary.open(tmp_path / "lib", estimator, source).recomputed == 1

    def test_corrupt_features_are_recomputed_from_the_image(self, tmp_path, estimator, source):
        _make(tmp_path / "lib", estimator, source, n=2)
        (tmp_path / "lib/features/kf00001.npz").write_bytes(b"garbage")
        lib = KeyframeLibrary.open(tmp_path / "lib", estimator, source, lambda _: None)
        assert len(lib) == 2 and lib.recomputed == 1

    def test_missing_keyframe_is_skipped_and_kept(self, tmp_path, estimator, source):
        _make(tmp_path / "lib", estimator, source, n=3)
        os.remove(tmp_path / "lib/features/kf00001.npz")
        os.remove(tmp_path / "lib/images/kf00001.png")
        lines = []
        lib = KeyframeLibrary.open(tmp_path / "lib", estimator, source, lines.append)
        assert [e.id for e in lib.entries] == ["kf00000", "kf00002"]
        assert lines[0].startswith("keyframe 'kf00001' skipped: keyframe 'kf00001': image ")
        assert lines[0].endswith("are missing)")
        assert lines[1] == (f"keyframe library {tmp_path / 'lib'}: 1 of 3 keyframes skipped "
                            "(their manifest entries are kept)")
        lib.add(textured(7), K, pose_at(7.0))  # a capture keeps the skipped entry
        ids = [e.id for e in read_manifest(tmp_path / "lib").keyframes]
        assert ids == ["kf00000", "kf00001", "kf00002", "kf00003"]


def _keyframes(n: int, fail_at: int | None = None):
    for i in range(n):
        if i == fail_at:
            raise KeyboardInterrupt
        yield PosedKeyframe(textured(i), K, pose_at(float(i)), source=f"img{i}.png")


class TestBuildLibrary:
    def test_builds(self, tmp_path, estimator, source):
        lib = build_library(tmp_path / "lib", estimator, source, _keyframes(2))
        assert lib.root == tmp_path / "lib" and len(lib) == 2
        assert sorted(os.listdir(tmp_path)) == ["lib"]

    def test_interrupted_build_leaves_the_old_library(self, tmp_path, estimator, source):
        build_library(tmp_path / "lib", estimator, source, _keyframes(2))
        with pytest.raises(KeyboardInterrupt):
            build_library(tmp_path / "lib", estimator, source, _keyframes(3, fail_at=1),
                          overwrite=True)
        assert len(read_manifest(tmp_path / "lib").keyframes) == 2
        assert sorted(os.listdir(tmp_path)) == ["lib"]  # no staging directory left

    def test_existing_output_refused(self, tmp_path, estimator, source):
        (tmp_path / "lib").mkdir()
        with pytest.raises(FileExistsError, match="exists; pass --overwrite to replace it, or "
                                                  "--append to add keyframes to it"):
            build_library(tmp_path / "lib", estimator, source, _keyframes(1))

    def test_append(self, tmp_path, estimator, source):
        build_library(tmp_path / "lib", estimator, source, _keyframes(2))
        lib = build_library(tmp_path / "lib", estimator, source, _keyframes(1), append=True)
        assert [e.id for e in lib.entries] == ["kf00000", "kf00001", "kf00002"]

    def test_no_keyframe(self, tmp_path, estimator, source):
        with pytest.raises(LibraryError, match="no keyframe to write"):
            build_library(tmp_path / "lib", estimator, source, _keyframes(0))
        assert os.listdir(tmp_path) == []


class TestReadPosedDirectory:
    def test_poses_are_inverted_to_map_camera(self, tmp_path):
        import cv2

        cv2.imwrite(str(tmp_path / "a.png"), textured(0))
        # world-to-camera: 90 deg about z, then t; the camera centre is -R^T t
        (tmp_path / "poses.txt").write_text("a.png 0.7071068 0 0 0.7071068 1 2 3\n")
        (tmp_path / "intrinsics.txt").write_text("a.png 150 150 70 56 140 112\n")
        (kf,) = build_module.read_posed_directory(tmp_path, tmp_path / "poses.txt")
        np.testing.assert_allclose(kf.T_map_camera[:3, 3], [-2.0, 1.0, -3.0], atol=1e-6)
        np.testing.assert_allclose(kf.K, K)

    def test_missing_intrinsics_line(self, tmp_path):
        (tmp_path / "poses.txt").write_text("a.png 1 0 0 0 0 0 0\n")
        (tmp_path / "intrinsics.txt").write_text("b.png 150 150 70 56 140 112\n")
        with pytest.raises(LibraryError, match="a.png has a pose in .* but no line in the "
                                               "intrinsics file"):
            list(build_module.read_posed_directory(tmp_path, tmp_path / "poses.txt"))


class TestFeatureSource:
    def test_demo_checkpoint_hash_and_size(self):
        est = RelativePoseEstimator.from_demo(EstimatorConfig(resize=(224, 168)))
        source = feature_source(est, "demo")
        assert source.checkpoint_sha256 == file_sha256(DEMO_CHECKPOINT)
        assert source.input_wh == (224, 168) and source.model == est.model_name

    def test_random_weights_differ(self, estimator, source):
        other = RelativePoseEstimator.from_model_config(
            small_demo_cnn(), EstimatorConfig(seed=1, solver=FAST_SOLVER))
        assert feature_source(other).checkpoint_sha256 != source.checkpoint_sha256
