"""``mickey-ros dataset``: robot bags -> a Map-free-layout training set (``main``).

Stages: keyframes streamed to a staging folder (``frames``), continuous parts cut into time
blocks per split and pairs scored (``pairs``), scene folders written (``layout``), summary and
plots (``summary``). Everything is written to a staging area unique to the process beside
``out`` and renamed to ``out`` at the end (``utils.outputs``), so an interrupted or refused
conversion never leaves a dataset that looks complete, and two conversions to one ``out`` never
write into each other's files.
"""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from mickey_ros.dataset.config import DatasetConfig, DatasetError
from mickey_ros.dataset.frames import CollectResult, FrameRecord, collect_frames
from mickey_ros.dataset.layout import write_eval_scene, write_train_scene
from mickey_ros.dataset.pairs import SOURCES, eval_groups, score_pairs, split_blocks
from mickey_ros.dataset.summary import plot_pairs, plot_trajectory, summary_text, write_summary
from mickey_ros.utils.outputs import (
    discard_staging,
    is_empty_directory,
    publish_directory,
    staging_path,
)

LOG = logging.getLogger("mickey_ros.dataset")
NOT_METRIC_FRACTION = 0.5  # more jumps than this fraction of frames: the poses are not metric


def _check_out(out: Path) -> None:
    if out.exists() and not is_empty_directory(out):
        what = ("already holds a dataset" if (out / "summary.json").exists()
                or (out / "train").exists() else "exists and is not empty")
        raise DatasetError(f"output directory {out} {what}; choose another --out or delete it")


def _check_frames(result: CollectResult, cfg: DatasetConfig) -> None:
    report = result.report
    if result.posed == 0:
        reasons = "; ".join(f"{n} {r} (e.g. {report.examples[r]})"
                            for r, n in report.dropped.items()) or "the bag has no image"
        raise DatasetError(f"no camera frame has a pose in {cfg.fixed_frame!r}: {reasons}")
    if result.posed >= 10 and result.jumps > NOT_METRIC_FRACTION * result.posed:
        raise DatasetError(
            f"the poses jump at {result.jumps} of {result.posed} frames (faster than "
            f"{cfg.max_speed_mps} m/s or {cfg.max_turn_dps} deg/s): are they metric (metres)? "
            "Scale them to metres or raise --max-speed")


def _motion_text(frames: list[FrameRecord]) -> str:
    if not frames:
        return "no frame was kept"
    T = np.stack([f.T_fixed_camera for f in frames])
    extent = np.linalg.norm(T[:, :3, 3] - T[0, :3, 3], axis=1).max()
    return f"{len(frames)} keyframe(s), the camera moved at most {extent:.2f} m from its start"


class _Writer:
    """Scene folders of every (part, split), numbered s00000, s00001, ... across splits."""

    def __init__(self, root: Path, staging: Path, cfg: DatasetConfig) -> None:
        self.root, self.staging, self.cfg = root, staging, cfg
        self.count = 0
        self.stats = {s: Counter() for s in cfg.split_names}
        self.train_pairs: list = []
        self.label: dict[int, str] = {}  # frame index -> split it went to

    def _scene_dir(self, split: str) -> Path:
        path = self.root / split / f"s{self.count:05d}"
        self.count += 1
        self.stats[split]["scenes"] += 1
        return path

    def part(self, split: str, frames: list[FrameRecord]) -> None:
        if len(frames) < 2:
            return
        pairs = score_pairs(frames, self.cfg)
        stats = self.stats[split]
        if split == "train":
            kept = pairs.select(pairs.overlap > self.cfg.min_stored_overlap)
            write_train_scene(self._scene_dir(split), self.staging, frames, kept, 0.0)
            self.train_pairs.append(kept)
            stats["frames"] += len(frames)
            stats["pairs"] += len(kept.a)
            stats.update({SOURCES[s]: int(n) for s, n in zip(*np.unique(kept.source,
                                                                       return_counts=True))})
            self.label.update({f.index: split for f in frames})
            return
        groups, _ = eval_groups(len(frames), pairs, self.cfg.eval_min_overlap)
        overlap = pairs.lookup()
        for ref, queries in groups:
            write_eval_scene(self._scene_dir(split), self.staging, frames[ref],
                             [frames[q] for q in queries], [overlap[ref, q] for q in queries])
            stats["frames"] += 1 + len(queries)
            stats["pairs"] += len(queries)
            source = SOURCES[0] if frames[ref].depth_small is not None else SOURCES[1]
            stats[source] += len(queries)
            self.label.update({frames[i].index: split for i in (ref, *queries)})


