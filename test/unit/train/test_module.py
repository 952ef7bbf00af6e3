import math
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.strategies import SingleDeviceStrategy
from torch.utils.data import DataLoader, Dataset

from mickey_ros.model.checkpoint import load_checkpoint
from mickey_ros.model.config import get_model_config
from mickey_ros.train.config import (
    CurriculumConfig,
    OptimConfig,
    SupervisionConfig,
    TrainConfig,
    ValidationConfig,
    load_train_config,
)
from mickey_ros.train.main import _build_model
from mickey_ros.train.module import (
    MicKeyTrainingModule,
    draw_generator,
    phases_leave_parameters_unused,
    validation_metrics,
)

HEADS = ("det_head", "det_offset", "depth_head", "dsc_head")


def _head_grad_norms(module: MicKeyTrainingModule) -> dict[str, float]:
    norms = {}
    for name in HEADS:
        head = getattr(module.compute_matches.extractor, name)
        grads = [p.grad for p in head.parameters() if p.grad is not None]
        norms[name] = sum(g.norm().item() ** 2 for g in grads) ** 0.5 if grads else 0.0
    return norms


class TestComputeLosses:
    def test_paper_objective_reaches_every_head_and_dustbin(self, batch, tiny_config):
        torch.manual_seed(0)
        module = MicKeyTrainingModule(tiny_config())  # supervision off: paper objective only
        total, logs = module.compute_losses(batch, step=0)
        assert "train/depth" not in logs and 0.0 < logs["train/vcre_loss"].item() < 1.0
        total.backward()
        for name, norm in _head_grad_norms(module).items():
            assert math.isfinite(norm) and norm > 0, name
        dustbin = module.compute_matches.matcher.matching_mat.dustbin_score.grad
        assert dustbin is not None and torch.isfinite(dustbin) and dustbin.abs() > 0

    def test_frozen_backbone_gets_no_gradient(self, batch, tiny_config):
        module = MicKeyTrainingModule(tiny_config())
        module.compute_losses(batch, step=0)[0].backward()
        assert all(p.grad is None for p in module.net.backbone.parameters())

    def test_supervision_terms_when_weighted(self, batch, tiny_config):
        sup = SupervisionConfig(depth_weight=1.0, correspondence_weight=0.5,
                                matched_depth_weight=2.0, pose_from_step=5)
        module = MicKeyTrainingModule(tiny_config(supervision=sup))
        total, logs = module.compute_losses(batch, step=0)
        assert "train/vcre_loss" not in logs  # pose objective starts at step 5
        assert logs["train/matched_depth"].item() > 0  # an untrained head disagrees
        expected = (logs["train/depth"] + 0.5 * logs["train/correspondence"]
                    + 2.0 * logs["train/matched_depth"])
        assert total.item() == pytest.approx(expected.item(), rel=1e-5)
        assert logs["train/gt_match_fraction"].item() > 0.5  # a plane seen by both views

    def test_dense_depth_term_when_weighted(self, batch, tiny_config):
        sup = SupervisionConfig(depth_weight=1.0, dense_depth_weight=3.0, pose_from_step=5)
        module = MicKeyTrainingModule(tiny_config(supervision=sup))
        total, logs = module.compute_losses(batch, step=0)
        # the head starts at log depth 1 everywhere, the plane is at 2 m
        assert logs["train/dense_depth"].item() == pytest.approx(1.0 - math.log(2.0), abs=1e-6)
        expected = logs["train/depth"] + 3.0 * logs["train/dense_depth"]
        assert total.item() == pytest.approx(expected.item(), rel=1e-5)
        assert MicKeyTrainingModule(tiny_config()).dense_depth is None  # weight 0: no head

    def test_dense_depth_reaches_the_backbone_once_the_head_reads_it(self, batch, tiny_config):
        sup = SupervisionConfig(dense_depth_weight=1.0, pose_from_step=10**9)
        torch.manual_seed(0)
        cfg = tiny_config(supervision=sup, freeze_backbone=False)
        module = MicKeyTrainingModule(cfg, _build_model(cfg, None, None))
        backbone = [p for p in module.net.backbone.parameters() if p.requires_grad]
        module.compute_losses(batch, step=0)[0].backward()
        assert all(p.grad is None or not p.grad.any() for p in backbone)  # zero readout at first
        torch.nn.init.normal_(module.dense_depth.to_pixels.weight, std=0.1)
        module.zero_grad(set_to_none=True)
        module.compute_losses(batch, step=0)[0].backward()
        assert sum(p.grad.abs().sum().item() for p in backbone if p.grad is not None) > 0

    def test_curriculum_keeps_k_pairs(self, make_batch, tiny_config):
        module = MicKeyTrainingModule(tiny_config(curriculum=CurriculumConfig(topk_init=50.0)))
        _, logs = module.compute_losses(make_batch(4), step=0)
        assert logs["train/kept_pairs"].item() == 2.0

    def test_same_step_same_loss(self, batch, tiny_config):
        module = MicKeyTrainingModule(tiny_config()).eval()  # eval: BN statistics fixed
        a, _ = module.compute_losses(batch, step=3)
        b, _ = module.compute_losses(batch, step=3)
        assert a.item() == b.item()


