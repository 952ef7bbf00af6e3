"""``mickey-ros bench --backend``, the backend node parameters, ``mickey_ros[onnx]`` (issue 16)."""

from __future__ import annotations

import pytest

from mickey_ros.cli.main import main as cli_main
from mickey_ros.estimator import backends, relative_pose
from mickey_ros.estimator.bench import BenchConfig, format_table, run_benchmark
from mickey_ros.estimator.export import export_onnx
from mickey_ros.model.config import mickey_tiny
from mickey_ros.model.mickey import MicKey
from mickey_ros.relocalization import params
from mickey_ros.utils.config import ConfigError

SIZE_WH = (224, 168)


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: pip install "
                        "'mickey_ros[onnx]' to test the ONNX backends")
    import torch

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("bench") / "tiny.onnx"
    return str(export_onnx(MicKey(mickey_tiny()).eval(), path, SIZE_WH).path)


class TestBenchBackend:
    def test_onnxruntime_stages_and_memory(self, tiny_onnx):
        report = run_benchmark(BenchConfig(model="mickey_tiny", size_wh=SIZE_WH, iterations=1,
                                           warmup=0, backend="onnxruntime", onnx_path=tiny_onnx))
        for mode in ("pair", "cached"):
            med = report["results"][mode]["median_ms"]
            assert med["network"] > 0 and med["backbone"] == med["heads"] == 0
            assert med["total"] >= med["network"] + med["solver"]
            assert report["results"][mode]["peak_memory_mib"] > 50  # torch + onnxruntime loaded
        rows = format_table(report).splitlines()
        assert rows[0] == f"ran with {report['ran_with']['note']}" and rows[1] == ""
        assert rows[2].startswith("| backend | mode | preprocess | backbone | heads | network |")
        assert rows[2].endswith("| FPS | peak RSS MiB |")
        assert rows[5].startswith("| onnxruntime | cached | ") and "| - | - |" in rows[5]

    def test_cli_prints_the_table(self, tiny_onnx, capsys):
        code = cli_main(["bench", "--model-config", "mickey_tiny", "--size", "224x168",
                         "--iterations", "1", "--warmup", "0", "--modes", "cached",
                         "--backend", "onnxruntime", "--onnx-path", tiny_onnx, "--io-binding"])
        assert code == 0
        assert "| onnxruntime | cached |" in capsys.readouterr().out

    def test_cli_threads_and_precision_printed(self, capsys):
        code = cli_main(["bench", "--model-config", "mickey_tiny", "--size", "224x168",
                         "--iterations", "1", "--warmup", "0", "--modes", "cached",
                         "--threads", "1", "--precision", "fp32"])
        assert code == 0
        assert capsys.readouterr().out.splitlines()[0] == (
            "ran with precision fp32; threads 1 (set)")

    def test_cli_negative_threads_refused(self, capsys):
        with pytest.raises(SystemExit) as exit_info:
            cli_main(["bench", "--model-config", "mickey_tiny", "--threads", "-1"])
        assert exit_info.value.code == 2
        assert "argument --threads: must be >= 0, got -1" in capsys.readouterr().err

    def test_cli_tensorrt_on_cpu_is_one_line(self, capsys):
        pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
        code = cli_main(["bench", "--model-config", "mickey_tiny", "--size", "224x168",
                         "--backend", "tensorrt"])
        assert code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "TensorrtExecutionProvider" in err[0]


class TestBackendParams:
    def test_choices_match_the_estimator(self):
        assert params.BACKENDS == backends.BACKENDS
        assert params.AUTOCAST == backends.AUTOCAST
        assert params.PRECISIONS == relative_pose.PRECISIONS

    def test_estimator_config_carries_every_backend_field(self):
        values = {"backend": "onnxruntime", "onnx_path": "/x.onnx", "autocast": "bf16",
                  "compile": True, "pin_memory": True, "io_binding": True, "threads": 3,
                  "precision": "auto"}
        node = params.node_params_from_flat({f"model.{k}": v for k, v in values.items()})
        config = node.estimator_config()
        assert {k: getattr(config, k) for k in values} == values

    def test_defaults_are_the_plain_path(self):
        config = params.NodeParams().estimator_config()
        assert (config.backend, config.onnx_path, config.autocast, config.compile,
                config.pin_memory, config.io_binding) == ("torch", "", "", False, False, False)

    def test_bad_backend(self):
        with pytest.raises(ConfigError, match=r"parameter model.backend must be one of "
                           r"\('torch', 'onnxruntime', 'tensorrt'\), got 'tvm'"):
            params.node_params_from_flat({"model.backend": "tvm"})

    def test_yaml_lists_the_backend_defaults(self):
        loaded = params.load_params_yaml(params.Path(__file__).parents[3] / "config"
                                         / "relocalize.yaml")
        assert loaded.model == params.ModelParams(checkpoint=loaded.model.checkpoint)

    def test_onnx_path_loads_only_the_file(self, tiny_onnx):
        node = params.node_params_from_flat({"model.backend": "onnxruntime",
                                             "model.onnx_path": tiny_onnx, "model.device": "cpu"})
        est = params.build_estimator(node)
        assert est.backend.name == "onnxruntime"
        assert all(p.is_meta for p in est.model.parameters())


def test_onnx_extra_in_setup():
    text = (params.Path(__file__).parents[3] / "setup.py").read_text()
    assert '"onnx": ["onnx", "onnxruntime", "onnxscript"]' in text
