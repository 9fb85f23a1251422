"""Tests for ``smtpsts lab`` (run as a subprocess, as a user would)."""

from __future__ import annotations

import json
import os
import signal
import smtplib
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

from smtpsts._cli import main
from smtpsts.certs import TrustStore
from smtpsts.io.tls import pkix_context
from smtpsts.lab.scenarios import SCENARIOS, Lab, Scenario, run_scenarios
from smtpsts.lab.servers import CA, DNSServer, HTTPSServer, SMTPServer

SMTPSTS = [sys.executable, "-m", "smtpsts"]


def test_lab_all_scenarios_agree() -> None:
    """STS-APPLY-05, STS-APPLY-06, STS-APPLY-09, STS-CACHE-05, STS-CACHE-07, STS-MX-11, RPT-SEND-17: every lab scenario agrees."""
    started = time.monotonic()
    done = subprocess.run(
        [*SMTPSTS, "lab", "--json"], capture_output=True, text=True, timeout=60, check=False
    )
    elapsed = time.monotonic() - started
    assert 0 == done.returncode, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert [s.name for s in SCENARIOS] == [s["name"] for s in result["scenarios"]]
    assert all(s["agrees"] for s in result["scenarios"])
    assert elapsed < 30
    # the progress display: a line per scenario
    assert len(SCENARIOS) == done.stderr.count("] ")


def test_lab_table_and_selection(capsys: pytest.CaptureFixture[str]) -> None:
    """The table names each chosen scenario with expected, got and why."""
    assert 0 == main(["lab", "--scenario", "no-starttls", "--scenario", "dane-ee"])
    out = capsys.readouterr().out
    assert "no-starttls" in out
    assert "dane-ee" in out
    assert "valid-enforce" not in out
    assert "2 agree, 0 disagree" in out


def test_disagreement_is_reported() -> None:
    """A scenario that disagrees, or breaks, is reported as such and not raised."""

    def broken(_lab: Lab) -> tuple[str, str]:
        raise RuntimeError("boom")

    with Lab() as lab:
        outcomes = run_scenarios(
            lab,
            [Scenario("x", "x", "deliver", broken), Scenario("y", "y", "defer", SCENARIOS[0].run)],
        )
    assert ["error", "deliver"] == [o.got for o in outcomes]
    assert [False, False] == [o.agrees for o in outcomes]
    assert "RuntimeError: boom" == outcomes[0].why


