"""Doctests must not print raw floats that depend on the CPU's kernels (issue 28).

``backproject``'s doctest expected ``tensor([[[2., 0., 2.]]])`` and got ``-5.9605e-08`` for the 0
on an AVX-512/AMX Xeon: matmul, inverse, transcendental and reduction kernels differ in the last
bits between CPUs. Every doctest whose expected output holds a float must therefore round it,
compare with ``allclose``/``isclose``, or say ``# exact`` (IEEE-exact elementwise arithmetic on
exactly representable values, the same on every CPU).
"""

from __future__ import annotations

import ast
import doctest
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "mickey_ros"
FLOAT = re.compile(r"(?<![\w.])\d+\.\d*(?![\w.])|\de[-+]?\d")
ROBUST = ("round(", "allclose(", "isclose(", "# exact")


def float_examples(source: str) -> list[tuple[int, str, str]]:
    """(line, source, want) of each doctest example whose expected output shows a float."""
    parser, found = doctest.DocTestParser(), []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        doc = ast.get_docstring(node, clean=False)
        if not doc or ">>>" not in doc:
            continue
        start = node.body[0].lineno if node.body else 1
        for example in parser.get_examples(doc):
            if FLOAT.search(example.want):
                found.append((start + example.lineno, example.source.strip(), example.want))
    return found


def fragile(source: str) -> list[str]:
    return [f"line {line}: {src}" for line, src, _ in float_examples(source)
            if not any(mark in src for mark in ROBUST)]


class TestFloatExamples:
    def test_finds_the_raw_float_of_issue_28(self):
        issue_28 = '''
def backproject():
    """Lift.

    >>> backproject(torch.tensor([[[150.0, 40.0]]]), torch.tensor([[2.0]]), K)
    tensor([[[2., 0., 2.]]])
    >>> backproject(kpts, depth, K).shape
    torch.Size([1, 1, 3])
    >>> torch.allclose(backproject(kpts, depth, K), X, atol=1e-6)
    True
    """
'''
        assert fragile(issue_28) == [
            "line 5: backproject(torch.tensor([[[150.0, 40.0]]]), torch.tensor([[2.0]]), K)"]

    def test_float_pattern(self):
        shown = ["tensor([[[2., 0., 2.]]])", "0.4", "-5.9605e-08", "array([50.  ,  0.  ])"]
        not_floats = ["'seq0/frame_00000.depth.png'", "torch.Size([1, 5, 5])", "(8, 2)", "True",
                      "'/robot1/mickey_relocalizer/estimate'", "C(a=2)"]
        assert [bool(FLOAT.search(s)) for s in shown + not_floats] == [True] * 4 + [False] * 6

    def test_no_doctest_in_the_package_prints_a_raw_float(self):
        offenders = [f"{path.relative_to(PACKAGE.parent)} {problem}"
                     for path in sorted(PACKAGE.rglob("*.py"))
                     for problem in fragile(path.read_text())]
        assert offenders == []