class TestEvaluateBatch:
    def test_given_outputs_give_the_same_rows_as_its_own_forward(self, batch, tiny_config):
        module = MicKeyTrainingModule(tiny_config()).eval()
        with torch.no_grad():
            own = module.evaluate_batch(batch, torch.Generator().manual_seed(0))
            given = module.evaluate_batch(batch, torch.Generator().manual_seed(0),
                                          module.forward_pair(batch))
        assert own.shape == (batch["T_1_0"].shape[0], 4)
        torch.testing.assert_close(given, own, rtol=0, atol=0)


class TestOptimisation:
    def test_few_steps_reduce_loss_on_fixed_batch(self, batch, tiny_config):
        torch.manual_seed(0)
        sup = SupervisionConfig(depth_weight=1.0, correspondence_weight=0.2)
        module = MicKeyTrainingModule(tiny_config(supervision=sup))
        opt = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=3e-3)
        losses = []
        for _ in range(8):
            total, _ = module.compute_losses(batch, step=0)  # same draws every step
            opt.zero_grad()
            total.backward()
            torch.nn.utils.clip_grad_norm_(module.parameters(), 5.0)
            opt.step()
            losses.append(total.item())
        assert losses[-1] < 0.8 * losses[0]


class _FixedBatches(Dataset):
    def __init__(self, make_pair_dict) -> None:
        self.make_pair_dict = make_pair_dict

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int):
        return self.make_pair_dict(index)


class _RecordLoss(Callback):
    def __init__(self) -> None:
        self.losses: dict[int, float] = {}
        self.rates: dict[int, float] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses[trainer.global_step] = float(outputs["loss"])
        self.rates[trainer.global_step - 1] = trainer.optimizers[0].param_groups[0]["lr"]


def _fit(tmp_path, fixtures, max_steps: int, resume=None, config=None) -> _RecordLoss:
    make_pair_dict, tiny_config = fixtures
    torch.manual_seed(0)
    record = _RecordLoss()
    ckpt = ModelCheckpoint(dirpath=tmp_path, filename="step-{step}", every_n_train_steps=2,
                           save_top_k=-1)
    trainer = L.Trainer(accelerator="cpu", max_steps=max_steps, logger=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, callbacks=[record, ckpt])
    loader = DataLoader(_FixedBatches(make_pair_dict), batch_size=2, shuffle=False)
    trainer.fit(MicKeyTrainingModule(tiny_config(**(config or {}))), loader, ckpt_path=resume)
    return record


class _AnotherRankNotFinite(SingleDeviceStrategy):
    """A strategy whose other (simulated) rank saw a non-finite gradient at every step."""

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        return False


class TestSkippedStep:
    def test_skip_is_decided_for_all_ranks(self, make_pair_dict, tiny_config):
        """A rank that stepped while another skipped would part the DDP replicas (issue 18)."""
        module = MicKeyTrainingModule(tiny_config())
        before = {n: p.detach().clone() for n, p in module.named_parameters()}
        trainer = L.Trainer(strategy=_AnotherRankNotFinite(device="cpu"), max_epochs=1,
                            logger=False, enable_progress_bar=False, enable_model_summary=False,
                            enable_checkpointing=False, limit_val_batches=0)
        loader = DataLoader(_FixedBatches(make_pair_dict), batch_size=2, shuffle=False)
        trainer.fit(module, loader)
        assert module.skipped_steps == 1 and trainer.global_step == 0
        for name, param in module.named_parameters():
            assert torch.equal(param, before[name]), name


