"""The installed package holds no pytest files (issue 28: ``mickey_ros/ros/conftest.py`` shipped).

pytest's doctest run (``--doctest-modules`` over ``mickey_ros``) must not import the ROS modules
where rclpy is missing; pyproject.toml ignores ``mickey_ros/ros`` instead of a conftest.py inside
the package, which CMake's ``install(DIRECTORY mickey_ros/)`` and setup.py would both install.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "mickey_ros"


def test_no_conftest_or_test_module_in_the_package():
    found = [str(p.relative_to(ROOT)) for pattern in ("conftest.py", "test_*.py", "*_test.py")
             for p in PACKAGE.rglob(pattern)]
    assert found == []


def test_ros_modules_hold_no_doctests():
    # pyproject.toml keeps them out of the doctest run: a doctest there would never run
    assert [p.name for p in (PACKAGE / "ros").rglob("*.py") if ">>>" in p.read_text()] == []


def test_doctest_run_skips_the_ros_modules():
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         "mickey_ros/ros", "mickey_ros/relocalization/health.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    collected = [line for line in proc.stdout.splitlines() if "::" in line]
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert collected == ["mickey_ros/relocalization/health.py::"
                         "mickey_ros.relocalization.health.RateMeter.rate_hz"]
    if importlib.util.find_spec("rclpy") is None:  # what the ignore protects against
        assert "error" not in proc.stdout.lower()
