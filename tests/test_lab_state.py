"""
The lab's state file (issue 12 item 2): written by ``lab --keep-running``, read by ``--lab``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from smtpsts._cli import build_parser
from smtpsts._cli.postfix import build_config
from smtpsts.lab.scenarios import Lab
from smtpsts.lab.state import (
    STATE_VERSION,
    LabState,
    LabStateError,
    load_lab_state,
    remove_lab_state,
    write_lab_state,
)
from smtpsts.postfix.config import ConfigError


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    """The built-in lab, running."""
    with Lab() as running:
        yield running


def test_round_trip(lab: Lab, tmp_path: Path) -> None:
    """Issue 12 item 2: the state names the DNS server, the CA and every mapping, in CLI form."""
    state = write_lab_state(lab, tmp_path)

    assert tmp_path / "lab.json" == state.path
    assert state == load_lab_state(state.path)
    assert lab.dns.address == state.nameserver
    assert lab.ca.pem() == Path(state.cafile).read_bytes()
    assert len(lab.connect_to) == len(state.connect_to)
    for (host, port), (address, target) in lab.connect_to.items():
        assert f"{host}:{port}:{address}:{target}" in state.connect_to


def test_ipv6_mapping_in_brackets() -> None:
    """Issue 12 item 7: an IPv6 target is written as curl writes it: ``HOST:PORT:[ADDR]:PORT``."""
    state = LabState("127.0.0.1:53", "ca.pem", ("mx.example:25:[::1]:2525",))
    assert ["mx.example:25:[::1]:2525"] == json.loads(state.to_json())["connect_to"]


def test_remove(lab: Lab, tmp_path: Path) -> None:
    """The state file and CA go; the directory only when asked (the lab made it)."""
    kept = write_lab_state(lab, tmp_path / "kept")
    remove_lab_state(kept, directory=False)
    assert [] == list((tmp_path / "kept").iterdir())
    made = write_lab_state(lab, tmp_path / "made")
    remove_lab_state(made, directory=True)
    assert not (tmp_path / "made").exists()
    remove_lab_state(LabState("a", "b", ()), directory=True)  # no path: nothing to do


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not json", "not JSON"),
        (b"[]", f"of version {STATE_VERSION}"),
        (b'{"v": 2}', f"of version {STATE_VERSION}"),
        (b'{"v": 1, "nameserver": "x", "cafile": "y"}', "missing or mistyped"),
        (b'{"v": 1, "nameserver": "x", "cafile": "y", "connect_to": [1]}', "missing or mistyped"),
        (b"[" * 100_000, "not JSON"),
        (b" " * (1 << 20) + b"{}", "over"),
    ],
)
def test_bad_files(tmp_path: Path, content: bytes, message: str) -> None:
    """Issue 12 item 4: a file that is not a state file is a LabStateError saying why."""
    path = tmp_path / "lab.json"
    path.write_bytes(content)
    with pytest.raises(LabStateError, match=message):
        load_lab_state(path)


def test_missing_and_unreadable(tmp_path: Path) -> None:
    """Issue 12 item 4: a missing file asks whether the lab still runs; a directory cannot be read."""
    with pytest.raises(LabStateError, match="still running"):
        load_lab_state(tmp_path / "gone.json")
    with pytest.raises(LabStateError, match="cannot be read"):
        load_lab_state(tmp_path)


def test_postfix_serve_lab(lab: Lab, tmp_path: Path) -> None:
    """Issue 12 item 2: ``postfix serve --lab FILE`` resolves through the lab; --connect-to adds."""
    state = write_lab_state(lab, tmp_path)
    args = ["postfix", "serve", "--lab", str(state.path), "--connect-to", "a:443:127.0.0.1:1"]
    config = build_config(build_parser().parse_args(args))

    assert ((lab.dns.address,), state.cafile) == (config.nameservers, config.cafile)
    assert (*state.connect_to, "a:443:127.0.0.1:1") == config.connect_to
    gone = ["postfix", "serve", "--lab", str(tmp_path / "gone.json")]
    with pytest.raises(ConfigError, match="still running"):
        build_config(build_parser().parse_args(gone))
