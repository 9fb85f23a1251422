"""
Mailbox intake of TLS-RPT reports (issue 13 item 2): the pure decisions, Maildir, and a real Dovecot.

The IMAP tests run against Dovecot from Debian started by
:mod:`dovecotserver` (IMAPS and STARTTLS listeners, a CA made here); the
mails are the peer samples in ``tests/data/peer-samples`` and reports
signed here with dkimpy (RFC 8460 §3, RPT-SEND-25). The store is the
SQLite report store in a temporary file.
"""

from __future__ import annotations

import email.policy
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import dovecotserver
from dovecotserver import PASSWORD, USER, DovecotServer
from smtpsts._cli import main
from smtpsts.actions import TXTAnswer, TXTNotFound
from smtpsts.exceptions import IntakeError, MailboxError, StoreError
from smtpsts.io.dkim import DKIMPySigner
from smtpsts.io.tlsrpt_mailbox import IMAPAccount, dkim_checker, fetch_imap, fetch_maildir
from smtpsts.stores.reports_sqlite import SQLiteReportStore
from smtpsts.tlsrpt import Report, report_message
from smtpsts.tlsrpt.inbox import (
    QUARANTINE_BYTES,
    AddResult,
    IntakeLimits,
    MemoryReportStore,
    Source,
    check_report,
)
from smtpsts.tlsrpt.mailfetch import (
    Accepted,
    Action,
    FetchOptions,
    FetchSummary,
    Outcome,
    Refused,
    Step,
    disposition,
    dkim_signer,
    imap_folder,
    imap_quote,
    judge_message,
    judge_size,
    maildir_folder,
    outcome_of,
    select_batch,
)

SAMPLES = Path(__file__).parent / "data" / "peer-samples"
PEER_MAILS = ["mail-auth/rpt01.eml", "mail-auth/rpt02.eml", "mox/example.eml", "mox/microsoft.eml"]
SELECTOR = "rpt"
SIGNER_DOMAIN = "sender.example"
NOW = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)


# --------------------------------------------------------------------------- helpers


def _key() -> tuple[bytes, str]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    import base64

    return pem, "v=DKIM1; k=rsa; s=tlsrpt; p=" + base64.b64encode(der).decode()


KEY = _key()


def lookup_txt(name: str) -> TXTAnswer | TXTNotFound:
    """The DKIM key record of sender.example, and nothing else."""
    if name.rstrip(".") == f"{SELECTOR}._domainkey.{SIGNER_DOMAIN}":
        return TXTAnswer([KEY[1]])
    return TXTNotFound()


DKIM = dkim_checker(lookup_txt)


def report(report_id: str = "r-1", *, contact: str = f"tlsrpt@{SIGNER_DOMAIN}") -> Report:
    """The RFC 8460 example report with another id and contact."""
    doc = json.loads((SAMPLES / "mail-auth" / "rpt01.json").read_bytes())
    doc["report-id"] = report_id
    doc["contact-info"] = contact
    return Report.from_json(json.dumps(doc))


def mail(report_id: str = "r-1", *, sign: str | None = SIGNER_DOMAIN, forge: bool = False) -> bytes:
    """A report mail (RFC 8460 §5.3), DKIM-signed by ``sign`` (None: unsigned)."""
    msg = report_message(
        report(report_id),
        "company-y.example",
        from_address=f"tlsrpt@{SIGNER_DOMAIN}",
        to_address="tlsrpt@company-y.example",
        date=NOW,
        message_id=f"<{report_id}@{SIGNER_DOMAIN}>",
    )
    data = msg.as_bytes(policy=email.policy.SMTP)
    if sign is not None:
        data = DKIMPySigner(SELECTOR, sign, KEY[0]).sign(data)
    if forge:
        data = data.replace(b"Subject: Report Domain", b"Subject: Report Domaim", 1)
    return data


class FailingStore(MemoryReportStore):
    """A store whose writes fail (a locked or full disk)."""

    def add(self, received: Any) -> AddResult:
        """Fail."""
        raise StoreError("report store: disk full")

    def quarantine(self, body: bytes, **kwargs: Any) -> None:
        """Fail."""
        raise StoreError("report store: disk full")


def sqlite_store(tmp_path: Path) -> SQLiteReportStore:
    """A fresh SQLite report store."""
    return SQLiteReportStore(str(tmp_path / "reports.db"))


