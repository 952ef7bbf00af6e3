import json

import pytest

from mickey_ros.cli.main import main
from mickey_ros.eval import mapfree, score


class TestEvalCli:
    def test_mapfree_then_score(self, tmp_path, tiny_split, gt_double, monkeypatch, capsys):
        monkeypatch.setattr(mapfree, "build_estimator", lambda settings: gt_double)
        out = tmp_path / "results"
        argv = [
            "eval",
            "mapfree",
            "--data",
            str(tiny_split.root),
            "--out",
            str(out),
            "--scenes",
            "s00000,s00001",
            "--batch-size",
            "2",
        ]
        assert main(argv) == 0
        printed = json.loads(capsys.readouterr().out)
        assert printed["0"][score.KEY_POSE_AUC] == 1.0
        run = out / "mapfree-val-demo-rnative-fp32-seed0"
        assert (run / "score" / "report.md").is_file()
        assert json.loads((run / "run_config.json").read_text())["scenes"] == ["s00000", "s00001"]

        argv = [
            "eval",
            "score",
            "--submission",
            str(run / "submission.zip"),
            "--data",
            str(tiny_split.root),
            "--out",
            str(tmp_path / "s"),
        ]
        assert main(argv) == 0
        printed = json.loads(capsys.readouterr().out)
        assert list(printed) == list(score.OFFICIAL_KEYS)
        assert printed[score.KEY_VCRE_PREC] == 1.0
        assert (tmp_path / "s" / "metrics.json").is_file()

    def test_user_errors_are_one_line(self, tmp_path, capsys):
        assert (
            main(
                ["eval", "score", "--submission", str(tmp_path / "x.zip"), "--data", str(tmp_path)]
            )
            == 2
        )
        err = capsys.readouterr().err.strip()
        assert err.startswith("mickey-ros eval: error: split folder") and "\n" not in err

    def test_seeds_must_be_positive(self, tmp_path, capsys):
        argv = ["eval", "pairs", "--pairs", "p.txt", "--images", str(tmp_path), "--seeds", "0"]
        with pytest.raises(SystemExit) as exit_info:  # argparse's type check names the flag
            main(argv)
        assert exit_info.value.code == 2
        assert capsys.readouterr().err.splitlines()[-1] == (
            "mickey-ros eval pairs: error: argument --seeds: must be >= 1, got 0")

    def test_help_lists_sub_commands(self, capsys):
        with pytest.raises(SystemExit):
            main(["eval", "--help"])
        out = capsys.readouterr().out
        assert all(w in out for w in ("mapfree", "score", "pairs"))
