"""Evaluation reports: JSON, Markdown (summary and per-scene tables) and PNG plots.

Plots use ``matplotlib.figure.Figure`` directly (no pyplot, no global backend switch), so writing
a report never changes the plotting state of the caller.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from mickey_ros.eval import scene_score as sc
from mickey_ros.eval.common import atomic_write_text, write_json
from mickey_ros.eval.scene_score import SceneScore
from mickey_ros.geometry.metrics import precision_recall_curve

POSE_PLOT = "precision_vs_coverage.png"
HIST_PLOT = "error_histograms.png"


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return lines


def _median(x: np.ndarray) -> float:
    return float(np.median(x)) if x.size else float("nan")


def _scene_rows(scores: list[SceneScore], t_thr: float, r_thr: float, v_thr: float) -> list[list]:
    rows = []
    for s in scores:
        total = len(s.frames) + len(s.failures)
        ok_pose = int(np.sum((s.t_err_m < t_thr) & (s.r_err_deg < r_thr)))
        ok_vcre = int(np.sum(s.vcre_px < v_thr))
        rows.append(
            [
                s.name,
                total,
                len(s.frames),
                _median(s.t_err_m),
                _median(s.r_err_deg),
                _median(s.vcre_px),
                ok_pose / total if total else 0.0,
                ok_vcre / total if total else 0.0,
            ]
        )
    return rows


def coverage_steps(recall: np.ndarray, precision: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The precision-coverage curve as drawn: a step per kept set, no point before the first.

    ``precision_recall_curve`` starts at (0, 1), the anchor of the Map-free AUC; drawn, it showed
    precision 1 up to the first kept set even when no frame was correct. Here the first kept
    set's precision holds from coverage 0 (``where="pre"`` steps), so the area under the drawn
    curve is the AUC.

    Args:
        recall: (M + 1,) from ``precision_recall_curve``, starting at 0.
        precision: (M + 1,) likewise, starting at the anchor 1.

    Returns:
        x (M + 1,), y (M + 1,); both empty when M = 0 (no estimate).

    >>> coverage_steps(np.array([0.0, 0.25, 0.5]), np.array([1.0, 0.0, 0.5]))  # exact: copies
    (array([0.  , 0.25, 0.5 ]), array([0. , 0. , 0.5]))
    """
    if len(recall) < 2:
        return np.zeros(0), np.zeros(0)
    return recall, np.r_[precision[1], precision[1:]]


def _counts_line(model: str | None, total: int, failures: int, noun: str) -> str:
    model_part = f"model {model}" if model else "model not recorded"
    return f"{model_part}; {total} {noun}, {failures} without an estimate"


