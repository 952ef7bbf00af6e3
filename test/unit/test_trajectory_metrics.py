"""Tests of replay.trajectory_metrics (issue 5): replay records, summary, TUM, CSV, plot."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch

from mickey_ros.geometry.pose import axis_angle_to_rotmat
from mickey_ros.replay.trajectory_metrics import (
    CSV_COLUMNS,
    R_COLOUR,
    T_COLOUR,
    FrameRecord,
    format_summary,
    partial_note,
    plot_report,
    pose_errors,
    report_figure,
    summarize,
    write_csv,
    write_tum,
)


def _T(rotvec=(0.0, 0.0, 0.0), t=(0.0, 0.0, 0.0)) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = axis_angle_to_rotmat(torch.tensor(rotvec, dtype=torch.float64)).numpy()
    T[:3, 3] = t
    return T


def _record(k: int, valid=True, published=True, t_err=None, r_err=0.0, gt=True) -> FrameRecord:
    T_gt = _T((0, 0.1 * k, 0), (0.1 * k, 0, 1.0))
    rec = FrameRecord(
        stamp_ns=10**9 + k * 200_000_000, valid=valid, published=published,
        T_ref_query=T_gt.copy() if valid else None, confidence=100.0 * k, inlier_ratio=0.05 * k,
        num_inliers=10 * k, inference_ms=12.5, e2e_ms=20.0, reason="ok" if published else "gate",
        T_ref_query_gt=T_gt if gt else None,
    )
    if valid and gt:
        rec.t_err_m, rec.r_err_deg = (0.0 if t_err is None else t_err), r_err
    return rec


class TestPoseErrors:
    def test_identical(self):
        T = _T((0.1, 0.2, 0.3), (1, 2, 3))
        t_err, r_err = pose_errors(T, T)
        assert t_err == pytest.approx(0.0, abs=1e-12) and r_err == pytest.approx(0.0, abs=1e-5)

    def test_known_offsets(self):
        T_gt = _T((0.1, -0.2, 0.05), (0.5, 0.1, 2.0))
        T_est = T_gt.copy()
        T_est[:3, 3] += [0.03, 0.0, -0.04]  # camera centre moved by 5 cm in the reference frame
        T_est[:3, :3] = T_est[:3, :3] @ _T((0, 0, np.deg2rad(3.0)))[:3, :3]
        t_err, r_err = pose_errors(T_est, T_gt)
        assert t_err == pytest.approx(0.05, abs=1e-12)
        assert r_err == pytest.approx(3.0, abs=1e-5)


class TestSummarize:
    def test_counts_without_ground_truth(self):
        records = [_record(k, gt=False) for k in range(3)] + [_record(3, valid=False,
                                                                      published=False, gt=False)]
        assert summarize(records) == {"processed": 4, "valid": 3, "published": 3,
                                      "valid_share": 0.75, "published_share": 0.75}

    def test_metrics(self):
        records = [
            _record(0, t_err=0.10, r_err=1.0),
            _record(1, t_err=0.30, r_err=1.0),  # translation too large
            _record(2, t_err=0.05, r_err=6.0),  # rotation too large
            _record(3, t_err=0.20, r_err=4.9, published=False),  # correct but gated
            _record(4, valid=False, published=False),  # no estimate: counts as wrong
            _record(5, t_err=0.0, gt=False),  # no ground truth: not scored
        ]
        s = summarize(records)
        assert (s["processed"], s["valid"], s["published"], s["gt_frames"]) == (6, 5, 4, 5)
        assert s["median_t_err_m"] == pytest.approx(0.15)
        assert s["median_r_err_deg"] == pytest.approx((1.0 + 4.9) / 2)
        assert s["precision_25cm_5deg"] == pytest.approx(2 / 5)
        assert s["published_precision_25cm_5deg"] == pytest.approx(1 / 3)

    def test_no_motion_baseline(self):
        """The identity pose scored on every frame with GT, valid estimate or not (issue 15)."""
        records = [_record(k, valid=k != 1, published=k != 1) for k in range(4)]
        records.append(_record(9, gt=False))  # no GT: not scored
        records[0].T_ref_query_gt = _T((0, 0.01, 0), (0.1, 0, 0.1))  # a near-still frame
        s = summarize(records)
        t_still = sorted([np.hypot(0.1, 0.1)] + [np.hypot(0.1 * k, 1.0) for k in (1, 2, 3)])
        assert s["no_motion_median_t_err_m"] == pytest.approx((t_still[1] + t_still[2]) / 2)
        assert s["no_motion_median_r_err_deg"] == pytest.approx(np.degrees((0.1 + 0.2) / 2))
        assert s["no_motion_precision_25cm_5deg"] == pytest.approx(1 / 4)

    def test_empty(self):
        s = summarize([])
        assert s["processed"] == 0 and math.isnan(s["valid_share"])


class TestFormatSummary:
    def test_lines(self):
        text = format_summary(summarize([_record(0, t_err=0.1, r_err=2.0), _record(1,
                                                                               valid=False,
                                                                               published=False)]))
        assert text.splitlines() == [
            "frames processed: 2, valid estimate: 1 (50.0%), published after gating: 1 (50.0%)",
            "ground truth for 2 frames: median error 0.100 m / 2.00 deg, precision at 25 cm / "
            "5 deg 50.0% (all frames), 100.0% (published frames)",
            # identity pose: |t| = 1.0 and 1.005 m, rotation 0 and 5.73 deg (0.1 rad)
            "no-motion baseline (identity pose on every frame): median error 1.002 m / 2.86 deg, "
            "precision 0.0%",
        ]


    def test_undefined_values(self):
        text = format_summary(summarize([_record(0, valid=False, published=False)]))
        assert text.splitlines()[1] == (
            "ground truth for 1 frames: median error n/a m / n/a deg, precision at 25 cm / 5 deg "
            "0.0% (all frames), n/a (published frames)")


class TestWriteTum:
    def test_published_poses(self, tmp_path):
        records = [_record(0), _record(1, published=False), _record(2)]
        lines = write_tum(tmp_path / "a" / "t.txt", records).read_text().splitlines()
        assert lines[0] == "# stamp_s tx ty tz qx qy qz qw  (T_ref_query, metres)"
        assert [line.split()[0] for line in lines[1:]] == ["1.000000000", "1.400000000"]
        values = np.array(lines[2].split()[1:], dtype=np.float64)
        np.testing.assert_allclose(values[:3], [0.2, 0, 1.0], atol=1e-9)
        half = 0.1  # rotation 0.2 rad about y: q = (0, sin 0.1, 0, cos 0.1)
        np.testing.assert_allclose(values[3:], [0, np.sin(half), 0, np.cos(half)], atol=1e-9)

    def test_ground_truth(self, tmp_path):
        records = [_record(0), _record(1, valid=False, published=False), _record(2, gt=False)]
        lines = write_tum(tmp_path / "g.txt", records, ground_truth=True).read_text().splitlines()
        assert [line.split()[0] for line in lines[1:]] == ["1.000000000", "1.200000000"]


class TestWriteCsv:
    def test_rows(self, tmp_path):
        records = [_record(1, t_err=0.25, r_err=1.5), _record(2, valid=False, published=False)]
        rows = list(csv.reader(write_csv(tmp_path / "r.csv", records).open()))
        assert tuple(rows[0]) == CSV_COLUMNS
        assert rows[1][:3] == ["1200000000", "1", "1"]
        assert rows[1][3:6] == ["0.100000000", "0.000000000", "1.000000000"]
        assert rows[1][10:] == ["100.000", "0.0500", "10", "12.50", "20.00", "0.2500", "1.500",
                                "ok", "", ""]  # keyframe columns: library mode only (issue 29)
        assert rows[2][3:10] == [""] * 7 and rows[2][15:] == ["", "", "gate", "", ""]


class TestPlotReport:
    def test_png(self, tmp_path):
        records = [_record(k, t_err=0.01 * k, r_err=0.5 * k) for k in range(5)]
        path = plot_report(tmp_path / "p" / "report.png", records, "title")
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000

    def test_without_ground_truth_or_records(self, tmp_path):
        plot_report(tmp_path / "a.png", [_record(0, gt=False)])
        plot_report(tmp_path / "b.png", [])
        assert (tmp_path / "a.png").exists() and (tmp_path / "b.png").exists()


def _drawn(records, **kwargs):
    fig = report_figure(records, "title", 0.1, **kwargs)
    fig.draw_without_rendering()  # lays out: the extents below are the PNG's
    top, err, conf, right = fig.axes
    return fig, top, err, conf, right


class TestReportFigure:
    """Issue 28: report.png's axes, thresholds, legends, ticks and partial runs."""

    def test_twin_axes_and_thresholds_colour_coded_and_labelled(self):
        from matplotlib.colors import same_color

        _, _, err, _, right = _drawn([_record(k, t_err=0.1, r_err=4.0) for k in range(5)])
        assert same_color(err.yaxis.label.get_color(), T_COLOUR)
        assert same_color(right.yaxis.label.get_color(), R_COLOUR)
        assert same_color(err.get_yticklabels()[0].get_color(), T_COLOUR)
        assert same_color(right.get_yticklabels()[0].get_color(), R_COLOUR)
        (t_line,) = [line for line in err.get_lines() if line.get_label() == "25 cm threshold"]
        (r_line,) = [line for line in right.get_lines() if line.get_label() == "5 deg threshold"]
        assert t_line.get_linestyle() != r_line.get_linestyle()
        assert [(t.get_text(), same_color(t.get_color(), T_COLOUR)) for t in err.texts] == [
            ("25 cm", True)]
        assert [(t.get_text(), same_color(t.get_color(), R_COLOUR)) for t in right.texts] == [
            ("5 deg", True)]

    def test_legends_below_the_axes(self):
        _, top, err, conf, _ = _drawn([_record(k, published=k != 2) for k in range(5)])
        for ax in (top, err, conf):
            legend = ax.get_legend().get_window_extent()
            assert legend.y1 <= ax.get_window_extent().y0  # under the x label, not on a curve

    def test_short_run_time_axis_reads(self):
        records = [_record(k) for k in range(2)]
        records[1].stamp_ns = records[0].stamp_ns + 33_000_000  # two frames 33 ms apart
        _, _, err, conf, _ = _drawn(records)
        for ax in (err, conf):
            assert ax.get_xlim() == pytest.approx((-0.02, 1.0))
            lo, hi = ax.get_xlim()
            ticks = [t for t in ax.get_xticks() if lo - 1e-9 <= t <= hi + 1e-9]
            assert ticks == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
            boxes = sorted((label.get_window_extent() for label in ax.get_xticklabels()
                            if label.get_text()), key=lambda b: b.x0)
            assert all(a.x1 < b.x0 for a, b in zip(boxes, boxes[1:]))  # no label runs into the next

    def test_partial_run_is_marked(self):
        records = [_record(k) for k in range(5)]
        fig, _, err, conf, _ = _drawn(records, partial="interrupted after 5 of 200 frames")
        assert fig.get_suptitle() == "title\nPARTIAL RUN: interrupted after 5 of 200 frames"
        for ax in (err, conf):
            stops = [line.get_xdata()[0] for line in ax.get_lines()
                     if list(line.get_xdata()) == [0.8, 0.8]]
            assert stops == [pytest.approx(0.8)]  # a line at the last frame, 0.8 s
        assert _drawn(records)[0].get_suptitle() == "title"


class TestPartialNote:
    def test_each_reason_and_a_whole_run(self):
        assert partial_note(12, False, read_stopped="truncated file") == (
            "the bag could be read only in part (12 frames): truncated file")
        assert partial_note(12, True, max_frames=12) == "interrupted (Ctrl-C) after 12 frames"
        assert partial_note(40, False) == ""
