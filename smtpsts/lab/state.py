"""
The state file of a running lab: how other commands talk to it (issue 12 item 2).

``smtpsts lab --keep-running`` writes a directory with the lab's CA
(``ca.pem``) and ``lab.json``: the DNS server, the CA file and the
``connect_to`` mappings, in the command line's ``HOST:PORT:ADDR:PORT`` shape.
``smtpsts check DOMAIN --lab FILE`` and ``smtpsts postfix serve --lab FILE``
read it instead of taking twenty ``--connect-to`` options. The file is
removed when the lab stops.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path
from typing import Any, Final

import attrs

from smtpsts.exceptions import LabStateError

__all__ = [
    "STATE_VERSION",
    "LabState",
    "LabStateError",
    "load_lab_state",
    "remove_lab_state",
    "write_lab_state",
]

STATE_VERSION: Final = 1
"""The ``v`` of the state file this version writes and reads."""

_MAX_BYTES: Final = 1 << 20


def _spec(host: str, port: int, address: str, target: int) -> str:
    shown = f"[{address}]" if ":" in address else address
    return f"{host}:{port}:{shown}:{target}"


@attrs.frozen
class LabState:
    """
    What a client needs to reach a running lab.

    Attributes:
        nameserver: The lab's DNS server, ``IP:PORT`` (it sets the AD bit for
            its DNSSEC zones, so trust it as a validating resolver).
        cafile: The lab CA's PEM file.
        connect_to: ``HOST:PORT:ADDR:PORT`` settings, as ``--connect-to`` takes.
        path: Where the state was read from or written to.
    """

    nameserver: str
    cafile: str
    connect_to: tuple[str, ...]
    path: Path | None = None

    def to_json(self) -> str:
        """
        The state file's text.

        Returns:
            JSON with ``v``, ``nameserver``, ``cafile`` and ``connect_to``.
        """
        doc = {
            "v": STATE_VERSION,
            "nameserver": self.nameserver,
            "cafile": self.cafile,
            "connect_to": list(self.connect_to),
        }
        return json.dumps(doc, indent=2) + "\n"


def write_lab_state(lab: Any, directory: Path | None = None) -> LabState:
    """
    Write a running lab's CA and state file.

    Args:
        lab: A started :class:`~smtpsts.lab.scenarios.Lab`.
        directory: Where to write (default: a new private temporary directory).

    Returns:
        The state, with :attr:`LabState.path` set to ``lab.json``.
    """
    where = (
        Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="smtpsts-lab-"))
    )
    where.mkdir(parents=True, exist_ok=True)
    cafile = where / "ca.pem"
    cafile.write_bytes(lab.ca.pem())
    specs = tuple(
        _spec(host, port, address, target)
        for (host, port), (address, target) in sorted(lab.connect_to.items())
    )
    state = LabState(lab.dns.address, str(cafile), specs, where / "lab.json")
    assert state.path is not None  # set just above
    temporary = state.path.with_suffix(".tmp")
    temporary.write_text(state.to_json(), encoding="utf-8")
    temporary.replace(state.path)
    return state


def remove_lab_state(state: LabState, *, directory: bool) -> None:
    """
    Remove a state file written by :func:`write_lab_state` and its CA.

    Args:
        state: The state :func:`write_lab_state` returned.
        directory: Remove the directory too (when :func:`write_lab_state`
            made it), if nothing else is in it.
    """
    if state.path is None:
        return
    for path in (state.path, Path(state.cafile)):
        path.unlink(missing_ok=True)
    if directory:
        with contextlib.suppress(OSError):  # not empty, or already gone
            state.path.parent.rmdir()


def load_lab_state(path: str | Path) -> LabState:
    """
    Read a lab state file.

    Args:
        path: The ``lab.json`` that ``smtpsts lab --keep-running`` printed.

    Returns:
        The state.

    Raises:
        LabStateError: The file is missing (is the lab still running?),
            unreadable, or not a lab state file of this version.
    """
    where = Path(path)
    try:
        with where.open("rb") as f:
            data = f.read(_MAX_BYTES + 1)
    except FileNotFoundError:
        raise LabStateError(
            f"{where}: no such file (is `smtpsts lab --keep-running` still running?)"
        ) from None
    except OSError as e:
        raise LabStateError(f"{where}: cannot be read: {e.strerror or e}") from None
    if len(data) > _MAX_BYTES:
        raise LabStateError(f"{where}: not a lab state file (over {_MAX_BYTES} bytes)")
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        raise LabStateError(f"{where}: not a lab state file (not JSON)") from None
    if not isinstance(doc, dict) or doc.get("v") != STATE_VERSION:
        raise LabStateError(f"{where}: not a lab state file of version {STATE_VERSION}")
    nameserver, cafile, connect_to = doc.get("nameserver"), doc.get("cafile"), doc.get("connect_to")
    if not (
        isinstance(nameserver, str)
        and isinstance(cafile, str)
        and isinstance(connect_to, list)
        and all(isinstance(s, str) for s in connect_to)
    ):
        raise LabStateError(f"{where}: not a lab state file (a member is missing or mistyped)")
    return LabState(nameserver, cafile, tuple(connect_to), where)
