#!/usr/bin/env python3
"""Benchmark (not a test): train the CPU demo model and measure it before/after on unseen pairs.

Stages (each can run alone; outputs go to ``--run``):

    render   held-out synthetic pairs with a seed no training or validation pair uses: the
             benchmark set and a set of long views (``HELDOUT_SETS``)
    train    ``mickey-train --config CONFIG [--init INIT]`` (mickey_ros.train.main)
    evaluate the run's initial weights (untrained, or ``--init``), every step checkpoint and an
             identity-pose reference on each held-out set -> <set>_metrics.json
    diagnose matching vs depth of a checkpoint -> diagnosis.json
    gate     held-out errors of the pairs the node's default quality gate accepts vs rejects
    unseen   a checkpoint on scenes and rigs the config does not train on -> unseen_metrics.json
    ablation one row per ``--checkpoint``: pose and pooled depth on each held-out set and the
             forward motion along the demo drive (in process) -> ablation.json
    sensitivity  the held-out pose with GT depth times parts of a checkpoint's depth error
             (scale, low-order distortion, point noise) -> sensitivity.json
    seeds    one row per ``--checkpoint``: each held-out set solved with ``--seeds`` RANSAC
             seeds (one forward pass): per-seed and pooled medians, the default gate on the pool
             -> seeds.json
    plot     learning curves (training losses, held-out errors per checkpoint) -> PNG
    export   the chosen checkpoint without optimiser state, fp16 (``--keep-fp32`` submodules
             fp32) -> demo_model.ckpt

Example (what produced ``mickey_ros/data/demo_model.ckpt``, see docs/training.md)::

    LP_NUM_THREADS=1 OMP_NUM_THREADS=1 python scripts/train_demo.py all --run /work/demo_run
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from tqdm import tqdm

from mickey_ros.geometry.camera import backproject
from mickey_ros.geometry.metrics import rotation_error_deg, translation_error, vcre
from mickey_ros.geometry.pose import rotation_angle
from mickey_ros.geometry.ransac import solve_pose
from mickey_ros.model.checkpoint import load_checkpoint, save_checkpoint
from mickey_ros.synth.pairs import read_pair, write_pairs
from mickey_ros.train.config import load_train_config
from mickey_ros.train.data import make_sample
from mickey_ros.train.loss import (
    depth_supervision,
    gt_matches,
    log_depth_error,
    sample_depth_at,
)
from mickey_ros.train.main import _build_model
from mickey_ros.train.main import main as train_main
from mickey_ros.train.module import MicKeyTrainingModule

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config" / "train" / "demo_cnn.yaml"
HELDOUT_SEED = 2000  # training uses seed 0, in-training validation 1000
# held-out set -> (folder, PairSamplingConfig.long_view_fraction). The benchmark ignores the
# training config's long views, so it stays the set every demo model was measured on; the long
# views (a robot looking down a room, far walls at 5-11 m) measure the far depth the demo needs.
HELDOUT_SETS = {"heldout": ("heldout_pairs", 0.0), "long_views": ("heldout_long_views", 1.0)}
VCRE_SCALED_PX = 30.0  # 90 px at Map-free's 720 px height, scaled to our 240 px


def _collate(samples: list[dict]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([s[k] for s in samples]) for k in samples[0]}


def heldout_batches(pairs_dir: Path, size_wh: tuple[int, int], batch_size: int = 4,
                    with_depth: bool = False) -> list[dict[str, torch.Tensor]]:
    """Batches of the held-out pair files (GT depth only if asked: evaluation never sees it)."""
    samples = []
    for f in sorted(pairs_dir.glob("pair_*.npz")):
        p = read_pair(f)
        depths = (p.depth0, p.depth1) if with_depth else (None, None)
        samples.append(make_sample(p.rgb0, p.rgb1, p.K0, p.K1, p.T_1_0, size_wh, *depths))
    return [_collate(samples[i : i + batch_size]) for i in range(0, len(samples), batch_size)]


def identity_rows(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Errors of the 'no motion' guess R = I, t = 0 (what an uninformed estimator scores)."""
    T_gt = batch["T_1_0"].double()
    t_err = (-(T_gt[:, :3, :3].transpose(1, 2) @ T_gt[:, :3, 3:])).squeeze(-1).norm(dim=-1)
    r_err = torch.rad2deg(rotation_angle(T_gt[:, :3, :3]))
    eye = torch.eye(4, dtype=torch.float64)
    v = torch.stack([
        vcre(eye, T_gt[b], batch["K1_orig"][b].double(), *batch["image_size"][b].tolist())
        for b in range(T_gt.shape[0])
    ])
    return torch.stack([t_err, r_err, v, torch.zeros_like(v)], dim=-1).float()


def summarise(rows: torch.Tensor) -> dict[str, float]:
    """Medians and precisions of (N, 4) rows ``[t_err_m, r_err_deg, vcre_px, confidence]``."""
    e = rows.double().numpy()
    t, r, v = e[:, 0], e[:, 1], e[:, 2]
    return {
        "pairs": int(len(e)),
        "median_t_m": float(np.median(t)),
        "median_R_deg": float(np.median(r)),
        "median_vcre_px": float(np.median(v)),
        "vcre_precision_90px": float(np.mean(v < 90.0)),
        f"vcre_precision_{VCRE_SCALED_PX:g}px": float(np.mean(v < VCRE_SCALED_PX)),
        "pose_precision_25cm_5deg": float(np.mean((t < 0.25) & (r < 5.0))),
        "pose_precision_50cm_10deg": float(np.mean((t < 0.5) & (r < 10.0))),
        "valid_fraction": float(np.mean(np.isfinite(t))),
    }


