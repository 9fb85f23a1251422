"""
What a mailbox intake does with each mail (RFC 8460 §5.3.1; issue 13 item 2).

Pure decisions for ``smtpsts tlsrpt fetch``; the IMAP and Maildir adapter
(:mod:`smtpsts.io.tlsrpt_mailbox`) does the I/O around them. For each mail:

1. :func:`judge_size`: a mail over :attr:`FetchOptions.max_message` bytes
   (read from IMAP ``RFC822.SIZE`` or the file's size, before any fetch)
   is refused as ``too-large`` without being read whole.
2. :func:`judge_message`: the mail is parsed (:func:`~smtpsts.tlsrpt.parse_report_message`,
   RPT-SEND-26), the report checked like an HTTPS body
   (:func:`~smtpsts.tlsrpt.inbox.check_report`), and the DKIM verdict taken:
   the ``d=`` domain of a verified signature that vouches for the
   ``TLS-Report-Submitter`` (RFC 8460 §3, RPT-SEND-25), or ``""``. With
   :attr:`FetchOptions.require_dkim` a mail without one is refused
   (:func:`~smtpsts.tlsrpt.accept_report_message`).
3. The adapter stores an accepted report (or quarantines a refused mail),
   and :func:`disposition` says where the mail goes from the
   :class:`Outcome`: stored and duplicate reports are done (moved to
   :attr:`FetchOptions.done_folder`, or deleted with
   :attr:`FetchOptions.delete`); refused ones go to
   :attr:`FetchOptions.refused_folder` (never deleted: they are the owner's
   evidence); when the store failed, the mail stays where it is, so
   nothing is lost and the next run tries again.

A mail is only moved after its report is committed, so a crash between the
two leaves a mail whose report is stored: the next run finds it a duplicate
and moves it then.
"""

from __future__ import annotations

import email.parser
import enum
from collections.abc import Iterable, Sequence
from typing import Final, TypeVar

import attrs

from smtpsts.exceptions import IntakeError, ReportNotAuthenticatedError, ReportSyntaxError
from smtpsts.tlsrpt.inbox import AddResult, IntakeLimits, check_report
from smtpsts.tlsrpt.model import Report
from smtpsts.tlsrpt.parse import (
    MAX_MESSAGE_SIZE,
    _covers,
    _submitter,
    accept_report_message,
    parse_report_message,
)

__all__ = [
    "DEFAULT_DONE_FOLDER",
    "DEFAULT_LIMIT",
    "DEFAULT_REFUSED_FOLDER",
    "Accepted",
    "Action",
    "FetchOptions",
    "FetchSummary",
    "Outcome",
    "Refused",
    "Step",
    "disposition",
    "dkim_signer",
    "imap_folder",
    "imap_quote",
    "judge_message",
    "judge_size",
    "maildir_folder",
    "outcome_of",
    "select_batch",
]

T = TypeVar("T")

DEFAULT_DONE_FOLDER: Final = "smtpsts/done"
"""Where processed mails go (``/`` separates levels, whatever the server's delimiter)."""
DEFAULT_REFUSED_FOLDER: Final = "smtpsts/refused"
"""Where refused (quarantined) mails go."""
DEFAULT_LIMIT: Final = 500
"""The most mails one run looks at; the rest wait for the next run."""


