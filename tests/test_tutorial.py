"""
The asyncio MTA tutorial (docs/tutorial-asyncio-mta.md) runs and prints what it says.

Its ``python`` blocks are executed in order, as one program, against real
servers on loopback: the scripted DNS server, the HTTPS policy server and two
SMTP servers. The page's settings block is the only thing replaced: after it
runs, its three names are pointed at the lab.
"""

from __future__ import annotations

import re
from pathlib import Path

import certfactory
from dnsserver import DNSServer
from httpsservers import HTTPSServer, policy
from tlsservers import SMTPServer, server_context

PAGE = Path(__file__).resolve().parent.parent / "docs" / "tutorial-asyncio-mta.md"
_BLOCK = re.compile(r"^```(python|text)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _blocks(kind: str) -> list[str]:
    return [body for lang, body in _BLOCK.findall(PAGE.read_text(encoding="utf-8")) if lang == kind]


def _policy(mx: str) -> bytes:
    return f"version: STSv1\nmode: enforce\nmx: {mx}\nmax_age: 604800\n".encode()


def test_tutorial_runs(capsys):
    """STS-APPLY-05, STS-APPLY-09, RPT-AGG-04: the tutorial delivers, defers and reports as shown."""
    with DNSServer() as dns, HTTPSServer() as https:
        good = certfactory.make("mail.example.com", issuer=https.root)
        other = certfactory.make("mx.example.org", issuer=https.root)
        with (
            SMTPServer(server_context(good)) as smtp_good,
            SMTPServer(server_context(other), "no-starttls") as smtp_plain,
        ):
            for domain, mx in (
                ("example.com", "mail.example.com"),
                ("example.org", "mx.example.org"),
            ):
                dns.add(f"_mta-sts.{domain}", "TXT", '"v=STSv1; id=20240101;"')
                dns.add(domain, "MX", f"10 {mx}.")
                dns.add(mx, "A", "127.0.0.1")
                https.route(f"mta-sts.{domain}", policy(_policy(mx)))
            lab = {
                "NAMESERVERS": [dns.address],
                "TRUST": https.trust,
                "CONNECT_TO": {
                    **https.connect_to("mta-sts.example.com", "mta-sts.example.org"),
                    ("mail.example.com", 25): ("127.0.0.1", smtp_good.port),
                    ("mx.example.org", 25): ("127.0.0.1", smtp_plain.port),
                },
            }
            namespace: dict[str, object] = {"__name__": "__main__"}
            code = _blocks("python")
            for n, block in enumerate(code):
                exec(compile(block, f"{PAGE.name}[python {n}]", "exec"), namespace)
                if "NAMESERVERS" in namespace and namespace["NAMESERVERS"] == []:
                    namespace.update(lab)
            printed = capsys.readouterr().out
            assert 1 == smtp_good.handshakes
            # The policy hosts were asked exactly once each.
            assert (1, 1) == (https.hits("mta-sts.example.com"), https.hits("mta-sts.example.org"))
    (expected,) = _blocks("text")
    assert expected == printed