def evaluate_module(module: MicKeyTrainingModule, batches, seed: int = 0) -> dict[str, float]:
    """Held-out metrics with the inference solver (official settings), seeded per batch."""
    module.eval()
    rows = []
    for i, batch in enumerate(batches):
        gen = torch.Generator().manual_seed(seed + i)
        rows.append(module.evaluate_batch(batch, gen))
    return summarise(torch.cat(rows))


def _module_for(cfg, checkpoint: Path | None, init: Path | None = None) -> MicKeyTrainingModule:
    """``checkpoint``, or without one the run's initial weights: ``init`` (``mickey-train
    --init``), else the random ones ``main()`` builds (same seed, same construction)."""
    if checkpoint is None:
        L.seed_everything(cfg.seed, workers=True)
        return MicKeyTrainingModule(cfg, _build_model(cfg, init, None))
    model, _ = load_checkpoint(checkpoint)
    return MicKeyTrainingModule(cfg, model)


def stage_render(run: Path, cfg, count: int) -> None:
    """Write ``count`` pairs of each ``HELDOUT_SETS`` (seed 2000, the config's rig) if missing."""
    for folder, long_view_fraction in HELDOUT_SETS.values():
        out = run / folder
        if not (out / "pairs.json").exists():
            sampling = replace(cfg.data.synthetic_pairs, long_view_fraction=long_view_fraction)
            write_pairs(out, count, (cfg.data.width, cfg.data.height), HELDOUT_SEED, sampling,
                        previews=False)


def stage_evaluate(run: Path, cfg, every: int = 1, compare: tuple[Path, ...] = (),
                   init: Path | None = None) -> dict:
    """``evaluate_set`` on every ``HELDOUT_SETS``; returns {set name: results}."""
    return {name: evaluate_set(run, cfg, name, every, compare, init) for name in HELDOUT_SETS}


def evaluate_set(run: Path, cfg, name: str, every: int = 1, compare: tuple[Path, ...] = (),
                 init: Path | None = None) -> dict:
    """Identity reference, the run's initial weights (``step_0``: untrained, or ``init``) and the
    step checkpoints on one held-out set.

    Results are cached in ``<name>_metrics.json``: checkpoints already there are skipped, so this
    can run while training goes on. ``every`` keeps only steps that are multiples of it.
    ``compare``: other checkpoints (e.g. an earlier demo model) scored on the same pairs, stored
    as ``compare:<file name>``.
    """
    out = run / f"{name}_metrics.json"
    results = json.loads(out.read_text()) if out.is_file() else {}
    batches = heldout_batches(run / HELDOUT_SETS[name][0], (cfg.data.width, cfg.data.height))
    results["identity_pose"] = summarise(torch.cat([identity_rows(b) for b in batches]))
    if "step_0" not in results:
        t0 = time.perf_counter()
        results["step_0"] = evaluate_module(_module_for(cfg, None, init), batches)
        elapsed = time.perf_counter() - t0
        results["eval_s_per_pair"] = elapsed / results["step_0"]["pairs"]
    for ckpt in tqdm(sorted((run / "checkpoints").glob("step-*.ckpt")), desc=name):
        step = int(ckpt.stem.split("-")[1])
        if step % every or f"step_{step}" in results:
            continue
        results[f"step_{step}"] = evaluate_module(_module_for(cfg, ckpt), batches)
        out.write_text(json.dumps(results, indent=1))
    for ckpt in compare:
        results[f"compare:{ckpt.name}"] = evaluate_module(_module_for(cfg, ckpt), batches)
    out.write_text(json.dumps(results, indent=1))
    return results


def read_log(run: Path) -> list[dict[str, float]]:
    """Training log rows of every ``logs/version_*`` in step order.

    A session resumed from an earlier checkpoint replaces the rows the previous session logged
    from that step on (a crashed session's last steps were retrained).
    """
    rows: list[dict[str, float]] = []
    paths = sorted((run / "logs").glob("version_*/metrics.csv"),
                   key=lambda p: int(p.parent.name.split("_")[1]))
    for path in paths:
        with path.open() as f:
            new = [{k: float(v) for k, v in r.items() if v not in ("", None)}
                   for r in csv.DictReader(f)]
        if new:
            first = min(r["step"] for r in new)
            rows = [r for r in rows if r["step"] < first] + new
    return rows


def heldout_depth_by_step(run: Path, init: Path | None = None) -> dict[int, float]:
    """{step: median keypoint depth error on the held-out pairs} in step order, from the rows
    ``stage_ablation`` wrote in ``run/ablation.json`` for the run's ``step-*.ckpt`` files (and
    for ``init`` as step 0); other checkpoints scored there are left out."""
    scored = run / "ablation.json"
    if not scored.is_file():
        return {}
    depth = {}
    for ckpt, row in json.loads(scored.read_text()).items():
        path = Path(ckpt)
        if path.parent == run / "checkpoints" and path.stem.startswith("step-"):
            depth[int(path.stem.split("-")[1])] = row["heldout"]["median_abs_log_depth_error"]
        elif init is not None and path == init:
            depth[0] = row["heldout"]["median_abs_log_depth_error"]
    return dict(sorted(depth.items()))


