"""Score a Map-free submission the way the official evaluator does (single-frame track).

Written from reference/mapfree_benchmark.md §1.4 (the official code is non-commercial):
ground truth is every 5th query line of ``poses.txt``; submitted lines are matched to it by frame
number (``name[-9:-4]``); a sampled frame without a valid line is a failure. A missing
``pose_<scene>.txt`` fails the whole scene *before* the sampling, as the official evaluator does:
every query line of ``poses.txt`` (distinct frame numbers) counts as a failure, not every 5th.
Malformed lines are skipped with a warning naming the file and line. Translation error =
camera-centre distance, rotation error from quaternions, VCRE with the query's K and the last
intrinsics line's W, H; thresholds are strict.
"""

from __future__ import annotations

import logging
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from mickey_ros.eval.report import write_mapfree_report

# Re-exported: callers read the thresholds, metric names and SceneScore from the scorer.
from mickey_ros.eval.scene_score import (  # noqa: F401
    KEY_COVERAGE,
    KEY_POSE_AUC,
    KEY_POSE_PREC,
    KEY_R,
    KEY_T,
    KEY_VCRE,
    KEY_VCRE_AUC,
    KEY_VCRE_PREC,
    OFFICIAL_KEYS,
    R_THRESHOLD_DEG,
    T_THRESHOLD_M,
    VCRE_THRESHOLD_PX,
    SceneScore,
)
from mickey_ros.geometry.metrics import (
    precision_and_auc,
    quat_angle_error_deg,
    translation_error,
    vcre,
)
from mickey_ros.geometry.pose import pose_from_quat_wxyz
from mickey_ros.mapfree.dataset import MapFreeScene, frame_number, list_scenes
from mickey_ros.mapfree.files import ParseReport, PoseEntry, parse_pose_line

LOG = logging.getLogger("mickey_ros.eval")

def parse_submission_text(text: str, label: str, report: ParseReport) -> list[PoseEntry]:
    """Valid lines of one ``pose_<scene>.txt``; the others go to ``report`` as ``label:line``."""
    entries: list[PoseEntry] = []
    seen: set[int] = set()
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if "#" in line:
            report.add(label, line_no, "line contains '#'")
            continue
        parsed = parse_pose_line(line.strip(), with_confidence=True)
        if isinstance(parsed, str):
            report.add(label, line_no, parsed)
            continue
        try:
            number = frame_number(parsed.name)
        except ValueError as err:
            report.add(label, line_no, str(err))
            continue
        if number in seen:
            report.add(label, line_no, f"duplicate frame {number}; keeping the first")
            continue
        seen.add(number)
        entries.append(parsed)
    return entries


_ZIP_DAMAGE = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, UnicodeDecodeError)


def _zip_texts(path: Path, report: ParseReport) -> dict[str, str]:
    """``{member: text}`` of the ``pose_<scene>.txt`` files at the root of a submission zip.

    Raises:
        ValueError: not a zip, or a damaged one (bad CRC, truncated, not UTF-8), naming the file.
    """
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a zip archive; pass the submission.zip")
    texts: dict[str, str] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                if member.endswith("/"):
                    continue
                if "/" in member or not (member.startswith("pose_") and member.endswith(".txt")):
                    report.add(f"{path}/{member}", 0, "ignored: need pose_<scene>.txt at zip root")
                    continue
                texts[member] = archive.read(member).decode("utf-8")
    except _ZIP_DAMAGE as err:
        raise ValueError(
            f"{path} is damaged ({type(err).__name__}: {err}); re-create the submission zip"
        ) from None
    return texts