def make_maildir(root: Path, *mails: bytes, where: str = "new") -> list[Path]:
    """A Maildir holding ``mails``."""
    for sub in ("new", "cur", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    paths = []
    for i, data in enumerate(mails):
        path = root / where / f"{1700000000 + i}.M{i}P1.test{':2,S' if where == 'cur' else ''}"
        path.write_bytes(data)
        paths.append(path)
    return paths


def files(root: Path) -> list[str]:
    """The mail files of a Maildir folder (new/ and cur/)."""
    return sorted(
        p.name for sub in ("new", "cur") if (root / sub).is_dir() for p in (root / sub).iterdir()
    )


# --------------------------------------------------------------------------- pure decisions


class TestDecisions:
    def test_options_validate(self) -> None:
        """Folder names are printable ASCII with / between levels; sizes and limits are bounded."""
        for bad in ("", "a//b", "/a", "a/", "done\n", "dône", ".hidden", "a/..", "INBOX", "inbox"):
            with pytest.raises(ValueError, match="folder name"):
                FetchOptions(done_folder=bad)
        with pytest.raises(ValueError, match="at least 1"):
            FetchOptions(limit=0)
        with pytest.raises(ValueError, match="at least 1"):
            FetchOptions(max_message=0)
        with pytest.raises(ValueError, match="at most"):
            FetchOptions(max_message=16 * 1024 * 1024)
        assert "smtpsts/done" == FetchOptions().done_folder

    def test_judge_size(self) -> None:
        """A mail over the cap is refused as too-large before it is read."""
        options = FetchOptions(max_message=100)
        assert judge_size(100, options) is None
        refused = judge_size(101, options)
        assert isinstance(refused, Refused)
        assert "too-large" == refused.reason
        assert "101 bytes" in refused.detail

    def test_dkim_signer(self) -> None:
        """RPT-SEND-25: the verdict is the d= domain equal to or a parent of the submitter, else ""."""
        data = b"TLS-Report-Submitter: mail.sender.example\r\n\r\n"
        assert "sender.example" == dkim_signer(data, ["other.example", "sender.example"])
        assert "mail.sender.example" == dkim_signer(data, ["mail.sender.example"])
        assert "" == dkim_signer(data, ["other.example"])
        assert "" == dkim_signer(data, [])
        assert "" == dkim_signer(b"Subject: no submitter\r\n\r\n", ["sender.example"])

    def test_judge_accepts_and_records_the_verdict(self) -> None:
        """RPT-SEND-26: the report part is found; the DKIM verdict goes with it."""
        data = mail()
        verdict = judge_message(data, ["sender.example"], FetchOptions())
        assert Accepted(report(), "sender.example") == verdict
        unsigned = judge_message(data, [], FetchOptions())
        assert Accepted(report(), "") == unsigned

    @pytest.mark.parametrize(
        ("dkim_domains", "data", "reason"),
        [
            ([], mail(sign=None), "no-valid-dkim"),
            (["other.example"], mail(sign=None), "no-valid-dkim"),
            (["sender.example"], b"From: a@b.example\r\n\r\nno submitter\r\n", "no-submitter"),
        ],
    )
    def test_judge_requires_dkim(self, dkim_domains: list[str], data: bytes, reason: str) -> None:
        """RPT-SEND-25: with require_dkim a mail no signature vouches for is refused, with the reason."""
        verdict = judge_message(data, dkim_domains, FetchOptions(require_dkim=True))
        assert isinstance(verdict, Refused)
        assert reason == verdict.reason
        ok = judge_message(mail(), ["sender.example"], FetchOptions(require_dkim=True))
        assert isinstance(ok, Accepted)

    def test_judge_refuses_what_is_no_report(self) -> None:
        """Malformed mail, no report part, or too many entries: refused with a reason code."""
        verdict = judge_message(b"Subject: hello\r\n\r\njust text\r\n", [], FetchOptions())
        assert Refused("not-a-report", verdict.detail) == verdict
        assert "no TLS-RPT report" in verdict.detail
        broken = mail().replace(b"application/tlsrpt+gzip", b"application/tlsrpt+json")
        assert "not-a-report" == judge_message(b"{not json", [], FetchOptions()).reason  # type: ignore[union-attr]
        assert isinstance(judge_message(broken, [], FetchOptions()), Accepted)  # gzip by magic
        few = FetchOptions(limits=IntakeLimits(max_failure_details=1))
        assert "too-many-details" == judge_message(mail(), [], few).reason  # type: ignore[union-attr]
        doc = json.loads(report().to_json())
        del doc["report-id"]
        assert "no-report-id" == judge_message(json.dumps(doc).encode(), [], FetchOptions()).reason  # type: ignore[union-attr]

    def test_check_report_is_the_body_rule(self) -> None:
        """The mail intake applies the same caps as the HTTPS intake (accept_report_body)."""
        sample = report()
        assert sample is check_report(sample)
        with pytest.raises(IntakeError, match="policies"):
            check_report(report(), IntakeLimits(max_policies=0))

    def test_disposition(self) -> None:
        """Done mails move to the done folder or are deleted; refused ones always move; left ones stay."""
        options = FetchOptions()
        deleting = FetchOptions(delete=True, refused_folder="junk/tlsrpt")
        assert Action(Step.MOVE, "smtpsts/done") == disposition(Outcome.STORED, options)
        assert Action(Step.MOVE, "smtpsts/done") == disposition(Outcome.DUPLICATE, options)
        assert Action(Step.MOVE, "smtpsts/refused") == disposition(Outcome.REFUSED, options)
        assert Action(Step.DELETE) == disposition(Outcome.STORED, deleting)
        assert Action(Step.MOVE, "junk/tlsrpt") == disposition(Outcome.REFUSED, deleting)
        assert Action(Step.LEAVE) == disposition(Outcome.LEFT, deleting)
        assert Outcome.STORED == outcome_of(AddResult.ADDED)
        assert Outcome.DUPLICATE == outcome_of(AddResult.DUPLICATE)

    def test_batch_and_summary(self) -> None:
        """A run takes the first N mails; the summary counts each outcome once."""
        assert ([1, 2], 3) == select_batch([1, 2, 3, 4, 5], 2)
        assert ([1], 0) == select_batch([1], 5)
        summary = FetchSummary()
        for outcome in (Outcome.STORED, Outcome.DUPLICATE, Outcome.REFUSED, Outcome.LEFT):
            summary = summary.count(outcome)
        assert FetchSummary(3, 1, 1, 1, 1) == summary
        assert "fetched 3, stored 1, duplicates 1, refused 1, left 1" == summary.to_text()

    def test_folder_names(self) -> None:
        """/ becomes the server's delimiter; names are quoted (RFC 3501 §4.3); Maildir++ dirs."""
        assert "smtpsts.done" == imap_folder("smtpsts/done", ".")
        assert "smtpsts/done" == imap_folder("smtpsts/done", "/")
        assert "smtpsts.done" == imap_folder("smtpsts/done", None)
        assert r'"a \"b\" \\c"' == imap_quote('a "b" \\c')
        assert ".smtpsts.done" == maildir_folder("smtpsts/done")


# --------------------------------------------------------------------------- Maildir


class TestMaildir:
    def test_fetch_moves_to_done(self, tmp_path: Path) -> None:
        """Reports are stored with Source.MAILDIR and the DKIM verdict; mails move to .smtpsts.done/cur."""
        root = tmp_path / "Maildir"
        signed, unsigned = make_maildir(root, mail("a"), mail("b", sign=None))
        store = sqlite_store(tmp_path)
        summary = fetch_maildir(store, root, dkim=DKIM, clock=lambda: NOW)
        assert FetchSummary(fetched=2, stored=2) == summary
        rows = {r.report_id: r for r in store.reports()}
        assert ("sender.example", "") == (rows["a"].dkim, rows["b"].dkim)
        assert {Source.MAILDIR} == {r.source for r in rows.values()}
        assert NOW == rows["a"].received_at
        assert [] == files(root)
        assert [signed.name + ":2,", unsigned.name + ":2,"] == files(root / ".smtpsts.done")
        assert (root / ".smtpsts.done" / "maildirfolder").exists()

    def test_cur_and_peer_samples(self, tmp_path: Path) -> None:
        """RPT-SEND-26: the real peer samples (mail-auth, mox) in cur/ are stored; their flags are kept."""
        root = tmp_path / "Maildir"
        make_maildir(root, *[(SAMPLES / p).read_bytes() for p in PEER_MAILS], where="cur")
        store = sqlite_store(tmp_path)
        summary = fetch_maildir(store, root, dkim=DKIM)
        # rpt01 and rpt02 differ; Google's signature cannot be checked offline: dkim "".
        assert FetchSummary(fetched=4, stored=4) == summary
        assert [
            ("Company-X", "5065427c-23d3-47ca-b6e0-946ea0e8c4be"),
            ("Google Inc.", "2020-01-01T00:00:00Z_example.com"),
            ("Google Inc.", "2022-09-15T00:00:00Z_test.xmox.nl"),
            ("Microsoft Corporation", "133198585438131172+test.xmox.nl"),
        ] == sorted((r.organization, r.report_id) for r in store.reports())
        assert {""} == {r.dkim for r in store.reports()}
        assert all(n.endswith(":2,S") for n in files(root / ".smtpsts.done"))

    def test_require_dkim_refuses_unsigned_and_forged(self, tmp_path: Path) -> None:
        """RPT-SEND-25: unsigned, forged and other-domain signatures are quarantined and moved to refused."""
        root = tmp_path / "Maildir"
        make_maildir(
            root,
            mail("ok"),
            mail("unsigned", sign=None),
            mail("forged", forge=True),
            mail("other", sign="other.example"),
        )
        store = sqlite_store(tmp_path)
        options = FetchOptions(require_dkim=True)
        summary = fetch_maildir(store, root, options, dkim=DKIM)
        assert FetchSummary(fetched=4, stored=1, refused=3) == summary
        assert ["ok"] == [r.report_id for r in store.reports()]
        assert ["no-valid-dkim"] * 3 == [q.reason for q in store.quarantined()]
        assert {Source.MAILDIR} == {q.source for q in store.quarantined()}
        assert 3 == len(files(root / ".smtpsts.refused"))
        assert 1 == len(files(root / ".smtpsts.done"))

    def test_duplicate_oversize_malformed_delete(self, tmp_path: Path) -> None:
        """A duplicate is done (deleted with delete=True); oversize and malformed mails are quarantined."""
        root = tmp_path / "Maildir"
        big = mail("big") + b"\r\n" + b"x" * (QUARANTINE_BYTES + 10)
        make_maildir(root, mail("a"), mail("a"), big, b"Subject: hi\r\n\r\nnot a report\r\n")
        store = sqlite_store(tmp_path)
        options = FetchOptions(delete=True, max_message=len(big) - 1)
        summary = fetch_maildir(store, root, options, dkim=DKIM)
        assert FetchSummary(fetched=4, stored=1, duplicates=1, refused=2) == summary
        assert [] == files(root / ".smtpsts.done")
        assert 2 == len(files(root / ".smtpsts.refused"))
        too_large, malformed = sorted(store.quarantined(), key=lambda q: q.reason, reverse=True)
        assert ("too-large", True) == (too_large.reason, too_large.truncated)
        assert QUARANTINE_BYTES == len(too_large.body)
        assert "not-a-report" == malformed.reason

    def test_store_failure_leaves_the_mail(self, tmp_path: Path) -> None:
        """A store error leaves the mail (and the rest of the batch) where it was and ends the run."""
        root = tmp_path / "Maildir"
        make_maildir(root, mail("a"), b"Subject: x\r\n\r\nno report\r\n")
        summary = fetch_maildir(FailingStore(), root, dkim=DKIM)
        assert FetchSummary(left=2, error="report store: disk full") == summary
        assert 2 == len(files(root))

    def test_limit(self, tmp_path: Path) -> None:
        """At most `limit` mails per run, oldest name first; the rest are counted as left."""
        root = tmp_path / "Maildir"
        make_maildir(root, mail("a"), mail("b"), mail("c"))
        store = sqlite_store(tmp_path)
        assert FetchSummary(fetched=2, stored=2, left=1) == fetch_maildir(
            store, root, FetchOptions(limit=2), dkim=DKIM
        )
        assert ["a", "b"] == sorted(r.report_id for r in store.reports())

    def test_not_a_maildir(self, tmp_path: Path) -> None:
        """A directory without new/ and cur/ is a MailboxError."""
        with pytest.raises(MailboxError, match="not a Maildir"):
            fetch_maildir(MemoryReportStore(), tmp_path, dkim=DKIM)

    def test_unmovable_mail(self, tmp_path: Path) -> None:
        """A done folder that cannot be made is a MailboxError; the report stays stored, the mail in place."""
        root = tmp_path / "Maildir"
        make_maildir(root, mail("a"))
        (root / ".smtpsts.done").write_text("a file in the way")
        store = MemoryReportStore()
        with pytest.raises(MailboxError, match="after fetched 0"):
            fetch_maildir(store, root, dkim=DKIM)
        assert 1 == len(files(root))
        assert 1 == len(store.reports())

    def test_default_dkim_checker(self, tmp_path: Path) -> None:
        """Without a DKIM check given, dkimpy is used; an unsigned mail gets dkim ""."""
        root = tmp_path / "Maildir"
        make_maildir(root, mail("a", sign=None))
        store = MemoryReportStore()
        assert 1 == fetch_maildir(store, root).stored
        assert "" == store.reports()[0].dkim

    def test_dkim_checker_survives_a_crashing_verifier(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A verifier that crashes on hostile input counts as no valid signature."""
        import smtpsts.io.dkim

        def boom(message: bytes, **kwargs: Any) -> tuple[str, ...]:
            raise IndexError("dkimpy bug")

        monkeypatch.setattr(smtpsts.io.dkim, "verified_dkim_domains", boom)
        assert () == dkim_checker()(mail())

    def test_cli(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """`smtpsts tlsrpt fetch --maildir` prints the summary and exits 0."""
        root = tmp_path / "Maildir"
        make_maildir(root, mail("a", sign=None), mail("a", sign=None))
        db = str(tmp_path / "r.db")
        assert 0 == main(["tlsrpt", "fetch", "--store", db, "--maildir", str(root), "--delete"])
        assert "fetched 2, stored 1, duplicates 1, refused 0, left 0\n" == capsys.readouterr().out
        assert [] == files(root)

    def test_cli_errors(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Errors are one line on stderr and exit 1: no Maildir, bad folder, store failure."""
        db = str(tmp_path / "r.db")
        base = ["tlsrpt", "fetch", "--store", db]
        assert 1 == main([*base, "--maildir", str(tmp_path / "nothing")])
        assert "not a Maildir" in capsys.readouterr().err
        assert 1 == main([*base, "--maildir", str(tmp_path), "--done-folder", "a//b"])
        err = capsys.readouterr().err
        assert 1 == len(err.splitlines())
        assert "folder name" in err
        assert 1 == main(["tlsrpt", "fetch", "--store", str(tmp_path), "--maildir", str(tmp_path)])
        assert "smtpsts tlsrpt fetch:" in capsys.readouterr().err


# --------------------------------------------------------------------------- IMAP (Dovecot)


@pytest.fixture(scope="module")
def ca() -> Any:
    """The CA of the Dovecot servers."""
    return dovecotserver.make_ca()


@pytest.fixture(scope="module")
def dovecot(ca: Any) -> Iterator[DovecotServer]:
    """A real Dovecot with IMAPS and STARTTLS listeners."""
    yield from dovecotserver.dovecot_server(ca)


@pytest.fixture
def server(dovecot: DovecotServer) -> Iterator[DovecotServer]:
    """The Dovecot, with its folders emptied after the test."""
    yield dovecot
    for path in dovecot.maildir.rglob("*"):
        if path.is_file() and path.parent.name in ("new", "cur"):
            path.unlink()


def account(server: DovecotServer, security: str = "tls", **kw: Any) -> IMAPAccount:
    """The test user's INBOX over IMAPS (or STARTTLS on the imap port)."""
    port = server.imaps_port if security == "tls" else server.imap_port
    return IMAPAccount(
        "127.0.0.1", port, USER, PASSWORD, security=security, cafile=str(server.cafile), **kw
    )


class SilentServer:
    """A TCP server that accepts connections and never says a word."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.sock.settimeout(10)
        try:
            while True:
                conn, _ = self.sock.accept()
                self.accepted.append(conn)
        except OSError:
            return

    def close(self) -> None:
        """Stop accepting and drop the connections."""
        self.sock.close()
        for conn in self.accepted:
            conn.close()
        self.thread.join(timeout=15)


class ScriptedServer:
    """
    A minimal IMAP greeter on loopback: greets, answers CAPABILITY, says BAD to the rest.

    Used where Dovecot cannot be made to misbehave: it treats loopback
    clients as secure, so it never announces LOGINDISABLED there, and it
    always offers STARTTLS with ``ssl = yes``. Records the commands seen.
    """

    def __init__(self, capabilities: str) -> None:
        self.capabilities = capabilities
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(10)
        self.port = self.sock.getsockname()[1]
        self.commands: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
        self.thread.join(timeout=15)

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(10)
            conn.sendall(b"* OK scripted IMAP ready\r\n")
            reader = conn.makefile("rb")
            while line := reader.readline(1000):
                tag, _, rest = line.strip().partition(b" ")
                command = rest.split(b" ", 1)[0].upper()
                self.commands.append(command)
                if command == b"CAPABILITY":
                    conn.sendall(b"* CAPABILITY " + self.capabilities.encode() + b"\r\n")
                    conn.sendall(tag + b" OK done\r\n")
                elif command == b"LOGOUT":
                    conn.sendall(b"* BYE\r\n" + tag + b" OK bye\r\n")
                    return
                else:
                    conn.sendall(tag + b" BAD not here\r\n")


class TestIMAP:
    def test_imaps_fetch_moves_to_done(self, server: DovecotServer, tmp_path: Path) -> None:
        """IMAPS: reports stored (Source.IMAP, RFC 5092 URL, DKIM verdict); mails moved to smtpsts/done."""
        sent = [mail("a"), (SAMPLES / "mox" / "example.eml").read_bytes()]
        for data in sent:
            server.deliver(data)
        store = sqlite_store(tmp_path)
        summary = fetch_imap(store, account(server), dkim=DKIM, clock=lambda: NOW)
        assert FetchSummary(fetched=2, stored=2) == summary
        rows = {r.report_id: r for r in store.reports()}
        assert "sender.example" == rows["a"].dkim
        assert "" == rows["2022-09-15T00:00:00Z_test.xmox.nl"].dkim
        assert {Source.IMAP} == {r.source for r in rows.values()}
        assert [] == server.messages()
        assert sorted(sent) == server.messages("smtpsts/done")
        # A second run finds nothing.
        assert FetchSummary() == fetch_imap(store, account(server), dkim=DKIM)

    def test_client_is_an_imap_url(self, server: DovecotServer) -> None:
        """The stored client names the mail by RFC 5092 URL with UIDVALIDITY and UID."""
        server.deliver(mail("url"))
        store = MemoryReportStore()
        fetch_imap(store, account(server), dkim=DKIM)
        [received] = store._reports.values()
        assert received.client.startswith(
            f"imaps://{USER}@127.0.0.1:{server.imaps_port}/INBOX;UIDVALIDITY="
        )
        assert ";UID=" in received.client

    def test_starttls_fetch_and_delete(self, server: DovecotServer, tmp_path: Path) -> None:
        """STARTTLS on the imap port; --delete removes done mails; refused ones still go to smtpsts/refused."""
        server.deliver(mail("a"))
        server.deliver(b"Subject: hello\r\n\r\nnot a report\r\n")
        store = sqlite_store(tmp_path)
        summary = fetch_imap(
            store, account(server, "starttls"), FetchOptions(delete=True), dkim=DKIM
        )
        assert FetchSummary(fetched=2, stored=1, refused=1) == summary
        assert [] == server.messages()
        assert [] == server.messages("smtpsts/done")
        assert [b"Subject: hello\r\n\r\nnot a report\r\n"] == server.messages("smtpsts/refused")
        assert ["not-a-report"] == [q.reason for q in store.quarantined()]

    def test_require_dkim(self, server: DovecotServer, tmp_path: Path) -> None:
        """RPT-SEND-25: signed accepted; unsigned and forged quarantined and moved to smtpsts/refused."""
        server.deliver(mail("ok"))
        server.deliver(mail("unsigned", sign=None))
        server.deliver(mail("forged", forge=True))
        store = sqlite_store(tmp_path)
        summary = fetch_imap(store, account(server), FetchOptions(require_dkim=True), dkim=DKIM)
        assert FetchSummary(fetched=3, stored=1, refused=2) == summary
        assert [("ok", "sender.example")] == [(r.report_id, r.dkim) for r in store.reports()]
        assert {"no-valid-dkim"} == {q.reason for q in store.quarantined()}
        assert 2 == len(server.messages("smtpsts/refused"))

    def test_duplicate_and_oversize(self, server: DovecotServer, tmp_path: Path) -> None:
        """A duplicate counts as done; a mail over the cap is refused unread (RFC822.SIZE) and kept aside."""
        big = mail("big") + b"x" * (QUARANTINE_BYTES * 2)
        for data in (mail("a"), mail("a"), big):
            server.deliver(data)
        store = sqlite_store(tmp_path)
        options = FetchOptions(max_message=QUARANTINE_BYTES)
        summary = fetch_imap(store, account(server), options, dkim=DKIM)
        assert FetchSummary(fetched=3, stored=1, duplicates=1, refused=1) == summary
        [quarantined] = store.quarantined()
        assert ("too-large", True, QUARANTINE_BYTES) == (
            quarantined.reason,
            quarantined.truncated,
            len(quarantined.body),
        )
        assert 2 == len(server.messages("smtpsts/done"))
        assert [big] == server.messages("smtpsts/refused")

    def test_store_failure_leaves_the_mail(self, server: DovecotServer) -> None:
        """A store error leaves the mail in INBOX, unseen, and ends the run with error set."""
        data = mail("a")
        server.deliver(data)
        summary = fetch_imap(FailingStore(), account(server), dkim=DKIM)
        assert FetchSummary(left=1, error="report store: disk full") == summary
        assert [data] == server.messages()
        assert not any(",S" in p.name for p in (server.maildir / "cur").iterdir())

    def test_limit(self, server: DovecotServer) -> None:
        """--limit: the oldest N mails by UID; the others stay for the next run."""
        for rid in ("1", "2", "3"):
            server.deliver(mail(rid))
        store = MemoryReportStore()
        assert FetchSummary(fetched=2, stored=2, left=1) == fetch_imap(
            store, account(server), FetchOptions(limit=2), dkim=DKIM
        )
        assert 1 == len(server.messages())

    def test_wrong_password_and_untrusted_certificate(
        self, server: DovecotServer, tmp_path: Path
    ) -> None:
        """A refused login and a certificate from an unknown CA are MailboxErrors; nothing is read."""
        server.deliver(mail("a"))
        bad = IMAPAccount(
            "127.0.0.1", server.imaps_port, USER, "wrong", cafile=str(server.cafile), timeout=10
        )
        with pytest.raises(MailboxError, match="LOGIN"):
            fetch_imap(MemoryReportStore(), bad, dkim=DKIM)
        other = tmp_path / "other-ca.pem"
        other.write_bytes(dovecotserver.make_ca().pem)
        untrusted = IMAPAccount("127.0.0.1", server.imaps_port, USER, PASSWORD, cafile=str(other))
        with pytest.raises(MailboxError, match="not trusted"):
            fetch_imap(MemoryReportStore(), untrusted, dkim=DKIM)
        missing = IMAPAccount("127.0.0.1", 1, USER, PASSWORD, cafile=str(tmp_path / "none.pem"))
        with pytest.raises(MailboxError, match="CA file"):
            fetch_imap(MemoryReportStore(), missing, dkim=DKIM)
        assert 1 == len(server.messages())

    def test_cleartext_login_refused(self, server: DovecotServer) -> None:
        """imap:// without --starttls is refused before connecting; --insecure-plaintext is explicit."""
        url = f"imap://{USER}@127.0.0.1:{server.imap_port}/INBOX"
        with pytest.raises(MailboxError, match="refusing to log in in cleartext"):
            IMAPAccount.from_url(url, PASSWORD)
        logins = server.log().count("Login: user=<tlsrpt>")
        server.deliver(mail("plain"))
        plain = IMAPAccount.from_url(url, PASSWORD, insecure_plaintext=True, timeout=10)
        assert "plaintext" == plain.security
        assert 1 == fetch_imap(MemoryReportStore(), plain, dkim=DKIM).stored
        assert logins + 1 == server.log().count("Login: user=<tlsrpt>")

    @pytest.mark.parametrize(
        ("security", "capabilities", "match"),
        [
            ("plaintext", "IMAP4rev1 LOGINDISABLED", "LOGINDISABLED"),
            ("starttls", "IMAP4rev1", "offers no STARTTLS"),
        ],
    )
    def test_password_never_sent_without_tls(
        self, security: str, capabilities: str, match: str
    ) -> None:
        """No STARTTLS offered (when required) or LOGINDISABLED: the password is never sent."""
        with ScriptedServer(capabilities) as fake:
            plain = IMAPAccount(
                "127.0.0.1", fake.port, USER, PASSWORD, security=security, timeout=5
            )
            with pytest.raises(MailboxError, match=match):
                fetch_imap(MemoryReportStore(), plain, dkim=DKIM)
        assert [b"CAPABILITY"] == fake.commands

    @pytest.mark.parametrize(
        ("capabilities", "others_kept"), [("IMAP4rev1 UIDPLUS", True), ("IMAP4rev1", False)]
    )
    def test_copy_fallback_without_move(
        self, ca: Any, capabilities: str, others_kept: bool
    ) -> None:
        r"""
        Without MOVE: COPY, \Deleted, then UID EXPUNGE (RFC 4315) or a plain EXPUNGE.

        A mail someone else flagged \Deleted (Maildir flag T) is never fetched;
        only UID EXPUNGE leaves it alone.
        """
        with DovecotServer(ca, capabilities=capabilities) as old:
            old.deliver(mail("a"))
            old.deliver(mail("a"))
            trashed = old.maildir / "cur" / "1600000000.trashed.test:2,T"
            trashed.write_bytes(b"Subject: deleted by someone else\r\n\r\nbye\r\n")
            os.chown(trashed, old.uid, old.gid)
            store = MemoryReportStore()
            assert FetchSummary(fetched=2, stored=1, duplicates=1) == fetch_imap(
                store, account(old), dkim=DKIM
            )
            assert 2 == len(old.messages("smtpsts/done"))
            kept = [trashed.read_bytes()] if others_kept else []
            assert kept == old.messages()

    @pytest.mark.parametrize("security", ["tls", "starttls"])
    def test_silent_server_times_out(self, security: str) -> None:
        """A server that accepts and never talks ends the run after the socket timeout, as a MailboxError."""
        silent = SilentServer()
        try:
            quiet = IMAPAccount(
                "127.0.0.1", silent.port, USER, PASSWORD, security=security, timeout=0.5
            )
            started = time.monotonic()
            with pytest.raises(MailboxError, match="no answer in time"):
                fetch_imap(MemoryReportStore(), quiet, dkim=DKIM)
            assert time.monotonic() - started < 5
        finally:
            silent.close()

    def test_deadline(self, server: DovecotServer) -> None:
        """The whole run has a deadline: past it, the next read fails."""
        server.deliver(mail("a"))
        with pytest.raises(MailboxError, match="deadline"):
            fetch_imap(MemoryReportStore(), account(server), dkim=DKIM, deadline=0)
        assert 1 == len(server.messages())

    def test_refused_connection(self) -> None:
        """Nothing listening: a MailboxError naming the mailbox."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        closed = IMAPAccount("127.0.0.1", port, USER, PASSWORD, timeout=2)
        with pytest.raises(MailboxError, match=f"imaps://{USER}@127.0.0.1:{port}/INBOX"):
            fetch_imap(MemoryReportStore(), closed, dkim=DKIM)

    def test_missing_folder(self, server: DovecotServer) -> None:
        """A folder that does not exist is a MailboxError (SELECT refused)."""
        with pytest.raises(MailboxError, match="SELECT"):
            fetch_imap(MemoryReportStore(), account(server, folder="Nope"), dkim=DKIM)


class TestURL:
    def test_urls(self) -> None:
        """imaps:// and imap:// URLs (RFC 5092): user and folder percent-decoded, default ports."""
        a = IMAPAccount.from_url("imaps://tls%40example.com@mail.example/Reports%20TLS", "pw")
        assert ("mail.example", 993, "tls@example.com", "Reports TLS", "tls") == (
            a.host,
            a.port,
            a.user,
            a.folder,
            a.security,
        )
        b = IMAPAccount.from_url("imap://u@[::1]/", "pw", starttls=True)
        assert ("::1", 143, "INBOX", "starttls") == (b.host, b.port, b.folder, b.security)
        assert "imap://u@[::1]:143/INBOX;UIDVALIDITY=7/;UID=3" == b.url("7", 3)
        assert "pw" not in repr(a)

    @pytest.mark.parametrize(
        ("url", "kw", "match"),
        [
            ("https://u@h/", {}, "not an imaps"),
            ("imaps://h/", {}, "names no user"),
            ("imaps://u:pw@h/", {}, "not in the URL"),
            ("imaps://u@h:99999/", {}, "not an IMAP URL"),
            ("imaps://u@h/", {"starttls": True}, "goes with imap://"),
        ],
    )
    def test_bad_urls(self, url: str, kw: dict[str, Any], match: str) -> None:
        """Malformed URLs, passwords in URLs and contradictory options are MailboxErrors."""
        with pytest.raises(MailboxError, match=match):
            IMAPAccount.from_url(url, "pw", **kw)

    def test_bad_security(self) -> None:
        """Security is tls, starttls or plaintext."""
        with pytest.raises(ValueError, match="security"):
            IMAPAccount("h", 1, "u", "p", security="ssl")


class TestCLI:
    def test_imaps_with_password_file(
        self, server: DovecotServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`smtpsts tlsrpt fetch --imap imaps://...` reads the password from a file; DKIM keys from --nameserver."""
        from dnsserver import DNSServer

        server.deliver(mail("cli"))
        secret = tmp_path / "pw"
        secret.write_text(PASSWORD + "\n")
        db = str(tmp_path / "r.db")
        record = KEY[1]
        chunks = " ".join(f'"{record[i : i + 200]}"' for i in range(0, len(record), 200))
        with DNSServer() as dns:
            dns.add(f"{SELECTOR}._domainkey.{SIGNER_DOMAIN}", "TXT", chunks)
            code = main(
                [
                    "tlsrpt", "fetch", "--store", db,
                    "--imap", f"imaps://{USER}@127.0.0.1:{server.imaps_port}/INBOX",
                    "--password-file", str(secret), "--cafile", str(server.cafile),
                    "--require-dkim", "--nameserver", dns.address, "--timeout", "10",
                ]
            )  # fmt: skip
        assert (0, "fetched 1, stored 1, duplicates 0, refused 0, left 0\n") == (
            code,
            capsys.readouterr().out,
        )
        store = SQLiteReportStore(db)
        assert ["sender.example"] == [r.dkim for r in store.reports()]
        store.close()

    def test_starttls_with_env_password(
        self,
        server: DovecotServer,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """--starttls and SMTPSTS_IMAP_PASSWORD; --done-folder names the folder."""
        server.deliver(mail("env", sign=None))
        monkeypatch.setenv("SMTPSTS_IMAP_PASSWORD", PASSWORD)
        code = main(
            [
                "tlsrpt", "fetch", "--store", str(tmp_path / "r.db"),
                "--imap", f"imap://{USER}@127.0.0.1:{server.imap_port}/INBOX", "--starttls",
                "--cafile", str(server.cafile), "--done-folder", "Archive/TLS reports",
            ]
        )  # fmt: skip
        assert 0 == code
        assert "stored 1" in capsys.readouterr().out
        assert 1 == len(server.messages("Archive/TLS reports"))

    def test_errors_are_one_line(
        self,
        server: DovecotServer,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """No password, cleartext, a wrong password, a failing store: exit 1 with one line, no traceback."""
        monkeypatch.delenv("SMTPSTS_IMAP_PASSWORD", raising=False)
        url = f"imaps://{USER}@127.0.0.1:{server.imaps_port}/INBOX"
        base = [
            "tlsrpt",
            "fetch",
            "--store",
            str(tmp_path / "r.db"),
            "--cafile",
            str(server.cafile),
        ]
        cases = [
            ([*base, "--imap", url], "no password"),
            ([*base, "--imap", url, "--password-file", str(tmp_path / "none")], "No such file"),
        ]
        empty = tmp_path / "empty"
        empty.write_text("\n")
        secret = tmp_path / "pw"
        secret.write_text(PASSWORD)
        cleartext = [*base, "--imap", url.replace("imaps", "imap"), "--password-file", str(secret)]
        cases.append((cleartext, "refusing to log in in cleartext"))
        cases.append(([*base, "--imap", url, "--password-file", str(empty)], "first line is empty"))
        for argv, match in cases:
            assert 1 == main(argv), argv
            err = capsys.readouterr().err
            assert 1 == len(err.splitlines()), err
            assert match in err
        monkeypatch.setenv("SMTPSTS_IMAP_PASSWORD", "wrong")
        assert 1 == main([*base, "--imap", url])
        assert (
            "LOGIN refused: [AUTHENTICATIONFAILED] Authentication failed."
            in capsys.readouterr().err
        )
        monkeypatch.setenv("SMTPSTS_IMAP_PASSWORD", PASSWORD)
        server.deliver(mail("x"))
        (tmp_path / "ro.db").write_bytes(b"")
        broken = [
            "tlsrpt",
            "fetch",
            "--store",
            str(tmp_path),
            "--imap",
            url,
            "--cafile",
            str(server.cafile),
        ]
        assert 1 == main(broken)
        assert "smtpsts tlsrpt fetch:" in capsys.readouterr().err
        assert 1 == len(server.messages())


class TestBounds:
    def test_literal_cap(self) -> None:
        """A literal over the cap aborts the connection instead of being read into memory."""
        import imaplib
        import io

        from smtpsts.io import tlsrpt_mailbox

        bounded = tlsrpt_mailbox._Bounded()
        bounded.max_literal = 10
        bounded.file = io.BytesIO(b"x" * 20)
        assert b"x" * 10 == bounded.read(10)
        with pytest.raises(imaplib.IMAP4.abort, match="literal of 11 bytes"):
            bounded.read(11)

    def test_deadline_mid_run(self, server: DovecotServer, monkeypatch: pytest.MonkeyPatch) -> None:
        """Past the run's deadline the next read fails: the report stays stored, the mail in INBOX."""
        from smtpsts.io import tlsrpt_mailbox

        class Clock:
            now = 0.0

            def monotonic(self) -> float:
                return self.now

        clock = Clock()
        monkeypatch.setattr(tlsrpt_mailbox, "time", clock)

        class SlowStore(MemoryReportStore):
            def add(self, received: Any) -> AddResult:
                clock.now = 1000.0  # the store took "too long"
                return super().add(received)

        server.deliver(mail("slow"))
        store = SlowStore()
        with pytest.raises(MailboxError, match=r"went past its deadline.*after fetched 0"):
            fetch_imap(store, account(server), dkim=DKIM, deadline=10)
        assert 1 == len(store.reports())
        assert 1 == len(server.messages())
        monkeypatch.undo()
        assert FetchSummary(fetched=1, duplicates=1) == fetch_imap(
            store, account(server), dkim=DKIM
        )

    def test_folder_the_server_refuses(self, server: DovecotServer) -> None:
        """A done folder the server cannot create is a MailboxError naming CREATE; the mail stays."""
        server.deliver(mail("a"))
        options = FetchOptions(done_folder="x" * 300)  # over Dovecot's name length
        with pytest.raises(MailboxError, match="CREATE"):
            fetch_imap(MemoryReportStore(), account(server), options, dkim=DKIM)
        assert 1 == len(server.messages())

    def test_existing_folder_is_reused(self, server: DovecotServer) -> None:
        """A done folder that already exists (CREATE says NO) is used as it is."""
        server.deliver(mail("a"), folder="smtpsts/done")
        server.deliver(mail("b"))
        store = MemoryReportStore()
        assert 1 == fetch_imap(store, account(server), dkim=DKIM).stored
        assert 2 == len(server.messages("smtpsts/done"))

    def test_cli_bad_numbers(self, tmp_path: Path) -> None:
        """--limit, --max-size, --timeout and --deadline take positive numbers (argparse exits 2)."""
        base = ["tlsrpt", "fetch", "--store", str(tmp_path / "r.db"), "--maildir", str(tmp_path)]
        for option, value in (
            ("--limit", "0"),
            ("--max-size", "x"),
            ("--timeout", "0"),
            ("--deadline", "abc"),
        ):
            with pytest.raises(SystemExit) as exit_info:
                main([*base, option, value])
            assert 2 == exit_info.value.code

    def test_cli_store_failure(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A store failure mid-run: the summary, one line on stderr, exit 1, the mail left."""
        import smtpsts._cli.tlsrpt_store

        monkeypatch.setattr(
            smtpsts._cli.tlsrpt_store, "open_report_store", lambda spec: FailingStore()
        )
        root = tmp_path / "Maildir"
        make_maildir(root, mail("a"))
        assert 1 == main(["tlsrpt", "fetch", "--store", "x.db", "--maildir", str(root)])
        out, err = capsys.readouterr()
        assert "fetched 0, stored 0, duplicates 0, refused 0, left 1\n" == out
        assert "the store failed, mails left in place: report store: disk full\n" in err
        assert 1 == len(files(root))
