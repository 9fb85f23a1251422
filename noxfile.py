"""
Task runner: ``nox`` runs every session; ``nox -s tests`` just the tests.

Sessions: tests (latest and oldest supported dependencies), coverage, lint,
mypy, docs, docs-doctests, vectors, conformance, build.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = False

PYTHON = "3.11"
# Debian packages for the tests that run real servers (STYLE.md §3.6).
SERVICE_PACKAGES = {
    "redis-server": "redis-server",
    "nsd": "nsd",
    "unbound": "unbound",
    "postfix": "postfix",
}
ADAPTERS = [
    "smtpsts/io/*",
    "smtpsts/stores/*",
    "smtpsts/_cli/*",
    "smtpsts/postfix/server.py",
    "smtpsts/lab/*",
    "smtpsts/__main__.py",
]
# Every group of CONFORMANCE.md must stay fully covered by tests or vectors.
REQUIRED_CONFORMANCE = [
    "STS-REC",
    "STS-POL",
    "STS-FETCH",
    "STS-MX",
    "STS-CERT",
    "STS-CACHE",
    "STS-APPLY",
    "RPT-REC",
    "RPT-JSON",
    "RPT-AGG",
    "RPT-SEND",
    "DANE",
    "SEC",
]


def _install(session: nox.Session, *groups: str, extras: str = "redis", pins: tuple = ()) -> None:
    session.install("--upgrade", "pip>=25.1")
    args = []
    for group in groups:
        args += ["--group", group]
    session.install("-e", f".[{extras}]" if extras else ".", *args, *pins)


def _ensure_services(session: nox.Session) -> None:
    """Install the Debian server packages the integration tests need, when we can."""
    missing = [pkg for binary, pkg in SERVICE_PACKAGES.items() if not _which(binary)]
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        session.warn(f"not installing {missing}: needs root and apt-get; those tests will skip")
        return
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    if "postfix" in missing:
        # No system mail configuration: the tests run private Postfix instances.
        subprocess.run(
            ["debconf-set-selections"],
            input=b"postfix postfix/main_mailer_type select No configuration\n",
            check=True,
        )
    session.run("apt-get", "update", "-qq", external=True, env=env)
    session.run(
        "apt-get",
        "install",
        "-y",
        "-qq",
        "--no-install-recommends",
        *missing,
        external=True,
        env=env,
    )


def _which(binary: str) -> str | None:
    return shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/sbin:/usr/bin")


@nox.session(python=PYTHON)
@nox.parametrize("deps", ["latest", "oldest"])
def tests(session: nox.Session, deps: str) -> None:
    """Run the test suite under coverage."""
    _ensure_services(session)
    if deps == "oldest":
        # The interop oracles (parsedmarc, tlsrpt-reporter) need newer libraries than our
        # floors; they check our output, not our floors, so they run with "latest" only.
        _install(session, "tests", pins=("-c", "tests/constraints/oldest.txt"))
        selection = ("-m", "not interop")
    else:
        _install(session, "tests", "interop")
        selection = ()
    session.env["COVERAGE_FILE"] = f".coverage.{deps}"
    session.run("coverage", "run", "-m", "pytest", *selection, *session.posargs)


@nox.session(python=PYTHON)
def coverage(session: nox.Session) -> None:
    """Combine coverage and require 100% branch coverage of the core."""
    session.install("coverage[toml]")
    session.run("coverage", "combine", success_codes=[0, 1])
    # The sans-I/O core: every branch (STYLE.md §3.6).
    session.run("coverage", "report", "--omit", ",".join(ADAPTERS), "--fail-under", "100")
    # Adapters, stores and the command line: at least 95%.
    session.run("coverage", "report", "--include", ",".join(ADAPTERS), "--fail-under", "95")


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Ruff (lint and format check)."""
    _install(session, "lint", extras="")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def mypy(session: nox.Session) -> None:
    """mypy --strict over the package and the typing tests."""
    _install(session, "typing")
    session.run("mypy")


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the HTML docs, nitpicky, warnings as errors."""
    _install(session, "docs")
    session.run("sphinx-build", "-n", "-T", "-W", "-b", "html", "docs", "docs/_build/html")


@nox.session(name="docs-doctests", python=PYTHON)
def docs_doctests(session: nox.Session) -> None:
    """Run the examples in the docs."""
    _install(session, "docs")
    session.run("sphinx-build", "-n", "-T", "-W", "-b", "doctest", "docs", "docs/_build/doctest")


@nox.session(python=PYTHON)
def vectors(session: nox.Session) -> None:
    """Run every shipped reference vector through the CLI, as other implementers would."""
    _install(session, extras="")
    session.run("smtpsts", "vectors", "run")
    out = session.create_tmp()
    session.run("smtpsts", "vectors", "export", out)
    session.run(
        "smtpsts",
        "vectors",
        "run",
        *sorted(os.path.join(out, f) for f in os.listdir(out) if f.endswith(".json")),
    )


@nox.session(python=PYTHON)
def conformance(session: nox.Session) -> None:
    """Check docs/conformance.md is current and the foundation groups are fully covered."""
    session.run("python", "tools/conformance.py", "--check", external=True)
    session.run("python", "tools/conformance.py", "--require", *REQUIRED_CONFORMANCE, external=True)


@nox.session(python=PYTHON)
def build(session: nox.Session) -> None:
    """Build the sdist and wheel and check the wheel ships the vectors and py.typed."""
    session.install("build")
    shutil.rmtree("dist", ignore_errors=True)
    session.run("python", "-m", "build")
    listing = subprocess.run(
        [
            "python",
            "-m",
            "zipfile",
            "-l",
            *(f"dist/{f}" for f in os.listdir("dist") if f.endswith(".whl")),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for needed in ("smtpsts/py.typed", "smtpsts/vectors/sts-policy.json"):
        if needed not in listing:
            session.error(f"wheel lacks {needed}")
