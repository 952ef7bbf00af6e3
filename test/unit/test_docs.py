"""The user docs (README.md, docs/*.md): every relative link resolves, and they describe the
project, not how it was made (no "session N" / "issue N")."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
USER_DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)
HISTORY = re.compile(r"\b(sessions?|issues?)[ -]#?\d+", re.I)


def _prose(text: str) -> str:
    """The text without fenced code blocks and code spans (where links are not links)."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def github_anchor(heading: str, seen: dict[str, int]) -> str:
    """GitHub's id for a heading: lower case, punctuation dropped, spaces to '-', repeats -N.

    >>> seen = {}
    >>> github_anchor("Resume, interrupt, continue", seen), github_anchor("The `x.yaml` (a)", seen)
    ('resume-interrupt-continue', 'the-xyaml-a')
    >>> github_anchor("Resume, interrupt, continue", seen)
    'resume-interrupt-continue-1'
    """
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
    count = seen.get(slug, 0)
    seen[slug] = count + 1
    return slug if count == 0 else f"{slug}-{count}"


def anchors(path: Path) -> set[str]:
    """Every heading id of a markdown file."""
    seen: dict[str, int] = {}
    text = FENCE.sub("", path.read_text())
    return {github_anchor(h, seen) for h in HEADING.findall(text)}


def broken_links(doc: Path) -> list[str]:
    """``target: reason`` for each relative link of ``doc`` that does not resolve."""
    broken = []
    for target in LINK.findall(_prose(doc.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        path = (doc.parent / path_part).resolve() if path_part else doc
        if not path.exists():
            broken.append(f"{target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{target}: no heading with that anchor")
    return broken


class TestLinks:
    @pytest.mark.parametrize("doc", USER_DOCS, ids=lambda p: p.name)
    def test_relative_links_resolve(self, doc):
        assert broken_links(doc) == []

    def test_broken_ones_are_found(self, tmp_path):
        (tmp_path / "b.md").write_text("# Only heading\n")
        doc = tmp_path / "a.md"
        doc.write_text("# A\n[x](b.md#only-heading) [y](b.md#nope) [z](c.md) `[w](c.md)`\n"
                       "[s](#a) [t](https://example.com/x)\n```\n[v](d.md)\n```\n")
        assert broken_links(doc) == ["b.md#nope: no heading with that anchor",
                                     "c.md: no such file"]


class TestWording:
    @pytest.mark.parametrize("doc", USER_DOCS, ids=lambda p: p.name)
    def test_no_session_or_issue_numbers(self, doc):
        lines = [f"{i}: {line}" for i, line in enumerate(doc.read_text().splitlines(), 1)
                 if HISTORY.search(line) and "nianticlabs/mickey issue" not in line]
        assert lines == []

    def test_pattern(self):
        hits = [bool(HISTORY.search(s)) for s in (
            "session 5", "the session-4 model", "Sessions 1-3", "issue 13", "issue #26",
            "a session", "the issue's target", "RelocalizationSession")]
        assert hits == [True, True, True, True, True, False, False, False]
