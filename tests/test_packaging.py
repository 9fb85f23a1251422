"""
Packaging and the test command (issue 12, items 1 and 7).

The wheel and the sdist ship the LICENSE, py.typed, the vectors and complete metadata; CI runs
the README's test command; the noxfile makes a run that could not test fail.
"""

from __future__ import annotations

import ast
import email
import importlib.util
import os
import re
import subprocess
import sys
import tarfile
import tomllib
import types
import zipfile
from pathlib import Path

import pytest

from conftest import REQUIRE_SERVICES

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
SUPPORTED = ("3.11", "3.12", "3.13")


def _noxfile_assignments() -> dict[str, object]:
    """Module-level literal assignments of noxfile.py (``nox.options.x`` keyed as ``options.x``)."""
    tree = ast.parse((ROOT / "noxfile.py").read_text(encoding="utf-8"))
    found: dict[str, object] = {}
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
            continue
        target = node.targets[0]
        if isinstance(target, ast.Name):
            key = target.id
        elif isinstance(target, ast.Attribute) and isinstance(target.value, ast.Attribute):
            key = f"{target.value.attr}.{target.attr}"
        else:
            continue
        try:
            found[key] = ast.literal_eval(node.value)
        except ValueError:
            found[key] = None  # not a literal (computed at import)
    return found


def _build(kind: str, outdir: Path) -> Path:
    """Build the sdist or wheel offline (no isolation: hatchling from this environment)."""
    if importlib.util.find_spec("build") is None or importlib.util.find_spec("hatchling") is None:
        msg = "build and hatchling (the tests dependency group) are not installed"
        if REQUIRE_SERVICES:
            pytest.fail(f"{msg}, and SMTPSTS_REQUIRE_SERVICES is set")
        pytest.skip(msg)
    subprocess.run(
        [sys.executable, "-m", "build", f"--{kind}", "--no-isolation", "--outdir", str(outdir)],
        cwd=ROOT,
        capture_output=True,
        timeout=120,
        check=True,
    )
    (artifact,) = outdir.iterdir()
    return artifact


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from this tree."""
    return _build("wheel", tmp_path_factory.mktemp("wheel"))


def test_wheel_ships_license_typing_and_vectors(wheel):
    """The wheel has the LICENSE (PEP 639 licenses/), py.typed and the reference vectors."""
    names = set(zipfile.ZipFile(wheel).namelist())
    dist_info = next(n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info"))
    wanted = {
        f"{dist_info}/licenses/LICENSE",
        "smtpsts/py.typed",
        "smtpsts/vectors/sts-policy.json",
    }
    assert wanted == wanted & names


def test_wheel_metadata(wheel):
    """The wheel's METADATA: MIT licence file, every supported Python classified, project URLs."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        meta = email.message_from_bytes(archive.read(name))
    classifiers = set(meta.get_all("Classifier"))
    urls = {value.split(",")[0] for value in meta.get_all("Project-URL")}
    assert (
        "MIT",
        ["LICENSE"],
        ">=3.11",
        {f"Programming Language :: Python :: {v}" for v in SUPPORTED},
        {"Homepage", "Documentation", "Source", "Issues", "Changelog"},
    ) == (
        meta["License-Expression"],
        meta.get_all("License-File"),
        meta["Requires-Python"],
        {c for c in classifiers if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)},
        urls,
    )


def test_license_is_mit():
    """LICENSE is the MIT licence of the smtpsts authors, as pyproject.toml declares."""
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert (True, True, "MIT") == (
        text.startswith("MIT License"),
        "Copyright (c) 2026 the smtpsts authors" in text,
        PYPROJECT["project"]["license"],
    )


def test_sdist_ships_what_its_tests_read(tmp_path):
    """The sdist has LICENSE and .ci/run (tests/test_packaging.py reads it), so its tests pass."""
    sdist = _build("sdist", tmp_path)
    with tarfile.open(sdist) as archive:
        names = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
    wanted = {"LICENSE", ".ci/run", "README.md", "noxfile.py", "tests/conftest.py"}
    assert wanted == wanted & names


