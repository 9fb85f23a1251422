"""
A real Postfix (Debian's, private instance) applying the policies of ``smtpsts postfix serve``.

Needs root (private mount namespace, Postfix queue ownership), the Debian
``postfix`` package and ``unshare``. See tests/postfixlab.py for how mail is
routed and what this proves. Assertions read the receiving SMTP server's
record of what it got and Postfix's queue (``postqueue -j``), not smtpsts.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import certfactory
from conftest import REQUIRE_SERVICES, require_binary
from dnsserver import DNSServer
from httpsservers import HTTPSServer, policy
from postfixlab import PostfixLab

MX = "mx.good.test"
POLICIES = {
    # domain: policy served, or None for no MTA-STS record
    "enforce.test": f"version: STSv1\nmode: enforce\nmx: {MX}\nmax_age: 86400\n",
    "mismatch.test": "version: STSv1\nmode: enforce\nmx: mx.other.test\nmax_age: 86400\n",
    "testing.test": "version: STSv1\nmode: testing\nmx: mx.other.test\nmax_age: 86400\n",
    "nopolicy.test": None,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Receiver:
    """The receiving MX: aiosmtpd with STARTTLS and a certificate for mx.good.test."""

    def __init__(self, directory: Path, root: certfactory.Issued) -> None:
        from aiosmtpd.controller import Controller

        leaf = certfactory.make(MX, issuer=root, san=[MX])
        chain = directory / "mx.pem"
        chain.write_bytes(certfactory.chain_pem(leaf))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(chain)
        self.received: list[tuple[str, bool]] = []
        self.port = free_port()
        self.controller = Controller(
            self,
            hostname="127.0.0.1",
            port=self.port,
            tls_context=context,
            require_starttls=False,
            server_hostname=MX,
        )

    async def handle_DATA(self, _server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        for rcpt in envelope.rcpt_tos:
            self.received.append((rcpt, session.ssl is not None))
        return "250 OK"

    def domains(self) -> dict[str, bool]:
        return {rcpt.partition("@")[2]: tls for rcpt, tls in self.received}


@pytest.fixture(scope="module")
def lab() -> Iterator[tuple[PostfixLab, Receiver]]:
    require_binary("postfix")
    if os.geteuid() != 0:
        if REQUIRE_SERVICES:
            pytest.fail("the real-Postfix test needs root, and SMTPSTS_REQUIRE_SERVICES is set")
        pytest.skip("the real-Postfix test needs root")
    # Not under pytest's 0700 tmp root: the postfix user must reach its data directory.
    directory = Path(tempfile.mkdtemp(prefix="smtpsts-postfix-"))
    os.chmod(directory, 0o755)  # noqa: PTH101
    with HTTPSServer() as https, DNSServer() as dns_server:
        cafile = directory / "ca.pem"
        cafile.write_bytes(https.root.pem)
        for domain, text in POLICIES.items():
            if text is not None:
                dns_server.add(f"_mta-sts.{domain}", "TXT", '"v=STSv1; id=1;"')
                https.route(f"mta-sts.{domain}", policy(text.encode()))
        policy_port = free_port()
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "smtpsts",
                "postfix",
                "serve",
                "--listen",
                f"127.0.0.1:{policy_port}",
                "--cache",
                "memory",
                "--nameserver",
                dns_server.address,
                "--cafile",
                str(cafile),
                *(
                    a
                    for d in POLICIES
                    for a in ("--connect-to", f"mta-sts.{d}:443:127.0.0.1:{https.port}")
                ),
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        receiver = Receiver(directory, https.root)
        receiver.controller.start()
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                with socket.socket() as probe:
                    if probe.connect_ex(("127.0.0.1", policy_port)) == 0:
                        break
                time.sleep(0.1)
            postfix = PostfixLab(
                directory,
                policy_map=f"socketmap:inet:127.0.0.1:{policy_port}:postfix",
                routes=dict.fromkeys(POLICIES, receiver.port),
                cafile=cafile,
            )
            with postfix:
                for domain in POLICIES:
                    postfix.send(f"user@{domain}", f"to {domain}")
                postfix.wait_for(
                    lambda: (
                        {"enforce.test", "testing.test", "nopolicy.test"} <= set(receiver.domains())
                        and any(
                            "mismatch.test" in r["address"]
                            for e in postfix.queue_entries()
                            for r in e["recipients"]
                        )
                    )
                )
                yield postfix, receiver
        finally:
            receiver.controller.stop()
            server.terminate()
            server.communicate(timeout=20)
            shutil.rmtree(directory, ignore_errors=True)


def test_enforce_valid_certificate_delivered_over_tls(lab: tuple[PostfixLab, Receiver]) -> None:
    """STS-APPLY-04: enforce with a certificate matching the policy -> delivered over TLS."""
    postfix, receiver = lab
    assert receiver.domains().get("enforce.test") is True, postfix.logs()
    assert "Verified TLS connection established" in postfix.logs()


def test_enforce_wrong_certificate_deferred(lab: tuple[PostfixLab, Receiver]) -> None:
    """STS-APPLY-05, STS-APPLY-09: enforce with a certificate for another name -> deferred, not delivered."""
    postfix, receiver = lab
    assert "mismatch.test" not in receiver.domains()
    reasons = postfix.deferred_reasons("mismatch.test")
    assert 1 == len(reasons), postfix.logs()
    assert "certificate" in reasons[0].lower() or "verification" in reasons[0].lower()


def test_no_policy_delivered(lab: tuple[PostfixLab, Receiver]) -> None:
    """STS-APPLY-07: no MTA-STS policy -> delivered (opportunistic TLS)."""
    _postfix, receiver = lab
    assert "nopolicy.test" in receiver.domains()


def test_testing_delivered(lab: tuple[PostfixLab, Receiver]) -> None:
    """STS-APPLY-06: testing with a non-matching MX certificate -> delivered anyway."""
    _postfix, receiver = lab
    assert "testing.test" in receiver.domains()
