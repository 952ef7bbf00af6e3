"""Arithmetic of the demo-model benchmark scripts (forward_drive.py, train_demo.py)."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from mickey_ros.synth.rosbag import plan_robot_drive

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_forward_drive_ends_on_the_first_frame_past_the_distance():
    fd = _script("forward_drive")
    seconds = fd.seconds_to_reach(2.5, 0, (320, 240), 5.0)
    path = plan_robot_drive(0, (320, 240)).path
    last, before = (round(seconds * 5) - 1) / 5, (round(seconds * 5) - 2) / 5
    assert seconds == pytest.approx(10.6)
    assert path.T_odom_base(last)[0, 3] >= 2.5 > path.T_odom_base(before)[0, 3]
    with pytest.raises(ValueError, match=r"--forward must be in \(0, 2.54\]"):
        fd.seconds_to_reach(3.0, 0, (320, 240), 5.0)


def test_tum_stamps_are_read_to_the_nanosecond():
    fd = _script("forward_drive")
    assert fd.stamp_ns("1700000010.400000001") == 1_700_000_010_400_000_001
    assert fd.stamp_ns("1700000010.4") == 1_700_000_010_400_000_000
    assert fd.stamp_ns("12") == 12_000_000_000


def test_gate_split_medians_of_accepted_and_rejected_pairs():
    td = _script("train_demo")
    rows = torch.tensor([[0.1, 1.0, 0, 0], [0.3, 3.0, 0, 0], [0.9, 9.0, 0, 0], [0.5, 5.0, 0, 0]])
    ratio = torch.tensor([0.2, 0.05, 0.01, 0.049])
    out = td.gate_split(rows, ratio, 0.05)
    assert out["accepted"] == {"pairs": 2, "median_t_m": pytest.approx(0.2),
                               "median_R_deg": pytest.approx(2.0)}
    assert out["rejected"] == {"pairs": 2, "median_t_m": pytest.approx(0.7),
                               "median_R_deg": pytest.approx(7.0)}


def test_depth_by_range_pools_keypoints_and_signs_each_depth_range():
    td = _script("train_demo")
    z_gt = torch.tensor([[0.5, 1.5, 5.0, 0.0], [7.0, 7.5, 150.0, 1.2]])
    # near overestimated by e^0.4, far underestimated by e^-0.2; unknown (0) and sky (150) ignored
    z_pred = z_gt * torch.tensor([[0.4, 0.0, -0.1, 0.0], [-0.2, -0.2, 5.0, 0.0]]).exp()
    out = td.depth_by_range(z_pred, z_gt)
    assert out["median_abs_log_error"] == pytest.approx(0.1, abs=1e-6)  # of 0.4 0 .1 .2 .2 0
    bins = out["signed_by_gt_depth"]
    assert list(bins) == ["0-1 m", "1-2 m", "4-6 m", "6-9 m"]
    assert bins["0-1 m"] == {"keypoints": 1, "median_signed_log_error": pytest.approx(0.4)}
    assert bins["1-2 m"]["keypoints"] == 2
    assert bins["6-9 m"] == {"keypoints": 2, "median_signed_log_error": pytest.approx(-0.2)}


def test_log_depth_slope_is_one_for_exact_depth_and_measures_compression():
    td = _script("train_demo")
    z_gt = torch.tensor([[1.0, 2.0, 4.0, 8.0, 0.0], [0.5, 1.0, 3.0, 9.0, 200.0]])
    # image 0: log depth compressed by 0.7 about 3 m (unknown 0 ignored); image 1: exact x 1.2
    compressed = torch.exp(torch.log(torch.tensor(3.0)) + 0.7 * (z_gt[0].clamp(min=1e-3).log()
                                                                  - torch.log(torch.tensor(3.0))))
    z_pred = torch.stack([compressed, 1.2 * z_gt[1]])
    slope = td.log_depth_slope(z_pred, z_gt)
    assert slope.tolist() == pytest.approx([0.7, 1.0], abs=1e-5)  # sky (200 m) ignored


def test_read_log_lets_a_resumed_session_replace_the_steps_it_retrained(tmp_path):
    td = _script("train_demo")
    for version, steps in ((0, (9, 19)), (2, (29, 39, 49)), (10, (39, 59))):
        folder = tmp_path / "logs" / f"version_{version}"
        folder.mkdir(parents=True)
        lines = ["step,train/depth,val/median_t_m"] + [f"{s},{version}.5," for s in steps]
        (folder / "metrics.csv").write_text("\n".join(lines) + "\n")
    rows = td.read_log(tmp_path)
    assert [(r["step"], r["train/depth"]) for r in rows] == [
        (9, 0.5), (19, 0.5), (29, 2.5), (39, 10.5), (59, 10.5)]
    assert "val/median_t_m" not in rows[0]


def test_heldout_depth_by_step_takes_the_runs_steps_and_its_initial_weights(tmp_path):
    td = _script("train_demo")
    assert td.heldout_depth_by_step(tmp_path) == {}
    init, other = tmp_path / "previous.ckpt", tmp_path / "elsewhere" / "checkpoints"
    rows = {tmp_path / "checkpoints" / "step-0001200.ckpt": 0.07,
            tmp_path / "checkpoints" / "step-0000600.ckpt": 0.075,
            tmp_path / "checkpoints" / "best-0000600.ckpt": 0.5,
            other / "step-0000600.ckpt": 0.9, init: 0.084}
    (tmp_path / "ablation.json").write_text(json.dumps(
        {str(k): {"heldout": {"median_abs_log_depth_error": v}} for k, v in rows.items()}))
    assert td.heldout_depth_by_step(tmp_path) == {600: 0.075, 1200: 0.07}
    depth = td.heldout_depth_by_step(tmp_path, init)
    assert list(depth.items()) == [(0, 0.084), (600, 0.075), (1200, 0.07)]


def test_errors_by_baseline_splits_pairs_by_true_motion():
    td = _script("train_demo")
    rows = torch.tensor([[0.2, 5.0, 0.0, 0.0], [0.1, 3.0, 0.0, 0.0], [0.3, 2.0, 0.0, 0.0],
                         [0.5, 4.0, 0.0, 0.0], [9.0, 1.0, 0.0, 0.0]])
    baseline = torch.tensor([0.4, 0.2, 1.2, 1.0, 3.5])  # the last one beyond every range
    split = td.errors_by_baseline(rows, baseline)
    assert list(split) == ["0-0.5 m", "1-1.5 m"]
    assert split["0-0.5 m"] == pytest.approx(
        {"pairs": 2, "median_t_m": 0.15, "median_t_over_baseline": 0.5, "median_R_deg": 4.0})
    assert split["1-1.5 m"] == pytest.approx(
        {"pairs": 2, "median_t_m": 0.4, "median_t_over_baseline": 0.375, "median_R_deg": 3.0})


def test_depth_error_parts_split_scale_tilt_and_noise_and_sum_to_the_error():
    td = _script("train_demo")
    gen = torch.Generator().manual_seed(0)
    kpts = torch.rand(2, 50, 2, generator=gen) * torch.tensor([320.0, 240.0])
    log_gt = torch.rand(2, 50, generator=gen) * 2.0
    valid = torch.ones(2, 50, dtype=torch.bool)
    valid[1, :5] = False  # unknown GT depth: every part 0 there
    x = kpts[..., 0] / 160.0 - 1.0
    noise = 0.03 * torch.randn(2, 50, generator=gen)
    # image 0: a scale error and a left-right tilt only; image 1: the same plus point noise
    error = 0.2 + 0.1 * x + torch.stack([torch.zeros(50), noise[1]])
    parts = td.depth_error_parts(error, kpts, log_gt, valid, (320, 240))
    total = parts["scale"] + parts["low_order"] + parts["noise"]
    assert torch.allclose(total[valid], error[valid], atol=1e-6)
    assert (total[~valid] == 0).all()
    assert parts["noise"][0].abs().max() < 1e-5  # an exact tilt is all low-order
    assert parts["scale"][0] == pytest.approx(float(error[0].mean()), abs=1e-6)
    tilt = parts["low_order"][0] - (0.1 * x[0] - 0.1 * x[0].mean())
    assert tilt.abs().max() < 1e-5
    # independent point noise stays noise: the fit takes little of it
    kept = parts["noise"][1, 5:]
    assert float(kept.std()) == pytest.approx(float(noise[1, 5:].std()), rel=0.15)


def test_seed_spread_gives_per_seed_and_pooled_medians_and_gates_the_pool():
    td = _script("train_demo")
    # two seeds of the same three pairs; confidence / 100 sampled matches is the inlier ratio
    seed0 = torch.tensor([[0.1, 1.0, 5.0, 10.0], [0.2, 2.0, 5.0, 2.0], [0.9, 9.0, 5.0, 8.0]])
    seed1 = torch.tensor([[0.3, 3.0, 5.0, 9.0], [0.4, 4.0, 5.0, 1.0], [0.5, 5.0, 5.0, 7.0]])
    out = td.seed_spread([seed0, seed1], num_samples=100, threshold=0.05)
    assert out["seeds"] == 2
    assert out["median_t_m_per_seed"] == pytest.approx([0.2, 0.4])
    assert out["median_R_deg_per_seed"] == pytest.approx([2.0, 4.0])
    assert out["pooled"]["median_t_m"] == pytest.approx(0.35)  # of 0.1 .2 .3 .4 .5 .9
    assert out["pooled"]["median_R_deg"] == pytest.approx(3.5)
    assert out["pooled"]["pose_precision_25cm_5deg"] == pytest.approx(2 / 6)
    assert out["gate"]["accepted"] == {"pairs": 4, "median_t_m": pytest.approx(0.4),
                                       "median_R_deg": pytest.approx(4.0)}
    assert out["gate"]["rejected"] == {"pairs": 2, "median_t_m": pytest.approx(0.3),
                                       "median_R_deg": pytest.approx(3.0)}


def test_export_stores_fp16_but_the_named_submodules_in_fp32(tmp_path):
    from mickey_ros.model.checkpoint import load_checkpoint, save_checkpoint
    from mickey_ros.model.mickey import MicKey
    from small_models import small_demo_cnn

    td = _script("train_demo")
    torch.manual_seed(0)
    source = save_checkpoint(tmp_path / "run.ckpt", MicKey(small_demo_cnn()))
    config = tmp_path / "demo.yaml"
    config.write_text("model: mickey_demo_cnn\n")
    with pytest.raises(ValueError, match="no submodule named conv_encodr"):
        td.stage_export(source, tmp_path / "typo.ckpt", config, keep_fp32=("conv_encodr",))
    out = td.stage_export(source, tmp_path / "demo.ckpt", config, keep_fp32=("conv_encoder",))
    state = torch.load(out, map_location="cpu", weights_only=False)["state_dict"]
    float_keys = [k for k, v in state.items() if v.is_floating_point()]
    encoder = [k for k in float_keys if ".conv_encoder." in k]
    assert encoder and all(state[k].dtype == torch.float32 for k in encoder)
    assert all(state[k].dtype == torch.float16 for k in float_keys if k not in encoder)
    exported, _ = load_checkpoint(out)
    original, _ = load_checkpoint(source)
    for (name, a), (_, b) in zip(exported.named_parameters(), original.named_parameters()):
        assert a.dtype == torch.float32  # loading casts fp16 back
        if ".conv_encoder." in name:
            assert torch.equal(a, b)
        else:
            assert torch.allclose(a, b, rtol=1e-3, atol=1e-4)