def _folder_name(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    del instance
    parts = value.split("/")
    if not value or any(not p for p in parts) or not value.isascii() or not value.isprintable():
        raise ValueError(
            f"{attribute.name}: {value!r} is not a folder name"
            " (printable ASCII, levels separated by single /)"
        )
    if any(p in (".", "..") or p.startswith(".") for p in parts) or value.upper() == "INBOX":
        raise ValueError(f"{attribute.name}: {value!r} is not a folder name for processed mail")


def _positive(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    del instance
    if value < 1:
        raise ValueError(f"{attribute.name} must be at least 1, not {value}")


def _max_message(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    _positive(instance, attribute, value)
    if value > MAX_MESSAGE_SIZE:
        raise ValueError(f"{attribute.name} must be at most {MAX_MESSAGE_SIZE}, not {value}")


@attrs.frozen
class FetchOptions:
    """
    How a mailbox intake treats the mails it finds.

    Attributes:
        require_dkim: Refuse a report without a verified DKIM signature of
            its submitter (RFC 8460 §3, RPT-SEND-25) instead of storing it
            with ``dkim=""``.
        delete: Delete processed mails instead of moving them to
            ``done_folder`` (refused mails are always moved).
        done_folder: Where processed mails go; ``/`` separates levels.
        refused_folder: Where refused mails go.
        max_message: The largest mail read, in bytes (at most
            :data:`~smtpsts.tlsrpt.parse.MAX_MESSAGE_SIZE`).
        limit: The most mails one run looks at.
        limits: The caps on the report itself (policies, failure details).

    Raises:
        ValueError: A folder name, size or limit is out of range.
    """

    require_dkim: bool = False
    delete: bool = False
    done_folder: str = attrs.field(default=DEFAULT_DONE_FOLDER, validator=_folder_name)
    refused_folder: str = attrs.field(default=DEFAULT_REFUSED_FOLDER, validator=_folder_name)
    max_message: int = attrs.field(default=MAX_MESSAGE_SIZE, validator=_max_message)
    limit: int = attrs.field(default=DEFAULT_LIMIT, validator=_positive)
    limits: IntakeLimits = attrs.field(factory=IntakeLimits)


@attrs.frozen
class Accepted:
    """
    A mail that holds a report to store.

    Attributes:
        report: The report.
        dkim: The ``d=`` domain that vouched for the submitter, ``""`` when
            none did (see :attr:`smtpsts.tlsrpt.inbox.Received.dkim`).
    """

    report: Report
    dkim: str


@attrs.frozen
class Refused:
    """
    A mail that is quarantined, not stored.

    Attributes:
        reason: A short code (the quarantine's reason): ``too-large``,
            ``not-a-report``, ``no-submitter``, ``no-valid-dkim``, or an
            :class:`~smtpsts.exceptions.IntakeError` reason.
        detail: What was wrong, in words.
    """

    reason: str
    detail: str


def judge_size(size: int, options: FetchOptions) -> Refused | None:
    """
    Refuse a mail by its size, before it is fetched.

    Args:
        size: Its size in bytes (IMAP ``RFC822.SIZE``, or the file's).
        options: The intake's options.

    Returns:
        :class:`Refused` (``too-large``) when it is over
        :attr:`FetchOptions.max_message`, else ``None``.
    """
    if size > options.max_message:
        return Refused(
            "too-large", f"the mail is {size} bytes; at most {options.max_message} are read"
        )
    return None


def dkim_signer(data: bytes, dkim_domains: Iterable[str]) -> str:
    """
    The verified signing domain that vouches for a mail's submitter (RFC 8460 §3).

    Args:
        data: The mail.
        dkim_domains: The ``d=`` domains of its signatures that verified.

    Returns:
        The first of ``dkim_domains`` equal to, or a parent of, the
        ``TLS-Report-Submitter`` domain; ``""`` when there is no such
        header or no such signature.
    """
    headers = email.parser.BytesHeaderParser().parsebytes(data)
    submitter = _submitter(headers)
    if submitter is None:
        return ""
    return next((d for d in dkim_domains if _covers(d, submitter)), "")


def judge_message(
    data: bytes, dkim_domains: Sequence[str], options: FetchOptions
) -> Accepted | Refused:
    """
    Decide what a fetched mail is: a report to store, or a mail to quarantine.

    Args:
        data: The mail as fetched (at most :attr:`FetchOptions.max_message`
            bytes: :func:`judge_size` came first).
        dkim_domains: The ``d=`` domains of its DKIM signatures that verified
            (:func:`smtpsts.io.dkim.verified_dkim_domains`).
        options: The intake's options.

    Returns:
        :class:`Accepted` with the report and its DKIM verdict, or
        :class:`Refused` with the reason.
    """
    try:
        if options.require_dkim:
            report = accept_report_message(data, dkim_domains=dkim_domains)
        else:
            report = parse_report_message(data)
        check_report(report, options.limits)
    except (IntakeError, ReportNotAuthenticatedError) as e:
        return Refused(e.reason, e.detail)
    except ReportSyntaxError as e:
        return Refused("not-a-report", f"not a TLS-RPT report: {e.detail}")
    return Accepted(report, dkim_signer(data, dkim_domains))


class Outcome(enum.StrEnum):
    """What became of a mail."""

    STORED = "stored"
    """Its report was stored."""
    DUPLICATE = "duplicate"
    """Its report was stored before (same organisation and ``report-id``)."""
    REFUSED = "refused"
    """It was quarantined."""
    LEFT = "left"
    """Nothing was done (the store failed, or the run's limit was reached)."""


def outcome_of(result: AddResult) -> Outcome:
    """
    The outcome of a mail whose report the store took.

    Args:
        result: What :meth:`~smtpsts.tlsrpt.inbox.ReportStore.add` returned.

    Returns:
        :attr:`Outcome.STORED` or :attr:`Outcome.DUPLICATE`.
    """
    return Outcome.STORED if result is AddResult.ADDED else Outcome.DUPLICATE


class Step(enum.StrEnum):
    """What the adapter does with a mail."""

    MOVE = "move"
    """Move it to :attr:`Action.folder`."""
    DELETE = "delete"
    """Delete it."""
    LEAVE = "leave"
    """Leave it where it is."""


@attrs.frozen
class Action:
    """
    What to do with a mail.

    Attributes:
        step: Move, delete or leave.
        folder: For :attr:`Step.MOVE`, the folder (``/`` between levels).
    """

    step: Step
    folder: str | None = None


def disposition(outcome: Outcome, options: FetchOptions) -> Action:
    """
    Where a mail goes once its outcome is known.

    Args:
        outcome: What became of it.
        options: The intake's options.

    Returns:
        Done mails (stored, duplicate) move to the done folder, or are
        deleted with :attr:`FetchOptions.delete`; refused mails move to the
        refused folder; a mail left stays.
    """
    if outcome is Outcome.LEFT:
        return Action(Step.LEAVE)
    if outcome is Outcome.REFUSED:
        return Action(Step.MOVE, options.refused_folder)
    if options.delete:
        return Action(Step.DELETE)
    return Action(Step.MOVE, options.done_folder)


def select_batch(items: Iterable[T], limit: int) -> tuple[list[T], int]:
    """
    The mails one run handles: the first ``limit`` in order.

    Args:
        items: The mails found (IMAP UIDs ascending, or Maildir names sorted).
        limit: :attr:`FetchOptions.limit`.

    Returns:
        ``(batch, left)``: the batch, and how many wait for a later run.
    """
    found = list(items)
    return found[:limit], max(0, len(found) - limit)


@attrs.frozen
class FetchSummary:
    """
    What one run did.

    Attributes:
        fetched: Mails looked at.
        stored: Reports stored.
        duplicates: Reports already stored (their mails count as done).
        refused: Mails quarantined.
        left: Mails left in the mailbox for a later run (over the limit,
            or the store failed).
        error: Why the run stopped early, or ``None``.
    """

    fetched: int = 0
    stored: int = 0
    duplicates: int = 0
    refused: int = 0
    left: int = 0
    error: str | None = None

    def count(self, outcome: Outcome) -> FetchSummary:
        """
        Add one mail's outcome.

        Args:
            outcome: What became of it.

        Returns:
            The new summary.
        """
        fields = {
            Outcome.STORED: "stored",
            Outcome.DUPLICATE: "duplicates",
            Outcome.REFUSED: "refused",
            Outcome.LEFT: "left",
        }
        name = fields[outcome]
        fetched = self.fetched + (outcome is not Outcome.LEFT)
        return attrs.evolve(self, fetched=fetched, **{name: getattr(self, name) + 1})

    def to_text(self) -> str:
        """
        One line for a log or a terminal.

        Returns:
            ``fetched N, stored N, duplicates N, refused N, left N``.
        """
        return (
            f"fetched {self.fetched}, stored {self.stored}, duplicates {self.duplicates},"
            f" refused {self.refused}, left {self.left}"
        )


def imap_folder(name: str, delimiter: str | None) -> str:
    """
    A folder name as the IMAP server spells it: ``/`` turned into its hierarchy delimiter.

    Args:
        name: The name with ``/`` between levels.
        delimiter: The server's delimiter (``LIST "" ""``), ``None`` for a
            flat namespace.

    Returns:
        The server's name (levels joined by ``.`` for a flat namespace).
    """
    return name.replace("/", delimiter or ".")


def imap_quote(name: str) -> str:
    r"""
    An IMAP quoted string (RFC 3501 §4.3): ``"``, with ``\\`` and ``"`` escaped.

    Args:
        name: Printable ASCII.

    Returns:
        The quoted string.
    """
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def maildir_folder(name: str) -> str:
    """
    The Maildir++ directory of a folder, as Dovecot and Courier name it.

    Args:
        name: The name with ``/`` between levels (``smtpsts/done``).

    Returns:
        The sub-directory name (``.smtpsts.done``).
    """
    return "." + name.replace("/", ".")
