"""Arithmetic of the demo-model benchmark scripts (forward_drive.py, train_demo.py)."""

import importlib.util
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
