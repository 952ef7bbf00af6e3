"""Pictures people would rather see than read: matches and depth maps of one estimate."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mickey_ros.estimator.result import PoseEstimate

DIVIDER_PX = 6  # white gap between the two images, so where one ends is plain
DEPTH_PERCENTILES = (2.0, 98.0)  # the shared colour range: a few outlier cells do not flatten it


def _side_by_side(ref: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, int]:
    """Both images on one canvas with a white divider; returns it and the query's x offset."""
    H = max(ref.shape[0], query.shape[0])
    offset = ref.shape[1] + DIVIDER_PX
    canvas = np.full((H, offset + query.shape[1], 3), 255, dtype=np.uint8)
    canvas[: ref.shape[0], : ref.shape[1]] = ref
    canvas[: query.shape[0], offset:] = query
    return canvas, offset


def shared_depth_range(*depths: np.ndarray | None) -> tuple[float, float] | None:
    """One colour range (metres) for all depth maps, so one colour is one depth in each.

    The ``DEPTH_PERCENTILES`` of the finite values of all maps together; None without any.

    >>> lo, hi = shared_depth_range(np.array([[1.0, 2.0]]), np.array([[3.0, np.inf]]), None)
    >>> round(lo, 6), round(hi, 6)
    (1.04, 2.96)
    """
    values = np.concatenate([np.ravel(d) for d in depths if d is not None] or [np.zeros(0)])
    values = values[np.isfinite(values)]
    if not values.size:
        return None
    lo, hi = (float(v) for v in np.percentile(values, DEPTH_PERCENTILES))
    return (lo, hi) if hi > lo else (lo - 0.5, lo + 0.5)  # a flat map still gets a colour bar


def _draw_depths(fig, grid_row, matches: dict) -> None:
    """Both depth maps in one colour range, with one colour bar in metres."""
    depths = [matches.get("depth_ref"), matches.get("depth_query")]
    limits = shared_depth_range(*depths)
    axes, shown = [], None
    for col, (depth, label) in enumerate(zip(depths, ("reference", "query"))):
        ax = fig.add_subplot(grid_row[col])
        if depth is not None and limits is not None:
            shown = ax.imshow(depth, cmap="turbo", vmin=limits[0], vmax=limits[1])
        ax.set_title(f"{label} depth (per 14-px cell)")
        ax.axis("off")
        axes.append(ax)
    if shown is not None:
        # arrows at the ends: cells beyond the percentiles take the end colours
        fig.colorbar(shown, ax=axes, extend="both", shrink=0.9, label="depth (m), both maps")


def describe_estimate(estimate: PoseEstimate, model_name: str = "") -> str:
    """Two lines for a figure title: the pose (translation and rotation) and its source."""
    from mickey_ros.geometry.pose import rotation_angle_deg  # torch: only when drawing

    if not estimate.valid:
        head = f"no pose: {estimate.reason}"
    else:
        angle = rotation_angle_deg(estimate.R)
        t = np.asarray(estimate.t)
        head = (
            f"query relative to reference: t = ({t[0]:.2f}, {t[1]:.2f}, {t[2]:.2f}) m "
            f"(|t| = {np.linalg.norm(t):.2f} m), rotation {angle:.1f} deg\n"
            f"confidence {estimate.confidence:.0f} of {estimate.num_samples} soft inliers "
            f"(ratio {estimate.inlier_ratio:.2f}), {estimate.num_inliers} hard inliers"
        )
    return head + (f"\nmodel: {model_name}" if model_name else "")


def save_estimate_figure(
    ref_rgb: np.ndarray,
    query_rgb: np.ndarray,
    estimate: PoseEstimate,
    out_path: str | Path,
    model_name: str = "",
    max_lines: int = 150,
    seed: int = 0,
) -> Path:
    """Write one PNG: both images with inlier correspondences, and the two depth maps.

    Args:
        ref_rgb: (H0, W0, 3) uint8 reference image.
        query_rgb: (H1, W1, 3) uint8 query image.
        estimate: result of ``RelativePoseEstimator`` run with ``keep_matches=True``.
        out_path: PNG path.
        model_name: shown in the title (which weights produced the pose).
        max_lines: at most this many inlier lines are drawn (random subset, ``seed``).
        seed: subset selection seed.
    """
    from matplotlib.figure import Figure

    matches = estimate.matches or {}
    fig = Figure(figsize=(12, 8), layout="constrained")  # no pyplot: no global backend switch
    grid = fig.add_gridspec(2, 2, height_ratios=[1.2, 1])
    ax = fig.add_subplot(grid[0, :])
    canvas, offset = _side_by_side(ref_rgb, query_rgb)
    ax.imshow(canvas)
    kpts_ref = matches.get("kpts_ref", np.zeros((0, 2)))
    kpts_query = matches.get("kpts_query", np.zeros((0, 2)))
    if len(kpts_ref) > max_lines:
        keep = np.random.default_rng(seed).choice(len(kpts_ref), max_lines, replace=False)
        kpts_ref, kpts_query = kpts_ref[keep], kpts_query[keep]
    for (x0, y0), (x1, y1) in zip(kpts_ref, kpts_query):
        ax.plot([x0, x1 + offset], [y0, y1], "-", color="lime", lw=0.6, alpha=0.8)
    ax.scatter(kpts_ref[:, 0], kpts_ref[:, 1], s=4, c="yellow")
    ax.scatter(kpts_query[:, 0] + offset, kpts_query[:, 1], s=4, c="yellow")
    for x, label in ((0, "reference (keyframe)"), (offset, "query (live)")):
        ax.text(x + 4, 4, label, va="top", fontsize=10, color="white",
                bbox={"facecolor": "black", "alpha": 0.7, "pad": 2})
    drawn = f"green lines: {len(kpts_ref)} of the {estimate.num_inliers} hard-inlier matches"
    ax.set_title(describe_estimate(estimate, model_name) + "\n" + drawn, fontsize=10)
    ax.axis("off")
    _draw_depths(fig, grid[1, :].subgridspec(1, 2), matches)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=110)
    return out_path
