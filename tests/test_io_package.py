"""The names an MTA needs come from ``smtpsts.io`` directly, loaded on first use (issue 11)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import smtpsts.io


@pytest.mark.parametrize("name", smtpsts.io.__all__)
def test_every_name_is_the_defining_modules(name: str) -> None:
    """Issue 11: each re-exported name is the very object of the module that defines it."""
    home = smtpsts.io._HOMES[name]
    assert getattr(importlib.import_module(f"smtpsts.io.{home}"), name) is getattr(smtpsts.io, name)


def test_names_and_homes_agree() -> None:
    """Issue 11: __all__ and the lazy table list the same names, and dir() shows them."""
    assert sorted(smtpsts.io._HOMES) == sorted(smtpsts.io.__all__)
    assert set(smtpsts.io.__all__) <= set(dir(smtpsts.io))


def test_unknown_name() -> None:
    """A name that is not exported is an AttributeError, as for any module."""
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        smtpsts.io.nothing_here  # noqa: B018


def test_lazy() -> None:
    """Importing PolicyResolver from smtpsts.io loads neither redis nor the report sender."""
    probe = (
        "import sys\nfrom smtpsts.io import PolicyResolver\n"
        "print(sorted(m for m in sys.modules if m.startswith(('redis', 'smtpsts.io.tlsrpt_send'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout
    assert "[]" == out.strip()
