"""package.xml, CMakeLists.txt and executables follow the layout verified on ROS 2 Jazzy."""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CMAKE = (ROOT / "CMakeLists.txt").read_text()


def _tags(tag: str) -> list[str]:
    return [e.text for e in ET.parse(ROOT / "package.xml").getroot().iter(tag)]


class TestPackageXml:
    def test_format_and_build_type(self):
        root = ET.parse(ROOT / "package.xml").getroot()
        assert root.get("format") == "3" and _tags("name") == ["mickey_ros"]
        assert _tags("build_type") == ["ament_cmake"]
        assert _tags("member_of_group") == ["rosidl_interface_packages"]

    def test_dependencies(self):
        assert set(_tags("buildtool_depend")) == {
            "ament_cmake", "ament_cmake_python", "rosidl_default_generators"}
        assert {"builtin_interfaces", "std_msgs", "geometry_msgs"} <= set(_tags("depend"))
        assert {"rosidl_default_runtime", "rclpy", "sensor_msgs", "tf2_ros_py", "message_filters",
                "cv_bridge", "diagnostic_updater", "std_srvs", "launch", "launch_ros",
                "python3-numpy", "python3-opencv"} <= set(_tags("exec_depend"))
        assert {"ament_cmake_pytest", "launch_testing", "launch_testing_ament_cmake",
                "launch_testing_ros", "python3-pytest"} <= set(_tags("test_depend"))

    def test_catkin_pkg_validates(self):
        package = pytest.importorskip("catkin_pkg.package", reason="pip install catkin_pkg")
        parsed = package.parse_package(str(ROOT / "package.xml"))
        parsed.validate()
        assert parsed.package_format == 3


class TestCMakeLists:
    def test_rosidl_then_python_merge(self):
        order = [CMAKE.index(s) for s in (
            "rosidl_generate_interfaces(${PROJECT_NAME}", "ament_get_python_install_dir(_py_dir)",
            "install(DIRECTORY mickey_ros/", "ament_package()")]
        assert order == sorted(order)
        assert '"msg/RelativePose.msg"' in CMAKE
        assert "DEPENDENCIES builtin_interfaces std_msgs geometry_msgs" in CMAKE
        assert "DESTINATION ${_py_dir}/${PROJECT_NAME}" in CMAKE
        # a second ament_python_install_package(mickey_ros) collides with rosidl's target
        assert not re.search(r"^\s*ament_python_install_package", CMAKE, re.M)

    def test_installs_executables_launch_config_and_tests(self):
        for line in ("RENAME relocalize_node", "RENAME train", "install(DIRECTORY launch config",
                     "ament_add_pytest_test(unit_${_test} test/unit/${_test}.py",
                     "add_launch_test(test/ros/test_relocalize_launch.py"):
            assert line in CMAKE, line


class TestExecutables:
    @pytest.mark.parametrize("name", ["relocalize_node.py", "train.py"])
    def test_shebang_and_mode(self, name):
        path = ROOT / "mickey_ros" / "ros" / name
        assert path.read_text().startswith("#!/usr/bin/env python3\n")
        assert os.access(path, os.X_OK)

    def test_package_init_stays_light(self):
        text = (ROOT / "mickey_ros" / "__init__.py").read_text()
        assert "import torch" not in text and "import rclpy" not in text
        assert not re.search(r"^\s*msg\s*=", text, re.M)  # rosidl installs mickey_ros.msg here