def test_cli_exit_status_on_disagreement(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`smtpsts lab` exits 1 when a scenario disagrees."""
    from smtpsts.lab import scenarios

    wrong = Scenario("valid-enforce", "t", "defer", SCENARIOS[0].run)
    monkeypatch.setattr(scenarios, "SCENARIOS", (wrong,))
    assert 1 == main(["lab"])
    assert "FAIL" in capsys.readouterr().out


def test_keep_running_prints_instructions_and_stays_up(tmp_path: Path) -> None:
    """
    Issue 12 item 2: --keep-running leaves a state file; one short command talks to the lab.

    The printed instructions fit on a screen; the example ``smtpsts check
    enforce.example --lab FILE`` finds the enforce policy and delivers;
    ``smtpsts postfix serve --lab FILE`` answers ``OK secure`` for it; on
    SIGTERM the state file, the CA and their directory are gone.
    """
    proc = subprocess.Popen(
        [*SMTPSTS, "lab", "--keep-running", "--scenario", "valid-enforce"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    server: subprocess.Popen[str] | None = None
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("  them as HOST:PORT:ADDR:PORT"):
                break
        start = next(i for i, line in enumerate(lines) if "The lab keeps running" in line)
        assert len(lines) - start <= 12, "".join(lines[start:])
        state = Path(lines[start].rsplit("State: ", 1)[1].strip())
        doc = json.loads(state.read_text())
        assert Path(doc["cafile"]).read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
        assert any(s.startswith("mx.enforce.example:25:127.0.0.1:") for s in doc["connect_to"])
        time.sleep(0.3)
        assert proc.poll() is None
        example = next(line for line in lines if line.startswith("  smtpsts check enforce"))
        assert f"--lab {state}" in example
        check = subprocess.run(
            [*SMTPSTS, *example.split()[1:], "--json", "--timeout", "20"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        report = json.loads(check.stdout)
        assert "enforce" == report["sts"]["policy"]["mode"]
        assert "deliver" == report["mx"][0]["verdict"]["action"]
        assert 0 == check.returncode, check.stdout
        sock = tmp_path / "p.sock"
        server = subprocess.Popen(
            [
                *SMTPSTS,
                "postfix",
                "serve",
                "--lab",
                str(state),
                "--cache",
                "memory",
                "--listen",
                f"unix:{sock}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        answer = ""
        for _ in range(100):
            query = subprocess.run(
                [*SMTPSTS, "postfix", "query", "--server", f"unix:{sock}", "enforce.example"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            answer = query.stdout
            if query.returncode == 0:
                break
            time.sleep(0.1)
        assert "OK secure match=mx.enforce.example" in answer
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=15)
        proc.send_signal(signal.SIGTERM)
        assert 0 == proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
    assert [] == [p for p in tmp_path.iterdir() if p.name != "p.sock"]


def test_lab_in_process_json_and_keep_running(capsys: pytest.CaptureFixture[str]) -> None:
    """The lab run in-process: JSON output, then --keep-running until SIGTERM, state removed."""
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        assert 0 == main(["lab", "--json", "--keep-running"])
    finally:
        timer.cancel()
    out = capsys.readouterr().out
    result = json.loads(out[: out.index("\nThe lab keeps running")])
    assert result["ok"]
    state = Path(out.split("State: ", 1)[1].split("\n", 1)[0])
    assert not state.exists()
    assert not state.parent.exists()


def test_keep_running_state_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 12 item 2: --state-dir puts lab.json and ca.pem there and leaves the directory."""
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        code = main(
            ["lab", "--scenario", "valid-enforce", "--keep-running", "--state-dir", str(tmp_path)]
        )
    finally:
        timer.cancel()
    assert 0 == code
    assert f"State: {tmp_path / 'lab.json'}" in capsys.readouterr().out
    assert tmp_path.is_dir()
    assert [] == list(tmp_path.iterdir())


class TestServers:
    """The lab's loopback servers on their own."""

    def test_dns_udp_tcp_truncation_and_flags(self) -> None:
        """DNS answers over UDP and TCP, sets TC on big UDP answers, AD under secure zones, SERVFAIL on request."""
        with DNSServer() as server:
            server.set("big.example", "TXT", *(f'"{i:03d}{"x" * 200}"' for i in range(10)))
            server.set("a.secure.example", "A", "127.0.0.1")
            server.secure("secure.example")
            server.servfail("bad.example")
            query = dns.message.make_query("big.example", "TXT")
            udp = dns.query.udp(query, "127.0.0.1", port=server.port, timeout=2)
            assert udp.flags & dns.flags.TC
            tcp = dns.query.tcp(query, "127.0.0.1", port=server.port, timeout=2)
            assert 10 == len(tcp.answer[0])
            secure = dns.query.udp(
                dns.message.make_query("a.secure.example", "A"), "127.0.0.1", port=server.port
            )
            assert secure.flags & dns.flags.AD
            bad = dns.query.udp(
                dns.message.make_query("bad.example", "A"), "127.0.0.1", port=server.port
            )
            assert dns.rcode.SERVFAIL == bad.rcode()
            server.servfail("bad.example", on=False)
            nx = dns.query.udp(
                dns.message.make_query("bad.example", "A"), "127.0.0.1", port=server.port
            )
            assert dns.rcode.NXDOMAIN == nx.rcode()
            assert None is server.respond(b"garbage")
            empty = dns.message.Message()
            assert None is server.respond(empty.to_wire())
            with socket.create_connection(("127.0.0.1", server.port), timeout=2) as sock:
                sock.sendall(struct.pack("!H", 7) + b"garbage")
                assert b"" == sock.recv(10)

    def test_https_unknown_host_404(self) -> None:
        """The HTTPS server answers 404 for a host it has no route for."""
        ca = CA()
        with HTTPSServer(ca) as server:
            server.route("known.example", b"hello")
            context = pkix_context(TrustStore([ca.root.cert]))
            with (
                socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
                context.wrap_socket(raw, server_hostname="known.example") as tls,
            ):
                tls.sendall(b"GET / HTTP/1.1\r\nHost: unknown.example\r\n\r\n")
                data = b""
                while chunk := tls.recv(4096):
                    data += chunk
            assert data.startswith(b"HTTP/1.1 404")

    def test_smtp_plain_commands(self) -> None:
        """The SMTP receiver speaks HELO, NOOP, RSET and refuses unknown verbs, without TLS."""
        with SMTPServer("mx.plain.example", None) as server:
            smtp = smtplib.SMTP("127.0.0.1", server.port, local_hostname="c.example", timeout=5)
            try:
                assert 250 == smtp.helo()[0]
                assert 250 == smtp.noop()[0]
                assert 250 == smtp.rset()[0]
                assert 502 == smtp.docmd("VRFY", "x")[0]
                smtp.sendmail("a@b.example", ["c@d.example"], b"x\r\n")
            finally:
                smtp.quit()
            assert [(False, "<a@b.example>", ("<c@d.example>",), b"x\r\n")] == server.messages


def test_lab_leaves_no_threads_behind() -> None:
    """After the lab stops, its server and handler threads are gone."""
    before = {t.ident for t in threading.enumerate()}
    with Lab() as lab:
        run_scenarios(lab, SCENARIOS[:2])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        left = [
            t
            for t in threading.enumerate()
            if t.ident not in before
            and "lookup" not in t.name.lower()
            and "ThreadPool" not in t.name
        ]
        if not left:
            break
        time.sleep(0.05)
    assert [] == [t.name for t in left]


def test_owner_rollout_runs_in_process() -> None:
    """RPT-SEND-15, RPT-SEND-17 (issue 13 item 7): reports reach the owner's store by HTTPS and mail; the advisor says ready."""
    from smtpsts.lab.scenarios import run_one

    (rollout,) = [s for s in SCENARIOS if s.name == "owner-rollout"]
    with Lab() as lab:
        outcome = run_one(lab, rollout)
        posted = [r for r in lab.https.received if r.content_type == "application/tlsrpt+gzip"]
    assert (True, "ready to enforce") == (outcome.agrees, outcome.got)
    assert "14 reports POSTed and 14 of 14 mailed" in outcome.why
    assert 14 == len(posted)


def test_owner_rollout_counts_a_refused_post(monkeypatch: pytest.MonkeyPatch) -> None:
    """A POST the endpoint refuses is not counted as stored, and the advisor then lacks data."""
    from smtpsts.io.tlsrpt_send import DeliveryResult
    from smtpsts.lab import scenarios

    def refused(*_args: object, **_kw: object) -> DeliveryResult:
        return DeliveryResult("https://tlsrpt.lab.example/v1", ok=False, detail="refused")

    monkeypatch.setattr(scenarios, "post_report", refused)
    (rollout,) = [s for s in SCENARIOS if s.name == "owner-rollout"]
    with Lab() as lab:
        outcome = scenarios.run_one(lab, rollout)
    assert "0 reports POSTed and 14 of 14 mailed" in outcome.why
    assert "not enough data" == outcome.got