def _write_parts(writer: _Writer, frames: list[FrameRecord], cfg: DatasetConfig) -> None:
    for segment in sorted({f.segment for f in frames}):
        part = [f for f in frames if f.segment == segment]
        split = split_blocks(np.array([f.stamp_ns for f in part]), cfg.split_fractions,
                             cfg.guard_s)
        for k, name in enumerate(cfg.split_names):
            writer.part(name, [f for f, s in zip(part, split) if s == k])


def _summary(cfg: DatasetConfig, bags: Sequence[Path], result: CollectResult,
             writer: _Writer) -> dict:
    report = result.report
    notes = list(result.notes)
    for bag, issues in report.bag_issues.items():
        if issues.stopped:
            last = max((f.stamp_ns for f in result.frames if f.bag == bag), default=None)
            notes.append(f"{bag}: {issues.stopped}; converted what was readable"
                         + (f" (last kept frame at {last} ns)" if last else ""))
        if issues.count:
            notes.append(f"{bag}: {issues.count} message(s) could not be decoded and were skipped")
    dropped = dict(report.dropped)
    left_out = len(result.frames) - len(writer.label)
    if left_out:
        dropped["between splits or without a partner"] = left_out
    splits = {}
    for name, stats in writer.stats.items():
        sources = ", ".join(f"{s}: {stats[s]}" for s in SOURCES if stats[s]) or "none"
        splits[name] = {"scenes": stats["scenes"], "frames": stats["frames"],
                        "pairs": stats["pairs"], "sources": sources}
        if name != "train" and not stats["pairs"]:
            notes.append(f"{name}: no held-out pairs; record longer or lower --eval-min-overlap")
    return {
        "bags": [str(b) for b in bags], "image_topic": report.image_topic,
        "camera_frame": report.camera_frame, "camera_convention": result.convention,
        "fixed_frame": cfg.fixed_frame, "frames_read": report.frames_read,
        "frames_posed": result.posed, "frames_kept": len(writer.label),
        "scenes": len({f.segment for f in result.frames}), "jumps": result.jumps,
        "dropped": dropped, "splits": splits, "notes": notes,
        "config": asdict(cfg),
    }


def _plots(out: Path, result: CollectResult, writer: _Writer, cfg: DatasetConfig) -> None:
    tables = writer.train_pairs
    cat = (lambda f: np.concatenate([getattr(t, f) for t in tables])) if tables else \
        (lambda f: np.zeros(0))
    plot_pairs(out / "pairs.png", cat("baseline_m"), cat("angle_deg"), cat("overlap"))
    xy = np.array([f.T_fixed_camera[:2, 3] for f in result.frames]).reshape(-1, 2)
    labels = [writer.label.get(f.index, "left out") for f in result.frames]
    plot_trajectory(out / "trajectory.png", xy, labels, cfg.fixed_frame)


def main(
    cfg: DatasetConfig, bags: Sequence[str | Path], out: str | Path, progress: bool = True
) -> Path:
    """Convert ``bags`` into the Map-free layout at ``out``; returns ``out``.

    Raises:
        DatasetError, BagError (ValueError), FileNotFoundError: one line naming the problem;
            nothing is left at ``out``.
    """
    cfg.check()
    out = Path(out)
    bags = [Path(b) for b in bags]
    _check_out(out)
    tmp = staging_path(out)
    staging = tmp / "_staging"
    staging.mkdir(parents=True)
    kept = False
    try:
        result = collect_frames(cfg, bags, staging, progress)
        _check_frames(result, cfg)
        writer = _Writer(tmp, staging, cfg)
        _write_parts(writer, result.frames, cfg)
        if not writer.stats["train"]["pairs"]:
            raise DatasetError(f"no training pairs: {_motion_text(result.frames)}; the robot "
                               "must move (and see the same place from several poses)")
        summary = _summary(cfg, bags, result, writer)
        write_summary(tmp, summary)
        _plots(tmp, result, writer, cfg)
        shutil.rmtree(staging)
        try:  # an empty directory given as --out is replaced, anything else refused
            publish_directory(tmp, out, replace=True, replaceable=is_empty_directory)
        except FileExistsError as err:  # the finished dataset stays where the message says
            kept = True
            raise DatasetError(f"{err}; another conversion wrote {out} meanwhile?") from None
    finally:
        if not kept:
            discard_staging(tmp)
    LOG.info("%s", summary_text(summary))
    return out
