"""Per-frame records of a replay, their summary against ground truth, and the files made from them.

Errors reuse ``mickey_ros.geometry.metrics`` (the Map-free definitions): translation error is the
distance between the estimated and ground-truth query camera centres in the reference camera
frame (metres), rotation error the geodesic angle between the rotations (degrees).

Convention:
    ``T_ref_query`` (4, 4) is the pose of the query camera in the reference camera frame (what
    ``~/relative_pose`` and the TUM file carry); the estimator's ``T_query_ref`` is its inverse.
    TUM lines are ``stamp_s tx ty tz qx qy qz qw`` of ``T_ref_query``.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mickey_ros.geometry.metrics import rotation_error_deg, translation_error
from mickey_ros.geometry.pose import quat_wxyz_to_xyzw, rotmat_to_quat_wxyz

T_THRESHOLD_M = 0.25  # Map-free "precision at 25 cm / 5 deg"
R_THRESHOLD_DEG = 5.0


@dataclass
class FrameRecord:
    """One live frame handed to the session, and its ground truth when the bag has TF."""

    stamp_ns: int
    valid: bool
    published: bool
    T_ref_query: np.ndarray | None  # (4, 4) estimate; None when invalid
    confidence: float
    inlier_ratio: float
    num_inliers: int
    inference_ms: float
    e2e_ms: float
    reason: str  # 'ok' or why the pose was not published
    T_ref_query_gt: np.ndarray | None = None  # (4, 4) ground truth; None without TF
    t_err_m: float = math.nan  # NaN unless valid and ground truth known
    r_err_deg: float = math.nan
    keyframe: str = ""  # library mode: the keyframe used ('' = none, or single-keyframe mode)
    runner_up_confidence: float = math.nan  # library mode: the second-best keyframe's confidence


def pose_errors(T_ref_query: np.ndarray, T_ref_query_gt: np.ndarray) -> tuple[float, float]:
    """Translation (m, camera-centre distance) and rotation (deg) error of one relative pose.

    Args:
        T_ref_query: (4, 4) estimated pose of the query camera in the reference camera frame.
        T_ref_query_gt: (4, 4) ground truth.
    """
    T_est = torch.linalg.inv(torch.as_tensor(T_ref_query, dtype=torch.float64))  # T_query_ref
    T_gt = torch.linalg.inv(torch.as_tensor(T_ref_query_gt, dtype=torch.float64))
    t_err = translation_error(T_est[:3, :3], T_est[:3, 3], T_gt[:3, :3], T_gt[:3, 3])
    r_err = rotation_error_deg(T_est[:3, :3], T_gt[:3, :3])
    return float(t_err.item()), float(r_err.item())


def no_motion_errors(T_ref_query_gt: np.ndarray) -> tuple[float, float]:
    """Errors (m, deg) of the no-motion baseline: the identity pose ("the camera did not move")."""
    return pose_errors(np.eye(4), T_ref_query_gt)


def _share(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else math.nan


def summarize(records: list[FrameRecord]) -> dict[str, float | int]:
    """Counts and metrics of a replay.

    Keys: ``processed``, ``valid``, ``published``, ``valid_share`` and ``published_share`` (of the
    processed frames); with ground truth also ``gt_frames`` (processed frames with GT),
    ``median_t_err_m`` and ``median_r_err_deg`` (over valid estimates with GT),
    ``precision_25cm_5deg`` (correct / ``gt_frames``: a frame without a valid pose counts as
    wrong, as Map-free counts missing estimates) and ``published_precision_25cm_5deg`` (correct
    among published frames with GT: how well the gate filters), and the no-motion baseline
    (the identity pose, i.e. "the robot did not move", on every frame with GT):
    ``no_motion_median_t_err_m``, ``no_motion_median_r_err_deg`` and
    ``no_motion_precision_25cm_5deg``, so a reader can see what the model adds. NaN where
    undefined.
    """
    n = len(records)
    valid = sum(r.valid for r in records)
    published = sum(r.published for r in records)
    summary: dict[str, float | int] = {
        "processed": n, "valid": valid, "published": published,
        "valid_share": _share(valid, n), "published_share": _share(published, n),
    }
    with_gt = [r for r in records if r.T_ref_query_gt is not None]
    if not with_gt:
        return summary
    errors = np.array([(r.t_err_m, r.r_err_deg) for r in with_gt if r.valid]).reshape(-1, 2)
    correct = [
        r.valid and r.t_err_m < T_THRESHOLD_M and r.r_err_deg < R_THRESHOLD_DEG for r in with_gt
    ]
    correct_published = [c for c, r in zip(correct, with_gt) if r.published]
    still = np.array([no_motion_errors(r.T_ref_query_gt) for r in with_gt])  # (G, 2)
    summary.update({
        "gt_frames": len(with_gt),
        "median_t_err_m": float(np.median(errors[:, 0])) if len(errors) else math.nan,
        "median_r_err_deg": float(np.median(errors[:, 1])) if len(errors) else math.nan,
        "precision_25cm_5deg": _share(sum(correct), len(with_gt)),
        "published_precision_25cm_5deg": _share(sum(correct_published), len(correct_published)),
        "no_motion_median_t_err_m": float(np.median(still[:, 0])),
        "no_motion_median_r_err_deg": float(np.median(still[:, 1])),
        "no_motion_precision_25cm_5deg": float(np.mean(
            (still[:, 0] < T_THRESHOLD_M) & (still[:, 1] < R_THRESHOLD_DEG))),
    })
    return summary


def _fmt(value: float, spec: str) -> str:
    return "n/a" if math.isnan(value) else format(value, spec)


def format_summary(summary: dict[str, float | int]) -> str:
    """Human-readable lines of ``summarize``'s output ('n/a' where a value is undefined)."""
    s = summary
    lines = [
        f"frames processed: {s['processed']}, valid estimate: {s['valid']} "
        f"({_fmt(s['valid_share'], '.1%')}), published after gating: {s['published']} "
        f"({_fmt(s['published_share'], '.1%')})"
    ]
    if "gt_frames" in s:
        lines.append(
            f"ground truth for {s['gt_frames']} frames: median error "
            f"{_fmt(s['median_t_err_m'], '.3f')} m / {_fmt(s['median_r_err_deg'], '.2f')} deg, "
            f"precision at 25 cm / 5 deg {_fmt(s['precision_25cm_5deg'], '.1%')} (all frames), "
            f"{_fmt(s['published_precision_25cm_5deg'], '.1%')} (published frames)"
        )
        lines.append(
            f"no-motion baseline (identity pose on every frame): median error "
            f"{_fmt(s['no_motion_median_t_err_m'], '.3f')} m / "
            f"{_fmt(s['no_motion_median_r_err_deg'], '.2f')} deg, precision "
            f"{_fmt(s['no_motion_precision_25cm_5deg'], '.1%')}"
        )
    return "\n".join(lines)


