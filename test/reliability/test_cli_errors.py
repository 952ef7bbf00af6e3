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


class TestBadInputFiles:
    """Issue 28: inputs that gave a wrong answer (exit 0) or a misleading message."""

    def test_truncated_jpeg(self, capsys, files, tmp_path):
        cut = tmp_path / "cut.jpg"
        rgb = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
        data = cv2.imencode(".jpg", rgb)[1].tobytes()
        cut.write_bytes(data[: len(data) // 2])
        code, lines = run(capsys, "pose", *pose_args(files, ref=str(cut)))
        assert code == 2 and lines == [
            f"mickey-ros pose: error: image {cut} is a truncated JPEG ({len(data) // 2} bytes, "
            "no end-of-image marker); copy or export the file again"]

    def test_directory_as_image_and_checkpoint(self, capsys, files, tmp_path):
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "last.ckpt").write_bytes(files["tiny.ckpt"].read_bytes())
        code, lines = run(capsys, "pose", *pose_args(files, ref=str(tmp_path)))
        assert code == 2 and lines == [f"mickey-ros pose: error: image file {tmp_path} is a "
                                       "directory; pass a .jpg/.jpeg/.png file"]
        code, lines = run(capsys, "pose", *pose_args(files, checkpoint=str(tmp_path / "run")))
        assert code == 2 and lines == [
            f"mickey-ros pose: error: checkpoint file {tmp_path / 'run'} is a directory; pass a "
            ".ckpt/.pth/.pt file; it holds last.ckpt"]

    @pytest.mark.parametrize("fx, reason", [("nan", "fx = nan is not a finite number"),
                                            ("0", "fx = 0 must be positive (focal length in "
                                                  "pixels)"),
                                            ("-60", "fx = -60 must be positive (focal length in "
                                                    "pixels)")])
    def test_bad_intrinsics_line_named(self, capsys, files, tmp_path, fx, reason):
        """It said "no line for ref.png"."""
        intrinsics = tmp_path / "intrinsics.txt"
        intrinsics.write_text(f"ref.png {fx} 60 28 28 56 56\nquery.png 60 60 28 28 56 56\n")
        code, lines = run(capsys, "pose", str(files["ref.png"]), str(files["query.png"]),
                          "--intrinsics", str(intrinsics), "--checkpoint", str(files["tiny.ckpt"]))
        assert code == 2 and lines == [
            f"mickey-ros pose: error: {intrinsics}:1: the line for ref.png is invalid: {reason}"]

    def test_exif_rotation_said_beside_the_aspect_error(self, capsys, files, tmp_path):
        """It said only "another aspect ratio"."""
        phone = tmp_path / "phone.jpg"
        rgb = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
        data = cv2.imencode(".jpg", rgb)[1].tobytes()
        tiff = b"MM\x00\x2a\x00\x00\x00\x08\x00\x01\x01\x12\x00\x03\x00\x00\x00\x01\x00\x06"
        app1 = b"Exif\x00\x00" + tiff + b"\x00\x00\x00\x00\x00\x00"
        phone.write_bytes(data[:2] + b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1
                          + data[2:])
        intrinsics = tmp_path / "intrinsics.txt"
        intrinsics.write_text("phone.jpg 100 100 60 80 120 160\nquery.png 60 60 28 28 56 56\n")
        code, lines = run(capsys, "pose", str(phone), str(files["query.png"]),
                          "--intrinsics", str(intrinsics), "--checkpoint", str(files["tiny.ckpt"]))
        assert code == 2 and lines[0].startswith(
            f"note: {phone} has EXIF orientation 6 (rotated 90 degrees clockwise for display); "
            "it is read as stored (sensor orientation)")
        assert lines[1] == (
            f"mickey-ros pose: error: {intrinsics}: {phone} states 120x160 but the image is "
            "160x120 (another aspect ratio: width and height swapped: a rotated image? files "
            "are read as stored, without EXIF rotation); fix the line's K and size, or pass "
            "--ref-K/--query-K")

    def test_text_file_named_mcap(self, capsys, tmp_path):
        """--list-topics exited 0 with "(the bag has no topics)"."""
        fake = tmp_path / "notes.mcap"
        fake.write_text("not a bag\n")
        code, lines = run(capsys, "replay", str(fake), "--list-topics")
        assert code == 2 and lines == [
            f"mickey-ros replay: error: {fake} is not an MCAP file (it starts with b'not a ba'); "
            "pass a rosbag2 recording: a bag directory (with metadata.yaml) or the .mcap file "
            "`ros2 bag record -s mcap` wrote"]

    def test_broken_metadata_yaml(self, capsys, files, tmp_path):
        """It was followed by a sqlite3 '.recover' hint."""
        import shutil

        bag = shutil.copytree(files["bag"], tmp_path / "bag")
        (bag / "metadata.yaml").write_text("rosbag2_bagfile_information: {version: [9\n")
        code, lines = run(capsys, "replay", str(bag), "--list-topics")
        assert code == 2 and len(lines) == 1 and ".recover" not in lines[0]
        assert lines[0].startswith(f"mickey-ros replay: error: {bag / 'metadata.yaml'} is not "
                                   "valid YAML (")
        assert lines[0].endswith(f"); rebuild it from the recorded files with `ros2 bag reindex "
                                 f"{bag}` (add `-s mcap` for MCAP storage)")


class TestSynthErrors:
    def test_baseline_no_place_can_hold(self, capsys, tmp_path):
        """A traceback around the message, after rendering 8 scenes."""
        code, lines = run(capsys, "synth", "pairs", "--out", str(tmp_path / "p"), "--count", "2",
                          "--baseline-m", "20", "30", "--scene", "room")
        assert code == 2 and lines == [
            "mickey-ros synth: error: PairSamplingConfig.baseline_m (20.0, 30.0) cannot fit in a "
            "room scene, where cameras are at most 14.7 m apart; lower the minimum baseline or "
            "use scene courtyard (up to 43.8 m)"]
        assert not (tmp_path / "p").exists()

    def test_no_pair_satisfies_the_ranges(self, capsys, tmp_path):
        from mickey_ros.synth.render import EGLUnavailableError, shared_egl_context

        try:
            shared_egl_context()
        except EGLUnavailableError as err:
            pytest.skip(f"needs a headless EGL OpenGL context: {err}")
        code, lines = run(capsys, "synth", "pairs", "--out", str(tmp_path / "p"), "--count", "1",
                          "--size", "64x64", "--no-previews", "--baseline-m", "0", "0.01",
                          "--rotation-deg", "50", "60")
        assert code == 2 and lines[-1].startswith(
            "mickey-ros synth: error: pair 0: no camera pair satisfies baseline (0.0, 0.01) m, "
            "rotation (50.0, 60.0) deg")
        assert not (tmp_path / "p").exists()


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
        """An output that cannot be written is one line, before the bag is read (issue 28)."""
        out = files["tiny.ckpt"] / "out"
        code, lines = run(capsys, *replay_args(files, "--resize", "112", "112")[:-1], str(out))
        assert code == 2 and lines == [
            f"mickey-ros replay: error: cannot write --out {out}: {files['tiny.ckpt']} is a file, "
            "not a directory"]

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
    def test_out_that_cannot_be_written(self, capsys, tmp_path):
        """Issue 28: a traceback (only FileNotFoundError was one line)."""
        train = pytest.importorskip("mickey_ros.train.main")
        (tmp_path / "train.yaml").write_text("max_steps: 1\n")
        (tmp_path / "file").write_text("")
        assert train.cli(["--config", str(tmp_path / "train.yaml"),
                          "--out", str(tmp_path / "file" / "run")]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert lines == [f"mickey-train: error: cannot write --out {tmp_path / 'file' / 'run'}: "
                         f"{tmp_path / 'file'} is a file, not a directory"]

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
