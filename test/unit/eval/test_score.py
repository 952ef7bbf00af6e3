import logging
import zipfile

import numpy as np
import pytest

from mickey_ros.eval import score
from mickey_ros.eval.mapfree import write_submission
from mickey_ros.mapfree.dataset import MapFreeScene
from mickey_ros.mapfree.files import ParseReport, format_pose_line

GOOD = "seq1/frame_00000.jpg 1.0 0.0 0.0 0.0 0.1 0.2 0.3 5.5"


def write_scene_files(tmp_path, split, helpers, drop=(), perturb=None, confidence=None):
    """pose_<scene>.txt files with the ground truth of every seq1 frame (minus ``drop``)."""
    files = {}
    for scene, frames in split.gt.items():
        lines = []
        for frame, T in frames.items():
            if frame in drop:
                continue
            T = perturb(T) if perturb else T
            conf = confidence(frame) if confidence else 1.0 + int(frame[-9:-4])
            e = helpers.pose_entry(frame, T, conf)
            lines.append(format_pose_line(e.name, e.q_wxyz, e.t, e.confidence))
        files[scene] = tmp_path / f"pose_{scene}.txt"
        files[scene].write_text("\n".join(lines) + "\n")
    return files


class TestParseSubmissionText:
    def test_malformed_lines_skipped_with_file_and_line(self):
        text = "\n".join(
            [
                GOOD,
                "seq1/frame_00001.jpg 1 0 0 0 0 0 0",  # 8 fields
                "seq1/frame_00002.jpg 1 0 0 nan 0 0 0 1",
                "seq1/frame_00003.jpg 0 0 0 0 0 0 0 1",
                "#seq1/frame_00004.jpg 1 0 0 0 0 0 0 1",
                "seq1/frame_00005.jpg 1 0 0 0 0 0 0 -1",
                "seq1/img.jpg 1 0 0 0 0 0 0 1",
                "seq1/frame_00000.jpg 1 0 0 0 9 9 9 1",  # duplicate frame number
                "seq1/frame_00006.jpg  1 0 0 0 0 0 0 1",  # double space: not 9 single-space fields
            ]
        )
        report = ParseReport()
        entries = score.parse_submission_text(text, "sub.zip/pose_s1.txt", report)
        assert [e.name for e in entries] == ["seq1/frame_00000.jpg"]
        assert entries[0].confidence == 5.5
        assert [(p, n) for p, n, _ in report.skipped] == [
            ("sub.zip/pose_s1.txt", n) for n in range(2, 10)
        ]
        reasons = " ".join(r for _, _, r in report.skipped)
        for word in (
            "9 space-separated",
            "NaN",
            "zero norm",
            "'#'",
            ">= 0",
            "pattern",
            "duplicate",
        ):
            assert word in reasons


class TestReadSubmission:
    def test_round_trip(self, tmp_path, tiny_split, helpers):
        files = write_scene_files(tmp_path, tiny_split, helpers, confidence=lambda f: 0.1 + 1 / 3)
        zip_path = write_submission(tmp_path / "submission.zip", files)
        report = ParseReport()
        read = score.read_submission(zip_path, report)
        assert report.skipped == []
        assert sorted(read) == sorted(tiny_split.gt)
        for scene, entries in read.items():
            assert len(entries) == len(tiny_split.gt[scene])
            for e in entries:
                ref = helpers.pose_entry(e.name, tiny_split.gt[scene][e.name])
                np.testing.assert_allclose(e.q_wxyz, ref.q_wxyz, atol=5e-7, rtol=0)
                np.testing.assert_allclose(e.t, ref.t, atol=5e-7, rtol=0)
                assert e.confidence == 0.1 + 1 / 3  # exact: written with repr()

    def test_zip_layout_checked(self, tmp_path):
        zip_path = tmp_path / "sub.zip"
        with zipfile.ZipFile(zip_path, "w") as archive:
            archive.writestr("pose_s00001.txt", GOOD + "\n")
            archive.writestr("results/pose_s00002.txt", GOOD + "\n")
            archive.writestr("readme.md", "hi")
        report = ParseReport()
        assert list(score.read_submission(zip_path, report)) == ["s00001"]
        assert [p.split("/")[-1] for p, _, _ in report.skipped] == ["pose_s00002.txt", "readme.md"]

    def test_exception(self, tmp_path):
        (tmp_path / "x.zip").write_text("not a zip")
        with pytest.raises(ValueError, match="not a zip"):
            score.read_submission(tmp_path / "x.zip", ParseReport())
        with pytest.raises(FileNotFoundError):
            score.read_submission(tmp_path / "missing.zip", ParseReport())


class TestScoreScene:
    def test_sampling_by_line_and_failures(self, tmp_path, tiny_split, helpers):
        scene = MapFreeScene(tiny_split.root / "val" / "s00000")
        sampled = scene.query_frames()
        assert sampled == ["seq1/frame_00000.jpg", "seq1/frame_00006.jpg", "seq1/frame_00013.jpg"]
        files = write_scene_files(tmp_path, tiny_split, helpers, drop={"seq1/frame_00006.jpg"})
        entries = score.parse_submission_text(files["s00000"].read_text(), "f", ParseReport())
        result = score.score_scene(scene, entries)
        assert result.frames == ["seq1/frame_00000.jpg", "seq1/frame_00013.jpg"]
        assert result.failures == ["seq1/frame_00006.jpg"]
        assert (
            result.t_err_m.max() < 1e-5
            and result.r_err_deg.max() < 1e-3
            and result.vcre_px.max() < 1e-3
        )

    def test_missing_file_fails_every_frame(self, tiny_split):
        scene = MapFreeScene(tiny_split.root / "val" / "s00001")
        result = score.score_scene(scene, None)
        # official: the unsampled pose list (12 query lines), not the 3 sampled frames
        assert result.frames == [] and result.failures == sorted(tiny_split.gt["s00001"])
        assert len(result.failures) == 12 and len(scene.query_frames()) == 3


