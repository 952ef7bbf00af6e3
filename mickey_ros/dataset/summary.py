"""The conversion summary a user checks by looking: counts, histograms, the trajectory by split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SPLIT_COLOURS = {"train": "tab:blue", "val": "tab:orange", "test": "tab:green",
                 "left out": "lightgrey"}


def summary_text(summary: dict) -> str:
    """The human-readable lines of ``summary.json`` (also printed by the CLI)."""
    lines = [
        f"bags: {', '.join(summary['bags'])}",
        f"image topic {summary['image_topic']}, camera frame {summary['camera_frame']} "
        f"({summary['camera_convention']}), poses in {summary['fixed_frame']}",
        f"frames: {summary['frames_read']} read, {summary['frames_posed']} with a pose, "
        f"{summary['frames_kept']} kept; {summary['scenes']} continuous part(s), "
        f"{summary['jumps']} jump(s)",
    ]
    lines += [f"  dropped {n}: {reason}" for reason, n in sorted(summary["dropped"].items())]
    for split, info in summary["splits"].items():
        lines.append(f"{split}: {info['scenes']} scene(s), {info['frames']} frames, "
                     f"{info['pairs']} pairs (overlap from {info['sources']})")
    lines += [f"note: {note}" for note in summary["notes"]]
    return "\n".join(lines)


def write_summary(out: Path, summary: dict) -> None:
    """``summary.json`` and ``summary.txt``."""
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (out / "summary.txt").write_text(summary_text(summary) + "\n", encoding="utf-8")


def plot_pairs(path: Path, baseline_m: np.ndarray, angle_deg: np.ndarray,
               overlap: np.ndarray) -> None:
    """Histograms of the stored training pairs' baseline, angle and overlap."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    for ax, values, label in zip(axes, (baseline_m, angle_deg, overlap),
                                 ("baseline (m)", "angle between views (deg)", "overlap")):
        ax.hist(values, bins=30, color="tab:blue")
        ax.set_xlabel(label)
    axes[0].set_ylabel("training pairs")
    fig.suptitle(f"{len(overlap)} training pairs")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_trajectory(path: Path, xy: np.ndarray, split: list[str], fixed_frame: str) -> None:
    """Top view of the camera centres (N, 2) coloured by split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 6))
    labels = np.array(split)
    for name, colour in SPLIT_COLOURS.items():
        sel = labels == name
        if sel.any():
            ax.scatter(xy[sel, 0], xy[sel, 1], s=6, c=colour, label=f"{name} ({sel.sum()})")
    ax.set_xlabel(f"x in {fixed_frame} (m)")
    ax.set_ylabel(f"y in {fixed_frame} (m)")
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(loc="best", fontsize=8)
    ax.set_title("kept frames by split (top view)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
