import json
import logging

import pytest

from mickey_ros.eval.common import ModelSettings, atomic_write_text, prepare_run_dir, write_json


class TestModelSettings:
    def test_tag(self):
        assert ModelSettings(checkpoint="/w/mickey.ckpt", precision="fp16", seed=3).tag == (
            "mickey-rnative-fp16-seed3"
        )
        assert ModelSettings(resize=(540, 720)).tag == "demo-r540x720-fp32-seed0"
        assert ModelSettings(name="x").with_seed(2).base_tag == "x-rnative-fp32"


class TestPrepareRunDir:
    def test_writes_and_resumes(self, tmp_path, logged):
        log = logged("mickey_ros.eval", logging.INFO)
        run = prepare_run_dir(tmp_path, "run", ModelSettings(seed=1))
        assert json.loads((run / "run_config.json").read_text())["seed"] == 1
        assert '"seed": 1' in log.text  # the config is logged first
        assert prepare_run_dir(tmp_path, "run", ModelSettings(seed=1)) == run
        with pytest.raises(ValueError, match="another config"):
            prepare_run_dir(tmp_path, "run", ModelSettings(seed=2))


class TestAtomicWriteText:
    def test_no_temporary_left(self, tmp_path):
        atomic_write_text(tmp_path / "a.txt", "x")
        assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


class TestWriteJson:
    def test_nan_is_null(self, tmp_path):
        write_json(tmp_path / "m.json", {"a": float("nan"), "b": [1.0, float("inf")]})
        assert json.loads((tmp_path / "m.json").read_text()) == {"a": None, "b": [1.0, None]}
