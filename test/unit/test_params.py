"""relocalization.params: the node's parameter schema and config/relocalize.yaml, without ROS."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from mickey_ros.keyframes.localizer import LocalizerConfig
from mickey_ros.relocalization.params import (
    NodeParams,
    load_params_yaml,
    node_params_from_flat,
    parameter_specs,
)
from mickey_ros.utils.config import ConfigError

YAML_PATH = Path(__file__).resolve().parents[2] / "config" / "relocalize.yaml"


def flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


class TestParameterSpecs:
    def test_names(self):
        names = [spec.name for spec in parameter_specs()]
        # 42 + 6 backend parameters (issue 16) + model.threads (issue 28) + 5 keyframes.* (29)
        assert len(names) == len(set(names)) == 54
        assert names[:3] == ["autostart", "model.checkpoint", "model.dinov2_weights"]
        assert {n.split(".")[0] for n in names} == {
            "autostart", "model", "solver", "input", "reference", "output", "gate", "keyframes"}

    def test_every_parameter_documented(self):
        for spec in parameter_specs():
            assert len(spec.description) > 15, spec.name

    def test_dynamic_parameters(self):
        dynamic = {spec.name for spec in parameter_specs() if spec.dynamic}
        assert dynamic == {"input.max_rate_hz", "gate.min_confidence",
                           "gate.covariance_translation_m", "gate.covariance_rotation_rad",
                           "keyframes.k", "keyframes.retrieval", "keyframes.prior_radius_m",
                           "keyframes.recheck_interval"}

    def test_defaults_inside_ranges_and_choices(self):
        for spec in parameter_specs():
            spec.check(spec.default)
            if spec.range is not None:
                assert spec.type in (int, float), spec.name

    def test_check(self):
        specs = {spec.name: spec for spec in parameter_specs()}
        with pytest.raises(ConfigError, match="gate.min_confidence must be in \\[0.0, 1.0\\]"):
            specs["gate.min_confidence"].check(1.5)
        with pytest.raises(ConfigError, match="output.tf_mode must be one of"):
            specs["output.tf_mode"].check("map")


class TestConfigYaml:
    def test_loads_with_defaults(self):
        assert load_params_yaml(YAML_PATH) == NodeParams()

    def test_lists_every_parameter_with_its_type(self):
        data = yaml.safe_load(YAML_PATH.read_text())
        flat = flatten(data["/**"]["ros__parameters"])
        specs = {spec.name: spec for spec in parameter_specs()}
        assert sorted(flat) == sorted(specs)
        for name, value in flat.items():
            kind = list if specs[name].type is tuple else specs[name].type
            # ROS 2 refuses 1 for a double parameter: floats must be written as floats
            assert type(value) is kind, f"{name}: {value!r} is {type(value).__name__}"

    def test_unknown_key_lists_valid_ones(self, tmp_path):
        path = tmp_path / "bad.yaml"
        path.write_text("/**:\n  ros__parameters:\n    gate:\n      min_confidense: 0.1\n")
        with pytest.raises(ConfigError, match="unknown key\\(s\\) \\['min_confidense'\\]; valid"):
            load_params_yaml(path)

    def test_out_of_range(self, tmp_path):
        path = tmp_path / "bad.yaml"
        path.write_text("/**:\n  ros__parameters:\n    model:\n      precision: fp8\n")
        with pytest.raises(ConfigError, match="model.precision must be one of"):
            load_params_yaml(path)

    def test_ros_owned_keys_are_skipped(self, tmp_path):
        path = tmp_path / "p.yaml"
        path.write_text("/**:\n  ros__parameters:\n    use_sim_time: true\n"
                        "    qos_overrides: {}\n    output: {tf_mode: map_to_odom}\n")
        assert load_params_yaml(path).output.tf_mode == "map_to_odom"

    def test_missing_section(self, tmp_path):
        path = tmp_path / "p.yaml"
        path.write_text("mickey:\n  ros__parameters: {}\n")
        with pytest.raises(ConfigError, match="no '/\\*\\*: ros__parameters:' section"):
            load_params_yaml(path)


class TestNodeParamsFromFlat:
    def test_round_trip_of_declared_values(self):
        values = {s.name: list(s.default) if s.type is tuple else s.default
                  for s in parameter_specs()}
        values["output.map_to_reference"] = [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
        params = node_params_from_flat(values)
        assert params.output.map_to_reference == (1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)
        assert dataclasses.replace(params, output=NodeParams().output) == NodeParams()

    def test_invalid_combination(self):
        values = {"output.map_to_reference": [0.0] * 7}
        with pytest.raises(ValueError, match="non-zero quaternion"):
            node_params_from_flat(values)


class TestDerivedConfigs:
    def test_session_config(self):
        params = node_params_from_flat({"output.tf_mode": "attach_reference",
                                        "gate.min_confidence": 0.2,
                                        "input.expected_camera_frame": "cam"})
        cfg = params.session_config()
        assert (cfg.tf_mode, cfg.min_confidence, cfg.expected_camera_frame) == (
            "attach_reference", 0.2, "cam")

    def test_estimator_config(self):
        params = node_params_from_flat({"model.input_width": 224, "model.input_height": 168,
                                        "model.device": "cpu", "solver.num_samples": 256,
                                        "output.publish_debug_image": True})
        cfg = params.estimator_config()
        assert (cfg.device, cfg.resize, cfg.keep_matches) == ("cpu", (224, 168), True)
        assert (cfg.solver.num_samples, cfg.solver.it_matches) == (256, 20)

    def test_localizer_config(self):
        params = node_params_from_flat({"keyframes.k": 5, "keyframes.retrieval": False,
                                        "keyframes.prior_radius_m": 1.5,
                                        "keyframes.recheck_interval": 4,
                                        "gate.min_confidence": 0.2})
        cfg = LocalizerConfig.from_node_params(params)
        assert (cfg.k, cfg.retrieval, cfg.prior_radius_m, cfg.recheck_every,
                cfg.min_confidence) == (5, False, 1.5, 4, 0.2)

    def test_no_resize_by_default(self):
        assert NodeParams().estimator_config().resize is None


class TestDocs:
    def test_docs_list_every_parameter_and_launch_argument(self):
        from mickey_ros.relocalization.params import LAUNCH_ARGUMENTS

        text = (YAML_PATH.parents[1] / "docs" / "ros.md").read_text()
        missing = [s.name for s in parameter_specs() if f"| `{s.name}` |" not in text]
        missing += [a.name for a in LAUNCH_ARGUMENTS if f"| `{a.name}` |" not in text]
        assert missing == []


class TestBuildEstimator:
    @pytest.fixture
    def calls(self, monkeypatch):
        from mickey_ros.estimator.relative_pose import RelativePoseEstimator

        calls = []
        for name in ("from_demo", "from_checkpoint", "from_model_config"):
            monkeypatch.setattr(RelativePoseEstimator, name,
                                classmethod(lambda cls, *a, _n=name, **k: calls.append((_n, a))))
        return calls

    def _params(self, **model):
        values = {"device": "cpu", **model}
        return node_params_from_flat({f"model.{k}": v for k, v in values.items()})

    def test_empty_checkpoint_refused_without_loading(self, calls):
        from mickey_ros.relocalization.params import build_estimator

        with pytest.raises(ConfigError, match="model.checkpoint is empty.*never downloads"):
            build_estimator(self._params())
        assert calls == []

    def test_cuda_requested_but_unavailable(self, calls, monkeypatch):
        import torch

        from mickey_ros.relocalization.params import build_estimator

        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        with pytest.raises(ConfigError, match="sees no CUDA GPU; set device:=cpu"):
            build_estimator(self._params(device="cuda:0", checkpoint="demo"))
        assert calls == []

    def test_selection(self, calls):
        from mickey_ros.relocalization.params import build_estimator

        warnings = []
        build_estimator(self._params(checkpoint="demo"))
        build_estimator(self._params(checkpoint="/m/mickey.ckpt", dinov2_weights="/m/d.pth"))
        build_estimator(self._params(config="mickey_tiny"), warn=warnings.append)
        assert [c[0] for c in calls] == ["from_demo", "from_checkpoint", "from_model_config"]
        assert calls[1][1][:2] == ("/m/mickey.ckpt", "/m/d.pth")
        assert "RANDOM weights" in warnings[0]

    def test_unknown_model_config(self, calls):
        from mickey_ros.relocalization.params import build_estimator

        with pytest.raises(ValueError, match="unknown model config 'mickey_huge'"):
            build_estimator(self._params(config="mickey_huge"))
