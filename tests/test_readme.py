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


def test_ci_runs_the_readme_test_command():
    """.ci/run ends by running the README's test command, word for word."""
    readme = (ROOT / "README.md").read_text()
    command = "python3 -m pip install --upgrade nox && python3 -m nox"
    assert f"```sh\n{command}\n```" in readme
    ci = (ROOT / ".ci" / "run").read_text().replace("-q --upgrade", "--upgrade")
    assert command in ci


def test_main_command_is_the_lab():
    """The README's main command runs the offline lab after one install command."""
    readme = (ROOT / "README.md").read_text()
    assert "```sh\npython3 -m pip install . && python3 -m smtpsts lab\n```" in readme