def read_submission(path: str | Path, report: ParseReport) -> dict[str, list[PoseEntry]]:
    """``{scene_id: entries}`` from a submission zip (files at its root) or a folder of files.

    Members that are not ``pose_<scene>.txt`` at the root are reported and ignored.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: not a zip archive, or a damaged one / a file that is not UTF-8 text.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"submission {path} does not exist")
    if path.is_dir():
        texts = {}
        for file in sorted(path.glob("pose_*.txt")):
            try:
                texts[file.name] = file.read_text(encoding="utf-8")
            except UnicodeDecodeError as err:
                raise ValueError(f"{file} is not UTF-8 text ({err})") from None
    else:
        texts = _zip_texts(path, report)
    return {
        name[len("pose_") : -len(".txt")]: parse_submission_text(text, f"{path}/{name}", report)
        for name, text in texts.items()
    }


def score_scene(
    scene: MapFreeScene, estimates: list[PoseEntry] | None, sample_step: int = 5
) -> SceneScore:
    """Errors of one scene's estimates against its sampled ground truth.

    Args:
        scene: the ground-truth scene.
        estimates: parsed submission lines; None when the scene's file is missing: then every
            query frame (distinct frame numbers, unsampled) is a failure, as officially.
        sample_step: the official every-5th-line sampling.
    """
    if estimates is None:  # official compute_scene_metrics returns before subsampling
        unsampled = {frame_number(f): f for f in scene.query_frames(1)}
        return SceneScore(scene.name, failures=list(unsampled.values()))
    by_number = {frame_number(e.name): e for e in estimates}
    width, height = scene.image_size
    result = SceneScore(scene.name)
    gt, est = [], []
    for frame in scene.query_frames(sample_step):
        match = by_number.get(frame_number(frame))
        if match is None:
            result.failures.append(frame)
        else:
            result.frames.append(frame)
            gt.append(scene.pose(frame))
            est.append(match)
    if not est:
        return result

    def stack(entries: list[PoseEntry], attr: str) -> torch.Tensor:
        return torch.from_numpy(np.stack([getattr(e, attr) for e in entries])).double()

    q_gt, q_est = stack(gt, "q_wxyz"), stack(est, "q_wxyz")
    T_gt = pose_from_quat_wxyz(q_gt, stack(gt, "t"))
    T_est = pose_from_quat_wxyz(q_est, stack(est, "t"))
    K = torch.from_numpy(np.stack([scene.K(f) for f in result.frames])).double()
    result.t_err_m = translation_error(
        T_est[:, :3, :3], T_est[:, :3, 3], T_gt[:, :3, :3], T_gt[:, :3, 3]
    ).numpy()
    result.r_err_deg = quat_angle_error_deg(q_est, q_gt).numpy()
    result.vcre_px = vcre(T_est, T_gt, K, width, height).numpy()
    result.confidence = np.array([e.confidence for e in est], dtype=np.float64)
    return result


def aggregate(scores: list[SceneScore]) -> dict[str, float]:
    """The official summary over all scenes (keys ``OFFICIAL_KEYS``)."""
    t_err = np.concatenate([s.t_err_m for s in scores]) if scores else np.zeros(0)
    r_err = np.concatenate([s.r_err_deg for s in scores]) if scores else np.zeros(0)
    vcre_px = np.concatenate([s.vcre_px for s in scores]) if scores else np.zeros(0)
    confidence = np.concatenate([s.confidence for s in scores]) if scores else np.zeros(0)
    failures = sum(len(s.failures) for s in scores)
    pose_prec, pose_auc = precision_and_auc(
        (t_err < T_THRESHOLD_M) & (r_err < R_THRESHOLD_DEG), confidence, failures
    )
    vcre_prec, vcre_auc = precision_and_auc(vcre_px < VCRE_THRESHOLD_PX, confidence, failures)
    estimated = [s for s in scores if s.frames]  # medians exist only where something was estimated

    def average_median(attr: str) -> float:
        medians = [float(np.median(getattr(s, attr))) for s in estimated]
        return float(np.mean(medians)) if medians else float("nan")

    total = len(t_err) + failures
    return {
        KEY_T: average_median("t_err_m"),
        KEY_R: average_median("r_err_deg"),
        KEY_VCRE: average_median("vcre_px"),
        KEY_POSE_PREC: pose_prec,
        KEY_POSE_AUC: pose_auc,
        KEY_VCRE_PREC: vcre_prec,
        KEY_VCRE_AUC: vcre_auc,
        KEY_COVERAGE: len(t_err) / total if total else 0.0,
    }


def score_submission(
    submission: str | Path,
    data_root: str | Path,
    split: str = "val",
    scenes: tuple[str, ...] | list[str] | None = None,
) -> tuple[dict, list[SceneScore]]:
    """Score a submission against ``data_root/split``; warnings are logged, not raised.

    Returns:
        The result dict (official keys plus ``details``) and the per-scene scores.
    """
    report = ParseReport()
    gt_scenes = list_scenes(data_root, split, scenes)
    if not any(s.has_ground_truth for s in gt_scenes):
        raise ValueError(
            f"split {split!r} has no ground truth (all poses zero); "
            "the test split is scored only by the online server"
        )
    submitted = read_submission(submission, report)
    unexpected = sorted(set(submitted) - {s.name for s in gt_scenes})
    if unexpected:
        LOG.warning("submission has scenes not in %s/%s: %s", data_root, split, unexpected)
    missing = sorted({s.name for s in gt_scenes} - set(submitted))
    if missing:
        LOG.warning("no pose file for %d scenes (every query frame fails, unsampled, as "
                    "officially): %s", len(missing), missing)
    if report.skipped:
        LOG.warning("skipped %d submission lines:\n%s", len(report.skipped), report.summary(20))
    scores = [score_scene(s, submitted.get(s.name)) for s in gt_scenes]
    for scene in gt_scenes:
        if scene.report.skipped:
            LOG.warning("ground truth of %s has bad lines:\n%s", scene.name, scene.report.summary())
    results = aggregate(scores)
    results["details"] = {
        "split": split,
        "submission": str(submission),
        "scenes": len(gt_scenes),
        "frames": sum(len(s.frames) + len(s.failures) for s in scores),
        "estimates": sum(len(s.frames) for s in scores),
        "failures": sum(len(s.failures) for s in scores),
        "skipped_lines": [f"{p}:{n}: {r}" for p, n, r in report.skipped],
        "unexpected_scenes": unexpected,
        "missing_scenes": missing,
    }
    return results, scores


def main(
    submission: str | Path,
    data_root: str | Path,
    split: str = "val",
    out_dir: str | Path | None = None,
    scenes: tuple[str, ...] | list[str] | None = None,
    model: str | None = None,
) -> dict:
    """Score ``submission`` and, with ``out_dir``, write metrics.json, report.md and plots.

    Args:
        submission: submission.zip or a folder of ``pose_<scene>.txt``.
        data_root: folder with the split.
        split: split with ground truth.
        out_dir: where the report goes (None: nothing written).
        scenes: subset of scene ids (None: all).
        model: the model that made the submission (``ModelSettings.label``), recorded in
            ``details`` and the report when known.

    Returns:
        The result dict: the official keys plus ``details``.
    """
    results, scores = score_submission(submission, data_root, split, scenes)
    if model is not None:
        results["details"]["model"] = model
    if out_dir is not None:
        write_mapfree_report(Path(out_dir), results, scores)
    return results
