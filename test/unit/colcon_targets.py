"""What ``colcon test`` runs of test/unit (CMakeLists.txt), for the tests that check it.

Imported as a plain module (test/unit is on ``sys.path``, see conftest.py) by
test_colcon_unit_target.py and by test/ros_wheels/test_node_real_rclpy.py.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

UNIT = Path(__file__).resolve().parent
ROOT = UNIT.parents[1]


def ros_unit_tests(cmake: str | None = None) -> list[str]:
    """Names ``test/unit/<name>.py`` of CMakeLists.txt's ``MICKEY_ROS_UNIT_TESTS``, in order."""
    text = (ROOT / "CMakeLists.txt").read_text() if cmake is None else cmake
    match = re.search(r"set\(MICKEY_ROS_UNIT_TESTS\s+([^)]*)\)", text)
    return match.group(1).split() if match else []


def files_with_tests_taking(fixture: str) -> list[Path]:
    """Files under test/ with a test function that takes ``fixture`` as an argument."""
    found = []
    for path in sorted((ROOT / "test").rglob("test_*.py")):
        functions = [node for node in ast.walk(ast.parse(path.read_text()))
                     if isinstance(node, ast.FunctionDef) and node.name.startswith("test")]
        if any(arg.arg == fixture for f in functions for arg in f.args.args):
            found.append(path)
    return found
