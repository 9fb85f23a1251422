"""`smtpsts --version` names the installed distribution's version (issue 12, item 7)."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version

import pytest

import smtpsts._cli as cli


def test_version_prints_the_distribution_version(capsys):
    """`smtpsts --version` prints "smtpsts X.Y.Z" from importlib.metadata and exits 0."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert (0, f"smtpsts {version('smtpsts')}\n") == (exit_info.value.code, capsys.readouterr().out)


def test_version_from_python_dash_m():
    """`python -m smtpsts --version` prints the same line, in a real process."""
    done = subprocess.run(
        [sys.executable, "-m", "smtpsts", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (0, f"smtpsts {version('smtpsts')}\n", "") == (done.returncode, done.stdout, done.stderr)


def test_version_when_not_installed(monkeypatch, capsys):
    """From a source tree that was never installed, --version says "unknown" rather than failing."""

    def missing(name: str) -> str:
        raise PackageNotFoundError(name)

    monkeypatch.setattr(cli, "_distribution_version", missing)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert (0, "smtpsts unknown\n") == (exit_info.value.code, capsys.readouterr().out)