def stage_plot(run: Path, out_png: Path, init: Path | None = None) -> None:
    """Learning curves: training losses (CSV log) and held-out metrics per checkpoint (the median
    translation error on the long views too, when ``long_views_metrics.json`` exists; the median
    keypoint depth error of the held-out pairs at the run's checkpoints, and at step 0 of ``init``,
    when ``stage_ablation`` scored them in ``ablation.json``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    log = read_log(run)
    metrics = json.loads((run / "heldout_metrics.json").read_text())
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    curves = (("train/depth", "depth |log z - log z_gt|"),
              ("train/correspondence", "corr. NLL / 5"), ("train/vcre_loss", "VCRE loss (tanh)"))
    for key, label in curves:
        pts = [(r["step"], r[key] / (5.0 if "corr" in key else 1.0)) for r in log if key in r]
        if pts:
            axes[0].plot(*zip(*pts), label=label)
    depth = heldout_depth_by_step(run, init)
    if depth:
        axes[0].plot(*zip(*depth.items()), "ko-", label="held-out keypoint depth")
    axes[0].set(title="training losses", xlabel="step")
    axes[0].legend()
    steps = sorted(int(k.split("_")[1]) for k in metrics if k.startswith("step_"))
    held = [metrics[f"step_{s}"] for s in steps]
    axes[1].plot(steps, [h["median_t_m"] for h in held], "o-", label="median t err (m)")
    long_views = run / "long_views_metrics.json"
    if long_views.is_file():
        lv = json.loads(long_views.read_text())
        lv_steps = [s for s in steps if f"step_{s}" in lv]
        axes[1].plot(lv_steps, [lv[f"step_{s}"]["median_t_m"] for s in lv_steps], "s:", c="C2",
                     label="median t err, long views (m)")
    axes[1].plot(steps, [h["median_R_deg"] / 10 for h in held], "o-", label="median R err (deg/10)")
    axes[1].axhline(metrics["identity_pose"]["median_t_m"], ls="--", c="C0", label="identity t")
    identity = metrics["identity_pose"]
    axes[1].axhline(identity["median_R_deg"] / 10, ls="--", c="C1", label="identity R")
    axes[1].set(title="held-out median errors", xlabel="step")
    axes[1].legend()
    for key in ("vcre_precision_90px", f"vcre_precision_{VCRE_SCALED_PX:g}px",
                "pose_precision_25cm_5deg", "pose_precision_50cm_10deg"):
        axes[2].plot(steps, [h[key] for h in held], "o-", label=key)
    axes[2].set(title="held-out precision", xlabel="step", ylim=(0, 1))
    axes[2].legend()
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=90)


def log_depth_ratio_split(z_pred: torch.Tensor, z_gt: torch.Tensor) -> torch.Tensor:
    """(B, 2) per image: scale offset and residual of the log depth error.

    The offset is the median ``log z - log z_gt``; the residual the median
    ``|log z - log z_gt - offset|`` (the error left once the image's scale is corrected), both
    over the keypoints with a known GT depth.
    """
    rows = []
    for pred, gt in zip(z_pred, z_gt):
        ratio = log_depth_error(pred[gt > 0], gt[gt > 0])
        offset = ratio.median()
        rows.append(torch.stack([offset, (ratio - offset).abs().median()]))
    return torch.stack(rows)


def log_depth_slope(z_pred: torch.Tensor, z_gt: torch.Tensor) -> torch.Tensor:
    """(B,) per image: least-squares slope of ``log z`` on ``log z_gt`` over its keypoints.

    1 when the depth keeps the scene's relative structure; below 1 when it is compressed towards
    the image's typical depth (near too far, far too near), which shortens the translation a
    3D-3D fit finds even when the median error is small.
    """
    slopes = []
    for pred, gt in zip(z_pred, z_gt):
        keep = (gt > 0) & (gt < DEPTH_BINS_M[-1])
        x, y = gt[keep].log(), pred[keep].clamp(min=0.05).log()
        x, y = x - x.mean(), y - y.mean()
        slopes.append((x * y).sum() / (x * x).sum().clamp(min=1e-12))
    return torch.stack(slopes)


DEPTH_BINS_M = (0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 9.0, 100.0)  # GT depth ranges of ``depth_by_range``


def depth_by_range(z_pred: torch.Tensor, z_gt: torch.Tensor) -> dict[str, Any]:
    """Pooled depth errors over every keypoint with a known GT depth (``0 < z_gt < 100`` m).

    ``median_abs_log_error``: the median ``|log z - log z_gt|`` over all keypoints (the
    per-image mean of ``diagnose_batch`` weighs a few badly wrong near points more).
    ``signed_by_gt_depth``: per GT depth range of ``DEPTH_BINS_M``, the keypoint count and the
    median signed ``log z - log z_gt``; positive near and negative far means the depth is
    compressed towards the middle, which shortens every translation along the optical axis.
    """
    valid = (z_gt > 0) & (z_gt < DEPTH_BINS_M[-1])
    gt = z_gt[valid]
    err = log_depth_error(z_pred[valid], gt)
    bins = {}
    for low, high in zip(DEPTH_BINS_M[:-1], DEPTH_BINS_M[1:]):
        sel = (gt >= low) & (gt < high)
        if sel.any():
            bins[f"{low:g}-{high:g} m"] = {"keypoints": int(sel.sum()),
                                           "median_signed_log_error": float(err[sel].median())}
    return {"median_abs_log_error": float(err.abs().median()), "signed_by_gt_depth": bins}


@torch.no_grad()
def diagnose_batch(module: MicKeyTrainingModule, batch, generator,
                   mean_log_depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, 8) rows: matching quality, depth errors and the pose with ground-truth depth.

    Also returns the reference view's predicted and GT depth at its keypoints, (B, N) each, for
    ``depth_by_range``.

    Columns: P mass on GT cells, match accuracy, depth log error, R and t errors with GT depth,
    the depth residual after a per-image scale (``log_depth_ratio_split``), that residual for
    the image-independent depth map ``exp(mean_log_depth)`` (H, W), and the depth's slope
    (``log_depth_slope``). The pose columns give the
    network's P *ground-truth* depth: what the matching alone achieves.
    """
    out = module.forward_pair(batch)
    f0, f1 = out["f0"], out["f1"]
    target, valid = gt_matches(f0.kpts, batch["depth0"], batch["depth1"], batch["K0"],
                               batch["K1"], batch["T_1_0"], f1.grid_hw, 14, 0.05)
    P = out["P"] / out["P"].sum((1, 2), keepdim=True)
    mass = (torch.gather(P, 2, target.unsqueeze(-1)).squeeze(-1) * valid).sum(1)
    hits = (out["match_probs"].argmax(2) == target) & valid
    accuracy = hits.sum(1) / valid.sum(1).clamp(min=1)
    z0 = sample_depth_at(batch["depth0"], f0.kpts)
    z1 = sample_depth_at(batch["depth1"], f1.kpts)
    log_err = torch.stack([depth_supervision(f0.depth[b : b + 1], z0[b : b + 1])
                           for b in range(len(z0))])
    residual = log_depth_ratio_split(f0.depth, z0)[:, 1]
    mean_map = sample_depth_at(mean_log_depth.exp().expand_as(batch["depth0"]), f0.kpts)
    mean_map_residual = log_depth_ratio_split(mean_map, z0)[:, 1]
    X0, X1 = backproject(f0.kpts, z0, batch["K0"]), backproject(f1.kpts, z1, batch["K1"])
    sol = solve_pose(out["P"], X0, X1, module.solver_config, generator)
    R_gt, t_gt = batch["T_1_0"][:, :3, :3], batch["T_1_0"][:, :3, 3]
    r_err = rotation_error_deg(sol.R, R_gt)
    t_err = translation_error(sol.R, sol.t, R_gt, t_gt)
    slope = log_depth_slope(f0.depth, z0)
    rows = torch.stack([mass, accuracy, log_err, r_err, t_err, residual, mean_map_residual, slope],
                       -1)
    return rows, f0.depth, z0


def stage_diagnose(run: Path, cfg, checkpoint: Path, init: Path | None = None) -> dict:
    """Matching vs depth: which one limits the pose of the initial and the trained model."""
    batches = heldout_batches(run / "heldout_pairs", (cfg.data.width, cfg.data.height),
                              with_depth=True)
    # the best image-independent depth map: per-pixel median of the held-out log depths
    depths = torch.cat([torch.cat([b["depth0"], b["depth1"]]) for b in batches])
    log_depths = torch.where(depths > 0, depths.clamp(min=1e-3).log(), torch.nan)
    mean_log_depth = log_depths.nanmedian(0).values.nan_to_num(0.0)
    results = {}
    initial = "untrained" if init is None else f"initial ({init.name})"
    for name, ckpt in ((initial, None), (checkpoint.stem, checkpoint)):
        module = _module_for(cfg, ckpt, init).eval()
        per_batch = [diagnose_batch(module, b, torch.Generator().manual_seed(i), mean_log_depth)
                     for i, b in enumerate(batches)]
        rows = torch.cat([rows for rows, _, _ in per_batch])
        z_pred = torch.cat([z.flatten() for _, z, _ in per_batch])
        z_gt = torch.cat([z.flatten() for _, _, z in per_batch])
        keys = ("P_mass_on_gt", "argmax_match_accuracy", "depth_log_error",
                "R_err_deg_with_gt_depth", "t_err_m_with_gt_depth",
                "depth_residual_after_scale", "image_independent_map_residual_after_scale",
                "depth_slope_log_log")
        results[name] = {k: float(v) for k, v in zip(keys, rows.nanmedian(0).values)}
        results[name]["keypoints"] = depth_by_range(z_pred, z_gt)
    (run / "diagnosis.json").write_text(json.dumps(results, indent=1))
    return results


def stage_speed(run: Path, cfg, steps: int = 6) -> dict:
    """Seconds per pair of each training stage on one held-out batch (after one warm-up step)."""
    batch = heldout_batches(run / "heldout_pairs", (cfg.data.width, cfg.data.height),
                            cfg.batch_size, with_depth=True)[0]
    results = {}
    for name, pose_from in (("supervised_only", 10**9), ("with_pose_objective", 0)):
        cfg_stage = replace(cfg, supervision=replace(cfg.supervision, pose_from_step=pose_from))
        module = _module_for(cfg_stage, None).train()
        times = []
        for _ in range(steps + 1):
            total, logs = module.compute_losses(batch, step=0)
            t0 = time.perf_counter()
            total.backward()
            times.append((logs["time/forward_s"], logs["time/loss_s"], time.perf_counter() - t0))
        fwd, loss, bwd = (float(np.median(v)) / cfg.batch_size for v in zip(*times[1:]))
        results[name] = {"forward_s_per_pair": fwd, "loss_s_per_pair": loss,
                         "backward_s_per_pair": bwd, "pairs_per_s": 1.0 / (fwd + loss + bwd)}
    (run / "speed.json").write_text(json.dumps(results, indent=1))
    return results


def gate_split(rows: torch.Tensor, inlier_ratio: torch.Tensor, threshold: float) -> dict:
    """Median errors of the pairs with ``inlier_ratio >= threshold`` (accepted) and the others.

    Args:
        rows: (N, 4) ``[t_err_m, r_err_deg, vcre_px, confidence]`` (``evaluate_batch``).
        inlier_ratio: (N,) confidence / sampled matches, what the node's gate compares.
        threshold: the gate (``gate.min_confidence``).
    """
    out: dict[str, Any] = {"threshold": threshold}
    accepted = inlier_ratio >= threshold
    for name, keep in (("accepted", accepted), ("rejected", ~accepted)):
        sel = rows[keep].double().numpy()
        out[name] = {"pairs": int(keep.sum()),
                     "median_t_m": float(np.median(sel[:, 0])) if len(sel) else None,
                     "median_R_deg": float(np.median(sel[:, 1])) if len(sel) else None}
    return out


def stage_gate(run: Path, cfg, checkpoint: Path) -> dict:
    """The node's default gate (inlier ratio >= ``GateParams.min_confidence``) on held-out pairs."""
    from mickey_ros.relocalization.params import GateParams

    module = _module_for(cfg, checkpoint).eval()
    batches = heldout_batches(run / "heldout_pairs", (cfg.data.width, cfg.data.height))
    rows = torch.cat([module.evaluate_batch(b, torch.Generator().manual_seed(i))
                      for i, b in enumerate(batches)])
    ratio = rows[:, 3] / module.solver_config.num_samples
    result = gate_split(rows, ratio, GateParams().min_confidence)
    result["inlier_ratio_quartiles"] = ratio.quantile(torch.tensor([0.25, 0.5, 0.75])).tolist()
    (run / "gate.json").write_text(json.dumps(result, indent=1))
    return result


# scenes and rigs the demo config does not train on (the generic pair sampling's ranges)
# long_view_fraction 0 as the benchmark, so every demo config scores the same pairs
UNSEEN = {
    "courtyard_same_rig": {"scene": "courtyard", "long_view_fraction": 0.0},
    "room_other_rigs": {"camera_height_m": (0.5, 1.8), "pitch_deg": (-20.0, 10.0),
                        "max_roll_deg": 5.0, "focal_ratio": (0.75, 0.9),
                        "long_view_fraction": 0.0},
}


def stage_unseen(run: Path, cfg, checkpoint: Path, count: int) -> dict:
    """Held-out metrics and depth error of ``checkpoint`` on each ``UNSEEN`` pair sampling."""
    results = {}
    for name, change in UNSEEN.items():
        pairs = run / f"unseen_{name}"
        if not (pairs / "pairs.json").exists():
            write_pairs(pairs, count, (cfg.data.width, cfg.data.height), HELDOUT_SEED,
                        replace(cfg.data.synthetic_pairs, **change), previews=False)
        module = _module_for(cfg, checkpoint).eval()
        batches = heldout_batches(pairs, (cfg.data.width, cfg.data.height), with_depth=True)
        metrics = evaluate_module(module, batches)
        depth = []
        with torch.no_grad():
            for b in batches:
                f0 = module.forward_pair(b)["f0"]
                z0 = sample_depth_at(b["depth0"], f0.kpts)
                depth += [float(depth_supervision(f0.depth[i : i + 1], z0[i : i + 1]))
                          for i in range(len(z0))]
        identity = summarise(torch.cat([identity_rows(b) for b in batches]))
        results[name] = {"pair_sampling_change": change, **metrics,
                         "median_depth_log_error": float(np.median(depth)),
                         "identity_median_t_m": identity["median_t_m"]}
    (run / "unseen_metrics.json").write_text(json.dumps(results, indent=1))
    return results


FORWARD_DRIVE_M = (0.5, 1.0, 1.5, 2.0, 2.5)  # ``forward_drive_ratios``: distances along the drive


def forward_drive_ratios(checkpoint: Path, seed: int = 0,
                         size_wh: tuple[int, int] = (320, 240)) -> dict[str, float]:
    """Estimated / true forward motion (keyframe camera z) at ``FORWARD_DRIVE_M`` along the demo
    drive, in process: the keyframe at 0 m and one query per distance through the estimator
    (``scripts/forward_drive.py`` measures the same through the whole demo replay)."""
    from mickey_ros.estimator import EstimatorConfig, RelativePoseEstimator
    from mickey_ros.synth.cameras import camera_centre
    from mickey_ros.synth.render import Renderer
    from mickey_ros.synth.rosbag import plan_robot_drive
    from mickey_ros.synth.textures import load_texture_bank

    drive = plan_robot_drive(seed, size_wh)
    renderer = Renderer(load_texture_bank())
    renderer.set_scene(drive.scene)

    def T_world_camera(forward_m: float) -> np.ndarray:
        return drive.T_world_odom @ drive.T_odom_optical(drive.path.time_at(forward_m))

    def image(T: np.ndarray) -> np.ndarray:
        return renderer.render(np.linalg.inv(T), drive.K, size_wh)[0]

    estimator = RelativePoseEstimator.from_checkpoint(checkpoint, None, EstimatorConfig())
    T_key = T_world_camera(0.0)
    estimator.set_reference(image(T_key), drive.K)
    ratios = {}
    for forward_m in FORWARD_DRIVE_M:
        T_query = T_world_camera(forward_m)
        pose = estimator.estimate(image(T_query), drive.K)
        true_z = (np.linalg.inv(T_key) @ T_query)[2, 3]
        # the query camera centre in the keyframe camera; an invalid estimate scores NaN
        estimated_z = camera_centre(pose.T_query_ref)[2] if pose.valid else float("nan")
        ratios[f"{forward_m:g} m"] = float(estimated_z / true_z)
    renderer.release()
    return ratios


# ranges of the true camera-centre distance in ``errors_by_baseline``
BASELINE_BINS_M = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)