def _tum_line(stamp_ns: int, T: np.ndarray) -> str:
    q_xyzw = quat_wxyz_to_xyzw(rotmat_to_quat_wxyz(torch.as_tensor(T[:3, :3]))).numpy()
    values = " ".join(f"{v:.9f}" for v in (*T[:3, 3], *q_xyzw))
    return f"{stamp_ns // 10**9}.{stamp_ns % 10**9:09d} {values}"


def write_tum(path: Path, records: list[FrameRecord], ground_truth: bool = False) -> Path:
    """TUM trajectory of the published poses (or, with ``ground_truth``, of every GT pose).

    Lines: ``stamp_s tx ty tz qx qy qz qw`` of ``T_ref_query``; compare with evo:
    ``evo_ape tum poses.gt.txt poses.txt``.
    """
    lines = [
        _tum_line(r.stamp_ns, r.T_ref_query_gt if ground_truth else r.T_ref_query)
        for r in records
        if (r.T_ref_query_gt is not None if ground_truth else r.published)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# stamp_s tx ty tz qx qy qz qw  (T_ref_query, metres)\n" + "".join(
        line + "\n" for line in lines))
    return path


CSV_COLUMNS = (
    "stamp_ns", "valid", "published", "tx", "ty", "tz", "qx", "qy", "qz", "qw", "confidence",
    "inlier_ratio", "num_inliers", "inference_ms", "e2e_ms", "t_err_m", "r_err_deg", "reason",
    "keyframe", "runner_up_confidence",
)


