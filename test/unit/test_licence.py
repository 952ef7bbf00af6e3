"""One licence everywhere, and the package data declared (issue 15)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_apache_2_everywhere():
    text = (ROOT / "LICENSE").read_text()
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert re.findall(r"<license>(.*?)</license>", (ROOT / "package.xml").read_text()) == [
        "Apache-2.0"]
    assert re.findall(r'license="(.*?)"', (ROOT / "setup.py").read_text()) == ["Apache-2.0"]
    docs = {p.name: p.read_text() for p in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]}
    # the one BSD-3 mention is scikit-image's own licence, next to the package's
    assert [n for n, t in docs.items() if "BSD" in t] == ["synthetic.md"]
    assert "mickey_ros itself, this renderer and\neverything it writes are Apache-2.0" in docs[
        "synthetic.md"]


def test_package_data_declared(tmp_path):
    """The demo model ships as package data without setuptools' 'absent from packages' alarm."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "setup.py", "build_py", "--build-lib", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "is absent from the `packages` configuration" not in run.stderr
    built = tmp_path / "mickey_ros" / "data" / "demo_model.ckpt"
    assert built.read_bytes() == (ROOT / "mickey_ros" / "data" / "demo_model.ckpt").read_bytes()
