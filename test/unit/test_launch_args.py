"""Launch-argument mapping of relocalize.launch.py (relocalization.params), checked without ROS."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from mickey_ros.relocalization.params import (
    LAUNCH_ARGUMENTS,
    launch_parameter_overrides,
    launch_remappings,
    parameter_specs,
)
from mickey_ros.utils.config import ConfigError

LAUNCH_DIR = Path(__file__).resolve().parents[2] / "launch"
NODE_TOPICS = {"image", "camera_info", "reference/image", "reference/camera_info"}


class TestLaunchArguments:
    def test_names(self):
        assert [a.name for a in LAUNCH_ARGUMENTS] == [
            "namespace", "node_name", "params_file", "use_sim_time", "log_level", "image_topic",
            "camera_info_topic", "reference_image_topic", "reference_camera_info_topic",
            "checkpoint", "dinov2_weights", "device", "tf_mode", "use_compressed", "keyframes",
        ]

    def test_targets_exist(self):
        specs = {spec.name for spec in parameter_specs()}
        for arg in LAUNCH_ARGUMENTS:
            assert arg.parameter is None or arg.parameter in specs, arg.name
            assert arg.remap_from is None or arg.remap_from in NODE_TOPICS, arg.name
            assert arg.description

    def test_defaults_are_valid_choices(self):
        for arg in LAUNCH_ARGUMENTS:
            assert arg.choices is None or arg.default in arg.choices, arg.name


class TestLaunchParameterOverrides:
    def test_empty_values_keep_the_params_file(self):
        values = {a.name: a.default for a in LAUNCH_ARGUMENTS}
        assert launch_parameter_overrides(values) == {"use_sim_time": False}

    def test_typed_overrides(self):
        overrides = launch_parameter_overrides({
            "checkpoint": "/models/mickey.ckpt", "device": "cuda:1", "tf_mode": "map_to_odom",
            "use_compressed": "True", "use_sim_time": "true", "image_topic": "/cam/image_raw",
        })
        assert overrides == {
            "model.checkpoint": "/models/mickey.ckpt", "model.device": "cuda:1",
            "output.tf_mode": "map_to_odom", "input.use_compressed": True, "use_sim_time": True,
        }

    def test_bad_bool(self):
        with pytest.raises(ConfigError, match="input.use_compressed must be true or false"):
            launch_parameter_overrides({"use_compressed": "yes"})

    def test_bad_choice(self):
        with pytest.raises(ConfigError, match="output.tf_mode must be one of"):
            launch_parameter_overrides({"tf_mode": "map"})


class TestLaunchRemappings:
    def test_only_given_topics(self):
        assert launch_remappings({
            "image_topic": "/cam/color/image_raw", "camera_info_topic": "/cam/color/camera_info",
            "reference_image_topic": "", "namespace": "front",
        }) == [("image", "/cam/color/image_raw"), ("camera_info", "/cam/color/camera_info")]

    def test_all_topics(self):
        values = {a.name: f"/x/{a.remap_from}" for a in LAUNCH_ARGUMENTS if a.remap_from}
        assert {src for src, _ in launch_remappings(values)} == NODE_TOPICS


def _calls(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.func.id if isinstance(node.func, ast.Name) else node.func.attr
            for node in ast.walk(tree) if isinstance(node, ast.Call)
            and isinstance(node.func, (ast.Name, ast.Attribute))}


class TestLaunchFiles:
    def test_relocalize_uses_the_tested_mapping(self):
        source = (LAUNCH_DIR / "relocalize.launch.py").read_text()
        calls = _calls(LAUNCH_DIR / "relocalize.launch.py")
        assert {"launch_parameter_overrides", "launch_remappings", "LifecycleNode",
                "DeclareLaunchArgument"} <= calls
        assert "for arg in LAUNCH_ARGUMENTS" in source
        assert 'executable="relocalize_node"' in source

    def test_replay_plays_with_clock_and_sim_time(self):
        source = (LAUNCH_DIR / "replay.launch.py").read_text()
        assert '"--clock"' in source and '{"use_sim_time": "true"}' in source
        assert "relocalize.launch.py" in source

    def test_real_launch_description(self):
        pytest.importorskip("launch_ros", reason="launch_ros needs a ROS 2 installation")
        import importlib.util

        spec = importlib.util.spec_from_file_location("relocalize_launch",
                                                      LAUNCH_DIR / "relocalize.launch.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        declared = [a.name for a in module.generate_launch_description().get_launch_arguments()]
        assert declared == [a.name for a in LAUNCH_ARGUMENTS]
