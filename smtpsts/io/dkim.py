"""
DKIM signing of mailed TLS-RPT reports with dkimpy (extra ``dkim``).

RFC 8460 §3: a mailed report MUST carry a valid DKIM signature of the
reporting domain (RPT-SEND-10), without ``l=`` (RPT-SEND-11), and should sign
the report headers (RPT-SEND-12). :class:`DKIMPySigner` satisfies
:class:`smtpsts.io.tlsrpt_send.DKIMSigner` with dkimpy's ``tlsrpt=True``
mode, which never emits ``l=``.

On the receiving side, :func:`accept_report` checks a mailed report's DKIM
signatures with dkimpy and hands the verdict to
:func:`smtpsts.tlsrpt.accept_report_message` (RPT-SEND-25).

dkimpy is imported when a signer is created or a message verified; install
it with ``pip install smtpsts[dkim]``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Final

import attrs

from smtpsts._names import to_alabel
from smtpsts.actions import TXTAnswer, TXTFailure, TXTNotFound
from smtpsts.tlsrpt.model import Report
from smtpsts.tlsrpt.parse import accept_report_message

__all__ = [
    "REPORT_HEADERS",
    "DKIMPySigner",
    "accept_report",
    "key_record_services",
    "verified_dkim_domains",
]

TXTLookup = Callable[[str], TXTAnswer | TXTNotFound | TXTFailure]

log = logging.getLogger(__name__)

REPORT_HEADERS: Final = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "TLS-Report-Domain",
    "TLS-Report-Submitter",
    "TLS-Required",
)
"""Headers signed by default (RPT-SEND-12)."""


def key_record_services(record: str | bytes) -> tuple[str, ...]:
    """
    The service types a DKIM key record allows (RFC 6376 §3.6.1 ``s=``).

    Args:
        record: The key record's text (``v=DKIM1; k=rsa; s=tlsrpt; p=...``).

    Returns:
        The lower-cased service types; ``("*",)`` when ``s=`` is absent
        (the default: every service).
    """
    text = record.decode("ascii", "replace") if isinstance(record, bytes) else record
    for tag in text.split(";"):
        name, _, value = tag.partition("=")
        if name.strip() == "s":
            return tuple(v.strip().lower() for v in value.split(":") if v.strip())
    return ("*",)


def _load() -> Any:
    try:
        import dkim  # type: ignore[import-untyped,import-not-found,unused-ignore]  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - the test environment has it
        raise ImportError("DKIM signing needs dkimpy: pip install 'smtpsts[dkim]'") from exc
    return dkim


@attrs.define
class DKIMPySigner:
    """
    Sign report mails with dkimpy (``rsa-sha256`` or ``ed25519-sha256``, relaxed/simple).

    Args:
        selector: The key's selector (its record is ``<selector>._domainkey.<domain>``).
        domain: The signing domain ``d=``: the submitter domain or a parent
            of it (RPT-SEND-10).
        private_key: The private key, PEM (RSA) or base64 (Ed25519), as dkimpy takes it.
        headers: The headers to sign.
        algorithm: ``rsa-sha256`` or ``ed25519-sha256``.

    Raises:
        ImportError: dkimpy is not installed.
        smtpsts.DomainNameError: ``domain`` is not a domain name.
    """

    selector: str
    domain: str = attrs.field(converter=to_alabel)
    private_key: bytes = attrs.field(repr=False)
    headers: Sequence[str] = REPORT_HEADERS
    algorithm: str = "rsa-sha256"
    _dkim: Any = attrs.field(init=False, repr=False, factory=_load)

    def sign(self, message: bytes) -> bytes:
        """
        Sign a message.

        Args:
            message: The message, CRLF line endings.

        Returns:
            The message with a ``DKIM-Signature`` header first.

        Raises:
            dkim.DKIMException: dkimpy could not sign (for example a bad key).
        """
        signature: bytes = self._dkim.sign(
            message,
            self.selector.encode("ascii"),
            self.domain.encode("ascii"),
            self.private_key,
            include_headers=[h.encode("ascii") for h in self.headers],
            signature_algorithm=self.algorithm.encode("ascii"),
            tlsrpt=True,  # RFC 8460 §3: no l= tag (RPT-SEND-11)
        )
        return signature + message

    def check_key_record(
        self, lookup_txt: Callable[[str], TXTAnswer | TXTNotFound | TXTFailure]
    ) -> bool | None:
        """
        Check that the published key allows TLS-RPT (RFC 8460 §3, RPT-SEND-13).

        Logs a warning when the key record's ``s=`` restricts it to other
        services (``s=email``): receivers may then ignore the reports.

        Args:
            lookup_txt: Looks up TXT records (e.g. ``DNSResolver().lookup_txt``).

        Returns:
            ``True`` if ``s=`` allows ``tlsrpt`` (or ``*``), ``False`` if not,
            ``None`` when the record could not be read.
        """
        qname = f"{self.selector}._domainkey.{self.domain}."
        answer = lookup_txt(qname)
        if not isinstance(answer, TXTAnswer) or not answer.records:
            log.warning("DKIM: cannot read the key record %s to check s=", qname)
            return None
        services = key_record_services(answer.records[0])
        if "*" in services or "tlsrpt" in services:
            return True
        log.warning(
            "DKIM: key record %s has s=%s; receivers may ignore TLS-RPT reports"
            " signed with it (RFC 8460 §3): add tlsrpt or drop s=",
            qname,
            ":".join(services),
        )
        return False


def _dnsfunc(lookup_txt: TXTLookup) -> Callable[..., bytes | None]:
    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:  # noqa: ARG001 - dkimpy's signature
        answer = lookup_txt(name.decode("ascii", "replace"))
        if not isinstance(answer, TXTAnswer) or not answer.records:
            return None
        record = answer.records[0]
        return record.encode("utf-8") if isinstance(record, str) else record

    return dnsfunc


def verified_dkim_domains(
    message: bytes, *, lookup_txt: TXTLookup | None = None
) -> tuple[str, ...]:
    """
    The ``d=`` domains of a message's DKIM signatures that verify (RFC 6376).

    Args:
        message: The message as received.
        lookup_txt: Looks up the key records (e.g. ``DNSResolver().lookup_txt``);
            ``None`` lets dkimpy use its own DNS lookup.

    Returns:
        The verified signing domains, lower case, in header order; empty when
        no signature verifies. A malformed signature counts as not verified.

    Raises:
        ImportError: dkimpy is not installed.
    """
    dkim = _load()
    options = {} if lookup_txt is None else {"dnsfunc": _dnsfunc(lookup_txt)}
    # tlsrpt=True: a key published with s=tlsrpt (RFC 8460 §3) verifies too; dkimpy
    # refuses such keys for a message it was not told is a report.
    checker = dkim.DKIM(message, tlsrpt=True)
    count = sum(1 for name, _ in checker.headers if name.lower() == b"dkim-signature")
    found: list[str] = []
    for idx in range(count):
        try:
            ok = checker.verify(idx=idx, **options)
        except dkim.DKIMException as exc:
            log.info("DKIM: signature %d does not verify: %s", idx, exc)
            continue
        if ok:
            found.append(checker.domain.decode("ascii", "replace").lower())
    return tuple(found)


def accept_report(message: bytes, *, lookup_txt: TXTLookup | None = None) -> Report:
    """
    Accept a mailed TLS-RPT report only with a DKIM signature of its submitter.

    RFC 8460 §3 (RPT-SEND-25): the report is read only when a signature that
    verifies has ``d=`` equal to, or a parent of, the ``TLS-Report-Submitter``
    domain. Keys without ``s=tlsrpt`` are accepted (a MAY of RFC 8460 §3).

    Args:
        message: The message as received.
        lookup_txt: Looks up DKIM key records (see :func:`verified_dkim_domains`).

    Returns:
        The report.

    Raises:
        smtpsts.tlsrpt.ReportNotAuthenticatedError: No signature vouches for
            the submitter.
        smtpsts.tlsrpt.ReportSyntaxError: The message holds no valid report.
        ImportError: dkimpy is not installed.
    """
    return accept_report_message(
        message, dkim_domains=verified_dkim_domains(message, lookup_txt=lookup_txt)
    )
