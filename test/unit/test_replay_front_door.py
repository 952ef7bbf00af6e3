"""Replay's front door (issue 15): free default output name, the model named, a readable report."""

from __future__ import annotations

import numpy as np
import pytest
from test_replay import PoseDouble, _cfg, write_scene_bag
from test_trajectory_metrics import _record

from mickey_ros.replay.run import default_output, replay
from mickey_ros.replay.trajectory_metrics import report_figure


@pytest.fixture(scope="module")
def scene_bag(tmp_path_factory):
    return write_scene_bag(tmp_path_factory.mktemp("front") / "scene")


class TestDefaultOutput:
    def test_second_replay_gets_a_free_name(self, scene_bag):
        first = replay(_cfg(), scene_bag, None, PoseDouble()).out_bag
        second = replay(_cfg(), scene_bag, None, PoseDouble()).out_bag
        assert first.name == "scene-replay-custom-relative"
        assert second.name == "scene-replay-custom-relative-2"
        assert default_output(_cfg(), scene_bag).name == "scene-replay-custom-relative-3"

    def test_overwrite_reuses_the_name(self, scene_bag):
        assert default_output(_cfg(overwrite=True), scene_bag).name == (
            "scene-replay-custom-relative")


class TestReportNamesModel:
    def test_model_line_and_baseline(self, tmp_path, scene_bag):
        double = PoseDouble(offset_m=(0.1, 0.0, 0.0))
        double.model_name = "demo_model.ckpt (demo model: for trying the tool, not for real use)"
        result = replay(_cfg(), scene_bag, tmp_path / "o", double)
        lines = result.report().splitlines()
        assert lines[0] == f"model: {double.model_name}"
        assert result.model == double.model_name
        baseline = [line for line in lines if line.startswith("no-motion baseline")]
        s = result.summary
        assert baseline == [
            f"no-motion baseline (identity pose on every frame): median error "
            f"{s['no_motion_median_t_err_m']:.3f} m / {s['no_motion_median_r_err_deg']:.2f} deg, "
            f"precision {s['no_motion_precision_25cm_5deg']:.1%}"]
        assert s["median_t_err_m"] == pytest.approx(0.1, abs=1e-9)  # the double's offset

    def test_estimator_without_a_name(self, tmp_path, scene_bag):
        result = replay(_cfg(), scene_bag, tmp_path / "o", PoseDouble())
        assert result.report().splitlines()[0] == "model: custom estimator"


class TestReportFigure:
    def test_panels_titles_units_legends(self):
        records = [_record(k, t_err=0.01 * k, r_err=0.5 * k) for k in range(5)]
        fig = report_figure(records, "mickey-ros replay of bag (tf_mode relative), model: m",
                            min_confidence=0.1)
        top, err, conf, err_rot = fig.axes
        assert fig._suptitle.get_text() == "mickey-ros replay of bag (tf_mode relative), model: m"
        assert [ax.get_title() for ax in (top, err, conf)] == [
            "query camera position, top view", "error against ground truth (lower is better)",
            "confidence and quality gate"]
        assert (err.get_xlabel(), err.get_ylabel(), err_rot.get_ylabel()) == (
            "time since first frame (s)", "translation error (m)", "rotation error (deg)")
        assert [t.get_text() for t in err.get_legend().get_texts()] == [
            "translation error (m)", "translation, no-motion baseline (m)", "25 cm threshold",
            "rotation error (deg)", "rotation, no-motion baseline (deg)", "5 deg threshold"]
        assert [t.get_text() for t in conf.get_legend().get_texts()] == [
            "inlier ratio (every frame)", "published (passed the gate)",
            "gate: min_confidence 0.1"]
        baseline_t = err.get_lines()[1].get_ydata()  # identity pose: |camera centre| = |t|
        np.testing.assert_allclose(baseline_t, [np.hypot(0.1 * k, 1.0) for k in range(5)],
                                   atol=1e-12)

    def test_top_view_shows_the_estimates_the_gate_held_back(self):
        records = [_record(0), _record(1), _record(2, published=False),
                   _record(3, published=False), _record(4, valid=False, published=False)]
        top = report_figure(records, min_confidence=0.1).axes[0]
        assert [t.get_text() for t in top.get_legend().get_texts()] == [
            "ground truth", "estimate (published)", "estimate (held back by the gate)",
            "reference camera"]
        _, published, held, _ = top.get_lines()
        # x right and z forward of the reference camera: _record k sits at (0.1 k, 0, 1)
        np.testing.assert_allclose(published.get_xdata(), [0.0, 0.1])
        np.testing.assert_allclose(held.get_xdata(), [0.2, 0.3])  # the invalid frame has no pose
        np.testing.assert_allclose(held.get_ydata(), [1.0, 1.0])
        only_published = report_figure(records[:2]).axes[0]
        assert "estimate (held back by the gate)" not in [
            t.get_text() for t in only_published.get_legend().get_texts()]
