"""``colcon test``'s ``unit`` target: test/unit must collect under launch_testing's pytest plugin.

On a ROS machine that plugin imports every test file as a top-level module (see
test/stand_ins/launch_testing_collect.py, which does the same where launch_testing is missing).
Before issue 14 this broke the relative imports of three files and the files sharing a basename.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

UNIT = Path(__file__).resolve().parent
ROOT = UNIT.parents[1]


def test_no_relative_imports_in_test_unit():
    offenders = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path in sorted(UNIT.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.level > 0
    ]
    assert offenders == []


def test_collects_without_error_under_launch_testings_import():
    env = dict(os.environ, PYTHONPATH=str(ROOT / "test" / "stand_ins"), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         "-p", "launch_testing_collect", "test/unit"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    tail = proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, tail
    assert " tests collected" in proc.stdout and "error" not in proc.stdout.splitlines()[-1], tail
