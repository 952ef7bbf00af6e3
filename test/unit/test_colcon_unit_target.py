"""``colcon test``'s unit targets (CMakeLists.txt): what a robot runs, and that it runs under ROS.

A robot's ``colcon test`` runs one target per unit-test file of what the node is made of; all
of test/unit took 661 s on a 2-core machine and overran its 600 s timeout (issue 28), so the
rest runs only with ``-DMICKEY_ROS_TEST_ALL=ON`` (docs/ros.md, "colcon test").

On a ROS machine launch_testing's pytest plugin is loaded into those runs and (1) imports each
test file as a top-level module (test/stand_ins/launch_testing_collect.py does the same where
launch_testing is missing; before issue 14 this broke relative imports and files sharing a
basename), and (2) imports ``launch.logging``, whose logger class stops propagation, so
``caplog`` saw nothing on Ubuntu's pytest (issue 28; test/stand_ins/launch_logger_class.py).
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys

from colcon_targets import ROOT, UNIT, files_with_tests_taking, ros_unit_tests

CMAKE = (ROOT / "CMakeLists.txt").read_text()


def run_pytest(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "test" / "stand_ins"), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


class TestRosUnitTargets:
    def test_one_target_per_node_facing_file(self):
        names = ros_unit_tests()
        assert {"test_messages", "test_params", "test_session", "test_node_fake_ros",
                "test_launch_args", "test_health"} <= set(names)
        assert [n for n in names if not (UNIT / f"{n}.py").is_file()] == []
        loop = re.search(r"foreach\(_test IN LISTS MICKEY_ROS_UNIT_TESTS\)(.*?)endforeach", CMAKE,
                         re.S).group(1)
        assert "ament_add_pytest_test(unit_${_test} test/unit/${_test}.py" in loop
        assert re.search(r"TIMEOUT 120\b", loop)

    def test_the_whole_folder_only_on_request(self):
        whole = re.findall(r"ament_add_pytest_test\((\w+) test/unit\s", CMAKE)
        assert whole == ["unit_all"]
        block = re.search(r"if\(MICKEY_ROS_TEST_ALL\)(.*?)endif", CMAKE, re.S).group(1)
        assert "ament_add_pytest_test(unit_all test/unit" in block and "TIMEOUT 3600" in block

    def test_parser_reads_the_list(self):
        assert ros_unit_tests("set(MICKEY_ROS_UNIT_TESTS\n  test_a test_b\n)") == [
            "test_a", "test_b"]
        assert ros_unit_tests("ament_add_pytest_test(unit test/unit)") == []


class TestUnderLaunchTesting:
    def test_no_relative_imports_in_test_unit(self):
        offenders = [
            f"{path.relative_to(ROOT)}:{node.lineno}"
            for path in sorted(UNIT.rglob("*.py"))
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ImportFrom) and node.level > 0
        ]
        assert offenders == []

    def test_collects_without_error_under_launch_testings_import(self):
        proc = run_pytest("--collect-only", "-q", "-p", "launch_testing_collect", "test/unit")
        tail = proc.stdout[-2000:] + proc.stderr[-2000:]
        assert proc.returncode == 0, tail
        assert " tests collected" in proc.stdout and "error" not in proc.stdout.splitlines()[-1]

    def test_no_test_reads_logs_through_caplog(self):
        # caplog relies on propagation to the root logger; use test/unit/conftest.py's `logged`
        assert [str(p.relative_to(ROOT)) for p in files_with_tests_taking("caplog")] == []

    def test_log_assertions_hold_under_launchs_logger_class(self):
        # pytest >= 9.2 hooks caplog onto non-propagating loggers, Ubuntu's pytest 7 does not:
        # without pytest's logging plugin a test passes only if it catches the records itself
        files = [str(p.relative_to(ROOT)) for p in files_with_tests_taking("logged")]
        assert "test/unit/eval/test_score.py" in files
        proc = run_pytest("-p", "launch_logger_class", "-p", "no:logging", *files)
        tail = proc.stdout[-3000:] + proc.stderr[-2000:]
        assert "launch_logger_class stand-in: logger class LaunchLogger, propagate False" in (
            proc.stdout), tail
        assert proc.returncode == 0 and " passed" in proc.stdout.splitlines()[-1], tail
