"""Every evaluation output names the model (issue 15): printed result, metrics.json, report.md."""

import json

from mickey_ros.cli.main import main
from mickey_ros.eval import mapfree, pairs
from mickey_ros.eval.common import ModelSettings

DEMO = "demo_model.ckpt (demo model: for trying the tool, not for real use)"


class TestMapfreeNamesModel:
    def test_cli_demo_default(self, tmp_path, tiny_split, gt_double, monkeypatch, capsys):
        monkeypatch.setattr(mapfree, "build_estimator", lambda settings: gt_double)
        assert main(["eval", "mapfree", "--data", str(tiny_split.root), "--out",
                     str(tmp_path)]) == 0
        assert json.loads(capsys.readouterr().out)["model"] == DEMO
        score_dir = tmp_path / "mapfree-val-demo-rnative-fp32-seed0" / "score"
        assert json.loads((score_dir / "metrics.json").read_text())["details"]["model"] == DEMO
        assert f", model: {DEMO}" in (score_dir / "report.md").read_text()

    def test_checkpoint_file_name(self, tmp_path, tiny_split, gt_double):
        cfg = mapfree.MapfreeEvalConfig(model=ModelSettings(checkpoint="/models/mine.ckpt"))
        mapfree.evaluate(cfg, tiny_split.root, tmp_path, estimator_factory=lambda m: gt_double)
        metrics = tmp_path / "mapfree-val-mine-rnative-fp32-seed0" / "score" / "metrics.json"
        assert json.loads(metrics.read_text())["details"]["model"] == "mine.ckpt"


class TestPairsNamesModel:
    def test_metrics_json_and_report(self, tmp_path):
        import cv2
        import numpy as np

        from mickey_ros.estimator.result import PoseEstimate

        images = tmp_path / "images"
        images.mkdir()
        for name in ("a.png", "b.png"):
            cv2.imwrite(str(images / name), np.zeros((8, 8, 3), np.uint8))
        (tmp_path / "pairs.txt").write_text(
            "a.png b.png 0 0 10 0 4 0 10 4 0 0 1 10 0 4 0 10 4 0 0 1 "
            "1 0 0 0.5 0 1 0 0 0 0 1 0 0 0 0 1\n")

        class Double:
            def set_reference(self, image, K):
                pass

            def estimate(self, image, K):
                return PoseEstimate(valid=True, t=np.array([0.5, 0, 0]), confidence=1.0,
                                    num_samples=1)

        cfg = pairs.PairsEvalConfig(model=ModelSettings(checkpoint="mine.ckpt"))
        pairs.main(cfg, tmp_path / "pairs.txt", images, tmp_path / "o", Double())
        run = tmp_path / "o" / "pairs-pairs-mine-rnative-fp32-seed0"
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["model"] == "mine.ckpt" and metrics["Pairs"] == 1
        assert (run / "report.md").read_text().splitlines()[2] == "Model: mine.ckpt"