def errors_by_baseline(rows: torch.Tensor, baseline_m: torch.Tensor) -> dict[str, dict]:
    """Pairs and median errors of (N, >= 2) rows ``[t_err_m, r_err_deg, ...]`` per range of the
    true camera-centre distance ``baseline_m`` (N,) (``BASELINE_BINS_M``; empty ranges left out).

    Shows whether the translation error grows with the motion (a scale error) or not (the
    rotation's error carried over to the translation at the scene's depth).
    """
    e, b = rows.double().numpy(), baseline_m.double().numpy()
    out = {}
    for lo, hi in zip(BASELINE_BINS_M[:-1], BASELINE_BINS_M[1:]):
        keep = (b >= lo) & (b < hi)
        if keep.any():
            out[f"{lo:g}-{hi:g} m"] = {"pairs": int(keep.sum()),
                                       "median_t_m": float(np.median(e[keep, 0])),
                                       "median_t_over_baseline":
                                           float(np.median(e[keep, 0] / b[keep])),
                                       "median_R_deg": float(np.median(e[keep, 1]))}
    return out


@torch.no_grad()
def ablation_row(module: MicKeyTrainingModule, pairs_dir: Path,
                 size_wh: tuple[int, int]) -> dict[str, Any]:
    """Pose (inference solver, seeded per batch as ``evaluate_module``; overall and by baseline)
    and the depth at the keypoints of both views (``depth_by_range``) on one held-out set."""
    module.eval()
    rows, baselines, z_pred, z_gt = [], [], [], []
    for i, batch in enumerate(heldout_batches(pairs_dir, size_wh, with_depth=True)):
        out = module.forward_pair(batch)
        rows.append(module.evaluate_batch(batch, torch.Generator().manual_seed(i), out))
        baselines.append(identity_rows(batch)[:, 0])  # 'no motion' misses by the whole baseline
        for f, key in ((out["f0"], "depth0"), (out["f1"], "depth1")):
            z_pred.append(f.depth.flatten())
            z_gt.append(sample_depth_at(batch[key], f.kpts).flatten())
    summary = summarise(torch.cat(rows))
    depth = depth_by_range(torch.cat(z_pred), torch.cat(z_gt))
    return {"median_t_m": summary["median_t_m"], "median_R_deg": summary["median_R_deg"],
            "pose_precision_25cm_5deg": summary["pose_precision_25cm_5deg"],
            "by_baseline": errors_by_baseline(torch.cat(rows), torch.cat(baselines)),
            "median_abs_log_depth_error": depth["median_abs_log_error"],
            "signed_log_depth_error": {k: v["median_signed_log_error"]
                                       for k, v in depth["signed_by_gt_depth"].items()}}


