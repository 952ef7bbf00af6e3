"""One way to name things across ``mickey-ros`` and the Python API (issue 28).

The bundled model is ``demo`` everywhere, the shared options exist on every command that runs
the estimator, every option has help, flag numbers are checked naming the flag, bad ``--onnx-path``
files and unwritable outputs are one line and exit 2 before any work.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mickey_ros.cli.main import build_parser, main
from mickey_ros.estimator.relative_pose import DEMO_MODEL_NOTE, RelativePoseEstimator
from mickey_ros.model import checkpoint as checkpoint_module
from mickey_ros.model.checkpoint import DEMO_CHECKPOINT, load_checkpoint
from mickey_ros.utils.checks import check_writable

DEMO_LABEL = f"demo_model.ckpt ({DEMO_MODEL_NOTE})"
K_ARGS = ["--ref-K", "300,300,160,120", "--query-K", "300,300,160,120"]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("pair")
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, (34, 44, 3), dtype=np.uint8)
    big = np.kron(coarse, np.ones((8, 8, 1), np.uint8))
    cv2.imwrite(str(root / "ref.png"), big[:240, :320])
    cv2.imwrite(str(root / "query.png"), big[4:244, 6:326])
    return root


def _err_lines(capsys) -> list[str]:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.splitlines()


def _parse_error(capsys, argv: list[str]) -> list[str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return _err_lines(capsys)


def _forbid_model_loading(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the outputs were checked")

    monkeypatch.setattr(checkpoint_module, "_read_checkpoint", refuse)


class TestDemoName:
    """``demo`` resolves in the checkpoint layer: every entry point and the Python API."""

    def test_python_from_checkpoint(self):
        est = RelativePoseEstimator.from_checkpoint("demo")
        assert est.model_name == DEMO_LABEL
        assert est.model.config.name == "mickey_demo_cnn"

    def test_load_checkpoint_same_weights_as_the_file(self):
        by_name, _ = load_checkpoint("demo")
        by_path, _ = load_checkpoint(DEMO_CHECKPOINT)
        for (k, a), (_, b) in zip(by_name.state_dict().items(), by_path.state_dict().items()):
            assert torch.equal(a, b), k

    def test_missing_bundled_file_says_how_to_get_it(self, monkeypatch, tmp_path):
        monkeypatch.setattr(checkpoint_module, "DEMO_CHECKPOINT", tmp_path / "demo_model.ckpt")
        with pytest.raises(FileNotFoundError, match="bundled demo model .* is missing; "
                                                    "reinstall mickey_ros or train it"):
            load_checkpoint("demo")

    def test_pose(self, capsys, pair):
        code = main(["pose", str(pair / "ref.png"), str(pair / "query.png"), *K_ARGS,
                     "--checkpoint", "demo", "--json"])
        out = json.loads(capsys.readouterr().out)
        assert code in (0, 1) and out["model"] == DEMO_LABEL

    def test_bench(self, capsys):
        assert main(["bench", "--checkpoint", "demo", "--size", "112x112", "--iterations", "1",
                     "--warmup", "0", "--modes", "pair"]) == 0
        assert "| torch | pair |" in capsys.readouterr().out

    def test_export_keeps_the_demo_note(self):
        from mickey_ros.cli.export import _load

        args = build_parser().parse_args(["export", "--checkpoint", "demo", "--out", "x.onnx"])
        model, label = _load(args)
        assert label == DEMO_LABEL and model.config.name == "mickey_demo_cnn"


class TestDinov2WeightsGiven:
    def test_missing_file_is_an_error_even_if_unused(self, capsys, tmp_path):
        missing = tmp_path / "missing.pth"
        assert main(["check-weights", "--checkpoint", "demo", "--dinov2-weights",
                     str(missing)]) == 2
        assert _err_lines(capsys) == [
            f"mickey-ros check-weights: error: DINOv2 weight file {missing} does not exist"]

    def test_unused_file_is_noted_not_claimed(self, capsys, tmp_path):
        unused = tmp_path / "dinov2.pth"
        unused.write_bytes(b"")
        assert main(["check-weights", "--checkpoint", "demo", "--dinov2-weights",
                     str(unused)]) == 0
        out = capsys.readouterr()
        assert out.err.splitlines() == [
            f"note: demo_model.ckpt carries its own backbone weights: the DINOv2 weight file "
            f"{unused} is not used"]
        assert out.out.startswith(f"ok: {DEMO_LABEL} load strictly into mickey_demo_cnn")
        assert "dinov2.pth" not in out.out


def _subparsers(parser: argparse.ArgumentParser, name: str):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield f"{name} {sub_name}", sub
                yield from _subparsers(sub, f"{name} {sub_name}")


def _commands() -> list[tuple[str, argparse.ArgumentParser]]:
    return [("mickey-ros", build_parser()), *_subparsers(build_parser(), "mickey-ros")]


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {o for a in parser._actions for o in a.option_strings}


def _command(path: str) -> argparse.ArgumentParser:
    return dict(_commands())[path]


class TestOptionHelp:
    @pytest.mark.parametrize("path", [name for name, _ in _commands()])
    def test_every_option_has_help(self, path):
        parser = _command(path)
        bare = [a.option_strings or a.dest for a in parser._actions
                if not isinstance(a, argparse._SubParsersAction) and not a.help]
        assert bare == [], f"{path}: options without help text"


class TestSharedOptions:
    MODEL_COMMANDS = ["pose", "bench", "replay", "eval pairs", "eval mapfree", "demo"]

    @pytest.mark.parametrize("path", MODEL_COMMANDS)
    def test_backend_and_onnx_path(self, path):
        assert {"--backend", "--onnx-path"} <= _options(_command(f"mickey-ros {path}"))

    @pytest.mark.parametrize("path", ["replay", "demo", "eval pairs", "eval mapfree"])
    def test_no_progress(self, path):
        assert "--no-progress" in _options(_command(f"mickey-ros {path}"))

    @pytest.mark.parametrize("path, required", [
        ("bench", []), ("export", ["--out", "m.onnx"]), ("replay", ["bag"]),
        ("check-weights", ["--checkpoint", "demo"]),
    ])
    def test_model_config_with_hidden_old_spelling(self, path, required, capsys):
        parser = _command(f"mickey-ros {path}")
        assert parser.parse_args([*required, "--model", "mickey_tiny"]).model_config == (
            "mickey_tiny")
        assert _err_lines(capsys) == [
            "note: --model is the old spelling of --model-config; use --model-config"]
        assert "--model " not in parser.format_help()
        assert parser.parse_args([*required, "--model-config", "mickey_tiny"]).model_config == (
            "mickey_tiny")

    def test_demo_render_size_and_old_spelling(self, capsys):
        parser = _command("mickey-ros demo")
        assert parser.parse_args(["--render-size", "160x120"]).render_size == (160, 120)
        assert parser.parse_args(["--size", "160x120"]).render_size == (160, 120)
        assert parser.parse_args(["--resize", "160", "120"]).render_size == (160, 120)
        assert "--size" not in parser.format_help()
        assert _err_lines(capsys)[-1] == (
            "note: --resize is the old spelling of --render-size; use --render-size")

    def test_replay_seed_and_backend_reach_the_node_params(self, tmp_path):
        from mickey_ros.cli.replay import node_params

        onnx = tmp_path / "m.onnx"
        args = build_parser().parse_args(["replay", "bag", "--seed", "7", "--backend",
                                          "onnxruntime", "--onnx-path", str(onnx)])
        model = node_params(args).model
        assert (model.seed, model.backend, model.onnx_path) == (7, "onnxruntime", str(onnx))
        assert node_params(build_parser().parse_args(["replay", "bag"])).model.backend == "torch"

    def test_eval_backend_reaches_the_settings(self, tmp_path):
        from mickey_ros.cli.eval import _model_settings

        args = build_parser().parse_args(["eval", "pairs", "--pairs", "p.txt", "--images", ".",
                                          "--backend", "onnxruntime", "--onnx-path", "m.onnx",
                                          "--out", str(tmp_path)])
        settings = _model_settings(args)
        assert (settings.backend, settings.onnx_path) == ("onnxruntime", "m.onnx")
        assert settings.tag == "m-rnative-fp32-seed0"  # run folders named by the file run

    def test_version(self, capsys):
        from mickey_ros import __version__

        with pytest.raises(SystemExit) as exit_info:
            main(["--version"])
        assert exit_info.value.code == 0
        assert capsys.readouterr().out == f"mickey-ros {__version__}\n"


class TestFlagNumbers:
    @pytest.mark.parametrize("argv, flag, text", [
        (["replay", "bag", "--every", "0"], "--every", "must be >= 1, got 0"),
        (["replay", "bag", "--max-frames", "-1"], "--max-frames", "must be >= 0, got -1"),
        (["demo", "--every", "0"], "--every", "must be >= 1, got 0"),
        (["demo", "--seconds", "0"], "--seconds", "must be a number > 0, got 0"),
        (["bench", "--iterations", "0"], "--iterations", "must be >= 1, got 0"),
        (["eval", "pairs", "--pairs", "p", "--images", ".", "--seeds", "0"], "--seeds",
         "must be >= 1, got 0"),
    ])
    def test_error_names_the_flag(self, argv, flag, text, capsys):
        command = " ".join(argv[:2] if argv[0] == "eval" else argv[:1])
        assert _parse_error(capsys, argv)[-1] == (
            f"mickey-ros {command}: error: argument {flag}: {text}")


class TestOnnxPathFile:
    @pytest.mark.parametrize("content, problem", [
        (b"", "is empty, not an exported model"),
        (b"hello, not a protobuf", "is not an ONNX file (it does not parse)"),
    ])
    def test_one_line_exit_2(self, content, problem, capsys, pair, tmp_path):
        pytest.importorskip("onnx")
        path = tmp_path / "m.onnx"
        path.write_bytes(content)
        assert main(["pose", str(pair / "ref.png"), str(pair / "query.png"), *K_ARGS,
                     "--backend", "onnxruntime", "--onnx-path", str(path)]) == 2
        assert _err_lines(capsys) == [
            f"mickey-ros pose: error: {path} {problem}; write one with `mickey-ros export "
            "--out FILE.onnx`"]

    def test_onnx_path_needs_an_onnx_backend(self, capsys, pair):
        assert main(["pose", str(pair / "ref.png"), str(pair / "query.png"), *K_ARGS,
                     "--onnx-path", "m.onnx"]) == 2
        assert _err_lines(capsys) == [
            "mickey-ros pose: error: --onnx-path m.onnx is run by an ONNX backend: add "
            "--backend onnxruntime (or tensorrt)"]


class TestOutputsCheckedFirst:
    """An output that cannot be written is refused before the model is loaded."""

    @pytest.fixture
    def blocker(self, tmp_path) -> Path:
        path = tmp_path / "a_file"
        path.write_text("x")
        return path

    def _refused(self, capsys, argv, flag, target, blocker, command=None):
        assert main(argv) == 2
        assert _err_lines(capsys) == [
            f"mickey-ros {command or argv[0]}: error: cannot write {flag} {target}: {blocker} "
            "is a file, not a directory"]

    def test_pose_viz(self, capsys, pair, blocker, monkeypatch):
        _forbid_model_loading(monkeypatch)
        target = blocker / "viz.png"
        self._refused(capsys, ["pose", str(pair / "ref.png"), str(pair / "query.png"), *K_ARGS,
                               "--viz", str(target)], "--viz", target, blocker)

    @pytest.mark.parametrize("flag", ["--csv", "--plot", "--tum"])
    def test_replay_files(self, flag, capsys, blocker, monkeypatch, tmp_path):
        _forbid_model_loading(monkeypatch)
        target = blocker / "out.x"
        self._refused(capsys, ["replay", str(tmp_path / "bag"), "--reference-frame-index", "0",
                               "--device", "cpu", flag, str(target)], flag, target, blocker)

    def test_export_out(self, capsys, blocker, monkeypatch):
        _forbid_model_loading(monkeypatch)
        target = blocker / "m.onnx"
        self._refused(capsys, ["export", "--out", str(target)], "--out", target, blocker)

    def test_eval_out(self, capsys, blocker, monkeypatch):
        _forbid_model_loading(monkeypatch)
        target = blocker / "results"
        self._refused(capsys, ["eval", "pairs", "--pairs", "p.txt", "--images", ".", "--out",
                               str(target)], "--out", target, blocker, "eval")

    def test_bench_out(self, capsys, blocker):
        target = blocker / "bench.json"
        self._refused(capsys, ["bench", "--model-config", "mickey_tiny", "--out", str(target)],
                      "--out", target, blocker)


class TestCheckWritable:
    def test_missing_parents_are_fine(self, tmp_path):
        assert check_writable(tmp_path / "a" / "b.png", "--viz") == tmp_path / "a" / "b.png"

    def test_directory_where_a_file_goes(self, tmp_path):
        with pytest.raises(IsADirectoryError, match=f"^--viz {tmp_path} is a directory; pass a "
                                                    "file path$"):
            check_writable(tmp_path, "--viz")

    def test_file_where_a_directory_goes(self, tmp_path):
        path = tmp_path / "f"
        path.write_text("x")
        with pytest.raises(NotADirectoryError, match="is a file; pass a directory path$"):
            check_writable(path, "--out", directory=True)

    def test_existing_directory_output(self, tmp_path):
        assert check_writable(tmp_path, "--out", directory=True) == tmp_path
