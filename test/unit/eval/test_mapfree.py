import json
import zipfile

import numpy as np
import pytest

from mickey_ros.estimator.result import PoseEstimate
from mickey_ros.eval import mapfree, score
from mickey_ros.eval.common import ModelSettings

CFG = mapfree.MapfreeEvalConfig(model=ModelSettings(name="double"), batch_size=2)


class TestSubmissionEntry:
    def test_valid(self):
        R = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
        e = mapfree.submission_entry("f", PoseEstimate(True, R, np.array([1.0, 2, 3]), 7.5), True)
        np.testing.assert_allclose(e.q_wxyz, [np.sqrt(0.5), 0, 0, np.sqrt(0.5)])
        assert e.t.tolist() == [1, 2, 3] and e.confidence == 7.5

    def test_invalid_written_with_zero_confidence(self):
        e = mapfree.submission_entry("f", PoseEstimate.invalid("no matches"), True)
        assert e.q_wxyz.tolist() == [1, 0, 0, 0] and e.t.tolist() == [0, 0, 0]
        assert e.confidence == 0.0
        assert mapfree.submission_entry("f", PoseEstimate.invalid("x"), False) is None

    def test_non_finite_is_invalid(self):
        bad = PoseEstimate(True, np.eye(3), np.array([np.nan, 0, 0]), 3.0)
        assert mapfree.submission_entry("f", bad, True).confidence == 0.0
        inf_conf = PoseEstimate(True, np.eye(3), np.zeros(3), float("inf"))
        assert mapfree.submission_entry("f", inf_conf, True).confidence == 0.0


class TestWriteSubmission:
    def test_layout_and_deterministic_bytes(self, tmp_path):
        (tmp_path / "a.txt").write_text("x\n")
        (tmp_path / "b.txt").write_text("")
        first = mapfree.write_submission(
            tmp_path / "1.zip", {"s2": tmp_path / "b.txt", "s1": tmp_path / "a.txt"}
        )
        second = mapfree.write_submission(
            tmp_path / "2.zip", {"s1": tmp_path / "a.txt", "s2": tmp_path / "b.txt"}
        )
        with zipfile.ZipFile(first) as archive:
            assert archive.namelist() == ["pose_s1.txt", "pose_s2.txt"]
            assert archive.read("pose_s1.txt") == b"x\n"
        assert first.read_bytes() == second.read_bytes()


