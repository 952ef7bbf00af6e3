"""Relative-pose evaluation of any image-pair list with ground truth (ScanNet-1500 style).

Pair-list lines (whitespace separated, ``#`` comments and blank lines ignored)::

    name0 name1 [rot0 rot1] K0(9, row-major) K1(9) T_0to1(16, row-major)     # 36 or 38 fields
    name0 name1 [rot0 rot1] fx0 fy0 cx0 cy0 fx1 fy1 cx1 cy1 T_0to1(16)       # 26 or 28 fields

The 38-field form is the SuperGlue/LoFTR ScanNet-1500 list (``rot0 rot1`` are EXIF rotations,
all 0 there; other values are rejected). ``T_0to1`` maps camera-0 points into camera 1
(``X_1 = R X_0 + t``, metres): image 0 is the reference, image 1 the query. K must describe the
images as stored under ``images_dir``.

Metrics (reference/mapfree_benchmark.md §3): AUC@5/10/20 deg of max(rotation error, translation
angle error) by the trapezoid rule, and the metric ones that show MicKey's scale: translation
error in metres (camera-centre distance) with its AUC at 0.1/0.5/1 m, recall at (0.1 m, 5 deg),
(0.25 m, 5 deg), (0.5 m, 10 deg), (1 m, 20 deg), scale accuracy A1/A2/A3 and the failure rate.
Failed pairs count as misses everywhere; medians are over the valid estimates.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mickey_ros.estimator.result import PoseEstimate, PoseEstimator
from mickey_ros.eval.common import (
    LOG,
    ModelSettings,
    atomic_write_text,
    build_estimator,
    prepare_run_dir,
)
from mickey_ros.eval.report import summarise_seeds, write_pairs_report, write_seed_summary
from mickey_ros.geometry.metrics import (
    auc_at_thresholds,
    recall_at,
    rotation_error_deg,
    scale_ratio,
    translation_angle_error_deg,
    translation_error,
)
from mickey_ros.mapfree.files import intrinsics_matrix
from mickey_ros.utils.config import config_to_dict
from mickey_ros.utils.images import load_rgb

AUC_THRESHOLDS_DEG = (5.0, 10.0, 20.0)  # ScanNet-1500 protocol
AUC_THRESHOLDS_M = (0.1, 0.5, 1.0)  # map-free-reloc scannet.py metric extras
RECALL_THRESHOLDS = ((0.1, 5.0), (0.25, 5.0), (0.5, 10.0), (1.0, 20.0))  # (metres, degrees)
SCALE_BASE = 1.25  # A_k: scale ratio < 1.25^k


@dataclass(frozen=True)
class PairsEvalConfig:
    """Settings of ``mickey-ros eval pairs``."""

    model: ModelSettings = field(default_factory=ModelSettings)


@dataclass(frozen=True)
class PairGroundTruth:
    """One pair: image names (relative to the images folder), K (3, 3) each, T_0to1 (4, 4)."""

    name0: str
    name1: str
    K0: np.ndarray
    K1: np.ndarray
    T_1_0: np.ndarray


def _parse_pair_line(tokens: list[str], where: str) -> PairGroundTruth:
    if len(tokens) not in (26, 28, 36, 38):
        raise ValueError(
            f"{where}: expected 26, 28, 36 or 38 fields (see docs/evaluation.md), got {len(tokens)}"
        )
    try:
        values = np.array([float(v) for v in tokens[2:]])
    except ValueError:
        raise ValueError(f"{where}: non-numeric value after the two image names") from None
    if len(tokens) in (28, 38):
        if np.any(values[:2] != 0):
            raise ValueError(
                f"{where}: EXIF rotations {values[:2]} are not supported; rotate "
                "the images upright and write 0 0"
            )
        values = values[2:]
    if values.size == 34:
        K0, K1 = values[:9].reshape(3, 3), values[9:18].reshape(3, 3)
    else:
        K0, K1 = intrinsics_matrix(*values[:4]), intrinsics_matrix(*values[4:8])
    T = values[-16:].reshape(4, 4)
    R = T[:3, :3]
    if (
        not np.all(np.isfinite(values))
        or not np.allclose(T[3], [0, 0, 0, 1])
        or not np.allclose(R @ R.T, np.eye(3), atol=1e-3)
    ):
        raise ValueError(
            f"{where}: T_0to1 is not a finite rigid transform (last row 0 0 0 1, "
            "orthonormal rotation)"
        )
    return PairGroundTruth(tokens[0], tokens[1], K0, K1, T)


def read_pairs(path: str | Path) -> list[PairGroundTruth]:
    """Parse a pair list; any malformed line raises ``ValueError`` naming ``file:line``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pair list {path} does not exist")
    pairs = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip() and not line.lstrip().startswith("#"):
            pairs.append(_parse_pair_line(line.split(), f"{path}:{line_no}"))
    if not pairs:
        raise ValueError(f"{path} lists no pairs")
    return pairs