def _readme_test_command() -> str:
    """The one-line command in the first ``sh`` block after "The whole test suite"."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("**The whole test suite**") :]
    match = re.search(r"```sh\n([^\n]+)\n```", section)
    assert match is not None
    return match.group(1)


def test_ci_runs_the_readme_test_command_verbatim():
    """.ci/run's last command is the README's test command, word for word (venv, then nox)."""
    lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()
    assert (
        "python3 -m venv .venv && .venv/bin/pip install --upgrade nox && .venv/bin/nox",
        _readme_test_command(),
    ) == (_readme_test_command(), lines[-1])


def test_nox_fails_on_missing_interpreters():
    """A nox run that could not test fails: missing interpreters are errors, not skips."""
    settings = _noxfile_assignments()
    assert (True, SUPPORTED) == (
        settings["options.error_on_missing_interpreters"],
        settings["SUPPORTED_PYTHONS"],
    )


def test_classifiers_list_the_pythons_nox_tests():
    """pyproject.toml classifies exactly the Pythons the noxfile tests (3.11, 3.12, 3.13)."""
    classified = {
        c.rsplit(" ", 1)[1]
        for c in PYPROJECT["project"]["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    }
    assert set(_noxfile_assignments()["SUPPORTED_PYTHONS"]) == classified


class _StubNox(types.ModuleType):
    """Just enough of nox for noxfile.py to import: decorators record, options collect."""

    def __init__(self) -> None:
        super().__init__("nox")
        self.options = types.SimpleNamespace()
        self.Session = object
        self.parametrized: dict[str, object] = {}

    def session(self, func=None, **_kwargs):
        if func is None:
            return lambda f: f
        return func

    def parametrize(self, names, values, ids=None):
        def record(func):
            self.parametrized[func.__name__] = (names, values, ids)
            return func

        return record


def _load_noxfile(monkeypatch, path_dirs: list[Path], version: tuple[int, int]) -> _StubNox:
    """Import noxfile.py under a stub nox, with PATH and nox's own Python version as given."""
    stub = _StubNox()
    command = types.ModuleType("nox.command")
    command.CommandFailed = type("CommandFailed", (Exception,), {})
    monkeypatch.setitem(sys.modules, "nox", stub)
    monkeypatch.setitem(sys.modules, "nox.command", command)
    monkeypatch.setenv("PATH", os.pathsep.join(str(d) for d in path_dirs))
    version_info = types.SimpleNamespace(major=version[0], minor=version[1])
    spec = importlib.util.spec_from_file_location("noxfile_under_test", ROOT / "noxfile.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setattr(sys, "version_info", version_info)
    try:
        spec.loader.exec_module(module)
    finally:
        monkeypatch.undo()
    stub.module = module
    return stub


def _fake_python(directory: Path, name: str, prints: str, status: int = 0) -> None:
    """A ``pythonX.Y`` on PATH that prints a version and exits with a status (a shim, say)."""
    exe = directory / name
    exe.write_text(f"#!/bin/sh\necho {prints}\nexit {status}\n")
    exe.chmod(0o755)


def test_nox_tests_every_supported_python_found(tmp_path, monkeypatch):
    """
    The tests session runs on nox's own 3.11 and on a 3.12 that runs, not on a 3.13 shim that fails.

    Oldest dependencies run once, on the oldest Python found, and so do the other sessions.
    """
    _fake_python(tmp_path, "python3.12", "3.12")
    _fake_python(tmp_path, "python3.13", "pyenv: python3.13: command not found", status=127)
    stub = _load_noxfile(monkeypatch, [tmp_path], (3, 11))
    names, values, ids = stub.parametrized["tests"]
    assert (
        ("python", "deps"),
        [("3.11", "latest"), ("3.12", "latest"), ("3.11", "oldest")],
        ["3.11-latest", "3.12-latest", "3.11-oldest"],
        "3.11",
        True,
    ) == (names, values, ids, stub.module.PYTHON, stub.options.error_on_missing_interpreters)


def test_nox_on_a_313_venv_without_311_still_tests(tmp_path, monkeypatch):
    """Issue 12: nox from a 3.13 venv with no python3.11 on PATH tests on 3.13 (not skip all)."""
    stub = _load_noxfile(monkeypatch, [tmp_path], (3, 13))
    _names, values, _ids = stub.parametrized["tests"]
    assert ([("3.13", "latest"), ("3.13", "oldest")], "3.13") == (values, stub.module.PYTHON)


def test_nox_with_no_supported_python_asks_for_all(tmp_path, monkeypatch):
    """With no supported Python at all, every one is asked for, so nox errors (missing = error)."""
    stub = _load_noxfile(monkeypatch, [tmp_path], (3, 10))
    _names, values, _ids = stub.parametrized["tests"]
    assert (
        [("3.11", "latest"), ("3.12", "latest"), ("3.13", "latest"), ("3.11", "oldest")],
        True,
    ) == (values, stub.options.error_on_missing_interpreters)