class TestMain:
    def test_end_to_end_perfect_scores(self, tmp_path, tiny_split, gt_double):
        submission = mapfree.main(CFG, tiny_split.root, tmp_path / "out", gt_double)
        assert (
            submission
            == tmp_path / "out" / "mapfree-val-double-rnative-fp32-seed0" / "submission.zip"
        )
        with zipfile.ZipFile(submission) as archive:
            assert archive.namelist() == ["pose_s00000.txt", "pose_s00001.txt"]
            lines = archive.read("pose_s00000.txt").decode().splitlines()
        assert [line.split()[0] for line in lines] == [
            "seq1/frame_00000.jpg",
            "seq1/frame_00006.jpg",
            "seq1/frame_00013.jpg",
        ]
        assert all(len(line.split(" ")) == 9 for line in lines)
        assert gt_double.references == [
            "s00000/seq0/frame_00000.jpg",
            "s00001/seq0/frame_00000.jpg",
        ]
        assert max(gt_double.batch_sizes) == 2
        results = score.main(submission, tiny_split.root, "val", tmp_path / "score")
        assert results[score.KEY_POSE_PREC] == 1.0 and results[score.KEY_POSE_AUC] == 1.0
        assert results[score.KEY_VCRE_PREC] == 1.0 and results[score.KEY_VCRE_AUC] == 1.0
        assert (
            results[score.KEY_T] < 1e-5
            and results[score.KEY_R] < 1e-3
            and results[score.KEY_VCRE] < 1e-2
        )
        assert (tmp_path / "score" / "report.md").is_file()

    def test_invalid_estimates_written_or_skipped(self, tmp_path, tiny_split, helpers):
        double = helpers.GroundTruthDouble(tiny_split, invalid={"seq1/frame_00006.jpg"})
        submission = mapfree.main(CFG, tiny_split.root, tmp_path / "a", double)
        with zipfile.ZipFile(submission) as archive:
            line = archive.read("pose_s00000.txt").decode().splitlines()[1]
        identity = " ".join(["1.000000"] + ["0.000000"] * 6)
        assert line == f"seq1/frame_00006.jpg {identity} 0.0"
        stats = json.loads((submission.parent / "scenes" / "s00000.json").read_text())
        assert stats["invalid"] == 1 and stats["invalid_reasons"] == {"double: marked invalid": 1}
        results = score.main(submission, tiny_split.root, "val")
        assert results[score.KEY_COVERAGE] == 1.0 and results[score.KEY_POSE_PREC] == pytest.approx(
            4 / 6
        )

        skip_cfg = mapfree.MapfreeEvalConfig(model=CFG.model, write_invalid=False)
        skipped = mapfree.main(skip_cfg, tiny_split.root, tmp_path / "b", double)
        results = score.main(skipped, tiny_split.root, "val")
        assert results[score.KEY_COVERAGE] == pytest.approx(4 / 6)

    def test_resume_skips_finished_scenes(self, tmp_path, tiny_split, helpers):
        first = helpers.GroundTruthDouble(tiny_split)
        submission = mapfree.main(CFG, tiny_split.root, tmp_path, first)
        before = submission.read_bytes()
        (submission.parent / "scenes" / "pose_s00001.txt").unlink()  # as if interrupted there
        second = helpers.GroundTruthDouble(tiny_split)
        mapfree.main(CFG, tiny_split.root, tmp_path, second)
        assert second.references == ["s00001/seq0/frame_00000.jpg"]
        assert submission.read_bytes() == before

    def test_changed_config_refused(self, tmp_path, tiny_split, gt_double):
        mapfree.main(CFG, tiny_split.root, tmp_path, gt_double)
        other = mapfree.MapfreeEvalConfig(model=CFG.model, batch_size=3)
        with pytest.raises(ValueError, match="another config"):
            mapfree.main(other, tiny_split.root, tmp_path, gt_double)

    def test_scene_subset(self, tmp_path, tiny_split, gt_double):
        cfg = mapfree.MapfreeEvalConfig(model=CFG.model, scenes=("s00001",))
        with zipfile.ZipFile(mapfree.main(cfg, tiny_split.root, tmp_path, gt_double)) as archive:
            assert archive.namelist() == ["pose_s00001.txt"]

    def test_exception(self, tmp_path, tiny_split, gt_double):
        with pytest.raises(ValueError, match="batch_size"):
            mapfree.main(
                mapfree.MapfreeEvalConfig(batch_size=0), tiny_split.root, tmp_path, gt_double
            )


class TestEvaluate:
    def test_seeds_mean_and_std(self, tmp_path, tiny_split, helpers):
        seeds_seen = []

        def factory(model):
            seeds_seen.append(model.seed)
            return helpers.GroundTruthDouble(tiny_split)

        out = mapfree.evaluate(
            CFG, tiny_split.root, tmp_path, num_seeds=2, estimator_factory=factory
        )
        assert seeds_seen == [0, 1] and sorted(out["submissions"]) == [0, 1]
        summary = out["summary"]["metrics"][score.KEY_POSE_AUC]
        assert summary == {"mean": 1.0, "std": 0.0, "values": [1.0, 1.0]}
        assert (tmp_path / "mapfree-val-double-rnative-fp32-seeds0-1.md").is_file()
        assert (
            tmp_path / "mapfree-val-double-rnative-fp32-seed1" / "score" / "metrics.json"
        ).is_file()

    def test_test_split_not_scored(self, tmp_path, helpers):
        split = helpers.write_tiny_split(
            tmp_path / "d", split="test", num_scenes=1, zero_poses=True
        )
        cfg = mapfree.MapfreeEvalConfig(model=CFG.model, split="test")
        double = helpers.GroundTruthDouble(split)
        out = mapfree.evaluate(cfg, split.root, tmp_path / "o", estimator_factory=lambda m: double)
        assert out["per_seed"] == {} and out["summary"] is None
        assert out["submissions"][0].is_file()
