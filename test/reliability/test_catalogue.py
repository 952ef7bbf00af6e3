"""docs/reliability.md stays honest: every catalogue row names a test that exists (issue 9).

The rows are the table lines starting with ``| <number> |``; the last column holds one or more
``path::Class::test`` references in backticks. This test checks the count and that each
referenced file, class and test function exists (by parsing the file, not importing it); the
referenced tests themselves run with the rest of the suite.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "reliability.md"
ROW = re.compile(r"^\| *(\d+) *\|")
REF = re.compile(r"`(test/[\w/]+\.py)::([\w:]+)`")


def _rows() -> dict[int, str]:
    return {int(m.group(1)): line for line in DOC.read_text().splitlines()
            if (m := ROW.match(line))}


def _defined(path: Path) -> set[str]:
    """``Class::test`` and ``test`` names defined in a test file."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ClassDef):
            names |= {f"{node.name}::{f.name}" for f in node.body
                      if isinstance(f, ast.FunctionDef)}
        elif isinstance(node, ast.FunctionDef):
            names.add(node.name)
    return names


class TestCatalogue:
    def test_at_least_30_numbered_rows(self):
        rows = _rows()
        assert len(rows) >= 30 and sorted(rows) == list(range(1, len(rows) + 1))

    def test_every_row_names_an_existing_test(self):
        missing = []
        for number, line in _rows().items():
            refs = REF.findall(line.rsplit("|", 2)[-2])
            if not refs:
                missing.append(f"row {number}: no test reference")
            for file, name in refs:
                path = ROOT / file
                if not path.is_file() or name not in _defined(path):
                    missing.append(f"row {number}: {file}::{name}")
        assert missing == []