class TestAggregate:
    def test_average_median_and_failures(self):
        a = score.SceneScore(
            "a",
            ["f0", "f1", "f2"],
            np.array([0.1, 1.0, 3.0]),
            np.array([1.0, 2.0, 9.0]),
            np.array([10.0, 20.0, 200.0]),
            np.array([3.0, 2.0, 1.0]),
        )
        b = score.SceneScore(
            "b",
            ["f0"],
            np.array([3.0]),
            np.array([4.0]),
            np.array([80.0]),
            np.array([0.5]),
            failures=["f5"],
        )
        c = score.SceneScore("c", failures=["f0"])  # no estimate: no median
        out = score.aggregate([a, b, c])
        assert list(out) == list(score.OFFICIAL_KEYS)
        assert out[score.KEY_T] == pytest.approx((1.0 + 3.0) / 2)
        assert out[score.KEY_R] == pytest.approx((2.0 + 4.0) / 2)
        assert out[score.KEY_VCRE] == pytest.approx((20.0 + 80.0) / 2)
        assert out[score.KEY_POSE_PREC] == pytest.approx(1 / 6)  # only a/f0: 0.1 m, 1 deg
        assert out[score.KEY_VCRE_PREC] == pytest.approx(3 / 6)
        assert out[score.KEY_COVERAGE] == pytest.approx(4 / 6)
        # VCRE: confidences 3, 2, 1, 0.5 -> correct, correct, wrong, correct
        assert out[score.KEY_VCRE_AUC] == pytest.approx((1 + 1 + 2 / 3 + 3 / 4) / 6)


class TestScoreSubmission:
    def test_perfect_submission(self, tmp_path, tiny_split, helpers):
        zip_path = write_submission(
            tmp_path / "s.zip", write_scene_files(tmp_path, tiny_split, helpers)
        )
        results, scores = score.score_submission(zip_path, tiny_split.root, "val")
        assert results[score.KEY_POSE_PREC] == 1.0 and results[score.KEY_POSE_AUC] == 1.0
        assert results[score.KEY_VCRE_PREC] == 1.0 and results[score.KEY_VCRE_AUC] == 1.0
        assert results[score.KEY_COVERAGE] == 1.0
        assert results[score.KEY_T] < 1e-5 and results[score.KEY_R] < 1e-3
        assert results["details"]["frames"] == 6 and results["details"]["failures"] == 0

    def test_missing_and_unexpected_scenes(self, tmp_path, tiny_split, helpers, logged):
        files = write_scene_files(tmp_path, tiny_split, helpers)
        files["s09999"] = files.pop("s00001")
        zip_path = write_submission(tmp_path / "s.zip", files)
        log = logged("mickey_ros.eval", logging.WARNING)
        results, _ = score.score_submission(zip_path, tiny_split.root, "val")
        assert "s09999" in log.text and "s00001" in log.text
        # 3 sampled frames of s00000 right; the missing s00001 fails all 12 of its query lines
        assert results[score.KEY_POSE_PREC] == pytest.approx(3 / 15)
        assert results[score.KEY_POSE_AUC] == pytest.approx(3 / 15)
        assert results[score.KEY_COVERAGE] == pytest.approx(3 / 15)
        assert results["details"]["failures"] == 12
        assert results["details"]["unexpected_scenes"] == ["s09999"]
        assert results["details"]["missing_scenes"] == ["s00001"]

    def test_wrong_pose_scores_zero(self, tmp_path, tiny_split, helpers):
        def shifted(T):
            T = T.copy()
            T[0, 3] += 0.3  # 30 cm: fails the 25 cm threshold
            return T

        files = write_scene_files(tmp_path, tiny_split, helpers, perturb=shifted)
        results, _ = score.score_submission(
            write_submission(tmp_path / "s.zip", files), tiny_split.root
        )
        assert results[score.KEY_POSE_PREC] == 0.0
        assert results[score.KEY_T] == pytest.approx(0.3, abs=1e-5)

    def test_malformed_lines_warned(self, tmp_path, tiny_split, helpers, logged):
        files = write_scene_files(tmp_path, tiny_split, helpers)
        files["s00000"].write_text(files["s00000"].read_text().replace(" 1.0\n", " nan\n", 1))
        log = logged("mickey_ros.eval", logging.WARNING)
        results, _ = score.score_submission(
            write_submission(tmp_path / "s.zip", files), tiny_split.root
        )
        assert "s.zip/pose_s00000.txt:1: non-numeric, NaN or Inf" in log.text
        assert results["details"]["failures"] == 1

    def test_test_split_rejected(self, tmp_path, helpers):
        split = helpers.write_tiny_split(
            tmp_path / "d", split="test", num_scenes=1, zero_poses=True
        )
        with pytest.raises(ValueError, match="online server"):
            score.score_submission(tmp_path / "any.zip", split.root, "test")