def stage_ablation(run: Path, cfg, checkpoints: list[Path]) -> dict:
    """``ablation_row`` on every ``HELDOUT_SETS`` and ``forward_drive_ratios`` per checkpoint.

    Rows are cached in ``ablation.json`` under the checkpoint's path, so runs of other configs
    (the ablations of docs/training.md) are scored on the same pairs.
    """
    out = run / "ablation.json"
    results = json.loads(out.read_text()) if out.is_file() else {}
    size_wh = (cfg.data.width, cfg.data.height)
    for ckpt in checkpoints:
        module = _module_for(cfg, ckpt)
        row = {name: ablation_row(module, run / folder, size_wh)
               for name, (folder, _) in HELDOUT_SETS.items()}
        row["forward_drive_ratio"] = forward_drive_ratios(ckpt)
        results[str(ckpt)] = row
        out.write_text(json.dumps(results, indent=1))
    return results


def seed_spread(rows_by_seed: list[torch.Tensor], num_samples: int, threshold: float) -> dict:
    """Medians of the same pairs solved with several RANSAC seeds.

    A median over 64 pairs moves by about 0.03 m between seeds, as much as one session's gain;
    pooling the seeds' solutions ranks two models on the pairs instead of on the draws.

    Args:
        rows_by_seed: per seed, (N, 4) ``[t_err_m, r_err_deg, vcre_px, confidence]``
            (``evaluate_batch``) of the same N pairs.
        num_samples: matches sampled per draw (the solver's), so confidence / it is the inlier
            ratio the node's gate compares.
        threshold: the gate (``gate.min_confidence``).
    """
    per_seed = [summarise(rows) for rows in rows_by_seed]
    pooled = torch.cat(rows_by_seed)
    return {"seeds": len(rows_by_seed),
            "median_t_m_per_seed": [s["median_t_m"] for s in per_seed],
            "median_R_deg_per_seed": [s["median_R_deg"] for s in per_seed],
            "pooled": {k: v for k, v in summarise(pooled).items()
                       if k in ("median_t_m", "median_R_deg", "pose_precision_25cm_5deg")},
            "gate": gate_split(pooled, pooled[:, 3] / num_samples, threshold)}


