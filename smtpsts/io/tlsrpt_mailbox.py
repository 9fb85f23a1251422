r"""
Fetch TLS-RPT report mails from an IMAP mailbox or a Maildir (RFC 8460 §5.3.1; issue 13 item 2).

The I/O around the pure decisions of :mod:`smtpsts.tlsrpt.mailfetch`:
:func:`fetch_imap` (stdlib :mod:`imaplib`) and :func:`fetch_maildir` (plain
files) look at up to :attr:`~smtpsts.tlsrpt.mailfetch.FetchOptions.limit`
mails, oldest first, and for each one:

1. read its size (IMAP ``RFC822.SIZE``, the file's size) and refuse it
   unread when it is over the cap (only the first
   :data:`~smtpsts.tlsrpt.inbox.QUARANTINE_BYTES` are read, for the
   quarantine);
2. read it (IMAP ``BODY.PEEK[]``, so a mail left behind stays unseen),
   check its DKIM signatures (dkimpy, :func:`smtpsts.io.dkim.verified_dkim_domains`)
   and judge it;
3. store the report (:class:`~smtpsts.tlsrpt.inbox.Source` ``IMAP`` or
   ``MAILDIR``, with the DKIM verdict) or quarantine the mail with its
   reason;
4. then, and only then, move it to the done folder (or delete it with
   ``delete``), or to the refused folder. When the store fails
   (:class:`~smtpsts.StoreError`) the mail stays where it was and the run
   stops: nothing is lost, the next run tries again.

IMAP: implicit TLS (``imaps``, port 993) or STARTTLS (port 143), the
certificate checked against the system trust store or a CA file (host name
included). A login in cleartext is refused unless explicitly allowed (for
tests on loopback). Every socket operation has a timeout, the whole run a
deadline, and every literal the server sends a cap. UID commands throughout;
``MOVE`` (RFC 6851) when the server has it, else ``COPY``, ``\\Deleted`` and
``UID EXPUNGE`` (RFC 4315 ``UIDPLUS``; without it a plain ``EXPUNGE``, which
also removes other mails already flagged ``\\Deleted``). Folders are created
(and subscribed) on first use, named with the server's hierarchy delimiter.

Maildir: mails in ``new/`` and ``cur/``; processed ones are renamed into a
Maildir++ sub-folder (``smtpsts/done`` is ``.smtpsts.done``, which Dovecot
shows as that folder), so a move is one atomic rename.

The module is over 600 lines because IMAP needs it: TLS and STARTTLS, the
capped literal reader, UID MOVE with its two fallbacks and the deadline are
one conversation; the decisions are already apart
(:mod:`smtpsts.tlsrpt.mailfetch`).
"""

from __future__ import annotations

import imaplib
import logging
import re
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, unquote, urlsplit

import attrs

from smtpsts.exceptions import MailboxError, StoreError
from smtpsts.tlsrpt.inbox import QUARANTINE_BYTES, Received, ReportStore, Source
from smtpsts.tlsrpt.mailfetch import (
    Accepted,
    FetchOptions,
    FetchSummary,
    Outcome,
    Refused,
    Step,
    disposition,
    imap_folder,
    imap_quote,
    judge_message,
    judge_size,
    maildir_folder,
    outcome_of,
    select_batch,
)

__all__ = [
    "DEFAULT_DEADLINE",
    "DEFAULT_TIMEOUT",
    "DKIMCheck",
    "IMAPAccount",
    "dkim_checker",
    "fetch_imap",
    "fetch_maildir",
]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT: Final = 30.0
"""Seconds for one socket operation (connect, one read, one write)."""
DEFAULT_DEADLINE: Final = 600.0
"""Seconds for a whole IMAP run."""

DKIMCheck = Callable[[bytes], Sequence[str]]
"""Gives the ``d=`` domains of a mail's DKIM signatures that verify."""

_SLACK: Final = 64 * 1024  # a literal may be a little over RFC822.SIZE's count
_FETCH_SIZE = re.compile(rb"UID (\d+) .*?RFC822\.SIZE (\d+)|RFC822\.SIZE (\d+) .*?UID (\d+)")
_LIST_DELIMITER = re.compile(rb'^\([^)]*\) (?:"((?:[^"\\]|\\.)?)"|NIL)')
_SECURITY = ("tls", "starttls", "plaintext")