class TestResume:
    def test_resume_gives_identical_next_step_loss(self, tmp_path, make_pair_dict, tiny_config):
        fixtures = (make_pair_dict, tiny_config)
        straight = _fit(tmp_path / "a", fixtures, max_steps=3)
        resumed = _fit(tmp_path / "b", fixtures, max_steps=3,
                       resume=tmp_path / "a" / "step-step=2.ckpt")
        assert set(resumed.losses) == {3}
        assert resumed.losses[3] == straight.losses[3]

    def test_resume_continues_the_learning_rate_schedule(
        self, tmp_path, make_pair_dict, tiny_config
    ):
        fixtures = (make_pair_dict, tiny_config)
        optim = OptimConfig(lr=1e-3, lr_schedule="cosine", warmup_steps=1, min_lr=0.0)
        overrides = dict(max_steps=4, optim=optim)
        cfg = tiny_config(**overrides)
        straight = _fit(tmp_path / "a", fixtures, max_steps=4, config=overrides)
        resumed = _fit(tmp_path / "b", fixtures, max_steps=4, config=overrides,
                       resume=tmp_path / "a" / "step-step=2.ckpt")
        expected = {s: cfg.learning_rate(s) for s in range(4)}
        assert straight.rates == pytest.approx(expected)
        assert resumed.rates == pytest.approx({s: expected[s] for s in (2, 3)})


class TestCheckpoint:
    def test_training_only_head_is_kept_beside_the_state_dict(
        self, tmp_path, make_batch, make_pair_dict, tiny_config
    ):
        """The dense-depth head resumes exactly, and the MicKey checkpoint stays strict."""
        dense = {"supervision": SupervisionConfig(depth_weight=1.0, dense_depth_weight=2.0)}
        fixtures = (make_pair_dict, tiny_config)
        straight = _fit(tmp_path / "a", fixtures, max_steps=3, config=dense)
        raw = torch.load(tmp_path / "a" / "step-step=2.ckpt", map_location="cpu",
                         weights_only=False)
        assert all(k.startswith("compute_matches.") for k in raw["state_dict"])
        assert sorted(raw["mickey_ros"]["training_heads"]) == [
            "dense_depth.to_pixels.bias", "dense_depth.to_pixels.weight"]
        assert raw["mickey_ros"]["training_heads"]["dense_depth.to_pixels.weight"].any()
        model, _ = load_checkpoint(tmp_path / "a" / "step-step=2.ckpt")
        assert not any("dense" in k for k in model.state_dict())
        resumed = _fit(tmp_path / "b", fixtures, max_steps=3, config=dense,
                       resume=tmp_path / "a" / "step-step=2.ckpt")
        assert resumed.losses[3] == straight.losses[3]

    @pytest.mark.parametrize("saved_dense, resumed_dense", [(True, False), (False, True)])
    def test_resume_with_and_without_the_dense_head_is_refused(
        self, tmp_path, make_pair_dict, tiny_config, saved_dense, resumed_dense
    ):
        def config(dense: bool) -> dict:
            return {"supervision": SupervisionConfig(depth_weight=1.0,
                                                     dense_depth_weight=2.0 if dense else 0.0)}
        fixtures = (make_pair_dict, tiny_config)
        _fit(tmp_path / "a", fixtures, max_steps=2, config=config(saved_dense))
        with pytest.raises(ValueError, match="dense_depth_weight.*--init"):
            _fit(tmp_path / "b", fixtures, max_steps=3, config=config(resumed_dense),
                 resume=tmp_path / "a" / "step-step=2.ckpt")

    def test_training_checkpoint_loads_through_load_checkpoint(
        self, tmp_path, make_batch, make_pair_dict, tiny_config
    ):
        _fit(tmp_path, (make_pair_dict, tiny_config), max_steps=2)
        path = tmp_path / "step-step=2.ckpt"
        raw = torch.load(path, map_location="cpu", weights_only=False)
        assert raw["mickey_ros"]["format"] == 1
        assert raw["mickey_ros"]["model_config"]["name"] == "mickey_tiny"
        keys = list(raw["state_dict"])
        assert all(k.startswith("compute_matches.") for k in keys)
        assert "compute_matches.matcher.matching_mat.dustbin_score" in keys
        # a custom backbone has no hub weight file, so it is kept even when frozen
        assert any("dinov2_custom" in k for k in keys)
        model, config = load_checkpoint(path)
        assert config.name == "mickey_tiny"
        module = MicKeyTrainingModule(tiny_config())
        module.load_state_dict(raw["state_dict"])
        image = make_batch(1)["image0"]
        with torch.no_grad():
            expected = module.eval().net.extract(image).depth
            assert torch.allclose(model.extract(image).depth, expected)


CONFIGS = sorted((Path(__file__).parents[3] / "config" / "train").glob("*.yaml"))


def _unreached(module: MicKeyTrainingModule, batch, step: int) -> set[str]:
    module.zero_grad(set_to_none=True)
    module.compute_losses(batch, step)[0].backward()
    return {n for n, p in module.named_parameters() if p.requires_grad and p.grad is None}