def pair_errors(
    pairs: list[PairGroundTruth], estimates: list[PoseEstimate]
) -> dict[str, np.ndarray]:
    """Per-pair errors (N,) each; invalid estimates get ``inf``.

    Keys: ``r_err_deg``, ``t_ang_err_deg``, ``pose_err_deg`` (max of the two), ``t_err_m``
    (camera-centre distance), ``scale_ratio``, ``valid`` (bool).
    """
    valid = np.array(
        [e.valid and np.all(np.isfinite(e.R)) and np.all(np.isfinite(e.t)) for e in estimates],
        dtype=bool,
    )
    R_est = torch.from_numpy(
        np.stack([np.where(v, e.R, np.eye(3)) for v, e in zip(valid, estimates)])
    ).double()
    t_est = torch.from_numpy(
        np.stack([np.where(v, e.t, 0.0) for v, e in zip(valid, estimates)])
    ).double()
    T_gt = torch.from_numpy(np.stack([p.T_1_0 for p in pairs])).double()
    R_gt, t_gt = T_gt[:, :3, :3], T_gt[:, :3, 3]
    errors = {
        "r_err_deg": rotation_error_deg(R_est, R_gt).numpy(),
        "t_ang_err_deg": translation_angle_error_deg(t_est, t_gt).numpy(),
        "t_err_m": translation_error(R_est, t_est, R_gt, t_gt).numpy(),
        "scale_ratio": scale_ratio(t_est, t_gt).numpy(),
    }
    errors["pose_err_deg"] = np.maximum(errors["r_err_deg"], errors["t_ang_err_deg"])
    for key in errors:
        errors[key] = np.where(valid, errors[key], np.inf)
    errors["valid"] = valid
    return errors


def summarise(errors: dict[str, np.ndarray]) -> dict[str, float]:
    """The pair-list metrics (all in [0, 1] except medians) from ``pair_errors``."""
    valid = errors["valid"]
    metrics: dict[str, float] = {"Pairs": int(valid.size)}
    for thr, auc in zip(
        AUC_THRESHOLDS_DEG, auc_at_thresholds(errors["pose_err_deg"], list(AUC_THRESHOLDS_DEG))
    ):
        metrics[f"AUC@{thr:g}deg"] = auc
    for thr, auc in zip(
        AUC_THRESHOLDS_M, auc_at_thresholds(errors["t_err_m"], list(AUC_THRESHOLDS_M))
    ):
        metrics[f"AUC_t@{thr:g}m"] = auc
    for t_thr, r_thr in RECALL_THRESHOLDS:
        metrics[f"Recall@({t_thr:g}m,{r_thr:g}deg)"] = recall_at(
            errors["t_err_m"], errors["r_err_deg"], t_thr, r_thr
        )
    for k in (1, 2, 3):
        metrics[f"Scale A{k} (<1.25^{k})"] = float(np.mean(errors["scale_ratio"] < SCALE_BASE**k))
    for key, label in (
        ("r_err_deg", "Median rotation error (deg)"),
        ("t_ang_err_deg", "Median translation angle error (deg)"),
        ("t_err_m", "Median translation error (m)"),
    ):
        metrics[label] = float(np.median(errors[key][valid])) if valid.any() else float("nan")
    metrics["Failure rate"] = float(1.0 - valid.mean())
    return metrics


def _load_done(path: Path) -> dict[int, PoseEstimate]:
    """Estimates already in ``estimates.jsonl``; a line cut by an interruption is dropped."""
    done: dict[int, PoseEstimate] = {}
    if not path.is_file():
        return done
    good = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # that pair is estimated again
        good.append(line)
        done[row["index"]] = PoseEstimate(
            valid=row["valid"],
            R=np.array(row["R"]),
            t=np.array(row["t"]),
            confidence=row["confidence"],
            reason=row.get("reason"),
        )
    atomic_write_text(path, "".join(line + "\n" for line in good))  # appends start on a new line
    return done


