"""The README's examples run as written, and its commands are the ones CI and nox use."""

from __future__ import annotations

import doctest
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_examples():
    """The pycon examples in README.md produce the output shown."""
    failures, tried = doctest.testfile(
        str(ROOT / "README.md"), module_relative=False, optionflags=doctest.ELLIPSIS
    )
    assert (0, True) == (failures, tried > 0)
