"""Run an estimator over a Map-free split and write the leaderboard ``submission.zip``.

For every scene the reference ``seq0/frame_00000.jpg`` is set once (its features are cached by
the estimator) and every 5th query line of ``poses.txt`` is estimated in batches. Each scene's
``pose_<scene>.txt`` is written as soon as the scene finishes; a rerun skips finished scenes.

An invalid estimate is written as the identity pose with confidence 0 (``write_invalid``): the
benchmark counts a missing line as a failure, which lowers precision *and* the AUC ceiling, while
a zero-confidence guess is ranked last and can only help (reference/mapfree_benchmark.md §1.4).
"""

from __future__ import annotations

import math
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mickey_ros.estimator.result import PoseEstimate, PoseEstimator
from mickey_ros.eval import score
from mickey_ros.eval.common import (
    LOG,
    ModelSettings,
    atomic_write_text,
    build_estimator,
    prepare_run_dir,
    write_json,
)
from mickey_ros.eval.report import summarise_seeds, write_seed_summary
from mickey_ros.mapfree.dataset import SAMPLE_STEP, MapFreeScene, list_scenes
from mickey_ros.mapfree.files import PoseEntry, format_pose_line

IDENTITY_Q_WXYZ = np.array([1.0, 0.0, 0.0, 0.0])
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed member dates: the same poses give a byte-identical zip


@dataclass(frozen=True)
class MapfreeEvalConfig:
    """Settings of ``mickey-ros eval mapfree``."""

    model: ModelSettings = field(default_factory=ModelSettings)
    split: str = "val"  # val has ground truth; test is scored only by the online server
    batch_size: int = 8  # query frames per estimate_batch call
    sample_step: int = SAMPLE_STEP  # official single-frame track: every 5th query line
    scenes: tuple[str, ...] | None = None  # a subset of scene ids; None = the whole split
    write_invalid: bool = True  # invalid estimate -> identity pose, confidence 0 (not a failure)

    @property
    def run_name(self) -> str:
        """Folder name carrying the settings, e.g. ``mapfree-val-mickey-rnative-fp16-seed0``."""
        return f"mapfree-{self.split}-{self.model.tag}"


def submission_entry(frame: str, estimate: PoseEstimate, write_invalid: bool) -> PoseEntry | None:
    """The submission line for one estimate; None when an invalid one is left out.

    Non-finite poses or confidences count as invalid.
    """
    q_wxyz = np.asarray(estimate.q_wxyz, dtype=np.float64) if estimate.valid else IDENTITY_Q_WXYZ
    t = np.asarray(estimate.t, dtype=np.float64)
    finite = np.all(np.isfinite(q_wxyz)) and np.all(np.isfinite(t))
    if estimate.valid and finite and math.isfinite(estimate.confidence):
        return PoseEntry(frame, q_wxyz, t, max(float(estimate.confidence), 0.0))
    if not write_invalid:
        return None
    return PoseEntry(frame, IDENTITY_Q_WXYZ, np.zeros(3), 0.0)