@torch.no_grad()
def stage_seeds(run: Path, cfg, checkpoints: list[Path], seeds: int) -> dict:
    """``seed_spread`` of every ``HELDOUT_SETS`` per checkpoint, cached in ``seeds.json`` under
    the checkpoint's path (seed ``s`` of batch ``i`` is ``1000 * s + i``; seed 0 is
    ``evaluate``'s draw)."""
    from mickey_ros.relocalization.params import GateParams

    out = run / "seeds.json"
    results = json.loads(out.read_text()) if out.is_file() else {}
    size_wh = (cfg.data.width, cfg.data.height)
    for ckpt in checkpoints:
        module = _module_for(cfg, ckpt).eval()
        row = {}
        for name, (folder, _) in HELDOUT_SETS.items():
            rows_by_seed: list[list[torch.Tensor]] = [[] for _ in range(seeds)]
            for i, batch in enumerate(tqdm(heldout_batches(run / folder, size_wh),
                                           desc=f"{ckpt.name} {name}")):
                out_pair = module.forward_pair(batch)
                for s in range(seeds):
                    gen = torch.Generator().manual_seed(1000 * s + i)
                    rows_by_seed[s].append(module.evaluate_batch(batch, gen, out_pair))
            row[name] = seed_spread([torch.cat(r) for r in rows_by_seed],
                                    module.solver_config.num_samples,
                                    GateParams().min_confidence)
        results[str(ckpt)] = row
        out.write_text(json.dumps(results, indent=1))
    return results


