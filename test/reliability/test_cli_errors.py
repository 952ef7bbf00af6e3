"""Command-line failures: one line on stderr, exit code 2, no traceback unless --debug (issue 9).

Every case runs ``mickey_ros.cli.main.main([...])`` (or ``mickey-train``'s ``cli``) in-process
and checks the exit code and the exact first line the user reads.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from rosbags.rosbag2 import Writer
from rosbags.typesys import Stores, get_typestore

from mickey_ros.cli.main import UserError, main
from mickey_ros.model.checkpoint import CheckpointError, save_checkpoint
from mickey_ros.model.config import mickey_tiny
from mickey_ros.model.mickey import MicKey

K = "60,60,28,28"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Two 56x56 images, a tiny checkpoint, a garbage and a tampered one, a one-frame bag."""
    root = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    for name in ("ref.png", "query.png"):
        cv2.imwrite(str(root / name), rng.integers(0, 256, (56, 56, 3), dtype=np.uint8))
    torch.manual_seed(0)
    model = MicKey(mickey_tiny())
    save_checkpoint(root / "tiny.ckpt", model)
    torch.save({"state_dict": model.state_dict()}, root / "no_config.ckpt")
    (root / "garbage.ckpt").write_bytes(b"PK\x03\x04 not really a checkpoint")

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {root / 'pwned'}",))

    torch.save({"state_dict": {}, "hyper_parameters": Payload()}, root / "evil.ckpt")
    _write_bag(root / "bag")
    return {p.name: p for p in root.iterdir()} | {"root": root}


def _write_bag(path: Path) -> None:
    ts = get_typestore(Stores.ROS2_JAZZY)
    T = ts.types
    header = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=1, nanosec=0),
                                      frame_id="cam")
    image = T["sensor_msgs/msg/Image"](header=header, height=28, width=28, encoding="rgb8",
                                       is_bigendian=0, step=84, data=np.zeros(28 * 84, np.uint8))
    roi = T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                do_rectify=False)
    info = T["sensor_msgs/msg/CameraInfo"](
        header=header, height=28, width=28, distortion_model="plumb_bob", d=np.zeros(5),
        k=np.array([30.0, 0, 14, 0, 30, 14, 0, 0, 1]), r=np.eye(3).ravel(), p=np.zeros(12),
        binning_x=0, binning_y=0, roi=roi)
    with Writer(path, version=9) as writer:
        for topic, msgtype, msg in (("/cam/camera_info", "sensor_msgs/msg/CameraInfo", info),
                                    ("/cam/image_raw", "sensor_msgs/msg/Image", image)):
            connection = writer.add_connection(topic, msgtype, typestore=ts)
            writer.write(connection, 10**9, ts.serialize_cdr(msg, msgtype))


