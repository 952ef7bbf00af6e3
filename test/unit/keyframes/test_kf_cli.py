"""``mickey-ros keyframes build|info``: what the user types, what comes back (exit codes, lines)."""

from __future__ import annotations

import cv2
import pytest
from kf_helpers import textured

from mickey_ros.cli.main import main
from mickey_ros.keyframes.store import read_manifest


@pytest.fixture
def posed_directory(tmp_path):
    for i in range(2):
        cv2.imwrite(str(tmp_path / f"{i}.png"), textured(i))
    (tmp_path / "poses.txt").write_text("0.png 1 0 0 0 0 0 0\n1.png 1 0 0 0 -0.5 0 0\n")
    (tmp_path / "intrinsics.txt").write_text("0.png 150 150 70 56 140 112\n"
                                             "1.png 150 150 70 56 140 112\n")
    return tmp_path


def _build(directory, out, *extra) -> int:
    return main(["keyframes", "build", "--images", str(directory), "--poses",
                 str(directory / "poses.txt"), "--out", str(out), *extra])


class TestBuild:
    def test_directory(self, posed_directory, tmp_path, capsys):
        assert _build(posed_directory, tmp_path / "lib") == 0
        out = capsys.readouterr().out
        assert out.startswith(f"keyframe library {tmp_path / 'lib'}: 2 keyframes, features of "
                              "demo_model.ckpt")
        manifest = read_manifest(tmp_path / "lib")
        assert [k.source for k in manifest.keyframes] == ["0.png", "1.png"]
        assert manifest.keyframes[1].T_map_camera[0, 3] == pytest.approx(0.5)

    def test_existing_library_needs_overwrite_or_append(self, posed_directory, tmp_path, capsys):
        assert _build(posed_directory, tmp_path / "lib") == 0
        assert _build(posed_directory, tmp_path / "lib") == 2
        assert capsys.readouterr().err.strip() == (
            f"mickey-ros keyframes: error: {tmp_path / 'lib'} exists; pass --overwrite to "
            "replace it, or --append to add keyframes to it")
        assert _build(posed_directory, tmp_path / "lib", "--append") == 0
        assert len(read_manifest(tmp_path / "lib").keyframes) == 4

    def test_no_input(self, tmp_path, capsys):
        assert main(["keyframes", "build", "--out", str(tmp_path / "lib")]) == 2
        assert capsys.readouterr().err.strip() == (
            "mickey-ros keyframes: error: give either mapping bags (BAG ... --fixed-frame map) or "
            "--images DIR --poses poses.txt, not both or neither")

    def test_images_without_poses(self, tmp_path, capsys):
        assert main(["keyframes", "build", "--images", str(tmp_path), "--out",
                     str(tmp_path / "lib")]) == 2
        assert "--images and --poses go together" in capsys.readouterr().err


class TestInfo:
    def test_reports_bad_files(self, posed_directory, tmp_path, capsys):
        _build(posed_directory, tmp_path / "lib")
        (tmp_path / "lib/features/kf00001.npz").unlink()
        capsys.readouterr()
        assert main(["keyframes", "info", str(tmp_path / "lib")]) == 1
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].startswith(f"{tmp_path / 'lib'}: 2 keyframes, features of demo_model")
        assert lines[1] == (f"  keyframe 'kf00001': features "
                            f"{tmp_path / 'lib/features/kf00001.npz'} are missing")

    def test_missing_library(self, tmp_path, capsys):
        assert main(["keyframes", "info", str(tmp_path / "none")]) == 2
        assert "does not exist; build one with `mickey-ros keyframes build" in (
            capsys.readouterr().err)


class TestReplayLibraryFlags:
    @pytest.mark.parametrize("argv, text", [
        (["--keyframes-k", "0"], "argument --keyframes-k: must be >= 1, got 0"),
        (["--recheck-every", "-1"], "argument --recheck-every: must be >= 0, got -1"),
        (["--prior-radius", "0"], "argument --prior-radius: must be a number > 0, got 0"),
    ])
    def test_bad_value_names_the_flag(self, argv, text, capsys, tmp_path):
        with pytest.raises(SystemExit) as exit_:
            main(["replay", str(tmp_path), "--keyframes", str(tmp_path), *argv])
        assert exit_.value.code == 2
        assert capsys.readouterr().err.strip().splitlines()[-1].endswith(text)

    def test_options_reach_the_replay_config(self, tmp_path):
        from mickey_ros.cli.main import build_parser
        from mickey_ros.cli.replay import replay_config

        args = build_parser().parse_args(["replay", str(tmp_path), "--keyframes", "lib",
                                          "--keyframes-k", "5", "--no-retrieval",
                                          "--prior-radius", "2.5", "--recheck-every", "4"])
        cfg = replay_config(args)
        options = cfg.keyframes_options
        assert cfg.keyframes == "lib"
        assert (options.k, options.retrieval, options.prior_radius_m, options.recheck_every) == (
            5, False, 2.5, 4)
