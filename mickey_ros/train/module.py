"""LightningModule for MicKey training (manual optimisation, official objective, validation).

The module holds the network's ``compute_matches`` submodule under that attribute name, so its
Lightning checkpoints carry the official key names (``compute_matches.extractor.*``); on save it
adds ``checkpoint["mickey_ros"]`` (model config) and strips a frozen DINOv2, like the official
code, so :func:`mickey_ros.model.checkpoint.load_checkpoint` reads them. Training-only heads
(``dense_depth``) are kept under ``checkpoint["mickey_ros"]["training_heads"]``, out of the
state dict, for the same reason.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor

from mickey_ros.geometry.camera import backproject
from mickey_ros.geometry.metrics import (
    precision_and_auc,
    rotation_error_deg,
    translation_error,
    vcre,
    virtual_points,
)
from mickey_ros.geometry.pose import make_transform
from mickey_ros.geometry.ransac import SolverConfig, solve_pose
from mickey_ros.model.config import MickeyConfig, get_model_config
from mickey_ros.model.matching import correspondence_probabilities
from mickey_ros.model.mickey import MicKey
from mickey_ros.train.config import TrainConfig, ValidationConfig
from mickey_ros.train.dense_depth import DenseDepthHead
from mickey_ros.train.hypotheses import generate_hypotheses
from mickey_ros.train.loss import (
    correspondence_supervision,
    curriculum_mask,
    depth_supervision,
    expected_loss,
    gt_matches,
    log_probs_of,
    matched_depth_supervision,
    objective_over_pairs,
    pose_loss,
    reinforce_surrogate,
    sample_depth_at,
    topk_percent,
)
from mickey_ros.utils.config import config_to_dict

CHECKPOINT_FORMAT = 1
# parameters that no forward uses (DINOv2's iBOT mask token): kept for strict loading, never
# trained, so that DDP does not wait for their gradient and Adam does not hold them
NEVER_USED_PARAMETERS = ("mask_token",)
# state-dict prefixes of heads only training runs (not part of MicKey's checkpoint key list)
TRAINING_HEADS = ("dense_depth.",)


def phases_leave_parameters_unused(config: TrainConfig) -> bool:
    """Whether some training steps leave trainable parameters without a gradient.

    Only the paper's objective reaches every head (keypoint scores, offsets, depth,
    descriptors, dust-bin); the supervision terms alone leave the keypoint score and offset heads
    out. DDP must then search for unused parameters at every step (``find_unused_parameters``).

    >>> from mickey_ros.train.config import SupervisionConfig
    >>> phases_leave_parameters_unused(TrainConfig())
    False
    >>> phases_leave_parameters_unused(TrainConfig(supervision=SupervisionConfig(pose_from_step=9)))
    True
    """
    sup = config.supervision
    dense_head_stops = sup.dense_depth_weight > 0 and sup.supervision_until_step >= 0
    return sup.pose_weight <= 0 or sup.pose_from_step > 0 or dense_head_stops


def draw_generator(seed: int, rank: int, step: int, device: torch.device | str = "cpu"
                   ) -> torch.Generator:
    """The random stream of one step on one rank, a pure function of ``(seed, rank, step)``.

    Not a running RNG: a resumed run repeats the draws an uninterrupted run makes, and every DDP
    rank draws independently of the others, reproducibly.
    """
    state = np.random.SeedSequence([seed, rank, step]).generate_state(1, np.uint64)[0]
    return torch.Generator(device=device).manual_seed(int(state))


def validation_metrics(errors: Tensor, config: ValidationConfig) -> dict[str, float]:
    """Map-free style aggregates of per-pair validation errors.

    Args:
        errors: (N, 4) rows ``[t_err_m, r_err_deg, vcre_px, confidence]``; failed pairs carry
            ``inf`` errors and confidence 0.
        config: thresholds.

    Returns:
        medians, VCRE precision/AUC and pose precision/AUC at each (metres, degrees) threshold.
    """
    e = errors.double().cpu().numpy()
    t_err, r_err, vcre_px, conf = e[:, 0], e[:, 1], e[:, 2], e[:, 3]
    out = {
        "val/median_t_m": float(np.median(t_err)),
        "val/median_R_deg": float(np.median(r_err)),
        "val/median_vcre_px": float(np.median(vcre_px)),
    }
    prec, auc = precision_and_auc(vcre_px < config.vcre_threshold_px, conf)
    out["val/vcre_precision"], out["val/vcre_auc"] = prec, auc
    for t_max, r_max in config.pose_thresholds:
        tag = f"{t_max * 100:g}cm_{r_max:g}deg"
        prec, auc = precision_and_auc((t_err < t_max) & (r_err < r_max), conf)
        out[f"val/pose_precision_{tag}"], out[f"val/pose_auc_{tag}"] = prec, auc
    return out


class MicKeyTrainingModule(L.LightningModule):
    """MicKey + its training objective.

    Args:
        config: training settings.
        model: an initialised network (e.g. from ``load_checkpoint`` for fine-tuning); None builds
            ``get_model_config(config.model)`` with random heads.
    """

    def __init__(self, config: TrainConfig, model: MicKey | None = None) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.config = config
        if model is None:
            model_config = get_model_config(config.model)
            backbone = replace(model_config.backbone, trainable=not config.freeze_backbone)
            model = MicKey(replace(model_config, backbone=backbone))
        self.model_config: MickeyConfig = model.config
        self.compute_matches = model.compute_matches  # official key prefix in the state_dict
        self._net = [model]  # a list: not registered twice under a second prefix
        for name, param in self.named_parameters():
            if name.rsplit(".", 1)[-1] in NEVER_USED_PARAMETERS:
                param.requires_grad_(False)
        self.register_buffer("virtual_points", virtual_points(torch.float32), persistent=False)
        self.dense_depth = (
            DenseDepthHead(self.model_config.backbone.embed_dim,
                           self.model_config.backbone.patch_size)
            if config.supervision.dense_depth_weight > 0 else None)
        v = config.validation
        self.solver_config = SolverConfig(
            it_matches=v.num_draws, it_ransac=v.num_hypotheses, num_samples=v.num_samples
        )
        self.skipped_steps = 0
        self._val_rows: list[Tensor] = []

    @property
    def net(self) -> MicKey:
        """The wrapped network (shares all parameters with ``compute_matches``)."""
        return self._net[0]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam over the trainable parameters (official: lr 1e-4, eps 1e-6, no schedule).

        ``training_step`` sets the learning rate of every step from ``TrainConfig.learning_rate``.
        """
        params = [p for p in self.parameters() if p.requires_grad]
        return torch.optim.Adam(params, lr=self.config.optim.lr, eps=self.config.optim.adam_eps)

    # ----------------------------------------------------------------------------- forward

    def forward_pair(self, batch: dict[str, Tensor]) -> dict[str, Any]:
        """Backbone cells, features, match matrices and 3D keypoints of both images of a batch."""
        net = self.net
        cells0, cells1 = net.encode(batch["image0"]), net.encode(batch["image1"])
        f0, f1 = net.decode(cells0), net.decode(cells1)
        match_probs = net.matcher(f0.descriptors, f1.descriptors)
        return {
            "cells0": cells0,
            "cells1": cells1,
            "f0": f0,
            "f1": f1,
            "match_probs": match_probs,
            "P": correspondence_probabilities(match_probs, f0.scores, f1.scores),
            "X0": backproject(f0.kpts, f0.depth, batch["K0"]),
            "X1": backproject(f1.kpts, f1.depth, batch["K1"]),
        }

    def _generator(self, step: int) -> torch.Generator:
        return draw_generator(self.config.seed, self.global_rank, step, self.device)

    def pose_objective(
        self, out: dict[str, Any], batch: dict[str, Tensor], generator: torch.Generator
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """REINFORCE + direct objective of the paper (reference 8.3-8.4), curriculum applied."""
        cfg = self.config
        P = out["P"].float()
        X0, X1 = out["X0"].float(), out["X1"].float()
        hyp = generate_hypotheses(P, X0, X1, cfg.hypotheses, generator)
        T = batch["T_1_0"]
        R_gt, t_gt = T[:, None, None, :3, :3], T[:, None, None, :3, 3]
        K0, K1 = batch["K0_orig"][:, None, None], batch["K1_orig"][:, None, None]
        losses = pose_loss(hyp.R, hyp.t, R_gt, t_gt, K0, K1, self.virtual_points, cfg.loss)
        draw_losses = expected_loss(hyp.scores, losses, cfg.hypotheses.num_samples, cfg.loss)
        surrogate, baseline = reinforce_surrogate(
            log_probs_of(P, hyp.idx_ref, hyp.idx_query), draw_losses
        )
        B = baseline.shape[0]
        if cfg.curriculum.enabled and B > 1:
            keep = curriculum_mask(baseline, topk_percent(self.current_epoch, cfg.curriculum))
        else:
            keep = torch.ones_like(baseline, dtype=torch.bool)
        objective = objective_over_pairs(baseline, surrogate, keep)
        logs = {
            "train/vcre_loss": baseline[keep].mean().detach(),
            "train/vcre_loss_all": baseline.mean().detach(),
            "train/best_hyp_loss": losses.flatten(1).min(1).values.mean().detach(),
            "train/inliers": hyp.num_inliers.float().mean(),
            "train/kept_pairs": keep.sum().float(),
        }
        return objective, logs

    def supervision_terms(
        self, out: dict[str, Any], batch: dict[str, Tensor]
    ) -> dict[str, Tensor]:
        """Optional GT-depth terms, unweighted: depth, dense depth, correspondence, matched."""
        f0, f1 = out["f0"], out["f1"]
        terms = {}
        sup = self.config.supervision
        if sup.depth_weight > 0 or sup.matched_depth_weight > 0:
            z0_gt = sample_depth_at(batch["depth0"], f0.kpts.detach())
            z1_gt = sample_depth_at(batch["depth1"], f1.kpts.detach())
        if sup.depth_weight > 0:
            terms["depth"] = 0.5 * (depth_supervision(f0.depth, z0_gt, sup.max_depth_m)
                                    + depth_supervision(f1.depth, z1_gt, sup.max_depth_m))
        if self.dense_depth is not None:
            terms["dense_depth"] = 0.5 * (
                self.dense_depth.loss(out["cells0"], batch["depth0"], sup.max_depth_m)
                + self.dense_depth.loss(out["cells1"], batch["depth1"], sup.max_depth_m))
        if sup.correspondence_weight > 0 or sup.matched_depth_weight > 0:
            target, valid = gt_matches(
                f0.kpts.detach(), batch["depth0"], batch["depth1"], batch["K0"], batch["K1"],
                batch["T_1_0"], f1.grid_hw, self.model_config.backbone.patch_size,
                sup.depth_consistency,
            )
            terms["gt_match_fraction"] = valid.float().mean().detach()
        if sup.correspondence_weight > 0:
            terms["correspondence"] = correspondence_supervision(out["match_probs"], target, valid)
        if sup.matched_depth_weight > 0:
            terms["matched_depth"] = matched_depth_supervision(
                f0.depth, f1.depth, z0_gt, z1_gt, target, valid, sup.max_depth_m)
        return terms

    def compute_losses(self, batch: dict[str, Tensor], step: int) -> tuple[Tensor, dict[str, Any]]:
        """Total training loss of a batch at ``step`` and a dict of logged values and timings."""
        sup = self.config.supervision
        t0 = time.perf_counter()
        out = self.forward_pair(batch)
        t1 = time.perf_counter()
        total = out["P"].new_zeros(())
        logs: dict[str, Any] = {}
        if sup.pose_weight > 0 and step >= sup.pose_from_step:
            objective, pose_logs = self.pose_objective(out, batch, self._generator(step))
            total = total + sup.pose_weight * objective
            logs.update(pose_logs)
        supervised = sup.supervision_until_step < 0 or step <= sup.supervision_until_step
        if supervised and "depth0" in batch:
            terms = self.supervision_terms(out, batch)
            for name, weight in (("depth", sup.depth_weight),
                                 ("dense_depth", sup.dense_depth_weight),
                                 ("correspondence", sup.correspondence_weight),
                                 ("matched_depth", sup.matched_depth_weight)):
                if name in terms:
                    total = total + weight * terms[name]
            logs.update({f"train/{k}": v.detach() for k, v in terms.items()})
        logs["time/forward_s"] = t1 - t0
        logs["time/loss_s"] = time.perf_counter() - t1
        return total, logs

    # ----------------------------------------------------------------------------- training

    def _grads_finite(self) -> bool:
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        return bool(torch.stack([torch.isfinite(g).all() for g in grads]).all()) if grads else False

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """Forward, objective, backward; clip to norm 5 and step unless a gradient is not finite."""
        opt = self.optimizers()
        lr = self.config.learning_rate(self.global_step)
        for group in opt.param_groups:
            group["lr"] = lr
        total, logs = self.compute_losses(batch, self.global_step)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        if total.requires_grad:
            self.manual_backward(total)
        finite = bool(torch.isfinite(total).item()) and self._grads_finite()
        # one decision for all ranks: a rank stepping alone would part the replicas' weights
        finite = self.trainer.strategy.reduce_boolean_decision(finite, all=True)
        if finite:
            self.clip_gradients(opt, self.config.optim.grad_clip_norm, "norm")
            opt.step()
        else:  # official: Procrustes on small minimal sets occasionally gives NaN/Inf gradients
            self.skipped_steps += 1
            opt.zero_grad(set_to_none=True)
        logs["time/backward_s"] = time.perf_counter() - t0
        step_s = logs["time/forward_s"] + logs["time/loss_s"] + logs["time/backward_s"]
        B = batch["image0"].shape[0]
        logs["pairs_s"] = B / max(step_s, 1e-9)
        logs["train/loss"] = total.detach()
        logs["train/skipped_steps"] = float(self.skipped_steps)
        logs["train/lr"] = lr
        self.log("loss", total.detach(), prog_bar=True, logger=False, batch_size=B)
        self.log("pairs_s", logs.pop("pairs_s"), prog_bar=True, batch_size=B)
        self.log_dict({k: float(v) for k, v in logs.items()}, batch_size=B)
        return total.detach()

    # ----------------------------------------------------------------------------- validation

    @torch.no_grad()
    def evaluate_batch(self, batch: dict[str, Tensor], generator: torch.Generator,
                       out: dict[str, Any] | None = None) -> Tensor:
        """(B, 4) rows ``[t_err_m, r_err_deg, vcre_px, confidence]`` with the inference solver.

        ``out``: this batch's ``forward_pair`` outputs, when the caller already has them.
        """
        out = self.forward_pair(batch) if out is None else out
        sol = solve_pose(out["P"].float(), out["X0"].float(), out["X1"].float(),
                         self.solver_config, generator)
        T_gt = batch["T_1_0"].float()
        R_gt, t_gt = T_gt[:, :3, :3], T_gt[:, :3, 3]
        t_err = translation_error(sol.R, sol.t, R_gt, t_gt)
        r_err = rotation_error_deg(sol.R, R_gt)
        T_est = make_transform(sol.R, sol.t)
        vcre_px = torch.stack([
            vcre(T_est[b], T_gt[b], batch["K1_orig"][b], *batch["image_size"][b].tolist())
            for b in range(T_gt.shape[0])
        ])
        rows = torch.stack([t_err, r_err, vcre_px, sol.confidence.to(t_err)], dim=-1)
        inf = torch.full_like(rows[:, :3], float("inf"))
        rows[:, :3] = torch.where(sol.valid[:, None], rows[:, :3], inf)
        return rows

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """Errors of one batch with the inference solver (aggregated at the epoch end)."""
        gen = self._generator(10_000_000 + batch_idx)
        self._val_rows.append(self.evaluate_batch(batch, gen))

    def on_validation_epoch_end(self) -> None:
        """Gather all ranks' errors and log the Map-free metrics."""
        if not self._val_rows:
            return
        rows = torch.cat(self._val_rows)
        self._val_rows.clear()
        if self.trainer.world_size > 1:
            rows = self.all_gather(rows).reshape(-1, 4)
        self.log_dict(validation_metrics(rows, self.config.validation), sync_dist=False)

    # ----------------------------------------------------------------------------- checkpoints

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Embed the configs (``checkpoint['mickey_ros']``); drop a frozen hub backbone."""
        checkpoint["mickey_ros"] = {
            "format": CHECKPOINT_FORMAT,
            "model_config": config_to_dict(self.model_config),
            "train_config": config_to_dict(self.config),
            "skipped_steps": self.skipped_steps,
        }
        state = checkpoint["state_dict"]
        heads = {k: state.pop(k) for k in [k for k in state if k.startswith(TRAINING_HEADS)]}
        if heads:
            checkpoint["mickey_ros"]["training_heads"] = heads
        backbone = self.model_config.backbone
        if not backbone.trainable and backbone.arch != "custom":  # official: hub DINOv2 not saved
            for key in [k for k in state if "dinov2" in k]:
                del state[key]

    def _drop_never_used_from_optimizer_state(self, checkpoint: dict[str, Any]) -> None:
        # checkpoints from before NEVER_USED_PARAMETERS listed a trainable backbone's mask token
        # in Adam's group (without state: it never had a gradient); drop its slot so they resume
        named = list(self.named_parameters())
        now = [n for n, p in named if p.requires_grad]
        before = [n for n, p in named if p.requires_grad or (
            not self.config.freeze_backbone and n.rsplit(".", 1)[-1] in NEVER_USED_PARAMETERS)]
        for state in checkpoint.get("optimizer_states", []):
            group = state["param_groups"][0]
            if len(state["param_groups"]) == 1 and len(group["params"]) == len(before) != len(now):
                kept = set(now)
                group["params"] = [i for i, n in zip(group["params"], before) if n in kept]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Put the stripped frozen backbone and training-only heads back (for a strict resume)."""
        state = checkpoint["state_dict"]
        heads = checkpoint.get("mickey_ros", {}).get("training_heads", {})
        if bool(heads) != (self.dense_depth is not None):
            raise ValueError(
                "--resume: the checkpoint was trained "
                + ("with" if heads else "without") + " supervision.dense_depth_weight and the "
                "config " + ("sets it to 0" if heads else "sets it") + "; resume with the run's "
                "own config, or start a new run from its weights with --init")
        state.update(heads)
        for key, value in self.state_dict().items():  # re-insert the stripped frozen backbone
            if "dinov2" in key and key not in state:
                state[key] = value
        self._drop_never_used_from_optimizer_state(checkpoint)
        self.skipped_steps = int(checkpoint.get("mickey_ros", {}).get("skipped_steps", 0))
