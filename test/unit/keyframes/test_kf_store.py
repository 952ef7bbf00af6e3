"""keyframes.store: manifest, keyframe files, atomic writes and their error lines (no model)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from mickey_ros.keyframes import store
from mickey_ros.utils import outputs
from mickey_ros.keyframes.store import (
    FeatureSource,
    KeyframeEntry,
    LibraryError,
    Manifest,
    atomic_write_bytes,
    publish_directory,
    read_features,
    read_manifest,
    write_manifest,
)

SOURCE = FeatureSource("demo_model.ckpt", "ab" * 32, (320, 240))


def _entry(name: str = "kf00000") -> KeyframeEntry:
    T = np.eye(4)
    T[:3, 3] = [1.0, 2.0, 3.0]
    return KeyframeEntry(name, np.diag([200.0, 200.0, 1.0]), T, 7, "images/a.png")


class TestManifest:
    def test_round_trip(self, tmp_path):
        write_manifest(tmp_path, Manifest(SOURCE, [_entry("a"), _entry("b")]))
        manifest = read_manifest(tmp_path)
        assert manifest.source == SOURCE
        assert [e.id for e in manifest.keyframes] == ["a", "b"]
        np.testing.assert_array_equal(manifest.keyframes[0].T_map_camera, _entry().T_map_camera)
        assert manifest.keyframes[1].stamp_ns == 7

    def test_missing_library(self, tmp_path):
        with pytest.raises(LibraryError) as err:
            read_manifest(tmp_path / "nope")
        assert str(err.value) == (
            f"keyframe library {tmp_path / 'nope'} does not exist; build one with `mickey-ros "
            "keyframes build --images DIR --poses poses.txt --out LIB`")

    def test_directory_without_manifest(self, tmp_path):
        with pytest.raises(LibraryError, match=r"has no manifest.json; build one"):
            read_manifest(tmp_path)

    def test_corrupt_manifest(self, tmp_path):
        (tmp_path / "manifest.json").write_text('{"format": "mickey_ros.keyframes", "vers')
        with pytest.raises(LibraryError, match=r"manifest.json is corrupt \(JSONDecodeError"):
            read_manifest(tmp_path)

    def test_other_version(self, tmp_path):
        text = Manifest(SOURCE).to_json().replace('"version": 1', '"version": 9')
        (tmp_path / "manifest.json").write_text(text)
        with pytest.raises(LibraryError, match="has format version 9, this mickey_ros reads 1; "
                                               "rebuild the library"):
            read_manifest(tmp_path)

    def test_bad_entry(self, tmp_path):
        text = Manifest(SOURCE, [_entry()]).to_json().replace('"K": [', '"K": [[1], ')
        (tmp_path / "manifest.json").write_text(text)
        with pytest.raises(LibraryError, match="malformed keyframe entry|K must be 3x3"):
            read_manifest(tmp_path)


class TestAtomicWriteBytes:
    def test_replaces(self, tmp_path):
        path = tmp_path / "f"
        atomic_write_bytes(path, b"old")
        atomic_write_bytes(path, b"new")
        assert path.read_bytes() == b"new"
        assert os.listdir(tmp_path) == ["f"]

    def test_interrupted_write_keeps_old_content(self, tmp_path, monkeypatch):
        path = tmp_path / "f"
        atomic_write_bytes(path, b"old")

        def crash(src, dst):
            raise KeyboardInterrupt

        monkeypatch.setattr(outputs.os, "replace", crash)  # atomic_write_bytes lives there
        with pytest.raises(KeyboardInterrupt):
            atomic_write_bytes(path, b"new")
        assert path.read_bytes() == b"old"
        assert os.listdir(tmp_path) == ["f"]  # no temp file left behind


class TestReadFeatures:
    def test_missing(self, tmp_path):
        with pytest.raises(LibraryError) as err:
            read_features(tmp_path, _entry())
        assert str(err.value) == (f"keyframe 'kf00000': features "
                                  f"{tmp_path / 'features/kf00000.npz'} are missing")

    def test_truncated(self, tmp_path):
        (tmp_path / "features").mkdir()
        (tmp_path / "features/kf00000.npz").write_bytes(b"PK\x03\x04 truncated")
        with pytest.raises(LibraryError, match=r"features .* are unreadable \(BadZipFile"):
            read_features(tmp_path, _entry())

    def test_inconsistent_shapes(self, tmp_path):
        arrays = {"kpts": np.zeros((6, 2), np.float32), "depth": np.zeros(6, np.float32),
                  "scores": np.zeros(6, np.float32), "descriptors": np.zeros((6, 4), np.float32),
                  "K_net": np.eye(3, dtype=np.float32), "scale_xy": np.ones(2),
                  "grid_hw": np.array([2, 2]), "global_descriptor": np.zeros(20, np.float32),
                  "source": np.asarray("x")}
        store.write_features(tmp_path, _entry(), arrays)
        with pytest.raises(LibraryError, match="have inconsistent shapes"):
            read_features(tmp_path, _entry())


class TestPublishDirectory:
    def test_refuses_existing_without_overwrite(self, tmp_path):
        (tmp_path / "lib").mkdir()
        (tmp_path / "new").mkdir()
        with pytest.raises(FileExistsError, match="exists; pass --overwrite to replace it"):
            publish_directory(tmp_path / "new", tmp_path / "lib", overwrite=False)

    def test_overwrite_replaces_a_library(self, tmp_path):
        old, new = tmp_path / "lib", outputs.staging_path(tmp_path / "lib")
        write_manifest(old.mkdir() or old, Manifest(SOURCE, [_entry("old")]))
        write_manifest(new.mkdir(parents=True) or new, Manifest(SOURCE, [_entry("new")]))
        publish_directory(new, old, overwrite=True)
        assert [e.id for e in read_manifest(old).keyframes] == ["new"]
        assert sorted(os.listdir(tmp_path)) == ["lib"]

    def test_overwrite_refuses_a_non_library(self, tmp_path):
        (tmp_path / "photos").mkdir()
        (tmp_path / "new").mkdir()
        with pytest.raises(FileExistsError, match="is not a keyframe library; not replacing it"):
            publish_directory(tmp_path / "new", tmp_path / "photos", overwrite=True)
