"""The checks every command shares (issue 15): device, --size/--resize, working size."""

from __future__ import annotations

import argparse

import pytest
import torch

from mickey_ros.cli.main import (
    UserError,
    add_size_argument,
    check_device,
    check_working_size,
    default_working_size,
    main,
)

NO_CUDA = f"but torch {torch.__version__} sees no CUDA GPU; pass --device cpu, or install the " \
          "torch build for your GPU"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
class TestCheckDevice:
    @pytest.mark.parametrize("argv", [
        ["pose", "a.png", "b.png", "--ref-K", "1,1,1,1", "--query-K", "1,1,1,1"],
        ["bench", "--iterations", "1"],
        ["demo"],
        ["eval", "pairs", "--pairs", "p.txt", "--images", "."],
        ["check-weights", "--checkpoint", "demo"],
        ["replay", "bag", "--reference-frame-index", "0"],
    ])
    def test_every_command_one_line_exit_2(self, argv, capsys, tmp_path, monkeypatch):
        monkeypatch.chdir(tmp_path)
        assert main([*argv, "--device", "cuda"]) == 2
        assert capsys.readouterr().err.splitlines() == [
            f"mickey-ros {argv[0]}: error: --device cuda {NO_CUDA}"]
        assert list(tmp_path.iterdir()) == []  # refused before any work

    def test_not_a_device(self):
        with pytest.raises(UserError, match="^--device gpu is not a torch device; use cpu"):
            check_device("gpu")

    def test_cpu(self):
        assert check_device("cpu") == "cpu"

    def test_replay_params_file_in_cli_terms(self, capsys):
        from pathlib import Path

        params = Path(__file__).parents[3] / "config" / "relocalize.yaml"  # device: "cuda"
        assert main(["replay", "bag", "--reference-frame-index", "0", "--params",
                     str(params)]) == 2
        assert capsys.readouterr().err.splitlines() == [
            f"mickey-ros replay: error: {params} sets model.device 'cuda' but torch sees no "
            "usable CUDA GPU; pass --device cpu"]


class TestSizeArgument:
    def _parse(self, *argv):
        parser = argparse.ArgumentParser()
        add_size_argument(parser, "h")
        return parser.parse_args(argv).size

    def test_size_and_resize_alias_agree(self):
        assert self._parse("--size", "720x540") == self._parse("--resize", "720", "540") == (
            720, 540)
        assert self._parse() is None

    @pytest.mark.parametrize("argv, text", [
        (["--size", "100000x100000"], "size 100000x100000 is out of range: each side must be "
                                      "1..8192 px"),
        (["--resize", "0", "540"], "argument --resize: size 0x540 is out of range"),
        (["--size", "720"], "size must be WIDTHxHEIGHT in pixels, e.g. 720x540, got '720'"),
    ])
    def test_refused_by_argparse(self, argv, text, capsys):
        with pytest.raises(SystemExit) as exit_info:
            self._parse(*argv)
        assert exit_info.value.code == 2 and text in capsys.readouterr().err


class TestCheckWorkingSize:
    def test_map_free_size_is_silent(self):
        notes = []
        check_working_size((720, 540), warn=notes.append)
        assert notes == []

    def test_warns_before_a_slow_job(self):
        notes = []
        check_working_size((1920, 1440), warn=notes.append)  # 137 x 102 cells
        assert notes == ["a 1920x1440 network input needs about 2.9 GB for matching and may take "
                         "minutes on a CPU; a smaller --size (e.g. 720x540) is much faster"]

    def test_refuses_gigabytes(self):
        # the 8000x6000 JPEG of the issue: 571 x 428 cells, 4 float32 (N, N) matrices
        with pytest.raises(UserError, match=r"^a 8000x6000 network input makes 244388 keypoints "
                           r"per image and matching would need about 890 GB; pass a smaller "
                           r"--size, e.g. 720x540$"):
            check_working_size((8000, 6000))


class TestDefaultWorkingSize:
    @pytest.mark.parametrize("wh, expected", [
        ((8000, 6000), (720, 540)), ((741, 500), (720, 486)), ((540, 720), (540, 720)),
        ((640, 480), (640, 480)), ((6000, 8000), (540, 720)),
    ])
    def test_long_side_720_aspect_kept(self, wh, expected):
        assert default_working_size(*wh) == expected