def write_submission(zip_path: str | Path, scene_files: dict[str, Path]) -> Path:
    """Zip per-scene pose files as ``pose_<scene>.txt`` at the archive root (deterministic bytes).

    Args:
        zip_path: the archive to write.
        scene_files: ``{scene_id: path of its pose file}``.
    """
    zip_path = Path(zip_path)
    tmp = zip_path.with_name(zip_path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for scene in sorted(scene_files):
            info = zipfile.ZipInfo(f"pose_{scene}.txt", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, Path(scene_files[scene]).read_bytes())
    tmp.replace(zip_path)
    return zip_path


def _load_batches(
    scene: MapFreeScene, frames: list[str], batch_size: int, pool: ThreadPoolExecutor
) -> Iterator[tuple[list[str], list[np.ndarray], list[np.ndarray]]]:
    """Batches of (frames, RGB images, Ks); the next batch decodes while the current one runs."""
    chunks = [frames[i : i + batch_size] for i in range(0, len(frames), batch_size)]
    pending = pool.map(scene.load_rgb, chunks[0]) if chunks else None
    for i, chunk in enumerate(chunks):
        images = list(pending)
        if i + 1 < len(chunks):
            pending = pool.map(scene.load_rgb, chunks[i + 1])
        yield chunk, images, [scene.K(frame) for frame in chunk]


def _estimate_same_size(
    estimator: PoseEstimator, images: list[np.ndarray], Ks: list[np.ndarray]
) -> list[PoseEstimate]:
    """``estimate_batch`` on runs of equally sized images (a batch must share one size)."""
    out: list[PoseEstimate] = []
    start = 0
    for end in range(1, len(images) + 1):
        if end == len(images) or images[end].shape != images[start].shape:
            out.extend(estimator.estimate_batch(images[start:end], Ks[start:end]))
            start = end
    return out


def _run_scene(
    scene: MapFreeScene,
    estimator: PoseEstimator,
    cfg: MapfreeEvalConfig,
    pool: ThreadPoolExecutor,
    progress: tqdm,
) -> tuple[list[PoseEntry], dict]:
    start = time.perf_counter()
    estimator.set_reference(scene.load_rgb(scene.reference_frame), scene.K(scene.reference_frame))
    frames = scene.query_frames(cfg.sample_step)
    entries: list[PoseEntry] = []
    reasons: Counter[str] = Counter()
    for chunk, images, Ks in _load_batches(scene, frames, cfg.batch_size, pool):
        for frame, estimate in zip(chunk, _estimate_same_size(estimator, images, Ks)):
            if not estimate.valid:
                reasons[estimate.reason or "unknown"] += 1
            entry = submission_entry(frame, estimate, cfg.write_invalid)
            if entry is not None:
                entries.append(entry)
        progress.update(len(chunk))
    stats = {
        "scene": scene.name,
        "query_frames": len(frames),
        "invalid": sum(reasons.values()),
        "invalid_reasons": dict(reasons),
        "seconds": round(time.perf_counter() - start, 3),
    }
    return entries, stats


def main(
    cfg: MapfreeEvalConfig,
    data_root: str | Path,
    out_dir: str | Path,
    estimator: PoseEstimator | None = None,
    progress: bool = True,
) -> Path:
    """Estimate every evaluated query frame of ``cfg.split`` and write the submission.

    Args:
        cfg: run settings; ``cfg.model`` builds the estimator unless ``estimator`` is given.
        data_root: folder holding ``train/ val/ test/`` in the Map-free layout.
        out_dir: parent of the run folder ``cfg.run_name``.
        estimator: a ready ``PoseEstimator`` (e.g. a test double); None loads ``cfg.model``.
        progress: show a progress bar.

    Returns:
        Path of ``<out_dir>/<run_name>/submission.zip``.
    """
    if cfg.batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {cfg.batch_size}")
    scenes = list_scenes(data_root, cfg.split, cfg.scenes)
    if not scenes:
        raise FileNotFoundError(f"no scenes found in {Path(data_root) / cfg.split}")
    run_dir = prepare_run_dir(out_dir, cfg.run_name, cfg)
    scene_dir = run_dir / "scenes"
    scene_dir.mkdir(exist_ok=True)
    files = {s.name: scene_dir / f"pose_{s.name}.txt" for s in scenes}
    todo = [s for s in scenes if not files[s.name].is_file()]
    LOG.info("%d scenes, %d already done", len(scenes), len(scenes) - len(todo))
    if todo and estimator is None:
        estimator = build_estimator(cfg.model)
    total = sum(len(s.query_frames(cfg.sample_step)) for s in todo)
    with ThreadPoolExecutor(max_workers=4) as pool, tqdm(
        total=total, unit="frame", disable=not progress
    ) as bar:
        for scene in todo:
            bar.set_description(scene.name)
            entries, stats = _run_scene(scene, estimator, cfg, pool, bar)
            write_json(scene_dir / f"{scene.name}.json", stats)
            lines = [format_pose_line(e.name, e.q_wxyz, e.t, e.confidence) for e in entries]
            atomic_write_text(files[scene.name], "".join(line + "\n" for line in lines))
            if stats["invalid"]:
                LOG.info(
                    "%s: %d invalid estimates %s",
                    scene.name,
                    stats["invalid"],
                    stats["invalid_reasons"],
                )
    submission = write_submission(run_dir / "submission.zip", files)
    LOG.info("wrote %s", submission)
    return submission


def evaluate(
    cfg: MapfreeEvalConfig,
    data_root: str | Path,
    out_dir: str | Path,
    num_seeds: int = 1,
    estimator_factory: Callable[[ModelSettings], PoseEstimator] | None = None,
    progress: bool = True,
) -> dict:
    """Submissions for seeds ``cfg.model.seed .. + num_seeds - 1``, each scored if GT exists.

    Each seed's score (metrics.json, report.md, plots) lands in ``<run>/score/``; with more than
    one seed the mean and std go to ``<out>/mapfree-<split>-<model>-seeds<a>-<b>.{json,md}``.

    Returns:
        ``{"submissions": {seed: path}, "per_seed": {seed: results}, "summary": dict | None}``;
        ``per_seed`` is empty for a split without ground truth (test).
    """
    if num_seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {num_seeds}")
    scored = any(s.has_ground_truth for s in list_scenes(data_root, cfg.split, cfg.scenes))
    if not scored:
        LOG.info("split %s has no ground truth: writing submissions only", cfg.split)
    submissions, per_seed = {}, {}
    for k in range(num_seeds):
        cfg_k = replace(cfg, model=cfg.model.with_seed(cfg.model.seed + k))
        estimator = estimator_factory(cfg_k.model) if estimator_factory else None
        submission = main(cfg_k, data_root, out_dir, estimator, progress)
        submissions[cfg_k.model.seed] = submission
        if scored:
            results = score.main(
                submission, data_root, cfg.split, submission.parent / "score", cfg.scenes,
                cfg.model.label,
            )
            per_seed[cfg_k.model.seed] = {k: v for k, v in results.items() if k != "details"}
    summary = None
    if num_seeds > 1 and per_seed:
        summary = summarise_seeds(per_seed)
        stem = f"mapfree-{cfg.split}-{cfg.model.base_tag}-seeds{min(per_seed)}-{max(per_seed)}"
        write_seed_summary(Path(out_dir) / stem, summary)
    return {"submissions": submissions, "per_seed": per_seed, "summary": summary}