def write_csv(path: Path, records: list[FrameRecord]) -> Path:
    """One row per processed frame (``CSV_COLUMNS``); pose = ``T_ref_query``, empty if invalid."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for r in records:
            pose = [""] * 7
            if r.T_ref_query is not None:
                pose = _tum_line(0, r.T_ref_query).split()[1:]
            writer.writerow([
                r.stamp_ns, int(r.valid), int(r.published), *pose, f"{r.confidence:.3f}",
                f"{r.inlier_ratio:.4f}", r.num_inliers, f"{r.inference_ms:.2f}", f"{r.e2e_ms:.2f}",
                "" if math.isnan(r.t_err_m) else f"{r.t_err_m:.4f}",
                "" if math.isnan(r.r_err_deg) else f"{r.r_err_deg:.3f}", r.reason, r.keyframe,
                "" if math.isnan(r.runner_up_confidence) else f"{r.runner_up_confidence:.3f}",
            ])
    return path


def partial_note(processed: int, interrupted: bool, max_frames: int = 0,
                 read_stopped: str | None = None) -> str:
    """Why a replay covers only part of its bag, for ``plot_report``'s ``partial`` ('' if whole).

    Args:
        processed: frames processed.
        interrupted: Ctrl-C ended the run.
        max_frames: the ``--max-frames`` limit (0: none).
        read_stopped: why reading the bag stopped early (``ReadIssues.stopped``), e.g. a
            truncated file.

    >>> partial_note(27, True)
    'interrupted (Ctrl-C) after 27 frames'
    >>> partial_note(40, False, max_frames=40), partial_note(40, False, max_frames=100)
    ('stopped at --max-frames 40', '')
    """
    if interrupted:
        return f"interrupted (Ctrl-C) after {processed} frames"
    if read_stopped:
        return f"the bag could be read only in part ({processed} frames): {read_stopped}"
    if max_frames and processed >= max_frames:
        return f"stopped at --max-frames {max_frames}"
    return ""


T_COLOUR, R_COLOUR = "tab:red", "tab:purple"  # translation: left axis; rotation: right axis
MIN_TIME_SPAN_S = 1.0  # a short run's time axis still reads 0, 0.2, ... 1 s, not 0.0000 ...
PARTIAL_COLOUR = "tab:orange"


def plot_report(
    path: Path, records: list[FrameRecord], title: str = "", min_confidence: float | None = None,
    partial: str = "",
) -> Path:
    """Write ``report_figure`` as a PNG; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    report_figure(records, title, min_confidence, partial).savefig(path, dpi=110)
    return path


def report_figure(
    records: list[FrameRecord], title: str = "", min_confidence: float | None = None,
    partial: str = "",
) -> Any:
    """The report: trajectory top view, errors over time, confidence over time.

    Readable on its own: each panel has a title, axes with units and a legend below it (never
    over the data). The top view is the x-z plane of the reference camera (x right, z forward)
    with the estimated query camera positions (published, and hollow where the gate held them
    back) and the ground truth; the error panel shows the model's translation (left axis, red)
    and rotation (right axis, purple) errors beside the no-motion baseline (identity pose) and
    the 25 cm / 5 deg thresholds, each labelled on its own axis; the confidence panel shows the
    inlier ratio and the gate.

    Args:
        records: the replay's frames.
        title: the figure title (e.g. bag, model and tf_mode).
        min_confidence: the gate's inlier-ratio threshold, drawn when given.
        partial: why the run covers only part of the bag (interrupted, ``--max-frames``, a
            truncated bag); '' for a whole run. Shown in the title and at the last frame.

    Returns:
        The matplotlib ``Figure`` (no pyplot state: safe in threads and tests).
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(14, 5.6), layout="constrained")
    top, err, conf = fig.subplots(1, 3)
    t0 = records[0].stamp_ns if records else 0
    time_s = np.array([(r.stamp_ns - t0) / 1e9 for r in records])
    _plot_top_view(top, records)
    _plot_errors(err, records, time_s)
    _plot_confidence(conf, records, time_s, min_confidence)
    for ax in (err, conf):
        _time_axis(ax, time_s, partial)
    if partial:
        fig.suptitle(f"{title}\nPARTIAL RUN: {partial}" if title else f"PARTIAL RUN: {partial}",
                     color=PARTIAL_COLOUR)
    elif title:
        fig.suptitle(title)
    return fig


def _legend_below(ax, handles: list | None = None) -> None:
    """The legend under the axes (in two columns), where it cannot cover a curve."""
    handles = handles if handles is not None else ax.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], fontsize=8, ncol=2, frameon=False,
              loc="upper center", bbox_to_anchor=(0.5, -0.14))


def _time_axis(ax, time_s: np.ndarray, partial: str) -> None:
    """0 to the last frame (at least ``MIN_TIME_SPAN_S``) in about 6 round ticks.

    A partial run's last frame is marked.
    """
    from matplotlib.ticker import MaxNLocator

    end = float(time_s.max()) if len(time_s) else 0.0
    span = max(end, MIN_TIME_SPAN_S)
    ax.set_xlim(-0.02 * span, span)  # a margin: the first frame's marker is not cut in half
    ax.xaxis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]))
    ax.set_xlabel("time since first frame (s)")
    if partial and len(time_s):
        ax.axvline(end, color=PARTIAL_COLOUR, lw=1.5)
        ax.annotate("run stopped", (end, 1.0), xycoords=("data", "axes fraction"),
                    xytext=(-3, -3), textcoords="offset points", ha="right", va="top",
                    color=PARTIAL_COLOUR, fontsize=8)


def _plot_confidence(ax, records: list[FrameRecord], time_s: np.ndarray,
                     min_confidence: float | None) -> None:
    ratio = np.array([r.inlier_ratio for r in records])
    published = np.array([r.published for r in records], dtype=bool)
    ax.plot(time_s, ratio, "-", color="tab:green", label="inlier ratio (every frame)")
    ax.plot(time_s[published], ratio[published], "o", ms=3, color="tab:blue",
            label="published (passed the gate)")
    if min_confidence is not None:
        ax.axhline(min_confidence, color="k", ls="--", lw=0.8,
                   label=f"gate: min_confidence {min_confidence:g}")
    ax.set(ylabel="inlier ratio (soft inliers / samples)", title="confidence and quality gate",
           ylim=(0, None))
    _legend_below(ax)


def _plot_top_view(ax, records: list[FrameRecord]) -> None:
    gt = np.array([r.T_ref_query_gt[:3, 3] for r in records if r.T_ref_query_gt is not None])
    est = np.array([r.T_ref_query[:3, 3] for r in records if r.published]).reshape(-1, 3)
    # valid estimates the gate held back: without them a strict gate looks like a robot that
    # never moved (the gate's effect is the confidence panel's subject)
    held = np.array([r.T_ref_query[:3, 3] for r in records
                     if not r.published and r.T_ref_query is not None]).reshape(-1, 3)
    if len(gt):
        ax.plot(gt[:, 0], gt[:, 2], "-", color="0.3", label="ground truth")
    ax.plot(est[:, 0], est[:, 2], ".", color="tab:blue", label="estimate (published)")
    if len(held):
        ax.plot(held[:, 0], held[:, 2], "o", mfc="none", ms=4, color="tab:blue", alpha=0.6,
                label="estimate (held back by the gate)")
    ax.plot([0], [0], "r^", label="reference camera")
    ax.set(xlabel="x (m, right of the reference camera)",
           ylabel="z (m, forward of the reference camera)",
           title="query camera position, top view")
    ax.set_aspect("equal", adjustable="datalim")
    _legend_below(ax)


def _colour_axis(ax, side: str, colour: str) -> None:
    """Label, ticks and spine of one y axis in its curves' colour."""
    ax.yaxis.label.set_color(colour)
    ax.tick_params(axis="y", colors=colour)
    ax.spines[side].set_color(colour)


