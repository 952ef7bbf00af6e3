import json
from pathlib import Path

import numpy as np
import pytest

from mickey_ros.eval import report, score

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def saved_figures(monkeypatch):
    """{file name: Figure} of every figure the code saves (the PNGs are still written)."""
    from matplotlib.figure import Figure

    figures, save = {}, Figure.savefig

    def record(fig, path, *args, **kwargs):
        figures[Path(path).name] = fig
        return save(fig, path, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", record)
    return figures


def _results(scores, **details):
    results = score.aggregate(scores)
    results["details"] = {"split": "val", "submission": "x.zip", "scenes": len(scores),
                          "frames": 0, "estimates": 0, "failures": 0, "skipped_lines": [],
                          **details}
    return results


def _none_correct():
    """4 estimates, none within 25 cm / 5 deg or 90 px, and one failure."""
    return [score.SceneScore("s00460", ["f0", "f1", "f2", "f3"], np.array([0.5, 2.0, 0.9, 1.2]),
                             np.array([10.0, 30.0, 8.0, 12.0]),
                             np.array([200.0, 300.0, 150.0, 400.0]),
                             np.array([5.0, 1.0, 3.0, 2.0]), failures=["f4"])]


def _integer_ticks(ax) -> bool:
    lo, hi = ax.get_ylim()
    ticks = [t for t in ax.get_yticks() if lo <= t <= hi]
    return len(ticks) >= 2 and all(float(t).is_integer() for t in ticks)


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


    def test_no_correct_frame_draws_precision_zero(self, tmp_path, saved_figures):
        """Issue 28: the curve showed precision 1.0 up to 20-25 % coverage with none correct."""
        scores = _none_correct()
        report.write_mapfree_report(tmp_path, _results(scores, failures=1, model="demo"), scores)
        ax = saved_figures[report.POSE_PLOT].axes[0]
        for line in ax.get_lines():
            x, y = line.get_data()
            assert np.allclose(x[[0, -1]], [0.0, 0.8]) and np.all(np.asarray(y) == 0.0)
        assert ax.get_title() == (
            "Precision vs coverage\nmodel demo; 5 frames, 1 without an estimate")

    def test_histograms_titled_with_units_and_integer_counts(self, tmp_path, saved_figures):
        """Issue 28: no title or model, fractional count ticks, thresholds without units."""
        scores = _none_correct()
        report.write_mapfree_report(tmp_path, _results(scores, failures=1, model="demo"), scores)
        fig = saved_figures[report.HIST_PLOT]
        assert fig.get_suptitle() == ("Map-free val errors of the estimated frames\n"
                                      "model demo; 5 frames, 1 without an estimate")
        labels = [ax.get_legend().get_texts()[0].get_text() for ax in fig.axes]
        assert labels == ["threshold 0.25 m: 0 of 4 estimates below",
                          "threshold 5 deg: 0 of 4 estimates below",
                          "threshold 90 px: 0 of 4 estimates below"]
        for ax in fig.axes:
            assert ax.get_ylabel() == "frames" and _integer_ticks(ax)
            legend_box = ax.get_legend().get_window_extent()
            assert legend_box.y0 >= ax.get_window_extent().y1 - 1  # above the bars, not on them


class TestCoverageSteps:
    def test_first_kept_set_holds_from_zero(self):
        recall, precision = np.array([0.0, 0.25, 0.5, 1.0]), np.array([1.0, 0.0, 0.5, 2 / 3])
        x, y = report.coverage_steps(recall, precision)
        assert x.tolist() == [0.0, 0.25, 0.5, 1.0] and y.tolist() == [0.0, 0.0, 0.5, 2 / 3]

    def test_no_estimate_draws_nothing(self):
        x, y = report.coverage_steps(np.array([0.0]), np.array([1.0]))
        assert x.size == 0 and y.size == 0


class TestWritePairsReport:
    def test_files(self, tmp_path):
        errors = {"pose_err_deg": np.array([1.0, np.inf]), "t_err_m": np.array([0.2, np.inf])}
        md = report.write_pairs_report(tmp_path, {"AUC@5deg": 0.4, "Pairs": 2}, errors)
        assert "| AUC@5deg | 0.4000 |" in md.read_text()
        assert (tmp_path / report.HIST_PLOT).read_bytes()[:8] == PNG

    def test_histogram_counts_pairs_and_names_the_model(self, tmp_path, saved_figures):
        """Issue 28: the pair histogram said "frames" and named no model."""
        errors = {"pose_err_deg": np.array([1.0, 3.0, 12.0, np.inf]),
                  "t_err_m": np.array([0.2, 0.1, 0.7, np.inf])}
        report.write_pairs_report(tmp_path, {"Pairs": 4}, errors, model="demo (mickey_demo_cnn)")
        fig = saved_figures[report.HIST_PLOT]
        assert fig.get_suptitle() == (
            "Relative-pose errors\nmodel demo (mickey_demo_cnn); 4 pairs, 1 without an estimate")
        assert [ax.get_ylabel() for ax in fig.axes] == ["pairs", "pairs"]
        assert all(_integer_ticks(ax) for ax in fig.axes)


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
