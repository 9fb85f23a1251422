"""
The front door (issue 11, Deliver 4): the names of "An MTA in 25 names" in docs/api.md.

Every curated name resolves from the place the page shows, and is the object of the
reference entry it links to; ``import smtpsts`` stays small (the names are loaded on
first use, PEP 562); ``__all__`` and ``dir()`` agree.
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

import smtpsts

API_PAGE = Path(__file__).resolve().parent.parent / "docs" / "api.md"
#: ``{py:role}`shown.path <reference.path>`` at the start of a list item.
_ENTRY = re.compile(r"^- \{py:\w+\}`(?P<shown>[\w.]+) <(?P<target>[\w.]+)>`", re.MULTILINE)


def _curated() -> list[tuple[str, str]]:
    text = API_PAGE.read_text(encoding="utf-8")
    section = text.split("## An MTA in 25 names", 1)[1].split("\n## ", 1)[0]
    return [(m["shown"], m["target"]) for m in _ENTRY.finditer(section)]


def _resolve(dotted: str) -> Any:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def test_curated_list_is_about_25_names() -> None:
    """Issue 11: the curated section lists about 25 distinct names, each once."""
    shown = [s for s, _ in _curated()]
    assert len(shown) == len(set(shown))
    assert 22 <= len(shown) <= 28


@pytest.mark.parametrize(("shown", "target"), _curated())
def test_curated_name_resolves_where_the_page_says(shown: str, target: str) -> None:
    """Issue 11: each curated name imports from the path shown and is its reference entry."""
    assert _resolve(target) is _resolve(shown)


def test_curated_names_come_from_two_places() -> None:
    """Issue 11: the core and the errors come from smtpsts, the adapters from smtpsts.io."""
    homes = {s.rpartition(".")[0] for s, _ in _curated()}
    assert {"smtpsts", "smtpsts.io"} <= homes
    assert set() == homes - {
        "smtpsts",
        "smtpsts.io",
        "smtpsts.stores.sqlite",
        "smtpsts.stores.tlsrpt_sqlite",
    }


def test_import_smtpsts_loads_no_adapter() -> None:
    """Issue 11: ``import smtpsts`` imports no adapter or store, nor ssl/asyncio/sqlite3/socket."""
    probe = (
        "import sys, smtpsts\n"
        "heavy = ('ssl', 'asyncio', 'sqlite3', 'socket')\n"
        "print(sorted(m for m in sys.modules if m in heavy"
        " or m.startswith(('smtpsts.io', 'smtpsts.stores'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    assert "[]" == out.strip()


def test_all_matches_dir() -> None:
    """Issue 11: ``dir(smtpsts)`` is exactly ``__all__``, and every name in it resolves."""
    assert sorted(smtpsts.__all__) == dir(smtpsts)
    for name in smtpsts.__all__:
        assert getattr(smtpsts, name) is not None


def test_lazy_name_is_the_defining_modules() -> None:
    """Issue 11: a lazily loaded name is the very object of its core module, cached after use."""
    from smtpsts.decision import plan

    assert plan is smtpsts.plan
    assert plan is vars(smtpsts)["plan"]


def test_unknown_name() -> None:
    """A name that is not exported is an AttributeError, as for any module."""
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        smtpsts.nothing_here  # noqa: B018


def test_version() -> None:
    """``smtpsts.__version__`` is the installed distribution's version."""
    from importlib.metadata import version

    assert version("smtpsts") == smtpsts.__version__


def test_validation_error_is_deprecated() -> None:
    """Issue 11: ``smtpsts.ValidationError`` (never raised) warns once, naming its removal."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = smtpsts.ValidationError
    assert [DeprecationWarning] == [w.category for w in caught]
    assert "removed in smtpsts 0.2" in str(caught[0].message)
    assert __file__ == caught[0].filename
    assert "ValidationError" == value.__name__
    assert issubclass(value, smtpsts.SMTPSTSError)
    assert "ValidationError" not in smtpsts.__all__


def test_package_logger_has_a_null_handler():
    """Issue 12 item 7: smtpsts's warnings do not reach an unconfigured application's stderr."""
    import logging
    import subprocess
    import sys

    assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger("smtpsts").handlers)
    # In a fresh interpreter that never configured logging, a library warning prints nothing
    # (without the NullHandler, logging's last-resort handler writes it to stderr).
    code = (
        "import logging, smtpsts; "
        "logging.getLogger('smtpsts.io.truststore').warning('should not be seen')"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert ("", "") == (run.stdout, run.stderr)