def _threshold(ax, value: float, colour: str, ls: str, label: str, side: str) -> Any:
    """A threshold line with its value written at its end on its own axis' side."""
    line = ax.axhline(value, color=colour, ls=ls, lw=1.2, label=f"{label} threshold")
    x, ha = (0.01, "left") if side == "left" else (0.99, "right")
    ax.annotate(label, (x, value), xycoords=("axes fraction", "data"), xytext=(0, 2),
                textcoords="offset points", ha=ha, va="bottom", color=colour, fontsize=8,
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1})
    return line


def _plot_errors(ax, records: list[FrameRecord], time_s: np.ndarray) -> None:
    """Translation error (left axis, m, red) and rotation error (right axis, deg, purple).

    With the no-motion baselines and the thresholds (dash-dot: 25 cm, labelled on the left;
    dotted: 5 deg, labelled on the right).
    """
    t_err = np.array([r.t_err_m for r in records])
    r_err = np.array([r.r_err_deg for r in records])
    still = np.full((len(records), 2), np.nan)
    for k, r in enumerate(records):
        if r.T_ref_query_gt is not None:
            still[k] = no_motion_errors(r.T_ref_query_gt)
    lines = ax.plot(time_s, t_err, ".-", color=T_COLOUR, label="translation error (m)")
    lines += ax.plot(time_s, still[:, 0], "--", color=T_COLOUR, alpha=0.5,
                     label="translation, no-motion baseline (m)")
    lines.append(_threshold(ax, T_THRESHOLD_M, T_COLOUR, "-.", f"{T_THRESHOLD_M * 100:g} cm",
                            "left"))
    ax.set(ylabel="translation error (m)", title="error against ground truth (lower is better)")
    right = ax.twinx()
    lines += right.plot(time_s, r_err, ".-", color=R_COLOUR, label="rotation error (deg)")
    lines += right.plot(time_s, still[:, 1], "--", color=R_COLOUR, alpha=0.5,
                        label="rotation, no-motion baseline (deg)")
    lines.append(_threshold(right, R_THRESHOLD_DEG, R_COLOUR, ":", f"{R_THRESHOLD_DEG:g} deg",
                            "right"))
    right.set_ylabel("rotation error (deg)")
    _colour_axis(ax, "left", T_COLOUR)
    _colour_axis(right, "right", R_COLOUR)
    right.spines["left"].set_color(T_COLOUR)  # the twin's frame is drawn over the first one's
    _legend_below(ax, lines)
