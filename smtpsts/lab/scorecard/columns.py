"""
The scorecard's columns: one adapter per MTA under test.

Each column runs every scenario it supports in three phases, all scenarios
at once per phase (so a slow MTA is waited on once, not per scenario):
publish and prime (one message per primed scenario, so the MTA learns the
policy); strike (the attacker acts); the judged message, then wait for a
settled outcome: arrived (where, over TLS or not), bounced, or still queued
after :data:`SETTLE` seconds (deferred).

Columns:

- ``io.deliver``: a minimal Python relay on
  :func:`smtpsts.io.deliver.deliver_connection`, one
  :class:`~smtpsts.io.drivers.PolicyResolver` with an SQLite cache for the
  whole column, DANE through the world's DNS server as the validating
  resolver;
- ``postfix+smtpsts``: Debian's Postfix (a private instance, its MX lookups
  through the namespace's ``/etc/resolv.conf``, no ``transport_maps``) with
  ``smtp_tls_policy_maps = socketmap:inet:127.0.0.1:8461:postfix`` answered
  by ``smtpsts postfix serve`` (SQLite cache, default configuration).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

import attrs

from smtpsts.lab.scorecard.scenarios import Scenario, expand
from smtpsts.lab.scorecard.world import World

__all__ = ["COLUMNS", "SETTLE", "Column", "requirements", "run_column"]

SETTLE: Final = 10.0
"""Seconds after which a message still queued counts as deferred."""

DEADLINE: Final = 45.0
"""Seconds a phase waits at most."""

SOCKETMAP_PORT: Final = 8461
"""Where ``smtpsts postfix serve`` listens for Postfix."""

_POLL: Final = 0.3

Driver = Callable[[World, Sequence[Scenario], Path], dict[str, str]]


@attrs.frozen
class Column:
    """
    One MTA under test.

    Attributes:
        name: Its name in the table.
        driver: Runs the scenarios and returns ``{scenario: observed}``.
        dane: Whether it runs the DANE scenarios.
        needs: Programs it needs installed.
    """

    name: str
    driver: Driver
    dane: bool
    needs: tuple[str, ...] = ()


def _observe(world: World, rcpt: str) -> str | None:
    arrivals = world.arrivals(rcpt)
    if not arrivals:
        return None
    a = arrivals[-1]
    return f"{'tls' if a.tls else 'plain'}:{a.host}"


def _strike(world: World, scenarios: Sequence[Scenario]) -> None:
    wait = max((s.wait for s in scenarios if s.prime), default=0.0)
    if wait:
        time.sleep(wait)  # max_age expiry: real time has to pass
    for s in scenarios:
        s.strike(world, s.domain)


# --------------------------------------------------------------------------- io.deliver


def _io_deliver(world: World, scenarios: Sequence[Scenario], tmp: Path) -> dict[str, str]:
    from smtpsts.certs import TrustStore  # noqa: PLC0415
    from smtpsts.delivery import DeliveryStatus  # noqa: PLC0415
    from smtpsts.io.deliver import deliver_connection  # noqa: PLC0415
    from smtpsts.io.dns import DNSResolver  # noqa: PLC0415
    from smtpsts.io.dnssec import DNSSECResolver  # noqa: PLC0415
    from smtpsts.io.drivers import PolicyResolver  # noqa: PLC0415
    from smtpsts.stores.sqlite import SQLitePolicyStore  # noqa: PLC0415

    store = SQLitePolicyStore(tmp / "cache.sqlite")
    policies = PolicyResolver(
        store=store, trust=TrustStore([world.ca.root.cert]), nameservers=["127.0.0.1"]
    )
    dns = DNSResolver(["127.0.0.1"])
    dnssec = DNSSECResolver(["127.0.0.1"], trust_ad=True)

    def send(scenario: Scenario, rcpt: str) -> str:
        domain = "bücher.test" if scenario.name == "idn-domain" else scenario.domain
        d = deliver_connection(
            domain,
            policies=policies,
            dns=dns,
            dnssec=dnssec,
            helo_name="sender.lab.test",
            timeout=15,
        )
        if d.status is DeliveryStatus.NO_MAIL:
            return "bounce"
        if d.status is not DeliveryStatus.CONNECTED or d.smtp is None:
            return "defer"
        try:
            d.smtp.sendmail("lab@lab.test", [rcpt], b"Subject: scorecard\r\n\r\nhello\r\n")
        finally:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                d.smtp.quit()
        return _observe(world, rcpt) or "lost"

    try:
        for s in scenarios:
            if s.prime:
                send(s, f"prime@{s.domain}")
        _strike(world, scenarios)
        return {s.name: send(s, f"judged@{s.domain}") for s in scenarios}
    finally:
        store.close()


# --------------------------------------------------------------------------- Postfix

MASTER_CF = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def postfix_main(directory: Path, cafile: Path, **changes: str) -> dict[str, str]:
    """
    The ``main.cf`` of a private Postfix under *directory* (spool, data, log in it).

    Args:
        directory: The instance's directory (``spool/``, ``data/``, ``maillog``).
        cafile: The CA bundle its SMTP client trusts.
        changes: Settings to add or replace.

    Returns:
        The settings, in order.
    """
    main = {
        "compatibility_level": "3.6",
        "queue_directory": str(directory / "spool"),
        "data_directory": str(directory / "data"),
        "myhostname": "sender.lab.test",
        "mydomain": "lab.test",
        "mydestination": "",
        "inet_interfaces": "loopback-only",
        "inet_protocols": "ipv4",
        "alias_maps": "",
        "alias_database": "",
        "maillog_file": str(directory / "maillog"),
        "maillog_file_prefixes": str(directory),
        "smtp_tls_security_level": "may",
        "smtp_tls_CAfile": str(cafile),
        "smtp_tls_loglevel": "1",
        "smtp_connect_timeout": "5s",
        "queue_run_delay": "1s",
        "minimal_backoff_time": "1s",
        "maximal_backoff_time": "2s",
        "shlib_directory": "/usr/lib/postfix",
        "meta_directory": "/etc/postfix",
    }
    main.update(changes)
    return main


def write_postfix_config(config: Path, main: dict[str, str]) -> None:
    """
    Write ``main.cf``, ``master.cf`` and Debian's map files into *config*.

    Args:
        config: The instance's configuration directory.
        main: The ``main.cf`` settings.
    """
    (config / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in main.items()))
    (config / "master.cf").write_text(MASTER_CF)
    for name in ("dynamicmaps.cf", "postfix-files"):
        if (Path("/etc/postfix") / name).exists():
            shutil.copy(Path("/etc/postfix") / name, config / name)


class _Postfix:
    """A private Postfix instance; MX selection by DNS through the namespace's resolver."""

    def __init__(self, tmp: Path, cafile: Path, policy_map: str | None) -> None:
        self.dir = tmp / "postfix"
        self.config = self.dir / "etc"
        self.log = self.dir / "maillog"
        for d in (self.config, self.dir / "spool", self.dir / "data"):
            d.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.dir / "data", "postfix", "postfix")
        main = postfix_main(
            self.dir,
            cafile,
            # Debian's defaults for a sending MTA: opportunistic TLS, MX by DNS.
            smtp_host_lookup="dns",
            # Every message opens its own session, so the attacker's move is
            # seen (no cached connection or TLS session from the priming).
            smtp_connection_cache_on_demand="no",
            smtp_tls_session_cache_database="",
        )
        if policy_map is not None:
            main["smtp_tls_policy_maps"] = policy_map
        write_postfix_config(self.config, main)

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 -- Postfix's own tools, no shell
            list(args), capture_output=True, text=True, timeout=60, check=False
        )

    def start(self) -> None:
        r = self._run("/usr/sbin/postfix", "-c", str(self.config), "start")
        if r.returncode != 0:
            raise RuntimeError(f"postfix start failed: {r.stdout}{r.stderr}{self.logs()}")

    def stop(self) -> None:
        r = self._run("/usr/sbin/postfix", "-c", str(self.config), "stop")
        if r.returncode != 0:  # pragma: no cover - a master that will not stop
            self._run("/usr/sbin/postfix", "-c", str(self.config), "abort")

    def send(self, rcpt: str) -> None:
        subprocess.run(  # noqa: S603 -- Postfix's sendmail, no shell
            ["/usr/sbin/sendmail", "-C", str(self.config), "-f", "lab@lab.test", rcpt],
            input=f"From: lab@lab.test\nTo: {rcpt}\nSubject: scorecard\n\nhello\n",
            text=True,
            check=True,
            timeout=30,
        )

    def queued(self) -> dict[str, str]:
        r = self._run("/usr/sbin/postqueue", "-c", str(self.config), "-j")
        return {
            rc.get("address", "").lower(): rc.get("delay_reason", "")
            for line in r.stdout.splitlines()
            if line.strip()
            for rc in json.loads(line).get("recipients", [])
        }

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def bounced(self, rcpt: str, log: str) -> bool:
        return any(f"to=<{rcpt}>" in ln and "status=bounced" in ln for ln in log.splitlines())