def _plot_coverage(path: Path, curves: dict[str, tuple[np.ndarray, np.ndarray]],
                   subtitle: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    ax = fig.add_subplot()
    for label, (recall, precision) in curves.items():
        x, y = coverage_steps(recall, precision)
        ax.step(x, y, where="pre", marker="o", ms=3, label=label)
    ax.set(
        xlabel="coverage (frames kept / all frames, most confident first)",
        ylabel="precision (correct / kept)",
        xlim=(0, 1),
        ylim=(-0.02, 1.02),
    )
    ax.set_title(f"Precision vs coverage\n{subtitle}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    fig.savefig(path, dpi=100)


def _plot_histograms(path: Path, errors: dict[str, tuple[np.ndarray, float, str]], title: str,
                     noun: str) -> None:
    """One histogram per error: ``{label: (values, threshold, unit)}``, counts of ``noun``."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(4.2 * len(errors), 3.8), layout="constrained")
    for i, (label, (values, threshold, unit)) in enumerate(errors.items()):
        ax = fig.add_subplot(1, len(errors), i + 1)
        finite = values[np.isfinite(values)]
        xlabel = label
        if finite.size:
            upper = max(float(np.percentile(finite, 95)), threshold) * 1.1
            ax.hist(np.clip(finite, 0, upper), bins=40, range=(0, upper))
            above = int(np.sum(finite > upper))
            if above:
                xlabel += f"\n({above} above {upper:.3g} {unit} in the last bin)"
        below = int(np.sum(finite < threshold))
        ax.axvline(threshold, color="r", linestyle="--",
                   label=f"threshold {threshold:g} {unit}: {below} of {finite.size} "
                         f"estimates below")
        ax.set(xlabel=xlabel, ylabel=noun)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts: no 0.5 of a frame
        # above the axes, never over the bars
        ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), frameon=False, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=100)


def write_mapfree_report(out_dir: Path, results: dict, scores: list[SceneScore]) -> Path:
    """Write metrics.json, per_frame.csv, report.md and the two PNGs into ``out_dir``.

    Returns:
        Path of report.md.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "metrics.json", results)
    csv = ["scene,frame,t_err_m,r_err_deg,vcre_px,confidence"]
    for s in scores:
        csv += [
            f"{s.name},{f},{t:.6f},{r:.6f},{v:.6f},{c!r}"
            for f, t, r, v, c in zip(
                s.frames, s.t_err_m, s.r_err_deg, s.vcre_px, s.confidence.tolist()
            )
        ]
        csv += [f"{s.name},{f},,,," for f in s.failures]
    atomic_write_text(out_dir / "per_frame.csv", "\n".join(csv) + "\n")

    def cat(attr: str) -> np.ndarray:
        return np.concatenate([getattr(s, attr) for s in scores]) if scores else np.zeros(0)

    t_err, r_err, vcre_px, conf = (
        cat("t_err_m"),
        cat("r_err_deg"),
        cat("vcre_px"),
        cat("confidence"),
    )
    details = results["details"]
    failures = details["failures"]
    counts = _counts_line(details.get("model"), len(conf) + failures, failures, "frames")
    pose_ok = (t_err < sc.T_THRESHOLD_M) & (r_err < sc.R_THRESHOLD_DEG)
    _plot_coverage(
        out_dir / POSE_PLOT,
        {
            "pose (25 cm, 5 deg)": precision_recall_curve(pose_ok, conf, failures),
            "VCRE < 90 px": precision_recall_curve(vcre_px < sc.VCRE_THRESHOLD_PX, conf, failures),
        },
        counts,
    )
    _plot_histograms(
        out_dir / HIST_PLOT,
        {
            "translation error (m)": (t_err, sc.T_THRESHOLD_M, "m"),
            "rotation error (deg)": (r_err, sc.R_THRESHOLD_DEG, "deg"),
            "VCRE (px)": (vcre_px, sc.VCRE_THRESHOLD_PX, "px"),
        },
        f"Map-free {details['split']} errors of the estimated frames\n{counts}",
        "frames",
    )
    lines = [
        f"# Map-free evaluation: {details['split']}",
        "",
        f"Submission: `{details['submission']}`"
        + (f", model: {details['model']}" if "model" in details else ""),
        f"Scenes {details['scenes']}, sampled frames {details['frames']}, estimates "
        f"{details['estimates']}, failures {details['failures']}, skipped lines "
        f"{len(details['skipped_lines'])}.",
        "",
    ]
    lines += _table(["Metric", "Value"], [[k, results[k]] for k in sc.OFFICIAL_KEYS])
    lines += [
        "",
        f"![precision vs coverage]({POSE_PLOT})",
        "",
        f"![errors]({HIST_PLOT})",
        "",
        "## Per scene",
        "",
    ]
    lines += _table(
        [
            "Scene",
            "Frames",
            "Estimated",
            "Median t (m)",
            "Median R (deg)",
            "Median VCRE (px)",
            "Precision pose",
            "Precision VCRE",
        ],
        _scene_rows(scores, sc.T_THRESHOLD_M, sc.R_THRESHOLD_DEG, sc.VCRE_THRESHOLD_PX),
    )
    if details["skipped_lines"]:
        lines += ["", "## Skipped submission lines", ""]
        lines += [f"- `{entry}`" for entry in details["skipped_lines"]]
    report = out_dir / "report.md"
    atomic_write_text(report, "\n".join(lines) + "\n")
    return report


def write_pairs_report(
    out_dir: Path, metrics: dict, errors: dict[str, np.ndarray], model: str | None = None
) -> Path:
    """Write metrics.json, report.md and an error-histogram PNG for a pair-list evaluation.

    Args:
        out_dir: output folder.
        metrics: the summary from ``pairs.summarise``.
        errors: ``{"pose_err_deg": (N,), "t_err_m": (N,)}``, failures as ``inf``.
        model: the model evaluated (``ModelSettings.label``): metrics.json's ``model`` and the
            report's heading line.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "metrics.json", metrics if model is None else {"model": model, **metrics})
    pose_err = errors["pose_err_deg"]
    failures = int(np.sum(~np.isfinite(pose_err)))
    _plot_histograms(
        out_dir / HIST_PLOT,
        {
            "pose error max(R, t angle) (deg)": (pose_err, 10.0, "deg"),
            "translation error (m)": (errors["t_err_m"], 0.5, "m"),
        },
        f"Relative-pose errors\n{_counts_line(model, pose_err.size, failures, 'pairs')}",
        "pairs",
    )
    lines = ["# Relative-pose evaluation", ""] + ([f"Model: {model}", ""] if model else [])
    lines += _table(["Metric", "Value"], [[k, v] for k, v in metrics.items()])
    lines += ["", f"![errors]({HIST_PLOT})"]
    report = out_dir / "report.md"
    atomic_write_text(report, "\n".join(lines) + "\n")
    return report


def summarise_seeds(per_seed: dict[int, dict]) -> dict:
    """Mean and population std over seeds of every numeric top-level metric.

    Args:
        per_seed: ``{seed: results}``.

    Returns:
        ``{"seeds": [...], "metrics": {key: {"mean", "std", "values"}}}``.
    """
    seeds = sorted(per_seed)
    keys = [k for k, v in per_seed[seeds[0]].items() if isinstance(v, int | float)]
    metrics = {}
    for key in keys:
        values = [float(per_seed[s][key]) for s in seeds]
        metrics[key] = {
            "mean": float(np.mean(values)),
            "std": float(np.std(values)),
            "values": values,
        }
    return {"seeds": seeds, "metrics": metrics}


def write_seed_summary(path_stem: Path, summary: dict) -> Path:
    """Write ``<stem>.json`` and ``<stem>.md`` (mean +- std per metric); returns the .md path."""
    path_stem.parent.mkdir(parents=True, exist_ok=True)
    write_json(path_stem.with_name(path_stem.name + ".json"), summary)
    rows = [[k, v["mean"], v["std"]] for k, v in summary["metrics"].items()]
    lines = [f"# Over seeds {summary['seeds']}", ""] + _table(["Metric", "Mean", "Std"], rows)
    md = path_stem.with_name(path_stem.name + ".md")
    atomic_write_text(md, "\n".join(lines) + "\n")
    return md
