"""The core is sans-I/O: importing it pulls in no I/O client (DESIGN.md "Layers")."""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = ("asyncio", "ssl", "http", "sqlite3", "redis", "dns.resolver", "dns.asyncresolver")

PROBE = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted(sys.modules)))
"""


def _modules_after_import(*names: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *names], check=True, capture_output=True, text=True
    ).stdout
    return set(json.loads(out))


def _offenders(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN))


def test_import_smtpsts_pulls_in_no_io():
    """`import smtpsts` (and touching its lazily exported names) imports no asyncio, ssl, http, sqlite3, redis or dns.resolver."""
    modules = _modules_after_import("smtpsts", "smtpsts.tlsrpt")
    assert [] == _offenders(modules)


def test_core_modules_pull_in_no_io():
    """Every core module that exists imports no I/O client either."""
    import pkgutil

    import smtpsts

    core = [
        f"smtpsts.{m.name}"
        for m in pkgutil.iter_modules(smtpsts.__path__)
        if m.name not in {"io", "stores", "_cli", "__main__", "lab", "postfix"}
    ]
    core += [
        "smtpsts.tlsrpt." + m.name for m in pkgutil.iter_modules([f"{smtpsts.__path__[0]}/tlsrpt"])
    ]
    # The Postfix server's protocol core is pure too; only its server module does I/O.
    core += ["smtpsts.postfix.netstring", "smtpsts.postfix.protocol", "smtpsts.postfix.config"]
    assert "smtpsts.exceptions" in core
    modules = _modules_after_import(*core)
    assert [] == _offenders(modules)