def _estimate_all(
    pairs: list[PairGroundTruth],
    images_dir: Path,
    estimator: PoseEstimator,
    results_path: Path,
    done: dict[int, PoseEstimate],
    progress: bool = True,
) -> None:
    reference_key = None
    with results_path.open("a", encoding="utf-8") as out:
        for i, pair in enumerate(tqdm(pairs, unit="pair", disable=not progress)):
            if i in done:
                continue
            key = (pair.name0, pair.K0.tobytes())
            if key != reference_key:  # consecutive pairs often share image 0: keep its features
                estimator.set_reference(load_rgb(images_dir / pair.name0), pair.K0)
                reference_key = key
            estimate = estimator.estimate(load_rgb(images_dir / pair.name1), pair.K1)
            done[i] = estimate
            row = {
                "index": i,
                "valid": bool(estimate.valid),
                "R": np.asarray(estimate.R).tolist(),
                "t": np.asarray(estimate.t).tolist(),
                "confidence": float(estimate.confidence),
                "reason": estimate.reason,
            }
            out.write(json.dumps(row) + "\n")
            out.flush()


def run_name(cfg: PairsEvalConfig, pairs_file: str | Path) -> str:
    """Run folder name, e.g. ``pairs-scannet_test_1500-mickey-rnative-fp32-seed0``."""
    return f"pairs-{Path(pairs_file).stem}-{cfg.model.tag}"


def main(
    cfg: PairsEvalConfig,
    pairs_file: str | Path,
    images_dir: str | Path,
    out_dir: str | Path,
    estimator: PoseEstimator | None = None,
    progress: bool = True,
) -> dict:
    """Estimate every pair, then write metrics.json, report.md and plots to the run folder.

    Per-pair estimates are appended to ``estimates.jsonl`` as they finish; a rerun skips them.

    Returns:
        The metrics dict (see ``summarise``).
    """
    pairs, images_dir = read_pairs(pairs_file), Path(images_dir)
    if not images_dir.is_dir():
        raise FileNotFoundError(f"images folder {images_dir} does not exist")
    run_config = {
        "pairs_eval": config_to_dict(cfg),
        "pairs": str(pairs_file),
        "images": str(images_dir),
    }
    run_dir = prepare_run_dir(out_dir, run_name(cfg, pairs_file), run_config)
    results_path = run_dir / "estimates.jsonl"
    done = _load_done(results_path)
    LOG.info("%d pairs, %d already estimated", len(pairs), len(done))
    if len(done) < len(pairs):
        estimator = build_estimator(cfg.model) if estimator is None else estimator
        _estimate_all(pairs, images_dir, estimator, results_path, done, progress)
    errors = pair_errors(pairs, [done[i] for i in range(len(pairs))])
    metrics = summarise(errors)
    write_pairs_report(run_dir, metrics, errors, cfg.model.label)
    return metrics


def evaluate(
    cfg: PairsEvalConfig,
    pairs_file: str | Path,
    images_dir: str | Path,
    out_dir: str | Path,
    num_seeds: int = 1,
    estimator_factory: Callable[[ModelSettings], PoseEstimator] | None = None,
    progress: bool = True,
) -> dict:
    """``main`` for seeds ``cfg.model.seed .. + num_seeds - 1``; mean and std when more than one.

    Returns:
        ``{"per_seed": {seed: metrics}, "summary": summary or None}``.
    """
    if num_seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {num_seeds}")
    per_seed = {}
    for k in range(num_seeds):
        cfg_k = replace(cfg, model=cfg.model.with_seed(cfg.model.seed + k))
        estimator = estimator_factory(cfg_k.model) if estimator_factory else None
        per_seed[cfg_k.model.seed] = main(cfg_k, pairs_file, images_dir, out_dir, estimator,
                                          progress)
    summary = None
    if num_seeds > 1:
        summary = summarise_seeds(per_seed)
        seeds = f"seeds{min(per_seed)}-{max(per_seed)}"
        stem = f"pairs-{Path(pairs_file).stem}-{cfg.model.base_tag}-{seeds}"
        write_seed_summary(Path(out_dir) / stem, summary)
    return {"per_seed": per_seed, "summary": summary}