def dkim_checker(lookup_txt: Callable[[str], Any] | None = None) -> DKIMCheck:
    """
    The default DKIM check: dkimpy, with a DNS lookup of the caller's choosing.

    A signature dkimpy cannot even read counts as not verified; so does a
    crash of the verifier on hostile input (it is logged).

    Args:
        lookup_txt: Looks up TXT records (e.g. ``DNSResolver().lookup_txt``);
            ``None`` lets dkimpy use its own DNS lookup.

    Returns:
        The check.

    Raises:
        ImportError: dkimpy is not installed (``pip install 'smtpsts[dkim]'``).
    """
    from smtpsts.io.dkim import _load, verified_dkim_domains  # noqa: PLC0415

    _load()

    def check(message: bytes) -> Sequence[str]:
        try:
            return verified_dkim_domains(message, lookup_txt=lookup_txt)
        except Exception:  # a verifier that crashes on a mail has not verified it
            log.warning("DKIM: the verifier failed on a mail; counted as unsigned", exc_info=True)
            return ()

    return check


@attrs.frozen
class IMAPAccount:
    """
    Where and how to log in to an IMAP mailbox.

    Attributes:
        host: The server's name or address (the certificate must name it).
        port: The port.
        user: The login name.
        password: The password (never shown in ``repr``).
        folder: The folder to read (``INBOX``).
        security: ``tls`` (implicit TLS, ``imaps``), ``starttls`` (required,
            never skipped) or ``plaintext`` (no TLS: only for tests on
            loopback, and only when asked for explicitly).
        cafile: A PEM file of the CAs to trust instead of the system's.
        timeout: Seconds for each socket operation.
    """

    host: str
    port: int
    user: str
    password: str = attrs.field(repr=False)
    folder: str = "INBOX"
    security: str = attrs.field(default="tls")
    cafile: str | None = None
    timeout: float = DEFAULT_TIMEOUT

    @security.validator
    def _check_security(self, attribute: attrs.Attribute[str], value: str) -> None:
        if value not in _SECURITY:
            raise ValueError(f"{attribute.name} must be one of {', '.join(_SECURITY)}")

    @classmethod
    def from_url(
        cls,
        url: str,
        password: str,
        *,
        starttls: bool = False,
        insecure_plaintext: bool = False,
        cafile: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> IMAPAccount:
        """
        Read ``imaps://user@host:993/INBOX`` or ``imap://user@host:143/INBOX`` (RFC 5092).

        Args:
            url: The URL; user and folder may be percent-encoded, the port
                and folder may be left out (993 or 143, ``INBOX``). A
                password in the URL is refused.
            password: The password.
            starttls: For ``imap://``: upgrade with STARTTLS.
            insecure_plaintext: For ``imap://`` without ``starttls``: log in
                without TLS (tests on loopback only).
            cafile: CAs to trust.
            timeout: Seconds for each socket operation.

        Returns:
            The account.

        Raises:
            MailboxError: The URL is not such a URL, or an ``imap://`` one
                would log in in cleartext without ``insecure_plaintext``.
        """
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as e:
            raise MailboxError(f"{url!r} is not an IMAP URL: {e}") from None
        if parts.scheme not in ("imap", "imaps") or not parts.hostname:
            raise MailboxError(f"{url!r} is not an imaps://user@host/FOLDER or imap:// URL")
        if parts.password is not None:
            raise MailboxError("put the password in a file or the environment, not in the URL")
        if not parts.username:
            raise MailboxError(f"{url!r} names no user (imaps://user@host/FOLDER)")
        if parts.scheme == "imaps":
            security = "tls"
            if starttls:
                raise MailboxError("--starttls goes with imap://, not imaps:// (implicit TLS)")
        elif starttls:
            security = "starttls"
        elif insecure_plaintext:
            security = "plaintext"
        else:
            raise MailboxError(
                "refusing to log in in cleartext: use imaps://, or imap:// with --starttls"
                " (--insecure-plaintext only for tests on loopback)"
            )
        folder = unquote(parts.path.lstrip("/").split(";", 1)[0]) or "INBOX"
        return cls(
            host=parts.hostname,
            port=port or (993 if parts.scheme == "imaps" else 143),
            user=unquote(parts.username),
            password=password,
            folder=folder,
            security=security,
            cafile=cafile,
            timeout=timeout,
        )

    def context(self) -> ssl.SSLContext:
        """
        The TLS client context: certificate and host name checked, TLS 1.2 at least.

        Returns:
            The context.

        Raises:
            MailboxError: The CA file cannot be read.
        """
        try:
            context = ssl.create_default_context(cafile=self.cafile)
        except (OSError, ssl.SSLError) as e:
            raise MailboxError(f"cannot read the CA file {self.cafile}: {e}") from None
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    def url(self, uidvalidity: str | None = None, uid: int | None = None) -> str:
        """
        This mailbox (or one mail in it) as an RFC 5092 URL, for logs and the store.

        Args:
            uidvalidity: The folder's ``UIDVALIDITY``.
            uid: A mail's UID.

        Returns:
            ``imaps://user@host:port/FOLDER;UIDVALIDITY=v/;UID=n``.
        """
        scheme = "imaps" if self.security == "tls" else "imap"
        host = f"[{self.host}]" if ":" in self.host else self.host
        text = f"{scheme}://{quote(self.user, safe='')}@{host}:{self.port}/{quote(self.folder)}"
        if uidvalidity is not None:
            text += f";UIDVALIDITY={uidvalidity}"
        if uid is not None:
            text += f"/;UID={uid}"
        return text


class _Bounded:
    """The mixin that caps literals and bounds the run (imaplib reads them whole)."""

    max_literal: int = 1024 * 1024
    deadline: float = float("inf")
    file: Any

    def _check_deadline(self) -> None:
        if time.monotonic() > self.deadline:
            raise TimeoutError("the IMAP run went past its deadline")

    def read(self, size: int) -> bytes:
        """Read a literal of ``size`` bytes, at most :attr:`max_literal`."""
        self._check_deadline()
        if size > self.max_literal:
            raise imaplib.IMAP4.abort(
                f"the server sent a literal of {size} bytes (at most {self.max_literal})"
            )
        data: bytes = self.file.read(size)
        return data

    def readline(self) -> bytes:
        """Read a line (imaplib caps its length)."""
        self._check_deadline()
        line: bytes = super().readline()  # type: ignore[misc]
        return line


class _IMAP4(_Bounded, imaplib.IMAP4):
    pass


class _IMAP4_SSL(_Bounded, imaplib.IMAP4_SSL):
    pass


def _ok(result: tuple[str, list[Any]], what: str) -> list[Any]:
    typ, data = result
    if typ != "OK":
        text = b" ".join(d for d in data if isinstance(d, bytes)).decode("utf-8", "replace")
        raise MailboxError(f"IMAP {what}: {typ} {text}".rstrip())
    return data


def _capabilities(imap: imaplib.IMAP4) -> frozenset[str]:
    # The capabilities after login differ from the greeting's (RFC 3501 §6.2.3).
    data = _ok(imap.capability(), "CAPABILITY")
    words = b" ".join(d for d in data if isinstance(d, bytes)).decode("ascii", "replace")
    return frozenset(w.upper() for w in words.split())


def _delimiter(imap: imaplib.IMAP4) -> str | None:
    # RFC 3501 §6.3.8: LIST "" "" gives the hierarchy delimiter.
    data = _ok(imap.list('""', '""'), "LIST")
    for line in data:
        match = _LIST_DELIMITER.match(line) if isinstance(line, bytes) else None
        if match and match.group(1):
            return match.group(1).decode("ascii").removeprefix("\\")
    return None


class _Session:
    """One logged-in IMAP connection with the folder selected."""

    def __init__(self, imap: imaplib.IMAP4, account: IMAPAccount) -> None:
        self.imap = imap
        self.account = account
        self.capabilities = _capabilities(imap)
        self.delimiter = _delimiter(imap)
        self.created: set[str] = set()
        data = _ok(imap.select(imap_quote(account.folder)), f"SELECT {account.folder}")
        del data
        validity = imap.response("UIDVALIDITY")[1]
        self.uidvalidity = (
            validity[0].decode("ascii", "replace") if validity and validity[0] else None
        )

    def uids(self) -> list[int]:
        data = _ok(self.imap.uid("SEARCH", "UNDELETED"), "UID SEARCH")
        found = b" ".join(d for d in data if isinstance(d, bytes)).split()
        return sorted(int(u) for u in found if u.isdigit())

    def sizes(self, uids: Sequence[int]) -> dict[int, int]:
        if not uids:
            return {}
        data = _ok(self.imap.uid("FETCH", ",".join(map(str, uids)), "(RFC822.SIZE)"), "UID FETCH")
        sizes: dict[int, int] = {}
        for item in data:
            line = item[0] if isinstance(item, tuple) else item
            match = _FETCH_SIZE.search(line) if isinstance(line, bytes) else None
            if match:
                uid, size = (
                    (match.group(1), match.group(2))
                    if match.group(1)
                    else (match.group(4), match.group(3))
                )
                sizes[int(uid)] = int(size)
        return sizes

    def body(self, uid: int, cap: int, *, partial: bool) -> bytes | None:
        # BODY.PEEK: a mail left in place is not marked \Seen (RFC 3501 §6.4.5).
        section = f"BODY.PEEK[]<0.{cap}>" if partial else "BODY.PEEK[]"
        self.imap.max_literal = cap + _SLACK  # type: ignore[attr-defined]
        data = _ok(self.imap.uid("FETCH", str(uid), f"({section})"), "UID FETCH")
        for item in data:
            if isinstance(item, tuple) and b"BODY[]" in item[0]:
                return bytes(item[1])
        return None  # expunged by someone else meanwhile

    def _ensure(self, folder: str) -> str:
        name = imap_folder(folder, self.delimiter)
        if name in self.created:
            return name
        quoted = imap_quote(name)
        typ, data = self.imap.create(quoted)
        if typ != "OK":
            listed = _ok(self.imap.list('""', quoted), "LIST")
            if not any(isinstance(x, bytes) for x in listed):
                _ok((typ, data), f"CREATE {name}")
        else:
            self.imap.subscribe(quoted)
        self.created.add(name)
        return name

    def _expunge(self, uid: int) -> None:
        if "UIDPLUS" in self.capabilities:
            _ok(self.imap.uid("EXPUNGE", str(uid)), "UID EXPUNGE")  # RFC 4315 §2.1
        else:
            _ok(self.imap.expunge(), "EXPUNGE")

    def move(self, uid: int, folder: str) -> None:
        target = imap_quote(self._ensure(folder))
        if "MOVE" in self.capabilities:  # RFC 6851
            _ok(self.imap.uid("MOVE", str(uid), target), "UID MOVE")
            return
        _ok(self.imap.uid("COPY", str(uid), target), "UID COPY")
        self.delete(uid)

    def delete(self, uid: int) -> None:
        _ok(self.imap.uid("STORE", str(uid), "+FLAGS.SILENT", r"(\Deleted)"), "UID STORE")
        self._expunge(uid)


def _login(imap: imaplib.IMAP4, account: IMAPAccount, context: ssl.SSLContext) -> None:
    if account.security == "starttls":
        if "STARTTLS" not in imap.capabilities:
            raise MailboxError(f"{account.host}:{account.port} offers no STARTTLS; not logging in")
        _ok(imap.starttls(context), "STARTTLS")  # RFC 3501 §6.2.1; capabilities read again
    if "LOGINDISABLED" in imap.capabilities:
        raise MailboxError(f"{account.host}:{account.port} has login disabled (LOGINDISABLED)")
    try:
        imap.login(account.user, account.password)
    except imaplib.IMAP4.abort:
        raise
    except imaplib.IMAP4.error as e:
        raise MailboxError(f"{account.url()}: LOGIN refused: {_why(e)}") from None


def _open(account: IMAPAccount, deadline: float) -> imaplib.IMAP4:
    context = account.context()
    imap: imaplib.IMAP4
    if account.security == "tls":
        imap = _IMAP4_SSL(account.host, account.port, ssl_context=context, timeout=account.timeout)
    else:
        imap = _IMAP4(account.host, account.port, timeout=account.timeout)
    imap.deadline = deadline
    try:
        _login(imap, account, context)
    except BaseException:
        with suppress(OSError, imaplib.IMAP4.error):
            imap.shutdown()
        raise
    return imap


def _received(report: Accepted, source: Source, client: str, now: datetime) -> Received:
    return Received(report.report, source, now, client=client, dkim=report.dkim)


def _settle(
    store: ReportStore,
    verdict: Accepted | Refused,
    body: bytes,
    *,
    source: Source,
    client: str,
    now: datetime,
) -> Outcome:
    """Store or quarantine; :class:`StoreError` propagates (the mail is left)."""
    if isinstance(verdict, Accepted):
        return outcome_of(store.add(_received(verdict, source, client, now)))
    log.info("refused %s: %s (%s)", client, verdict.detail, verdict.reason)
    store.quarantine(
        body,
        source=source,
        received_at=now,
        client=client,
        reason=verdict.reason,
        detail=verdict.detail,
    )
    return Outcome.REFUSED


def _judge(
    data: bytes | None, size: int, options: FetchOptions, dkim: DKIMCheck
) -> Accepted | Refused:
    too_large = judge_size(size, options)
    if too_large is not None:
        return too_large
    assert data is not None
    return judge_message(data, dkim(data), options)


def fetch_imap(
    store: ReportStore,
    account: IMAPAccount,
    options: FetchOptions | None = None,
    *,
    dkim: DKIMCheck | None = None,
    deadline: float = DEFAULT_DEADLINE,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> FetchSummary:
    """
    Fetch the report mails of an IMAP folder into a report store.

    Args:
        store: Where reports (and refused mails) go.
        account: The mailbox.
        options: Caps, DKIM, folders, delete (defaults: :class:`FetchOptions`).
        dkim: The DKIM check (:func:`dkim_checker` by default).
        deadline: Seconds for the whole run.
        clock: The time recorded as ``received_at``.

    Returns:
        What was done. ``error`` is set when the store failed: that mail and
        the rest of the batch were left in the folder.

    Raises:
        MailboxError: The server could not be reached, timed out, refused
            the login or a command, or the login would go in cleartext.
            Mails already handled stay handled.
        ImportError: ``dkim`` is ``None`` and dkimpy is not installed.
    """
    options = options or FetchOptions()
    check = dkim or dkim_checker()
    where = account.url()
    try:
        imap = _open(account, time.monotonic() + deadline)
    except (OSError, imaplib.IMAP4.error) as e:
        raise MailboxError(f"{where}: {_why(e)}") from None
    summary = FetchSummary()
    try:
        session = _Session(imap, account)
        batch, left = select_batch(session.uids(), options.limit)
        summary = attrs.evolve(summary, left=left)
        sizes = session.sizes(batch)
        for index, uid in enumerate(batch):
            size = sizes.get(uid)
            if size is None:
                continue  # gone meanwhile
            too_large = judge_size(size, options) is not None
            cap = QUARANTINE_BYTES + 1 if too_large else options.max_message
            data = session.body(uid, cap, partial=too_large)
            if data is None:
                continue
            verdict = _judge(None if too_large else data, size, options, check)
            client = account.url(session.uidvalidity, uid)
            try:
                outcome = _settle(
                    store, verdict, data, source=Source.IMAP, client=client, now=clock()
                )
            except StoreError as e:
                return attrs.evolve(summary, left=summary.left + len(batch) - index, error=str(e))
            action = disposition(outcome, options)
            assert action.step is not Step.LEAVE  # only a store failure leaves a mail
            if action.step is Step.MOVE:
                assert action.folder is not None
                session.move(uid, action.folder)
            else:
                session.delete(uid)
            summary = summary.count(outcome)
        # No CLOSE: it would expunge every \Deleted mail (RFC 3501 §6.4.2), also
        # those others flagged; LOGOUT leaves them alone.
    except (OSError, imaplib.IMAP4.error) as e:
        raise MailboxError(f"{where}: {_why(e)} (after {summary.to_text()})") from None
    finally:
        try:
            imap.logout()
        except (OSError, imaplib.IMAP4.error):
            with suppress(OSError):
                imap.shutdown()  # logout closes the socket only when LOGOUT went through
    return summary


def _why(error: BaseException) -> str:
    if isinstance(error, TimeoutError | socket.timeout):
        return f"no answer in time ({error or 'timed out'})"
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted: {error.verify_message}"
    args = [a.decode("utf-8", "replace") if isinstance(a, bytes) else str(a) for a in error.args]
    return " ".join(args) or type(error).__name__


# --------------------------------------------------------------------------- Maildir


def _maildir_entries(root: Path) -> list[Path]:
    found = []
    for sub in ("new", "cur"):
        found += [p for p in (root / sub).iterdir() if not p.name.startswith(".") and p.is_file()]
    # Maildir names start with the delivery time: by name is about oldest first.
    return sorted(found, key=lambda p: (p.name, p.parent.name))


def _read_capped(path: Path, cap: int) -> bytes | None:
    try:
        with path.open("rb") as f:
            return f.read(cap)
    except FileNotFoundError:
        return None  # taken by another reader meanwhile


def _maildir_target(root: Path, folder: str) -> Path:
    target = root / maildir_folder(folder)
    for sub in ("tmp", "new", "cur"):
        (target / sub).mkdir(parents=True, exist_ok=True)
    (target / "maildirfolder").touch()  # Maildir++: this is a sub-folder
    return target


def _maildir_move(root: Path, path: Path, folder: str) -> None:
    target = _maildir_target(root, folder)
    # A mail moved from new/ has been seen by a reader: it goes to cur/ with
    # an info suffix (Maildir: "cur" mails carry ":2,<flags>").
    name = path.name if ":2," in path.name else path.name + ":2,"
    path.rename(target / "cur" / name)


def fetch_maildir(
    store: ReportStore,
    path: str | Path,
    options: FetchOptions | None = None,
    *,
    dkim: DKIMCheck | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> FetchSummary:
    """
    Fetch the report mails of a Maildir (``new/`` and ``cur/``) into a report store.

    Args:
        store: Where reports (and refused mails) go.
        path: The Maildir (the directory that holds ``new/``, ``cur/``, ``tmp/``).
        options: Caps, DKIM, folders, delete (defaults: :class:`FetchOptions`).
        dkim: The DKIM check (:func:`dkim_checker` by default).
        clock: The time recorded as ``received_at``.

    Returns:
        What was done (see :func:`fetch_imap`).

    Raises:
        MailboxError: ``path`` is not a Maildir, or a mail cannot be moved.
        ImportError: ``dkim`` is ``None`` and dkimpy is not installed.
    """
    root = Path(path)
    if not all((root / sub).is_dir() for sub in ("new", "cur")):
        raise MailboxError(f"{root}: not a Maildir (no new/ and cur/)")
    options = options or FetchOptions()
    check = dkim or dkim_checker()
    summary = FetchSummary()
    try:
        batch, left = select_batch(_maildir_entries(root), options.limit)
        summary = attrs.evolve(summary, left=left)
        for index, mail in enumerate(batch):
            try:
                size = mail.stat().st_size
            except FileNotFoundError:
                continue
            too_large = judge_size(size, options) is not None
            data = _read_capped(
                mail, QUARANTINE_BYTES + 1 if too_large else options.max_message + 1
            )
            if data is None:
                continue
            size = max(size, len(data))  # it may have grown since stat()
            too_large = judge_size(size, options) is not None
            if too_large:
                data = data[: QUARANTINE_BYTES + 1]
            verdict = _judge(None if too_large else data, size, options, check)
            try:
                outcome = _settle(
                    store, verdict, data, source=Source.MAILDIR, client=str(mail), now=clock()
                )
            except StoreError as e:
                return attrs.evolve(summary, left=summary.left + len(batch) - index, error=str(e))
            action = disposition(outcome, options)
            assert action.step is not Step.LEAVE  # only a store failure leaves a mail
            if action.step is Step.MOVE:
                assert action.folder is not None
                _maildir_move(root, mail, action.folder)
            else:
                mail.unlink()
            summary = summary.count(outcome)
    except OSError as e:
        raise MailboxError(f"{root}: {e} (after {summary.to_text()})") from None
    return summary