class TestDdpParameterUse:
    @pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
    def test_shipped_config_reaches_every_parameter_or_searches(self, path, batch, tiny_config):
        """Issue 18: DDP stopped at step 2 of synthetic_small.yaml on never-reached parameters.

        The config's objective and phases, on its own model where that has no hub backbone
        (else the tiny one): where a step leaves a trainable parameter without a gradient, the
        run must ask DDP to search for unused parameters.
        """
        cfg = load_train_config(path)
        hub = get_model_config(cfg.model).backbone.arch.startswith("vit")
        tiny = tiny_config(model="mickey_tiny" if hub else cfg.model,
                           freeze_backbone=cfg.freeze_backbone, loss=cfg.loss,
                           curriculum=cfg.curriculum, supervision=cfg.supervision)
        torch.manual_seed(0)
        module = MicKeyTrainingModule(tiny, _build_model(tiny, None, None))
        sup = cfg.supervision
        unreached = {s: _unreached(module, batch, s) for s in sorted({0, sup.pose_from_step})}
        assert phases_leave_parameters_unused(cfg) == any(unreached.values())
        if sup.pose_weight > 0:  # the paper's objective reaches every trainable parameter
            assert unreached[sup.pose_from_step] == set()

    def test_dense_head_that_stops_with_the_supervision_asks_for_the_search(self):
        dense_until_10 = SupervisionConfig(dense_depth_weight=1.0, supervision_until_step=10)
        assert phases_leave_parameters_unused(TrainConfig(supervision=dense_until_10))
        always = SupervisionConfig(dense_depth_weight=1.0)
        assert not phases_leave_parameters_unused(TrainConfig(supervision=always))

    def test_mask_token_is_never_trained(self, tiny_config):
        module = MicKeyTrainingModule(tiny_config(freeze_backbone=False),
                                      _build_model(tiny_config(freeze_backbone=False), None, None))
        backbone = "compute_matches.extractor.dinov2_custom."
        frozen = [n for n, p in module.named_parameters() if n.startswith(backbone)
                  and not p.requires_grad]
        assert frozen == [backbone + "mask_token"]
        assert "compute_matches.extractor.dinov2_custom.mask_token" in module.state_dict()

    def test_checkpoint_that_trained_the_mask_token_resumes(self, batch, tiny_config):
        """Adam states of a run from before the mask token was frozen map onto the same names."""
        cfg = tiny_config(freeze_backbone=False)
        module = MicKeyTrainingModule(cfg, _build_model(cfg, None, None))
        named = list(module.named_parameters())
        old_params = [p for n, p in named if p.requires_grad or n.endswith("mask_token")]
        old = torch.optim.Adam(old_params, lr=1e-3)
        module.compute_losses(batch, step=0)[0].backward()
        old.step()
        checkpoint = {"state_dict": module.state_dict(), "optimizer_states": [old.state_dict()]}
        module.on_load_checkpoint(checkpoint)
        new = module.configure_optimizers()
        new.load_state_dict(checkpoint["optimizer_states"][0])
        by_param = {id(p): n for n, p in named}
        for param, state in new.state.items():
            assert torch.equal(state["exp_avg"], old.state[param]["exp_avg"]), by_param[id(param)]
        assert len(new.state) == len(old.state) == len(new.param_groups[0]["params"])


class TestDrawGenerator:
    def test_reproducible_per_rank_and_independent_across_ranks(self):
        """Issue 18: every DDP rank drew the same hypotheses (seeded from the step only)."""
        draw = [torch.rand(4, generator=draw_generator(66, rank, 7)) for rank in (0, 0, 1)]
        assert torch.equal(draw[0], draw[1])
        assert not torch.allclose(draw[0], draw[2], atol=1e-3)
        other_step = torch.rand(4, generator=draw_generator(66, 0, 8))
        assert not torch.allclose(draw[0], other_step, atol=1e-3)


class TestValidationMetrics:
    def test_hand_computed(self):
        rows = torch.tensor([
            [0.1, 2.0, 10.0, 100.0],
            [0.3, 4.0, 50.0, 50.0],
            [0.4, 20.0, 95.0, 10.0],
            [float("inf"), float("inf"), float("inf"), 0.0],
        ])
        m = validation_metrics(rows, ValidationConfig())
        assert m["val/median_t_m"] == pytest.approx(0.35)
        assert m["val/median_R_deg"] == pytest.approx(12.0)
        assert m["val/vcre_precision"] == pytest.approx(0.5)
        # sorted by confidence: correct, correct, wrong, wrong -> (1 + 1 + 2/3 + 1/2) / 4
        assert m["val/vcre_auc"] == pytest.approx((1 + 1 + 2 / 3 + 1 / 2) / 4)
        assert m["val/pose_precision_25cm_5deg"] == pytest.approx(0.25)
        assert m["val/pose_precision_50cm_10deg"] == pytest.approx(0.5)
