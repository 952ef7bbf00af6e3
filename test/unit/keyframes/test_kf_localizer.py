"""keyframes.localizer and the estimator's estimate_against: choosing keyframes per live frame."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from kf_helpers import K, pose_at, textured

from mickey_ros.geometry.pose import invert_transform
from mickey_ros.keyframes import KeyframeLibrary, LibraryLocalizer, LocalizerConfig

POSITIONS = (0.0, 1.0, 2.0, 10.0, 11.0)


@pytest.fixture(scope="module")
def library(tmp_path_factory, estimator, source) -> KeyframeLibrary:
    lib = KeyframeLibrary.create(tmp_path_factory.mktemp("kf") / "lib", estimator, source)
    for i, x in enumerate(POSITIONS):
        lib.add(textured(i), K, pose_at(x))
    return lib


def _config(**kw) -> LocalizerConfig:
    return dataclasses.replace(LocalizerConfig(min_confidence=0.0), **kw)


class TestEstimateAgainst:
    def test_equals_the_cached_reference_path(self, estimator):
        refs = [(textured(i), K) for i in range(3)]
        query = estimator.extract_features(textured(7), K)
        batched = estimator.estimate_against(query, [estimator.extract_features(*r) for r in refs])
        for (rgb, K_ref), got in zip(refs, batched):
            estimator.set_reference(rgb, K_ref)
            want = estimator.estimate(textured(7), K)
            assert (got.valid, got.confidence, got.num_inliers) == (
                want.valid, want.confidence, want.num_inliers)
            np.testing.assert_allclose(got.T_query_ref, want.T_query_ref, atol=1e-6)
        estimator.clear_reference()

    def test_empty(self, estimator):
        assert estimator.estimate_against(estimator.extract_features(textured(0), K), []) == []


class TestLocalize:
    def test_with_prior_tries_the_nearest(self, library):
        loc = LibraryLocalizer(library, _config(k=2, prior_radius_m=3.0, retrieval_check=0))
        fix = loc.localize(textured(1), K, T_map_prior=pose_at(10.4))
        assert fix.mode == "prior"
        assert fix.candidates == ["kf00003", "kf00004"]

    def test_prior_candidates_are_checked_by_appearance(self, library):
        # the prior says x = 10 m, the camera sees kf00001's image: both are tried
        loc = LibraryLocalizer(library, _config(k=2, prior_radius_m=3.0, retrieval_check=1))
        fix = loc.localize(textured(1), K, T_map_prior=pose_at(10.4))
        assert fix.candidates == ["kf00003", "kf00004", "kf00001"]
        fix = loc.localize(textured(3), K, T_map_prior=pose_at(10.4))
        assert fix.candidates == ["kf00003", "kf00004"]  # no duplicate

    def test_winner_is_the_highest_confidence(self, library, estimator):
        loc = LibraryLocalizer(library, _config(k=5, retrieval=True))
        fix = loc.localize(textured(2), K)
        query = estimator.extract_features(textured(2), K)
        direct = estimator.estimate_against(query, library.features)
        conf = [e.confidence if e.valid else 0.0 for e in direct]
        ranked = np.argsort(conf)[::-1]
        assert fix.keyframe.id == library.entries[ranked[0]].id
        assert fix.runner_up_id == library.entries[ranked[1]].id
        assert fix.runner_up_confidence == conf[ranked[1]]
        want = library.entries[ranked[0]].T_map_camera @ invert_transform(
            direct[ranked[0]].T_query_ref)
        np.testing.assert_allclose(fix.T_map_camera, want, atol=1e-9)

    def test_without_prior_retrieves_by_appearance(self, library):
        loc = LibraryLocalizer(library, _config(k=1))
        fix = loc.localize(textured(3), K)  # the very image of kf00003
        assert (fix.mode, fix.candidates) == ("retrieval", ["kf00003"])

    def test_no_keyframe_near_the_prior_falls_back_to_retrieval(self, library):
        loc = LibraryLocalizer(library, _config(k=1))
        fix = loc.localize(textured(4), K, T_map_prior=pose_at(50.0))
        assert (fix.mode, fix.candidates) == ("retrieval", ["kf00004"])

    def test_no_keyframe_near_the_prior_without_retrieval(self, library):
        loc = LibraryLocalizer(library, _config(retrieval=False))
        fix = loc.localize(textured(4), K, T_map_prior=pose_at(50.0))
        assert not fix.estimate.valid and fix.mode == "none" and fix.keyframe is None
        assert fix.estimate.reason == (
            "no keyframe within 3 m and 60 deg of the pose prior (turn retrieval on to search "
            "by appearance: replay without --no-retrieval, node parameter keyframes.retrieval "
            "true)")

    def test_no_prior_without_retrieval(self, library):
        fix = LibraryLocalizer(library, _config(retrieval=False, track=False)).localize(
            textured(0), K)
        assert fix.estimate.reason == ("no pose prior and retrieval is off (turn retrieval on "
                                       "to search by appearance: replay without --no-retrieval, "
                                       "node parameter keyframes.retrieval true)")

    def test_empty_library(self, tmp_path, estimator, source):
        empty = KeyframeLibrary.create(tmp_path / "empty", estimator, source)
        fix = LibraryLocalizer(empty).localize(textured(0), K)
        assert fix.estimate.reason == (f"keyframe library {tmp_path / 'empty'} has no usable "
                                       "keyframe: build one (mickey-ros keyframes build) or "
                                       "capture one")

    def test_bad_image_raises(self, library):
        with pytest.raises(ValueError, match="image"):
            LibraryLocalizer(library).localize(np.zeros((5, 5, 3), np.uint8), K)


ANYWHERE = {"prior_radius_m": 1e4, "prior_max_angle_deg": 180.0}  # random weights: poses wild


class TestTrack:
    def test_last_fix_is_the_next_prior(self, library):
        loc = LibraryLocalizer(library, _config(k=1, **ANYWHERE))
        first = loc.localize(textured(0), K)
        assert first.mode == "retrieval"
        assert loc.localize(textured(0), K).mode == "prior"
        loc.reset()  # kidnapped: the prior is removed
        assert loc.localize(textured(0), K).mode == "retrieval"

    def test_recheck_interval(self, library):
        loc = LibraryLocalizer(library, _config(k=3, recheck_every=2, **ANYWHERE))
        modes = [loc.localize(textured(1), K).mode for _ in range(5)]
        assert modes == ["retrieval", "tracking", "tracking", "prior", "tracking"]

    def test_failing_prior_is_dropped(self, library):
        # a gate nothing passes: after max_failures frames the prior is ignored
        loc = LibraryLocalizer(library, _config(k=1, min_confidence=1.0, max_failures=2))
        prior = pose_at(0.0)
        modes = [loc.localize(textured(1), K, T_map_prior=prior).mode for _ in range(3)]
        assert modes == ["prior", "prior", "retrieval"]


class TestLocalizerConfig:
    @pytest.mark.parametrize("kw", [{"k": 0}, {"recheck_every": -1}, {"prior_radius_m": 0.0},
                                    {"prior_max_angle_deg": 200.0}, {"max_failures": 0},
                                    {"retrieval_check": -1}])
    def test_refuses(self, kw):
        with pytest.raises(ValueError, match="keyframes: "):
            LocalizerConfig(**kw)
