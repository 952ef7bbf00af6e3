"""``mickey-ros check-weights`` (issue 15): strict load + one forward pass, one line either way."""

from __future__ import annotations

import pytest
import torch
from model.test_checkpoint import _official_files  # the official-layout file builder

from mickey_ros.cli.main import main
from mickey_ros.model.config import mickey_tiny
from mickey_ros.model.mickey import MicKey


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """Official-layout mickey.ckpt (DINOv2 keys stripped) + DINOv2 file, random tiny weights."""
    torch.manual_seed(0)
    return _official_files(MicKey(mickey_tiny()).eval(), tmp_path_factory.mktemp("official"))


def _run(capsys, *argv):
    code = main(["check-weights", *argv])
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return code, out.out.splitlines(), out.err.splitlines()


class TestCheckWeights:
    def test_official_layout_passes(self, capsys, official):
        ckpt, dino = official
        code, out, err = _run(capsys, "--checkpoint", str(ckpt), "--dinov2-weights", str(dino),
                              "--model-config", "mickey_tiny")
        params = sum(p.numel() for p in MicKey(mickey_tiny()).parameters())
        assert code == 0 and err == [] and len(out) == 1
        assert out[0].startswith(f"ok: mickey.ckpt + dinov2_custom_pretrain.pth load strictly "
                                 f"into mickey_tiny ({params / 1e6:.1f} M parameters, ")
        # 280x210 -> a 20 x 15 grid of 14 px cells
        assert "a forward pass at 280x210 gives finite keypoints, depth, scores and matches " \
               "(300 keypoints per image, " in out[0]

    def test_missing_dinov2_file_is_one_line(self, capsys, official):
        code, out, err = _run(capsys, "--checkpoint", str(official[0]),
                              "--model-config", "mickey_tiny")
        assert code == 2 and out == [] and len(err) == 1
        assert err[0].startswith("mickey-ros check-weights: error: ")
        assert "--dinov2-weights" in err[0]

    def test_damaged_dinov2_file_names_the_key(self, capsys, official, tmp_path):
        ckpt, dino = official
        weights = torch.load(dino, weights_only=True)
        del weights["pos_embed"]
        torch.save(weights, tmp_path / "cut.pth")
        code, out, err = _run(capsys, "--checkpoint", str(ckpt), "--dinov2-weights",
                              str(tmp_path / "cut.pth"), "--model-config", "mickey_tiny")
        assert code == 2 and len(err) == 1 and "pos_embed" in err[0]
        assert err[0].endswith("(--debug lists them all)")

    def test_non_finite_weights_fail_the_forward_pass(self, capsys, official, tmp_path):
        ckpt, dino = official
        weights = torch.load(dino, weights_only=True)
        weights["norm.weight"] = torch.full_like(weights["norm.weight"], float("nan"))
        torch.save(weights, tmp_path / "nan.pth")
        code, out, err = _run(capsys, "--checkpoint", str(ckpt), "--dinov2-weights",
                              str(tmp_path / "nan.pth"), "--model-config", "mickey_tiny")
        assert code == 2 and err == [
            "mickey-ros check-weights: error: the forward pass gives non-finite keypoints, "
            "depth, scores, descriptors, match probabilities: the weights are damaged or for "
            "another model (--model-config)"]
