import json

import numpy as np
import pytest

from mickey_ros.eval import report, score

PNG = b"\x89PNG\r\n\x1a\n"


def _scores():
    a = score.SceneScore(
        "s00460",
        ["f0", "f1"],
        np.array([0.1, 2.0]),
        np.array([1.0, 30.0]),
        np.array([20.0, 300.0]),
        np.array([5.0, 1.0]),
        failures=["f2"],
    )
    return [a, score.SceneScore("s00461", failures=["f0"])]


class TestWriteMapfreeReport:
    def test_files_and_tables(self, tmp_path):
        scores = _scores()
        results = score.aggregate(scores)
        results["details"] = {
            "split": "val",
            "submission": "x.zip",
            "scenes": 2,
            "frames": 4,
            "estimates": 2,
            "failures": 2,
            "skipped_lines": ["x.zip/p:3: bad"],
        }
        md = report.write_mapfree_report(tmp_path, results, scores)
        text = md.read_text()
        assert "| s00460 | 3 | 2 | 1.0500 | 15.5000 | 160.0000 | 0.3333 | 0.3333 |" in text
        assert "| s00461 | 1 | 0 | nan | nan | nan | 0.0000 | 0.0000 |" in text
        assert "`x.zip/p:3: bad`" in text
        for png in (report.POSE_PLOT, report.HIST_PLOT):
            assert (tmp_path / png).read_bytes()[:8] == PNG
        metrics = json.loads((tmp_path / "metrics.json").read_text())
        assert metrics[score.KEY_POSE_PREC] == pytest.approx(0.25)
        csv = (tmp_path / "per_frame.csv").read_text().splitlines()
        assert csv[0] == "scene,frame,t_err_m,r_err_deg,vcre_px,confidence"
        assert csv[1] == "s00460,f0,0.100000,1.000000,20.000000,5.0" and csv[3] == "s00460,f2,,,,"


class TestWritePairsReport:
    def test_files(self, tmp_path):
        errors = {"pose_err_deg": np.array([1.0, np.inf]), "t_err_m": np.array([0.2, np.inf])}
        md = report.write_pairs_report(tmp_path, {"AUC@5deg": 0.4, "Pairs": 2}, errors)
        assert "| AUC@5deg | 0.4000 |" in md.read_text()
        assert (tmp_path / report.HIST_PLOT).read_bytes()[:8] == PNG


class TestSummariseSeeds:
    def test_mean_std(self):
        summary = report.summarise_seeds({1: {"a": 1.0, "b": "x"}, 0: {"a": 3.0, "b": "y"}})
        assert summary == {
            "seeds": [0, 1],
            "metrics": {"a": {"mean": 2.0, "std": 1.0, "values": [3.0, 1.0]}},
        }


class TestWriteSeedSummary:
    def test_files(self, tmp_path):
        summary = report.summarise_seeds({0: {"a": 1.0}, 1: {"a": 2.0}})
        md = report.write_seed_summary(tmp_path / "run.v2-seeds0-1", summary)
        assert md.name == "run.v2-seeds0-1.md"
        assert "| a | 1.5000 | 0.5000 |" in md.read_text()
        assert json.loads((tmp_path / "run.v2-seeds0-1.json").read_text()) == summary
