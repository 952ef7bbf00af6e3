"""``mickey-ros pose`` front door (issue 15): model named, sizes, intrinsics, odd image files."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest
import torch

from mickey_ros.cli.main import UserError, main
from mickey_ros.cli.pose import intrinsics_for_image
from mickey_ros.estimator.relative_pose import DEMO_MODEL_NOTE, model_label
from mickey_ros.mapfree.files import CameraIntrinsics, intrinsics_matrix
from mickey_ros.model.checkpoint import save_checkpoint
from mickey_ros.model.config import mickey_tiny
from mickey_ros.model.mickey import MicKey
from mickey_ros.utils.images import load_rgb


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("pose")
    rng = np.random.default_rng(0)
    for name in ("a.jpg", "b.jpg"):
        cv2.imwrite(str(root / name), rng.integers(0, 256, (750, 1000, 3), dtype=np.uint8))
    torch.manual_seed(0)
    save_checkpoint(root / "tiny.ckpt", MicKey(mickey_tiny()))
    (root / "intrinsics.txt").write_text(
        "a.jpg 800 800 500 375 2000 1500\n"  # calibrated at twice the size: same aspect
        "b.jpg 800 800 500 375 1920 1080\n"  # another aspect: cannot be this image
        "c.jpg 800 800 500 375 1000 750\n")
    return root


def _pose(capsys, files, *argv):
    code = main(["pose", *(str(files / a) if a.endswith((".jpg", ".png")) else a for a in argv),
                 "--checkpoint", str(files / "tiny.ckpt")])
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return code, out.out, out.err.splitlines()


class TestModelLabel:
    def test_demo_and_file(self, files):
        demo = f"demo_model.ckpt ({DEMO_MODEL_NOTE})"
        assert DEMO_MODEL_NOTE == "demo model: for trying the tool, not for real use"
        assert model_label(None) == model_label("demo") == demo
        assert model_label(files / "tiny.ckpt") == "tiny.ckpt"

    def test_estimators_carry_it(self):
        from mickey_ros.estimator.relative_pose import RelativePoseEstimator

        assert RelativePoseEstimator.from_demo().model_name == model_label(None)
        assert RelativePoseEstimator.from_model_config(mickey_tiny()).model_name == (
            "mickey_tiny (RANDOM weights: poses are meaningless)")


class TestPoseOutput:
    def test_json_names_model_and_default_size(self, capsys, files):
        code, out, err = _pose(capsys, files, "a.jpg", "a.jpg", "--ref-K", "400,400,250,187",
                               "--query-K", "400,400,250,187", "--json")
        result = json.loads(out)
        assert code == 0 and result["valid"]
        assert result["model"] == "tiny.ckpt" and result["network_input_wh"] == [720, 540]
        assert err == ["note: network input 720x540 (the query scaled to a 720 px long side); "
                       "--size WxH sets another"]

    def test_text_names_model(self, capsys, files):
        code, out, _ = _pose(capsys, files, "a.jpg", "a.jpg", "--ref-K", "400,400,250,187",
                             "--query-K", "400,400,250,187", "--size", "280x210")
        assert out.splitlines()[:2] == ["model            : tiny.ckpt",
                                        "network input    : 280x210 px"]
        threads = "OMP_NUM_THREADS" if "OMP_NUM_THREADS" in os.environ else "auto: small model"
        assert out.splitlines()[2].startswith("runs with        : precision fp32; threads ")
        assert threads in out.splitlines()[2]

    def test_stretching_size_is_said(self, capsys, files):
        _, _, err = _pose(capsys, files, "a.jpg", "a.jpg", "--ref-K", "400,400,250,187",
                          "--query-K", "400,400,250,187", "--resize", "210", "280")
        said = ("note: network input 210x280 (resize, --size) changes the aspect of the {} "
                "image (1000x750): it is stretched, and the poses with it; 210x158 keeps it")
        assert err == [said.format("reference"), said.format("query")]  # the estimator's check

    def test_too_small_size_one_rule(self, capsys, files):
        code, _, err = _pose(capsys, files, "a.jpg", "a.jpg", "--ref-K", "400,400,250,187",
                             "--query-K", "400,400,250,187", "--size", "40x30")
        assert code == 2 and err == [
            "mickey-ros pose: error: reference image is 40x30 px at the network input, below "
            "this model's minimum of 98 px per side; use a larger image or working size (--size "
            "WxH on the command line, EstimatorConfig.resize in Python, model.input_width/height "
            "in the node)"]


class TestIntrinsicsForImage:
    K = intrinsics_matrix(800, 800, 500, 375)

    def test_same_size_unchanged(self):
        np.testing.assert_array_equal(
            intrinsics_for_image(CameraIntrinsics(self.K, 1000, 750), (1000, 750), "x"), self.K)

    def test_same_aspect_scaled(self):
        notes = []
        K = intrinsics_for_image(CameraIntrinsics(self.K, 2000, 1500), (1000, 750), "f: a.jpg",
                                 notes.append)
        # pixel-centre convention: f' = f/2, c' = c/2 - 1/4
        np.testing.assert_allclose(K, intrinsics_matrix(400, 400, 249.75, 187.25), atol=1e-12)
        assert notes == ["f: a.jpg is for 2000x1500; K scaled to the image's 1000x750"]

    def test_other_aspect_refused(self):
        with pytest.raises(UserError, match=r"^f: b.jpg states 1920x1080 but the image is "
                           r"741x500 \(another aspect ratio"):
            intrinsics_for_image(CameraIntrinsics(self.K, 1920, 1080), (741, 500), "f: b.jpg")

    def test_cli_refuses_other_aspect(self, capsys, files):
        code, _, err = _pose(capsys, files, "a.jpg", "b.jpg", "--intrinsics",
                             str(files / "intrinsics.txt"))
        assert code == 2 and err[-1] == (
            f"mickey-ros pose: error: {files / 'intrinsics.txt'}: {files / 'b.jpg'} states "
            "1920x1080 but the image is 1000x750 (another aspect ratio: a crop or another "
            "camera); fix the line's K and size, or pass --ref-K/--query-K")

    def test_missing_image_said_before_intrinsics(self, capsys, files):
        code, _, err = _pose(capsys, files, "a.jpg", "c.jpg", "--intrinsics",
                             str(files / "intrinsics.txt"))
        assert code == 2 and err == [
            f"mickey-ros pose: error: image file {files / 'c.jpg'} does not exist; check the path"]


class TestLoadRgbConversions:
    def test_grayscale_rgba_16bit_said(self, tmp_path):
        gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
        rgba = np.dstack([gray, gray + 1, gray + 2, np.full_like(gray, 9)])  # B, G, R, A
        cv2.imwrite(str(tmp_path / "g.png"), gray)
        cv2.imwrite(str(tmp_path / "a.png"), rgba)
        cv2.imwrite(str(tmp_path / "d.png"), gray.astype(np.uint16) * 257)
        notes = []
        g, a, d = (load_rgb(tmp_path / n, notes.append) for n in ("g.png", "a.png", "d.png"))
        np.testing.assert_array_equal(g, np.dstack([gray] * 3))
        np.testing.assert_array_equal(a, np.dstack([gray + 2, gray + 1, gray]))  # RGB order
        np.testing.assert_array_equal(d, np.dstack([gray] * 3))  # high byte of v * 257 is v
        assert notes == [f"{tmp_path / 'g.png'} is grayscale, copied to R, G and B",
                         f"{tmp_path / 'a.png'} is RGBA, alpha channel dropped",
                         f"{tmp_path / 'd.png'} is 16-bit, scaled to 8-bit, grayscale, copied "
                         "to R, G and B"]

    def test_colour_jpeg_silent(self, files):
        notes = []
        assert load_rgb(files / "a.jpg", notes.append).shape == (750, 1000, 3) and notes == []

    def test_pose_says_it_once(self, capsys, files, tmp_path):
        cv2.imwrite(str(tmp_path / "g.png"), np.zeros((120, 160), np.uint8))
        _, _, err = _pose(capsys, files, str(tmp_path / "g.png"), str(tmp_path / "g.png"),
                          "--ref-K", "100,100,80,60", "--query-K", "100,100,80,60")
        assert err == [f"note: {tmp_path / 'g.png'} is grayscale, copied to R, G and B"]