def _wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"smtpsts postfix serve exited: {log.read_text(errors='replace')}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"smtpsts postfix serve not listening after {DEADLINE:.0f} s")


def _postfix_smtpsts(world: World, scenarios: Sequence[Scenario], tmp: Path) -> dict[str, str]:
    cafile = tmp / "ca.pem"
    cafile.write_bytes(world.ca.pem())
    cafile.chmod(0o644)
    serve_log = tmp / "serve.log"
    with serve_log.open("wb") as err:
        server = subprocess.Popen(  # noqa: S603 -- our own interpreter and module
            [
                sys.executable,
                "-m",
                "smtpsts",
                "postfix",
                "serve",
                "--listen",
                f"127.0.0.1:{SOCKETMAP_PORT}",
                "--cache",
                f"sqlite:{tmp / 'cache.sqlite'}",
                "--cafile",
                str(cafile),
                "--nameserver",
                "127.0.0.1:53",
            ],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        _wait_listening(SOCKETMAP_PORT, server, serve_log)
        postfix = _Postfix(tmp, cafile, f"socketmap:inet:127.0.0.1:{SOCKETMAP_PORT}:postfix")
        postfix.start()
        try:
            return _postfix_phases(world, scenarios, postfix)
        finally:
            postfix.stop()
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:  # pragma: no cover - a server that hangs on TERM
            server.kill()
            server.wait(timeout=20)


def _settle(world: World, postfix: _Postfix, rcpts: dict[str, str]) -> dict[str, str]:
    result: dict[str, str] = {}
    sent = time.monotonic()
    while True:
        queued = postfix.queued()
        log = postfix.logs()
        for name, rcpt in rcpts.items():
            seen = _observe(world, rcpt)
            if seen is not None:
                result[name] = seen
            elif postfix.bounced(rcpt, log):
                result[name] = "bounce"
            elif rcpt in queued and time.monotonic() - sent >= SETTLE:
                result[name] = "defer"
        if len(result) == len(rcpts) or time.monotonic() - sent > DEADLINE:
            return {n: result.get(n, "lost") for n in rcpts}
        time.sleep(_POLL)


def _postfix_phases(
    world: World, scenarios: Sequence[Scenario], postfix: _Postfix
) -> dict[str, str]:
    primed = [f"prime@{s.domain}" for s in scenarios if s.prime]
    for rcpt in primed:
        postfix.send(rcpt)
    deadline = time.monotonic() + DEADLINE
    while primed and time.monotonic() < deadline:
        if all(world.arrivals(r) for r in primed):
            break
        time.sleep(_POLL)
    missing = [r for r in primed if not world.arrivals(r)]
    if missing:
        raise RuntimeError(f"Postfix did not deliver the priming messages {missing}")
    _strike(world, scenarios)
    judged = {s.name: f"judged@{s.domain}" for s in scenarios}
    for rcpt in judged.values():
        postfix.send(rcpt)
    return _settle(world, postfix, judged)


COLUMNS: Final[dict[str, Column]] = {
    c.name: c
    for c in (
        Column("io.deliver", _io_deliver, dane=True),
        Column(
            "postfix+smtpsts",
            _postfix_smtpsts,
            dane=False,
            needs=("postfix", "sendmail", "postqueue"),
        ),
    )
}
"""Column name -> column, in table order."""


def requirements(name: str) -> tuple[str, ...]:
    """
    The programs column ``name`` needs.

    Args:
        name: The column.

    Returns:
        Program names.
    """
    return COLUMNS[name].needs


def run_column(name: str, scenarios: Sequence[Scenario], tmp: Path) -> dict[str, str]:
    """
    Run one column in a fresh world (inside the namespace).

    Args:
        name: The column.
        scenarios: The scenarios (those it does not support are left out).
        tmp: A directory for this column.

    Returns:
        ``{scenario: observed}``, host names relative to the scenario's domain.
    """
    column = COLUMNS[name]
    chosen = [s for s in scenarios if column.dane or not s.dane]
    tmp.mkdir(parents=True, exist_ok=True)
    tmp.chmod(0o755)
    with World() as world:
        for s in chosen:
            s.setup(world, s.domain)
        raw = column.driver(world, chosen, tmp)
    return {s.name: expand(s, raw[s.name]) for s in chosen}