def run(capsys, *argv: str) -> tuple[int, list[str]]:
    code = main(list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err.strip().splitlines()


def pose_args(files, ref="ref.png", checkpoint="tiny.ckpt", ref_k=K) -> list[str]:
    return [str(files["root"] / ref), str(files["query.png"]), "--ref-K", ref_k, "--query-K", K,
            "--checkpoint", str(files["root"] / checkpoint)]


class TestPoseErrors:
    def test_missing_image(self, capsys, files):
        code, lines = run(capsys, "pose", *pose_args(files, ref="nope.png"))
        assert code == 2 and lines == [
            f"mickey-ros pose: error: image file {files['root'] / 'nope.png'} does not exist; "
            "check the path"]

    def test_bad_ref_k(self, capsys, files):
        code, lines = run(capsys, "pose", *pose_args(files, ref_k="60,60,28"))
        assert code == 2 and lines == ["mickey-ros pose: error: --ref-K expects 'fx,fy,cx,cy' "
                                       "(four comma-separated numbers), got '60,60,28'"]

    def test_no_intrinsics(self, capsys, files):
        code, lines = run(capsys, "pose", str(files["ref.png"]), str(files["query.png"]))
        assert code == 2 and lines == [
            "mickey-ros pose: error: give --intrinsics FILE, or both --ref-K and --query-K"]

    def test_missing_checkpoint(self, capsys, files):
        code, lines = run(capsys, "pose", *pose_args(files, checkpoint="missing.ckpt"))
        assert code == 2 and lines == [f"mickey-ros pose: error: checkpoint file "
                                       f"{files['root'] / 'missing.ckpt'} does not exist"]

    def test_truncated_checkpoint(self, capsys, files, tmp_path):
        cut = tmp_path / "cut.ckpt"
        cut.write_bytes(files["tiny.ckpt"].read_bytes()[:5000])
        code, lines = run(capsys, "pose", *pose_args(files, checkpoint=str(cut)))
        assert code == 2 and len(lines) == 1
        assert lines[0].startswith(f"mickey-ros pose: error: {cut} is not a readable PyTorch "
                                   "checkpoint (truncated or corrupt?)")

    def test_garbage_checkpoint(self, capsys, files):
        code, lines = run(capsys, "pose", *pose_args(files, checkpoint="garbage.ckpt"))
        assert code == 2 and len(lines) == 1 and "truncated or corrupt?" in lines[0]

    def test_tampered_checkpoint(self, capsys, files):
        code, lines = run(capsys, "pose", *pose_args(files, checkpoint="evil.ckpt"))
        assert code == 2 and len(lines) == 1
        assert lines[0].endswith("refusing to execute code from the file")
        assert not (files["root"] / "pwned").exists()

    def test_wrong_architecture(self, capsys, files):
        """Tiny weights without an embedded config meet the default (official ViT-L) model:
        the first line says what is wrong and what to do, the key lists follow."""
        code, lines = run(capsys, "pose", *pose_args(files, checkpoint="no_config.ckpt"))
        assert code == 2
        assert lines[0] == ("mickey-ros pose: error: cannot load no_config.ckpt into model "
                            "mickey_vitl14: the weights are for another architecture (pass its "
                            "model config) or the file is damaged:")
        assert all(line.startswith("  checkpoint ") for line in lines[1:]) and len(lines) == 4


class TestDebugFlag:
    def test_user_error_propagates(self, files):
        with pytest.raises(UserError, match="--ref-K expects"):
            main(["--debug", "pose", *pose_args(files, ref_k="x")])

    def test_checkpoint_error_propagates(self, files):
        with pytest.raises(CheckpointError, match="truncated or corrupt"):
            main(["--debug", "pose", *pose_args(files, checkpoint="garbage.ckpt")])


def replay_args(files, *extra: str) -> list[str]:
    return ["replay", str(files["bag"]), "--camera", "/cam/image_raw",
            "--reference-frame-index", "0", "--model-config", "mickey_tiny", "--device", "cpu",
            "--no-progress", *extra, "--out", str(files["root"] / "out")]


class TestReplayErrors:
    def test_missing_topic_names_the_alternatives(self, capsys, files):
        code, lines = run(capsys, *replay_args(files, "--camera", "/nope"))
        assert code == 2
        assert lines[0] == ("mickey-ros replay: error: camera topic '/nope' is not in the bag; "
                            "topics of a suitable type: /cam/image_raw")
        assert lines[-2:] == ["  /cam/camera_info (sensor_msgs/msg/CameraInfo, 1 msgs)",
                              "  /cam/image_raw (sensor_msgs/msg/Image, 1 msgs)"]

    def test_missing_camera_info_topic(self, capsys, files):
        code, lines = run(capsys, *replay_args(files, "--camera-info", "/cam/info"))
        assert code == 2 and lines[0] == (
            "mickey-ros replay: error: CameraInfo of /cam/image_raw topic '/cam/info' is not in "
            "the bag; topics of a suitable type: /cam/camera_info")

    def test_missing_bag(self, capsys, files):
        code, lines = run(capsys, "replay", str(files["root"] / "nope"),
                          "--reference-frame-index", "0", "--no-progress")
        assert code == 2 and lines == [
            f"mickey-ros replay: error: bag {files['root'] / 'nope'} does not exist"]

    def test_output_path_under_a_file(self, capsys, files):
        """An OSError the user can fix (here NotADirectoryError) is one line too."""
        out = files["tiny.ckpt"] / "out"
        code, lines = run(capsys, *replay_args(files, "--resize", "112", "112")[:-1], str(out))
        assert code == 2 and len(lines) == 1 and lines[0].startswith(
            "mickey-ros replay: error: [Errno 20] Not a directory")

    def test_keyframe_too_small_for_the_network(self, capsys, files):
        code, lines = run(capsys, *replay_args(files))
        assert code == 2 and lines == [
            "mickey-ros replay: error: keyframe @ 1.000 s: keyframe from live frame 0 rejected: "
            "reference image is 28x28 px at the network input, below this model's minimum of 98 px "
            "per side; use a larger image or working size (--size WxH on the command line, "
            "EstimatorConfig.resize in Python, model.input_width/height in the node)"]

    def test_bad_reference_k(self, capsys, files):
        code, lines = run(capsys, *replay_args(files, "--reference-K", "1,2"))
        assert code == 2 and lines == [
            "mickey-ros replay: error: --reference-K expects 4 comma-separated numbers, got '1,2'"]

    def test_two_keyframe_sources(self, capsys, files):
        code, lines = run(capsys, *replay_args(files, "--reference-topic", "/cam/image_raw"))
        assert code == 2 and len(lines) == 1 and "choose exactly one keyframe source" in lines[0]


class TestArgumentErrors:
    """argparse's own behaviour: usage line + one error line, exit code 2."""

    @pytest.mark.parametrize("argv, text", [
        (["pose"], "the following arguments are required: ref, query"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["pose", "a.png", "b.png", "--resize", "10"], "argument --resize: expected 2 arguments"),
        (["replay", "bag", "--every", "two"], "argument --every: invalid int value: 'two'"),
    ])
    def test_usage_and_one_error_line(self, capsys, argv, text):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 2 and text in err[-1] and err[0].startswith("usage:")


class TestTrainConfigErrors:
    @pytest.mark.parametrize("text, expected", [
        ("batch_sise: 4\n", "unknown key(s) ['batch_sise']; valid keys are ['batch_size', "),
        ("optim: {lr: fast}\n", ".optim.lr must be float, got str 'fast'"),
        ("seed: 2020-13-01\n", "is not valid YAML: month must be in 1..12"),
        ("data: [1, 2]\n", ".data must be a mapping, got list"),
    ])
    def test_one_line(self, capsys, tmp_path, text, expected):
        train = pytest.importorskip("mickey_ros.train.main")
        (tmp_path / "train.yaml").write_text(text)
        assert train.cli(["--config", str(tmp_path / "train.yaml")]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("mickey-train: error: ")
        assert expected in lines[0]
