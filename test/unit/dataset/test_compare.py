"""Tests for mickey_ros.eval.compare and scripts/before_after.py (issue 27): before/after table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from dataset_bags import write_quick_bag

from mickey_ros.dataset import DatasetConfig, main as convert
from mickey_ros.eval import compare
from mickey_ros.eval.common import ModelSettings
from mickey_ros.mapfree.dataset import list_scenes

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("compare")
    bag = write_quick_bag(root / "bag", frames=100)
    return convert(DatasetConfig(), [bag], root / "ds", progress=False)


class TestCompareMain:
    def test_same_checkpoint_same_seed_same_row(self, dataset, tmp_path):
        demo = ModelSettings(checkpoint="demo", seed=3)
        rows = compare.main({"before": demo, "after": demo}, dataset, tmp_path)
        before, after = rows["before"], rows["after"]
        assert before["frames"] == after["frames"] > 0
        assert before["t_err_m"] == after["t_err_m"] and before["r_err_deg"] == after["r_err_deg"]
        assert (tmp_path / "compare_cdf.png").stat().st_size > 0
        table = (tmp_path / "compare.md").read_text().splitlines()
        assert table[0].startswith("| model | frames | median translation (m)")
        assert [line.split(" | ")[0] for line in table[2:]] == ["| before", "| after",
                                                               "| no motion"]

    def test_no_motion_error_is_the_true_motion(self, dataset, tmp_path):
        rows = compare.main({}, dataset, tmp_path)
        distances = []
        for scene in list_scenes(dataset, "val"):
            for frame in scene.query_frames(1):
                T = scene.T_cam_world(frame)  # world = the reference camera
                distances.append(np.linalg.norm(T[:3, :3].T @ T[:3, 3]))
        assert rows["no motion"]["frames"] == len(distances) > 0
        assert rows["no motion"]["median_t_m"] == pytest.approx(np.median(distances), abs=1e-5)
        saved = json.loads((tmp_path / "compare.json").read_text())
        assert saved["no motion"]["frames"] == len(distances)


class TestBeforeAfterScript:
    def test_missing_checkpoint(self, dataset, tmp_path):
        result = subprocess.run(
            [sys.executable, str(ROOT / "scripts/before_after.py"), "--data", str(dataset),
             "--after", str(tmp_path / "nope.ckpt"), "--out", str(tmp_path / "o")],
            capture_output=True, text=True, check=False)
        assert result.returncode == 2
        assert result.stderr.strip() == f"before_after: error: --after {tmp_path / 'nope.ckpt'} " \
            "does not exist"


@pytest.fixture(scope="module")
def rgbd_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("compare_rgbd")
    bag = write_quick_bag(root / "bag", frames=100, depth_16uc1=3.0)
    return convert(DatasetConfig(depth_topic="/camera/depth/image_raw"), [bag], root / "ds",
                   progress=False)


class TestFinetuneDemoConfig:
    # the quick bag's depth topic sees a flat wall 3 m ahead: few pairs overlap by depth
    @pytest.mark.parametrize("config, data, min_pairs, own_per_batch", [
        ("finetune_demo_own_data.yaml", "dataset", 50, 4),
        ("finetune_demo_own_data_rgbd.yaml", "rgbd_dataset", 2, 3),
    ])
    def test_reads_a_converted_dataset(self, config, data, min_pairs, own_per_batch, request):
        from mickey_ros.train.config import load_train_config
        from mickey_ros.train.data import build_datasets

        dataset = request.getfixturevalue(data)
        cfg = load_train_config(ROOT / "config/train" / config)
        assert (cfg.model, cfg.data.source, cfg.data.width, cfg.data.height) == (
            "mickey_demo_cnn", "mapfree", 320, 240)
        train, val, sampler = build_datasets(cfg.data, dataset, seed=cfg.seed,
                                             batch_size=cfg.batch_size)
        own = train.main  # the converted bag; train.rehearsal: the demo rig's rendered rooms
        overlaps = [p.overlap for s in own.scenes for p in s.overlap_pairs(
            cfg.data.min_overlap, cfg.data.max_overlap)]
        assert len(own) == len(overlaps) > min_pairs and 0.3 < min(overlaps) <= max(overlaps) < 0.9
        assert len(val) == sum(len(s.query_frames(1)) for s in val.scenes) > 0
        assert cfg.batch_size == 6
        assert len(train.rehearsal) > 0
        indices = list(sampler)
        batches = [indices[i: i + cfg.batch_size] for i in range(0, len(indices), cfg.batch_size)]
        # every full batch: 4 (RGB-D: 3) pairs of the converted bag, the rest rehearsal rooms
        assert {sum(i < len(own) for i in b) for b in batches
                if len(b) == cfg.batch_size} == {own_per_batch}
        # the converter's depth PNGs supervise the RGB-D config's pairs of the bag (millimetres
        # read as metres), the no-depth config's pairs carry none (0 = unknown)
        depth0 = train[0]["depth0"]
        if data == "rgbd_dataset":
            assert float(depth0[depth0 > 0].median()) == pytest.approx(3.0, abs=1e-3)
        else:
            assert float(depth0.abs().max()) == 0.0
