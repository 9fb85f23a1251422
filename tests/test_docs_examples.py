"""
The examples in the documentation run and print what the pages say.

``sphinx-build -b doctest`` checks them too; running them here as well means
that a change to the API that breaks a documented example fails the ordinary
test suite, not only the docs build.
"""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
_FENCE = re.compile(r"^```\{doctest\}[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _pages() -> list[Path]:
    """Return the documentation pages that hold {doctest} blocks."""
    return sorted(p for p in DOCS.glob("*.md") if "```{doctest}" in p.read_text(encoding="utf-8"))


@pytest.mark.parametrize("page", _pages(), ids=lambda p: p.name)
def test_doctest_blocks(page):
    """Every {doctest} block of a page passes, in order, sharing one namespace."""
    text = page.read_text(encoding="utf-8")
    blocks = _FENCE.findall(text)
    parser = doctest.DocTestParser()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    globs: dict[str, object] = {}
    for n, block in enumerate(blocks):
        test = parser.get_doctest(block, globs, f"{page.name}[{n}]", str(page), 0)
        runner.run(test, clear_globs=False)
        globs = test.globs  # DocTest copies its globals; carry them to the next block
    results = runner.summarize(verbose=False)

    assert (0, len(blocks) > 0) == (results.failed, results.attempted > 0)
