"""Issue 13 item 7: the shipped systemd units run commands smtpsts accepts, with timers for each oneshot."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

import pytest

from smtpsts._cli import build_parser

UNITS = Path(__file__).resolve().parent.parent / "contrib" / "systemd"
SERVICES = sorted(UNITS.glob("*.service"))


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text(encoding="utf-8"))
    return parser


def test_there_are_units():
    assert {"serve", "fetch", "alert"} <= {p.stem.rsplit("-", 1)[-1] for p in SERVICES}


@pytest.mark.parametrize("path", SERVICES, ids=lambda p: p.name)
def test_exec_start_is_a_command_smtpsts_accepts(path):
    """The unit's command line parses with smtpsts's own parser (no option misspelt)."""
    argv = shlex.split(unit(path)["Service"]["ExecStart"])
    assert argv[0].endswith("/smtpsts")
    args = build_parser().parse_args(argv[1:])
    assert callable(args.handler)


@pytest.mark.parametrize("path", SERVICES, ids=lambda p: p.name)
def test_hardened_and_oneshots_have_timers(path):
    """Every service runs unprivileged and read-only; a oneshot is started by its timer."""
    service = unit(path)["Service"]
    assert ("yes", "yes", "strict") == (
        service["DynamicUser"],
        service["NoNewPrivileges"],
        service["ProtectSystem"],
    )
    if service.get("Type") == "oneshot":
        timer = unit(path.with_suffix(".timer"))
        assert timer["Timer"]
        assert "timers.target" == timer["Install"]["WantedBy"]
