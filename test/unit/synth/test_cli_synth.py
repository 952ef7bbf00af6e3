from __future__ import annotations

import argparse
import json

import pytest

from mickey_ros.cli.main import main, parse_size


class TestParseSize:
    def test_valid(self):
        assert parse_size("540x720") == (540, 720) and parse_size("64X48") == (64, 48)

    @pytest.mark.parametrize("text", ["540", "axb", "0x16", "540x720x3", "100000x100000"])
    def test_invalid(self, text):
        with pytest.raises(argparse.ArgumentTypeError, match="size"):
            parse_size(text)

    def test_too_small_to_render(self, tmp_path, capsys):
        rc = main(["synth", "rosbag", "--out", str(tmp_path / "b"), "--render-size", "16x16"])
        assert rc == 2 and capsys.readouterr().err.splitlines() == [
            "mickey-ros synth: error: --render-size 16x16 is too small to render; use at least 32x32"]


class TestSynthCli:
    def test_pairs(self, egl, tmp_path, capsys):
        out = tmp_path / "pairs"
        rc = main(
            [
                "synth",
                "pairs",
                "--out",
                str(out),
                "--count",
                "1",
                "--size",
                "96x72",
                "--max-rotation-deg",
                "12",
                "--baseline-m",
                "0.1",
                "0.6",
                "--min-overlap",
                "0.4",
                "--no-previews",
                "--seed",
                "1",
            ]
        )
        assert rc == 0 and f"wrote 1 pairs to {out}" in capsys.readouterr().out
        index = json.loads((out / "pairs.json").read_text())
        assert index["config"]["rotation_deg"] == [0.0, 12.0]
        assert index["config"]["baseline_m"] == [0.1, 0.6] and index["config"]["overlap"] == [
            0.4,
            1.0,
        ]
        assert sorted(p.name for p in out.iterdir()) == ["pair_00000.npz", "pairs.json"]
        assert index["config"]["long_view_fraction"] == 0.0

    def test_pairs_long_views(self, egl, tmp_path, capsys):
        out = tmp_path / "pairs"
        argv = ["synth", "pairs", "--out", str(out), "--count", "1", "--render-size", "96x72",
                "--long-view-fraction", "1", "--no-previews"]
        assert main(argv) == 0
        assert json.loads((out / "pairs.json").read_text())["config"]["long_view_fraction"] == 1.0
        argv[3], argv[-2] = str(tmp_path / "p2"), "1.5"
        assert main(argv) == 2
        assert "long_view_fraction must lie in [0, 1]" in capsys.readouterr().err

    def test_user_errors_are_one_line(self, egl, tmp_path, capsys):
        (tmp_path / "pairs").mkdir()
        (tmp_path / "pairs" / "pairs.json").write_text("{}")
        assert main(["synth", "pairs", "--out", str(tmp_path / "pairs"), "--count", "1"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "already holds a pair set" in err
        assert (
            main(
                [
                    "synth",
                    "pairs",
                    "--out",
                    str(tmp_path / "p2"),
                    "--count",
                    "1",
                    "--overlap",
                    "0.9",
                    "0.2",
                ]
            )
            == 2
        )
        assert "min <= max" in capsys.readouterr().err

    def test_mapfree(self, egl, tmp_path, capsys):
        rc = main(
            [
                "synth",
                "mapfree",
                "--out",
                str(tmp_path),
                "--scenes",
                "1",
                "--frames-per-seq",
                "2",
                "--size",
                "48x64",
                "--first-scene-id",
                "3",
            ]
        )
        assert rc == 0 and str(tmp_path / "val") in capsys.readouterr().out
        assert (tmp_path / "val" / "s00003" / "seq1" / "frame_00001.jpg").is_file()

    def test_rosbag(self, egl, tmp_path, capsys):
        rc = main(
            [
                "synth",
                "rosbag",
                "--out",
                str(tmp_path / "bag"),
                "--storage",
                "mcap",
                "--seconds",
                "0.5",
                "--rate",
                "2",
                "--size",
                "64x48",
            ]
        )
        assert rc == 0 and "ros2 bag play" in capsys.readouterr().out
        assert len(list((tmp_path / "bag").glob("*.mcap"))) == 1

    def test_rosbag_depth_and_body_frame(self, egl, tmp_path, capsys):
        from rosbags.highlevel import AnyReader

        out = tmp_path / "bag"
        rc = main(["synth", "rosbag", "--out", str(out), "--seconds", "1", "--rate", "2",
                   "--render-size", "64x48", "--depth", "--no-optical-frame"])
        assert rc == 0, capsys.readouterr().err
        with AnyReader([out]) as reader:
            counts = {c.topic: c.msgcount for c in reader.connections}
            frames = {reader.deserialize(raw, c.msgtype).header.frame_id
                      for c, _, raw in reader.messages()
                      if c.topic in ("/camera/image_raw", "/camera/depth/image_raw")}
            encodings = {reader.deserialize(raw, c.msgtype).encoding
                         for c, _, raw in reader.messages()
                         if c.topic == "/camera/depth/image_raw"}
        assert counts["/camera/image_raw"] == counts["/camera/depth/image_raw"] == 2
        assert frames == {"camera_link"} and encodings == {"32FC1"}
