"""
Task runner: ``nox`` runs every session; ``nox -s tests`` just the tests.

Missing interpreters are errors, so a run that could not test fails (issue 12).
The tests run with the latest dependencies on every supported Python found
(3.11, 3.12, 3.13: an interpreter counts as found when ``pythonX.Y`` runs),
and with the oldest dependencies on the oldest one found; the other sessions
run on that oldest one too. With none found they ask for 3.11, which fails.

Sessions: tests (latest and oldest supported dependencies), coverage, lint,
mypy, docs, docs-doctests, vectors, conformance, interop (the vectors against other
implementations, latest versions), build, fuzz-smoke (5,000
inputs per fuzz target). Not run by default: fuzz (1,000,000 inputs per
target; ``nox -s fuzz -- --runs N [TARGET ...]``).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys

import nox
from nox.command import CommandFailed

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
# A session whose interpreter is missing fails the run instead of being skipped.
nox.options.error_on_missing_interpreters = True

# The Pythons we support and test (pyproject.toml classifiers list the same).
SUPPORTED_PYTHONS = ("3.11", "3.12", "3.13")


def _runs(version: str) -> bool:
    """Whether ``pythonX.Y`` is nox's own or on PATH and runs (a pyenv shim may not)."""
    if version == f"{sys.version_info.major}.{sys.version_info.minor}":
        return True  # nox runs sessions of its own version with its own interpreter
    exe = shutil.which(f"python{version}")
    if exe is None:
        return False
    try:
        done = subprocess.run(
            [exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0 and done.stdout.strip() == version


# Supported Pythons found here; with none, all of them, so that nox reports them missing.
FOUND_PYTHONS = [v for v in SUPPORTED_PYTHONS if _runs(v)] or list(SUPPORTED_PYTHONS)
PYTHON = FOUND_PYTHONS[0]
# Debian packages for the tests that run real servers (STYLE.md §3.6).
SERVICE_PACKAGES = {
    "redis-server": "redis-server",
    "nsd": "nsd",
    "unbound": "unbound",
    "postfix": "postfix",
    "/usr/lib/postgresql/*/bin/pg_ctl": "postgresql",
    "dovecot": "dovecot-imapd",
    "chromium": "chromium",
    "chromedriver": "chromium-driver",
    # The mailauth adapter of the interop tests (interop/node, npm install at test time).
    "node": "nodejs",
    "npm": "npm",
}
ADAPTERS = [
    "smtpsts/io/*",
    "smtpsts/stores/*",
    "smtpsts/_cli/*",
    "smtpsts/postfix/server.py",
    "smtpsts/postfix/_build.py",
    "smtpsts/postfix/_connection.py",
    "smtpsts/postfix/_listeners.py",
    "smtpsts/postfix/_process.py",
    "smtpsts/postfix/dane_checker.py",
    "smtpsts/postfix/metrics.py",
    "smtpsts/lab/*",
    "smtpsts/__main__.py",
]
SCORECARD = "smtpsts/lab/scorecard/*"
# The API reference imports every module, those of the optional extras too.
ALL_EXTRAS = "redis,dkim,metrics,postgres,server"
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


# Fuzzing (fuzz/run.py): inputs per target for the full campaign and the CI smoke.
FUZZ_RUNS = 1_000_000
FUZZ_SMOKE_RUNS = 5_000
# Debian packages that build atheris from source when no wheel fits (clang with
# libFuzzer; libclang-rt-dev follows Debian's default clang); atheris 3.0.0 has
# CPython 3.11 wheels for x86_64, so rarely needed.
FUZZ_BUILD_PACKAGES = ["clang", "libclang-rt-dev"]


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
    if "*" in binary:  # Debian keeps PostgreSQL's programs off PATH, one directory a version
        return next(iter(sorted(glob.glob(binary))), None)
    return shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/sbin:/usr/bin")


@nox.session
@nox.parametrize(
    ("python", "deps"),
    [(version, "latest") for version in FOUND_PYTHONS] + [(PYTHON, "oldest")],
    ids=[f"{version}-latest" for version in FOUND_PYTHONS] + [f"{PYTHON}-oldest"],
)
def tests(session: nox.Session, deps: str) -> None:
    """Run the test suite under coverage (latest deps on every Python found, oldest on one)."""
    _ensure_services(session)
    if deps == "oldest":
        # The interop oracles (parsedmarc, tlsrpt-reporter) need newer libraries than our
        # floors; they check our output, not our floors, so they run with "latest" only.
        _install(session, "tests", pins=("-c", "tests/constraints/oldest.txt"))
        selection = ("-m", "not interop")
    else:
        _install(session, "tests", "interop")
        selection = ()
    session.env["COVERAGE_FILE"] = f".coverage.{session.python}-{deps}"
    session.run("coverage", "run", "-m", "pytest", *selection, *session.posargs)


@nox.session(python=PYTHON)
def coverage(session: nox.Session) -> None:
    """Combine coverage and require 100% branch coverage of the core."""
    session.install("coverage[toml]")
    session.run("coverage", "combine", success_codes=[0, 1])
    # The sans-I/O core: every branch (STYLE.md §3.6).
    session.run("coverage", "report", "--omit", ",".join(ADAPTERS), "--fail-under", "100")
    # Adapters, stores and the command line: at least 95%. The scorecard runs in a process of
    # its own network namespace, which coverage does not follow; tests/test_scorecard.py runs
    # every cell of it and checks each one.
    session.run(
        "coverage",
        "report",
        "--include",
        ",".join(ADAPTERS),
        "--omit",
        SCORECARD,
        "--fail-under",
        "95",
    )


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
    _install(session, "docs", extras=ALL_EXTRAS)
    session.run("sphinx-build", "-n", "-T", "-W", "-b", "html", "docs", "docs/_build/html")


@nox.session(name="docs-doctests", python=PYTHON)
def docs_doctests(session: nox.Session) -> None:
    """Run the examples in the docs."""
    _install(session, "docs", extras=ALL_EXTRAS)
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
def interop(session: nox.Session) -> None:
    """Run the vectors against the other implementations (latest versions): docs/interop.md."""
    _ensure_services(session)
    _install(session, "tests", "interop")
    npm = _which("npm")
    if npm is None:
        session.error("npm is needed for the mailauth adapter (interop/node)")
    session.run(
        npm, "install", "--no-audit", "--no-fund", "--prefix", "interop/node", external=True
    )
    out = f"{session.create_tmp()}/interop.md"
    session.run("python", "tools/interop_report.py", "--out", out)
    session.log(f"wrote {out}; the committed page is docs/interop.md (regenerate: --out default)")


@nox.session(python=PYTHON, default=False)
def scorecard(session: nox.Session) -> None:
    """The MTA conformance scorecard (root: a private network namespace; docs/scorecard.md).

    Not run by default: tests/test_scorecard.py runs the same columns in the test sessions.
    """
    _ensure_services(session)
    _install(session)
    session.run(
        "smtpsts",
        "lab",
        "--scorecard",
        "--json",
        "scorecard.json",
        "--markdown",
        "scorecard.md",
        *session.posargs,
    )


@nox.session(python=PYTHON)
def build(session: nox.Session) -> None:
    """Build the sdist and wheel and check the wheel ships the vectors, py.typed and LICENSE."""
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
    for needed in ("smtpsts/py.typed", "smtpsts/vectors/sts-policy.json", "/licenses/LICENSE"):
        if needed not in listing:
            session.error(f"wheel lacks {needed}")


def _install_fuzz(session: nox.Session) -> None:
    """Install the package and atheris: a wheel if there is one, else build it with clang."""
    session.install("--upgrade", "pip>=25.1")
    try:
        session.install("--only-binary", "atheris", "-e", ".", "--group", "fuzz", silent=True)
    except CommandFailed:
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            session.error("no atheris wheel for this platform; building it needs clang (root)")
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        session.run("apt-get", "update", "-qq", external=True, env=env)
        session.run(
            "apt-get",
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            *FUZZ_BUILD_PACKAGES,
            external=True,
            env=env,
        )
        session.install("-e", ".", "--group", "fuzz", env={"CLANG_BIN": "clang"})


@nox.session(python=PYTHON, default=False)
def fuzz(session: nox.Session) -> None:
    """Fuzz every parser of network text for 1,000,000 inputs each (posargs go to fuzz/run.py)."""
    _install_fuzz(session)
    session.run("python", "fuzz/run.py", "--runs", str(FUZZ_RUNS), *session.posargs)


@nox.session(name="fuzz-smoke", python=PYTHON)
def fuzz_smoke(session: nox.Session) -> None:
    """A short fuzz run of every target (CI): any finding fails."""
    _install_fuzz(session)
    work = os.path.join(session.create_tmp(), "fuzz-smoke")
    shutil.rmtree(work, ignore_errors=True)
    # A fixed libFuzzer seed makes the smoke repeatable (it runs in CI by default).
    extra = list(session.posargs)
    libfuzzer = ["-seed=1"] if "--" in extra else ["--", "-seed=1"]
    session.run(
        "python", "fuzz/run.py", "--runs", str(FUZZ_SMOKE_RUNS), "--work", work, *extra, *libfuzzer
    )
