"""
The TLS-RPT aggregate report (RFC 8460 §4) as immutable values.

:meth:`Report.to_json` writes what smtpsts sends: members in the order of the
RFC 8460 §4.4 schema (RPT-JSON-21), no ``null`` or ``""`` placeholders
(RPT-JSON-19), ``failure-details`` always an array (RPT-JSON-07), ``mx-host``
an array (erratum 6241, RPT-JSON-12) and datetimes as ``YYYY-MM-DDTHH:MM:SSZ``
(RPT-JSON-03).

:meth:`Report.from_json` reads what others send. It is strict on structure
(an object where the schema wants an object, integers where it wants
counts) and tolerant where real senders deviate (RPT-JSON-23..26): a
missing timezone, a missing or single-string ``mx-host``, missing counts,
unknown policy and result types (kept as plain strings), a TLSA
``policy-string`` wrapped in one JSON-encoded string; ``null``, ``""`` and a
missing member mean the same. Anything else raises
:class:`~smtpsts.tlsrpt.ReportSyntaxError` naming the JSON path.

The module is over 600 lines because the tolerant reader (``_Reader``,
about 220 lines: one method per schema object, each naming its JSON path in
errors) sits next to the value types it builds and whose
:meth:`~Report.to_json` it must read back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final, NoReturn

import attrs

from smtpsts._args import require_text
from smtpsts._vocab import PolicyType, ResultType
from smtpsts.exceptions import ReportSyntaxError
from smtpsts.tlsrpt.session import PolicyInfo

__all__ = [
    "MAX_COUNT",
    "MAX_JSON_DEPTH",
    "MAX_REPORT_SIZE",
    "DateRange",
    "FailureDetails",
    "PolicyResult",
    "Report",
    "ReportPolicy",
    "Summary",
]

MAX_COUNT = 2**53 - 1
"""The largest count a report may carry (I-JSON, RFC 7493 §2.2; RPT-JSON-01)."""

MAX_REPORT_SIZE = 20 * 1024 * 1024
"""The largest report JSON :meth:`Report.from_json` reads, in bytes (CONFORMANCE §5)."""

MAX_JSON_DEPTH = 32
"""The deepest nesting of arrays and objects :meth:`Report.from_json` accepts."""

_IDS = ("RPT-JSON-23",)

# RFC 3339 §5.6 date-time, widened for received reports (RPT-JSON-24, AMB-14):
# lower-case t/z, a space separator, any number of fraction digits, and no
# offset at all (read as UTC).
_DATETIME = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d\d):(\d\d))?\Z",
    re.ASCII,
)
_SURROGATE = re.compile("[\ud800-\udfff]")


def _utc(value: datetime) -> datetime:
    # RPT-JSON-03: reports are about UTC; whole seconds only.
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(microsecond=0)


def _format_datetime(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_count(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    # RPT-JSON-13: non-negative JSON integers; RPT-JSON-01: within I-JSON.
    if type(value) is not int or not 0 <= value <= MAX_COUNT:
        raise ValueError(f"{attribute.name} must be an integer 0..2^53-1, got {value!r}")


def _optional_text(value: str | None) -> str | None:
    # RPT-JSON-19: "" is no value.
    return value or None


def _policy_type(value: PolicyType | str) -> PolicyType | str:
    # RPT-JSON-25: an unknown policy type is kept as it is.
    try:
        return PolicyType(value)
    except ValueError:
        return str(value)


def _result_type(value: ResultType | str) -> ResultType | str:
    # RPT-JSON-25: an unknown result type is kept as it is.
    try:
        return ResultType(value)
    except ValueError:
        return str(value)


def _entries(value: Iterable[PolicyResult]) -> tuple[PolicyResult, ...]:
    return tuple(value)


def _details(value: Iterable[FailureDetails]) -> tuple[FailureDetails, ...]:
    return tuple(value)


def _strings(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    return tuple(value)


@attrs.frozen
class DateRange:
    """
    The ``date-range`` of a report (RFC 8460 §4.4).

    Both ends are aware UTC datetimes in whole seconds; a naive datetime is
    taken as UTC.

    Raises:
        ValueError: The range ends before it starts.

    Attributes:
        start: ``start-datetime``.
        end: ``end-datetime``.
    """

    start: datetime = attrs.field(converter=_utc)
    end: datetime = attrs.field(converter=_utc)

    def __attrs_post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"date range ends ({self.end}) before it starts ({self.start})")

    @classmethod
    def for_day(cls, day: date) -> DateRange:
        """
        The window of one UTC day, ``T00:00:00Z`` to ``T23:59:59Z`` (AMB-13, RPT-AGG-01).

        Args:
            day: The UTC day.

        Returns:
            The range.
        """
        start = datetime.combine(day, time(), UTC)
        return cls(start, start + timedelta(seconds=86399))


@attrs.frozen
class ReportPolicy:
    """
    The ``policy`` object of a report entry (RFC 8460 §4.4).

    Unlike :class:`~smtpsts.tlsrpt.session.PolicyInfo`, which is what an MTA
    applied, this is what a report says, so an unknown ``policy-type`` is a
    plain string and every member but the type may be missing.

    Attributes:
        policy_type: ``policy-type``: a :class:`PolicyType`, or the string as
            received when it is not one (RPT-JSON-25).
        policy_strings: ``policy-string`` (RPT-JSON-09).
        policy_domain: ``policy-domain``, or ``None``.
        mx_host: ``mx-host`` patterns (RPT-JSON-12).
    """

    policy_type: PolicyType | str = attrs.field(converter=_policy_type)
    policy_strings: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    policy_domain: str | None = attrs.field(default=None, converter=_optional_text)
    mx_host: tuple[str, ...] = attrs.field(default=(), converter=_strings)

    @classmethod
    def from_info(cls, info: PolicyInfo) -> ReportPolicy:
        """
        The report's view of a policy an MTA applied.

        Args:
            info: The applied policy.

        Returns:
            The descriptor.
        """
        return cls(info.policy_type, info.policy_strings, info.policy_domain, info.mx_host_patterns)

    def to_json_object(self) -> dict[str, Any]:
        """
        The ``policy`` object, members in schema order, empty ones left out.

        Returns:
            A dict ready for :func:`json.dumps`.
        """
        out: dict[str, Any] = {"policy-type": str(self.policy_type)}
        if self.policy_strings:
            out["policy-string"] = list(self.policy_strings)
        if self.policy_domain is not None:
            out["policy-domain"] = self.policy_domain
        if self.mx_host:
            out["mx-host"] = list(self.mx_host)
        return out


@attrs.frozen
class Summary:
    """
    The ``summary`` of a report entry (RFC 8460 §4.2, §4.4).

    Attributes:
        total_successful_session_count: Sessions that met the policy.
        total_failure_session_count: Sessions that did not.
    """

    total_successful_session_count: int = attrs.field(default=0, validator=_check_count)
    total_failure_session_count: int = attrs.field(default=0, validator=_check_count)


@attrs.frozen
class FailureDetails:
    """
    One ``failure-details`` entry (RFC 8460 §4.3, §4.4; RPT-JSON-14).

    Attributes:
        result_type: ``result-type``: a :class:`ResultType`, or the string as
            received when it is not one (RPT-JSON-25).
        failed_session_count: ``failed-session-count``.
        sending_mta_ip: ``sending-mta-ip`` or ``None``.
        receiving_mx_hostname: ``receiving-mx-hostname`` or ``None``.
        receiving_mx_helo: ``receiving-mx-helo`` or ``None``.
        receiving_ip: ``receiving-ip`` or ``None``.
        additional_information: ``additional-information`` or ``None``.
        failure_reason_code: ``failure-reason-code`` or ``None``.
    """

    result_type: ResultType | str = attrs.field(converter=_result_type)
    failed_session_count: int = attrs.field(default=0, validator=_check_count)
    sending_mta_ip: str | None = attrs.field(default=None, converter=_optional_text)
    receiving_mx_hostname: str | None = attrs.field(default=None, converter=_optional_text)
    receiving_mx_helo: str | None = attrs.field(default=None, converter=_optional_text)
    receiving_ip: str | None = attrs.field(default=None, converter=_optional_text)
    additional_information: str | None = attrs.field(default=None, converter=_optional_text)
    failure_reason_code: str | None = attrs.field(default=None, converter=_optional_text)

    def to_json_object(self) -> dict[str, Any]:
        """
        The entry, members in the RFC 8460 §4.4 order, unknown ones left out.

        Returns:
            A dict ready for :func:`json.dumps`.
        """
        out: dict[str, Any] = {"result-type": str(self.result_type)}
        if self.sending_mta_ip is not None:
            out["sending-mta-ip"] = self.sending_mta_ip
        if self.receiving_mx_hostname is not None:
            out["receiving-mx-hostname"] = self.receiving_mx_hostname
        if self.receiving_mx_helo is not None:
            out["receiving-mx-helo"] = self.receiving_mx_helo
        if self.receiving_ip is not None:
            out["receiving-ip"] = self.receiving_ip
        out["failed-session-count"] = self.failed_session_count
        if self.additional_information is not None:
            out["additional-information"] = self.additional_information
        if self.failure_reason_code is not None:
            out["failure-reason-code"] = self.failure_reason_code
        return out


@attrs.frozen
class PolicyResult:
    """
    One entry of ``policies``: a policy and what happened under it (RFC 8460 §4.4).

    Attributes:
        policy: The policy.
        summary: Its session counts.
        failure_details: Its failures, grouped (RPT-AGG-07).
    """

    policy: ReportPolicy
    summary: Summary = attrs.field(factory=Summary)
    failure_details: tuple[FailureDetails, ...] = attrs.field(default=(), converter=_details)

    def to_json_object(self) -> dict[str, Any]:
        """
        The entry with ``failure-details`` always present (RPT-JSON-07).

        Returns:
            A dict ready for :func:`json.dumps`.
        """
        return {
            "policy": self.policy.to_json_object(),
            "summary": {
                "total-successful-session-count": self.summary.total_successful_session_count,
                "total-failure-session-count": self.summary.total_failure_session_count,
            },
            "failure-details": [d.to_json_object() for d in self.failure_details],
        }


@attrs.frozen
class Report:
    """
    A TLS-RPT aggregate report (RFC 8460 §4).

    Reports smtpsts builds have every member; received ones may lack the
    optional ones (RPT-JSON-23), which are then ``None``.

    Attributes:
        organization_name: ``organization-name``.
        date_range: ``date-range``.
        contact_info: ``contact-info``, an addr-spec (RPT-JSON-04).
        report_id: ``report-id`` (RPT-JSON-05).
        policies: ``policies``, one entry per distinct policy (RPT-JSON-06).
    """

    organization_name: str | None = attrs.field(converter=_optional_text)
    date_range: DateRange
    contact_info: str | None = attrs.field(converter=_optional_text)
    report_id: str | None = attrs.field(converter=_optional_text)
    policies: tuple[PolicyResult, ...] = attrs.field(converter=_entries)

    @property
    def policy_domains(self) -> tuple[str, ...]:
        """The distinct ``policy-domain`` values of the entries, in order."""
        return tuple(
            dict.fromkeys(p.policy.policy_domain for p in self.policies if p.policy.policy_domain)
        )

    def to_json_object(self) -> dict[str, Any]:
        """
        The report as JSON-ready dicts, members in RFC 8460 §4.4 order.

        Returns:
            A dict ready for :func:`json.dumps`.
        """
        out: dict[str, Any] = {}
        if self.organization_name is not None:
            out["organization-name"] = self.organization_name
        out["date-range"] = {
            "start-datetime": _format_datetime(self.date_range.start),
            "end-datetime": _format_datetime(self.date_range.end),
        }
        if self.contact_info is not None:
            out["contact-info"] = self.contact_info
        if self.report_id is not None:
            out["report-id"] = self.report_id
        out["policies"] = [p.to_json_object() for p in self.policies]
        return out

    def to_json(self, *, indent: int | None = None) -> str:
        """
        Serialise the report (RFC 8460 §4).

        The output is deterministic: schema member order (RPT-JSON-21), no
        ``null`` or ``""`` (RPT-JSON-19), UTF-8 text without escapes for
        non-ASCII characters.

        Args:
            indent: Pretty-print with this indent; compact by default.

        Returns:
            The JSON text.
        """
        separators = (",", ":") if indent is None else (",", ": ")
        return json.dumps(
            self.to_json_object(), ensure_ascii=False, indent=indent, separators=separators
        )

    @classmethod
    def from_json(cls, data: str | bytes) -> Report:
        """
        Parse a received report (RFC 8460 §4), leniently where senders deviate.

        Args:
            data: The JSON text, or its UTF-8 bytes (a leading BOM is
                skipped).

        Returns:
            The report.

        Raises:
            ReportSyntaxError: The input is over :data:`MAX_REPORT_SIZE`,
                not UTF-8, not I-JSON (duplicate member names, lone
                surrogates, integers out of range), nested deeper than
                :data:`MAX_JSON_DEPTH`, or does not have the report's
                structure. The message names the JSON path.
        """
        return _Reader().report(data)

    @classmethod
    def from_json_object(cls, value: Any) -> Report:
        """
        Build a report from already decoded JSON (``json.loads`` output).

        Args:
            value: The decoded top-level value.

        Returns:
            The report.

        Raises:
            ReportSyntaxError: As for :meth:`from_json`, except the size and
                encoding checks.
        """
        return _Reader().top(value)


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:  # pragma: no branch - a duplicate is always found
            if key in seen:
                _fail("", f"duplicate member name {key!r}", ("RPT-JSON-01",))
            seen.add(key)
    return out


def _fail(path: str, message: str, ids: tuple[str, ...] = _IDS) -> NoReturn:
    raise ReportSyntaxError(f"{path or '$'}: {message}", conformance=ids, reason="bad-report")


def _depth_ok(value: Any) -> bool:
    # Iterative, so a hostile nesting cannot exhaust the stack here.
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return False
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values() if isinstance(v, (dict, list)))
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item if isinstance(v, (dict, list)))
    return True


class _Reader:
    """Reads decoded JSON into a Report, with paths for the error messages."""

    def report(self, data: str | bytes) -> Report:
        if isinstance(data, bytes | bytearray | memoryview):
            raw = bytes(data)
            if len(raw) > MAX_REPORT_SIZE:
                _fail("", f"report is {len(raw)} bytes; at most {MAX_REPORT_SIZE} are read")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ReportSyntaxError(
                    f"$: report is not UTF-8 (byte {e.start})",
                    offset=e.start,
                    conformance=("RPT-JSON-01",),
                    reason="bad-report",
                ) from None
        else:
            require_text(data, "Report.from_json()")
            text = data
            if len(text) > MAX_REPORT_SIZE:
                _fail("", f"report is {len(text)} characters; at most {MAX_REPORT_SIZE} are read")
        text = text.removeprefix("\ufeff")
        try:
            value = json.loads(text, object_pairs_hook=_pairs, parse_constant=self._constant)
        except json.JSONDecodeError as e:
            raise ReportSyntaxError(
                f"$: not JSON: {e.msg}",
                line=e.lineno,
                offset=e.colno - 1,
                conformance=("RPT-JSON-01",),
                reason="bad-report",
            ) from None
        except ValueError as e:
            # int() refuses numbers of more than 4300 digits (sys.int_info).
            _fail("", f"not I-JSON: {e}", ("RPT-JSON-01",))
        except RecursionError:
            _fail("", f"JSON is nested deeper than {MAX_JSON_DEPTH} levels", ("RPT-JSON-01",))
        return self.top(value)

    @staticmethod
    def _constant(name: str) -> NoReturn:
        # RFC 8259 §6: NaN and Infinity are not JSON numbers.
        _fail("", f"{name} is not a JSON number", ("RPT-JSON-01",))

    def top(self, value: Any) -> Report:
        if not _depth_ok(value):
            _fail("", f"JSON is nested deeper than {MAX_JSON_DEPTH} levels", ("RPT-JSON-01",))
        obj = self.object(value, "")
        policies = self.present(obj, "policies", "")
        if policies is None:
            _fail("policies", "missing; a report must have policies", ("RPT-JSON-06",))
        if not isinstance(policies, list):
            _fail("policies", "must be an array", ("RPT-JSON-06",))
        return Report(
            organization_name=self.text(obj, "organization-name", ""),
            date_range=self.date_range(obj),
            contact_info=self.text(obj, "contact-info", ""),
            report_id=self.text(obj, "report-id", ""),
            policies=tuple(self.entry(p, f"policies[{i}]") for i, p in enumerate(policies)),
        )

    @staticmethod
    def object(value: Any, path: str) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            _fail(path, f"must be an object, got {_kind(value)}")
        return value

    @staticmethod
    def present(obj: Mapping[str, Any], key: str, path: str) -> Any:
        # RPT-JSON-23 / AMB-12: null, "" and a missing member are all "absent".
        value = obj.get(key)
        if value is None or value == "":
            return None
        if isinstance(value, str) and _SURROGATE.search(value):
            _fail(_join(path, key), "contains a lone surrogate", ("RPT-JSON-01",))
        return value

    def text(self, obj: Mapping[str, Any], key: str, path: str) -> str | None:
        value = self.present(obj, key, path)
        if value is not None and not isinstance(value, str):
            _fail(_join(path, key), f"must be a string, got {_kind(value)}")
        return value

    def count(self, obj: Mapping[str, Any], key: str, path: str) -> int:
        # RPT-JSON-13: a non-negative integer; RPT-JSON-23: missing counts as 0.
        value = self.present(obj, key, path)
        if value is None:
            return 0
        if type(value) is not int:
            _fail(_join(path, key), f"must be an integer, got {_kind(value)}", ("RPT-JSON-13",))
        if not 0 <= value <= MAX_COUNT:
            _fail(_join(path, key), f"must be 0..2^53-1, got {value}", ("RPT-JSON-13",))
        return value

    def strings(self, obj: Mapping[str, Any], key: str, path: str) -> tuple[str, ...]:
        value = self.present(obj, key, path)
        if value is None:
            return ()
        if isinstance(value, str):
            # RPT-JSON-23: mx-host given as one string (RFC 8460 App. B).
            return (value,)
        if not isinstance(value, list):
            _fail(_join(path, key), f"must be an array of strings, got {_kind(value)}")
        out = []
        for i, item in enumerate(value):
            if item is None or item == "":
                continue
            if not isinstance(item, str):
                _fail(f"{_join(path, key)}[{i}]", f"must be a string, got {_kind(item)}")
            if _SURROGATE.search(item):
                _fail(f"{_join(path, key)}[{i}]", "contains a lone surrogate", ("RPT-JSON-01",))
            out.append(item)
        return tuple(out)

    def date_range(self, obj: Mapping[str, Any]) -> DateRange:
        value = self.present(obj, "date-range", "")
        if value is None:
            _fail("date-range", "missing", ("RPT-JSON-03",))
        dr = self.object(value, "date-range")
        start = self.datetime(dr, "start-datetime")
        end = self.datetime(dr, "end-datetime")
        if end < start:
            _fail("date-range", "end-datetime is before start-datetime", ("RPT-JSON-03",))
        return DateRange(start, end)

    def datetime(self, obj: Mapping[str, Any], key: str) -> datetime:
        path = _join("date-range", key)
        text = self.text(obj, key, "date-range")
        if text is None:
            _fail(path, "missing", ("RPT-JSON-03",))
        m = _DATETIME.match(text)
        if m is None:
            _fail(path, f"not an RFC 3339 date-time: {text[:40]!r}", ("RPT-JSON-03", "RPT-JSON-24"))
        year, month, day, hour, minute, second, fraction, _z, sign, oh, om = m.groups()
        if year == "0000":
            # RFC 3339 allows year 0000; Python's datetime (and every report store) starts at 1.
            _fail(
                path, f"year 0000 is not supported: {text[:40]!r}", ("RPT-JSON-03", "RPT-JSON-24")
            )
        try:
            offset = timedelta(hours=int(oh), minutes=int(om)) if sign else timedelta()
            if offset >= timedelta(days=1):
                raise ValueError("offset out of range")  # noqa: TRY301 - one handler for all range errors
            value = datetime(
                int(year),
                int(month),
                int(day),
                int(hour),
                int(minute),
                # RFC 3339 §5.7: a leap second is read as the second before it.
                min(int(second), 59),
                int((fraction or "0")[:6].ljust(6, "0")),
                UTC,
            )
            # AMB-14: no offset means UTC; an offset is folded into UTC.
            return value - offset if sign == "+" else value + offset
        except (ValueError, OverflowError) as e:
            _fail(path, f"invalid date-time {text[:40]!r}: {e}", ("RPT-JSON-03", "RPT-JSON-24"))

    def entry(self, value: Any, path: str) -> PolicyResult:
        obj = self.object(value, path)
        raw_policy = self.present(obj, "policy", path)
        if raw_policy is None:
            _fail(_join(path, "policy"), "missing", ("RPT-JSON-07",))
        policy = self.policy(raw_policy, _join(path, "policy"))
        raw_summary = self.present(obj, "summary", path)
        spath = _join(path, "summary")
        summary = self.object(raw_summary if raw_summary is not None else {}, spath)
        raw_details = self.present(obj, "failure-details", path)
        if raw_details is None:
            raw_details = []
        if not isinstance(raw_details, list):
            _fail(_join(path, "failure-details"), f"must be an array, got {_kind(raw_details)}")
        dpath = _join(path, "failure-details")
        return PolicyResult(
            policy,
            Summary(
                self.count(summary, "total-successful-session-count", spath),
                self.count(summary, "total-failure-session-count", spath),
            ),
            tuple(self.all_details(raw_details, dpath)),
        )

    def all_details(self, raw: list[Any], path: str) -> Iterator[FailureDetails]:
        for i, value in enumerate(raw):
            fast = _details_fast(value)
            yield fast if fast is not None else self.details(value, f"{path}[{i}]")

    def policy(self, value: Any, path: str) -> ReportPolicy:
        obj = self.object(value, path)
        policy_type = self.text(obj, "policy-type", path)
        if policy_type is None:
            _fail(_join(path, "policy-type"), "missing", ("RPT-JSON-08",))
        strings = self.strings(obj, "policy-string", path)
        if policy_type == PolicyType.TLSA and len(strings) == 1 and strings[0].startswith("["):
            # RPT-JSON-26: Microsoft sends the TLSA RRset as one JSON-encoded array.
            strings = self.unwrap(strings[0], path)
        return ReportPolicy(
            policy_type,
            strings,
            self.text(obj, "policy-domain", path),
            self.strings(obj, "mx-host", path),
        )

    def unwrap(self, text: str, path: str) -> tuple[str, ...]:
        try:
            inner = json.loads(text)
        except ValueError:
            return (text,)
        if not isinstance(inner, list) or not all(isinstance(x, str) for x in inner):
            return (text,)
        return self.strings({"policy-string": inner}, "policy-string", path)

    def details(self, value: Any, path: str) -> FailureDetails:
        obj = self.object(value, path)
        result_type = self.text(obj, "result-type", path)
        if result_type is None:
            _fail(_join(path, "result-type"), "missing", ("RPT-JSON-14",))
        return FailureDetails(
            result_type,
            self.count(obj, "failed-session-count", path),
            self.text(obj, "sending-mta-ip", path),
            self.text(obj, "receiving-mx-hostname", path),
            self.text(obj, "receiving-mx-helo", path),
            self.text(obj, "receiving-ip", path),
            self.text(obj, "additional-information", path),
            self.text(obj, "failure-reason-code", path),
        )


_RESULT_TYPES: Final = {t.value: t for t in ResultType}
_DETAIL_TEXTS: Final = (
    ("sending-mta-ip", "sending_mta_ip"),
    ("receiving-mx-hostname", "receiving_mx_hostname"),
    ("receiving-mx-helo", "receiving_mx_helo"),
    ("receiving-ip", "receiving_ip"),
    ("additional-information", "additional_information"),
    ("failure-reason-code", "failure_reason_code"),
)
_new = object.__new__
_set = object.__setattr__


def _details_fast(value: Any) -> FailureDetails | None:
    # The fast path of _Reader.details() (issue 13 item 8: a report can hold 100,000
    # entries): the entry for a well-formed object, else None, and the reader then
    # finds the exact error or the tolerated form (null or "" counts, RPT-JSON-23).
    # It accepts a subset of what the reader accepts and builds the same value (the
    # tests check both on arbitrary input), without the converters and validators
    # that would only prove again what it has just checked.
    if type(value) is not dict:
        return None
    get = value.get
    result_type = get("result-type")
    count = get("failed-session-count", 0)
    if (
        type(result_type) is not str
        or not result_type
        or not result_type.isascii()
        or type(count) is not int
        or not 0 <= count <= MAX_COUNT
    ):
        return None
    entry = _new(FailureDetails)
    _set(entry, "result_type", _RESULT_TYPES.get(result_type, result_type))  # RPT-JSON-25
    _set(entry, "failed_session_count", count)
    for key, name in _DETAIL_TEXTS:
        text = get(key)
        if text == "":
            text = None  # RPT-JSON-19, RPT-JSON-23: "" is no value
        elif text is not None and (
            type(text) is not str or (not text.isascii() and _SURROGATE.search(text))
        ):
            return None
        _set(entry, name, text)
    return entry


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number with a fraction or exponent"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