DEPTH_ERROR_PARTS = ("scale", "low_order", "noise")  # of ``depth_error_parts``
# depth fed to the solver per variant: GT times the exp of these parts of the network's error,
# each scaled by its factor (how accurate the depth must be for a pose error)
SENSITIVITY_VARIANTS = {
    "gt_depth": {},
    "gt_with_scale_error": {"scale": 1.0},
    "gt_with_low_order_error": {"low_order": 1.0},
    "gt_with_scale_and_low_order_error": {"scale": 1.0, "low_order": 1.0},
    "gt_with_point_noise": {"noise": 1.0},
    "gt_with_half_the_point_noise": {"noise": 0.5},
    "predicted_depth": dict.fromkeys(DEPTH_ERROR_PARTS, 1.0),
    "predicted_depth_with_half_the_error": dict.fromkeys(DEPTH_ERROR_PARTS, 0.5),
    "predicted_depth_with_a_quarter_of_the_error": dict.fromkeys(DEPTH_ERROR_PARTS, 0.25),
}


def depth_error_parts(log_error: torch.Tensor, kpts: torch.Tensor, log_gt: torch.Tensor,
                      valid: torch.Tensor, size_wh: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Split each image's log-depth error at its keypoints into three parts that sum to it.

    Per image, a least-squares fit over the valid keypoints of the error on the centred
    regressors ``[x, y, log z_gt]`` (x, y scaled to [-1, 1] over the image) plus a constant:
    ``scale`` is the constant (the mean error: a wrong scale, which only scales the
    translation), ``low_order`` the fitted x, y and depth terms (the depth map tilted across the
    image or compressed in depth: a distorted point cloud, which tilts the 3D-3D fit's rotation),
    ``noise`` what is left (independent point errors, which many inliers average out).

    Args:
        log_error: (B, N) ``log z - log z_gt``.
        kpts: (B, N, 2) pixel (x, y).
        log_gt: (B, N) ``log z_gt``.
        valid: (B, N) keypoints with a known GT depth; every part is 0 elsewhere.
        size_wh: image width and height, pixels.

    Returns:
        ``DEPTH_ERROR_PARTS`` -> (B, N).
    """
    w, h = size_wh
    regressors = torch.stack([kpts[..., 0] / (w / 2) - 1, kpts[..., 1] / (h / 2) - 1, log_gt], -1)
    parts = {name: torch.zeros_like(log_error) for name in DEPTH_ERROR_PARTS}
    for b in range(len(log_error)):
        keep = valid[b]
        e, A = log_error[b, keep].double(), regressors[b, keep].double()
        A = A - A.mean(0)
        coef = torch.linalg.lstsq(A, (e - e.mean()).unsqueeze(-1)).solution.squeeze(-1)
        low = A @ coef
        parts["scale"][b, keep] = e.mean().to(log_error)
        parts["low_order"][b, keep] = low.to(log_error)
        parts["noise"][b, keep] = (e - e.mean() - low).to(log_error)
    return parts


@torch.no_grad()
def stage_sensitivity(run: Path, cfg, checkpoint: Path) -> dict:
    """Which part of the depth error costs the pose: the held-out pairs solved with the network's
    keypoints and matches (the inference solver, the same draws per variant) but with GT depth
    times chosen parts of the network's own depth error (``depth_error_parts``)."""
    module = _module_for(cfg, checkpoint).eval()
    size_wh = (cfg.data.width, cfg.data.height)
    rows: dict[str, list[torch.Tensor]] = {name: [] for name in SENSITIVITY_VARIANTS}
    magnitudes: dict[str, list[torch.Tensor]] = {name: [] for name in DEPTH_ERROR_PARTS}
    for i, batch in enumerate(heldout_batches(run / "heldout_pairs", size_wh, with_depth=True)):
        out = module.forward_pair(batch)
        views = []
        for f, key, K in ((out["f0"], "depth0", batch["K0"]), (out["f1"], "depth1", batch["K1"])):
            z_gt = sample_depth_at(batch[key], f.kpts)
            valid = z_gt > 0
            log_gt = z_gt.clamp(min=1e-3).log()
            parts = depth_error_parts(log_depth_error(f.depth, z_gt), f.kpts,
                                      log_gt, valid, size_wh)
            for name, part in parts.items():
                magnitudes[name].append(part[valid].abs())
            views.append((f, z_gt, valid, parts, K))
        R_gt, t_gt = batch["T_1_0"][:, :3, :3], batch["T_1_0"][:, :3, 3]
        for variant, factors in SENSITIVITY_VARIANTS.items():
            X = []
            for f, z_gt, valid, parts, K in views:
                error = sum((w * parts[n] for n, w in factors.items()), torch.zeros_like(z_gt))
                z = torch.where(valid, z_gt * error.exp(), f.depth)
                X.append(backproject(f.kpts, z, K))
            sol = solve_pose(out["P"], X[0], X[1], module.solver_config,
                             torch.Generator().manual_seed(i))
            rows[variant].append(torch.stack([translation_error(sol.R, sol.t, R_gt, t_gt),
                                              rotation_error_deg(sol.R, R_gt)], -1))
    result: dict[str, Any] = {
        "median_abs_log_error_by_part": {n: float(torch.cat(m).median())
                                         for n, m in magnitudes.items()}}
    for variant, r in rows.items():
        med = torch.cat(r).nanmedian(0).values
        result[variant] = {"median_t_m": float(med[0]), "median_R_deg": float(med[1])}
    (run / "sensitivity.json").write_text(json.dumps(result, indent=1))
    return result


def stage_export(checkpoint: Path, out: Path, config: Path,
                 keep_fp32: tuple[str, ...] = ()) -> Path:
    """Weights only (no optimiser state), fp16, in the mickey_ros checkpoint format; submodules
    whose own name is in ``keep_fp32`` (e.g. ``conv_encoder``, ``depth_head``) stay fp32."""
    model, _ = load_checkpoint(checkpoint)
    own_name = {name: name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    unknown = sorted(set(keep_fp32) - set(own_name.values()))
    if unknown:
        raise ValueError(f"--keep-fp32: the model has no submodule named {', '.join(unknown)}; "
                         "use a name from model.named_modules(), e.g. conv_encoder or depth_head")
    kept = tuple(f"{name}." for name, own in own_name.items() if own in keep_fp32)
    # fp16 storage halves the file; loading casts back to the model's fp32
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point() and not name.startswith(kept):
            tensor.data = tensor.data.half()
    trained_with = config.resolve()
    meta = {"source_checkpoint": checkpoint.name,
            "trained_with": str(trained_with.relative_to(REPO) if trained_with.is_relative_to(REPO)
                                else trained_with)}
    return save_checkpoint(out, model, extra={"demo": meta})


def main(argv: list[str] | None = None) -> int:
    """Run one stage or all of them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    stages = ("render", "train", "evaluate", "diagnose", "gate", "unseen", "speed", "ablation",
              "sensitivity", "seeds", "plot", "export", "all")
    parser.add_argument("stage", choices=stages)
    parser.add_argument("--run", type=Path, default=Path("runs/demo"))
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--heldout", type=int, default=64, help="held-out pairs")
    parser.add_argument("--every", type=int, default=1, help="evaluate steps that are multiples")
    parser.add_argument("--checkpoint", type=Path, nargs="+",
                        help="checkpoint to diagnose, gate, score on unseen sets and export "
                        "(the first one); ablation and seeds: every one")
    parser.add_argument("--seeds", type=int, default=8, help="seeds: RANSAC seeds per pair")
    parser.add_argument("--keep-fp32", nargs="*", default=[], metavar="MODULE",
                        help="export: submodules stored in fp32 (the rest fp16), e.g. "
                        "conv_encoder")
    parser.add_argument("--init", type=Path,
                        help="the run's initial weights (mickey-train --init), else untrained")
    parser.add_argument("--compare", type=Path, nargs="*", default=[],
                        help="evaluate: also score these checkpoints on the held-out pairs")
    parser.add_argument("--png", type=Path,
                        default=REPO / "docs" / "img" / "training_demo_curves.png")
    parser.add_argument("--out", type=Path,
                        default=REPO / "mickey_ros" / "data" / "demo_model.ckpt")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # the shared 2-core machine: more threads were slower
    cfg = load_train_config(args.config)
    if args.stage in ("render", "all"):
        stage_render(args.run, cfg, args.heldout)
    if args.stage in ("train", "all"):
        train_main(replace(cfg, num_workers=1), None, args.run, init=args.init)
    if args.stage in ("evaluate", "all"):
        print(json.dumps(stage_evaluate(args.run, cfg, args.every, tuple(args.compare), args.init),
                         indent=1))
    final = args.checkpoint[0] if args.checkpoint else args.run / "checkpoints" / "last.ckpt"
    if args.stage in ("diagnose", "all"):
        print(json.dumps(stage_diagnose(args.run, cfg, final, args.init), indent=1))
    if args.stage in ("gate", "all"):
        print(json.dumps(stage_gate(args.run, cfg, final), indent=1))
    if args.stage in ("unseen", "all"):
        print(json.dumps(stage_unseen(args.run, cfg, final, args.heldout), indent=1))
    if args.stage in ("speed", "all"):
        print(json.dumps(stage_speed(args.run, cfg), indent=1))
    if args.stage == "ablation":
        print(json.dumps(stage_ablation(args.run, cfg, args.checkpoint or [final]), indent=1))
    if args.stage == "sensitivity":
        print(json.dumps(stage_sensitivity(args.run, cfg, final), indent=1))
    if args.stage == "seeds":
        print(json.dumps(stage_seeds(args.run, cfg, args.checkpoint or [final], args.seeds),
                         indent=1))
    if args.stage in ("plot", "all"):
        stage_plot(args.run, args.png, args.init)
    if args.stage in ("export", "all"):
        print(f"wrote {stage_export(final, args.out, args.config, tuple(args.keep_fp32))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
