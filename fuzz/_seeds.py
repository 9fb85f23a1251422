"""
Seed corpora built at run time from the project's vectors and peer samples.

``smtpsts/vectors/*.json`` and ``../shared/vectors/peer-samples/`` (when it
is there) hold the inputs every test already uses; :func:`seeds` turns them
into the input format of each target (see each ``fuzz_*.py`` docstring), so
only a few hand-written seeds are committed under ``fuzz/corpus/<target>/``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "smtpsts" / "vectors"
PEERS = ROOT.parent / "shared" / "vectors" / "peer-samples"


def _cases(group: str) -> list[dict[str, Any]]:
    doc = json.loads((VECTORS / f"{group}.json").read_text(encoding="utf-8"))
    return list(doc["cases"])


def _raw(case: dict[str, Any]) -> bytes | None:
    value = case.get("input")
    if value is None and "input_hex" in case:
        return bytes.fromhex(case["input_hex"])
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, dict) and "text" in value:
        return str(value["text"]).encode("utf-8")
    return None


def _rrset(case: dict[str, Any]) -> bytes | None:
    value = case.get("input")
    if not isinstance(value, dict) or "rrset" not in value:
        return None
    rrs = [rr if isinstance(rr, list) else [rr] for rr in value["rrset"]]
    return b"\n".join(b"\0".join(str(s).encode("utf-8") for s in rr) for rr in rrs)


def _records(group: str) -> Iterator[bytes]:
    for case in _cases(group):
        raw = _raw(case)
        if raw is not None:
            yield b"\x00" + raw
            yield b"\x01" + raw
        rrset = _rrset(case)
        if rrset is not None:
            yield b"\x02" + rrset
            yield b"\x03" + rrset


def _reports() -> Iterator[bytes]:
    for case in _cases("tlsrpt-report"):
        value = case.get("input")
        if isinstance(value, dict):
            yield json.dumps(value).encode("utf-8")
        elif isinstance(value, str):
            yield value.encode("utf-8")
    for path in sorted(PEERS.glob("*/*.json")):
        yield path.read_bytes()


def _mails() -> Iterator[bytes]:
    for case in _cases("tlsrpt-report"):
        raw = _raw(case)
        if raw is not None and not raw.lstrip().startswith((b"{", b"[")):
            yield raw
    for path in sorted(PEERS.glob("*/*.eml")):
        yield path.read_bytes()
    from smtpsts.tlsrpt import Report  # noqa: PLC0415
    from smtpsts.tlsrpt.serialize import report_message  # noqa: PLC0415

    made = 0
    for body in _reports():
        try:
            report = Report.from_json(body)
        except ValueError:
            continue
        for compressed in (True, False):
            try:
                message = report_message(
                    report,
                    report.policy_domains[0] if report.policy_domains else "example.com",
                    from_address="tlsrpt@sender.example",
                    to_address="rua@example.com",
                    date=datetime(2024, 3, 6, tzinfo=UTC),
                    message_id="<seed@sender.example>",
                    compressed=compressed,
                )
            except (ValueError, RuntimeError):  # UsageError: a report id unfit for a Subject
                continue
            made += 1
            yield message.as_bytes()
        if made >= 8:
            return


def _tlsa() -> Iterator[bytes]:
    for case in _cases("dane-match"):
        value = case.get("input", {})
        texts = [value["record"]] if "record" in value else value.get("records", [])
        for text in texts:
            if not isinstance(text, str):
                continue
            yield b"\x00" + text.encode("utf-8")
            fields = text.split()
            try:
                wire = bytes(int(f) for f in fields[:3]) + bytes.fromhex("".join(fields[3:]))
            except ValueError:
                continue
            yield b"\x01" + wire


def _cache_entries() -> Iterator[bytes]:
    from smtpsts import Policy  # noqa: PLC0415
    from smtpsts.cache import CacheEntry  # noqa: PLC0415

    now = datetime(2024, 3, 6, tzinfo=UTC)
    for case in _cases("sts-policy")[:20]:
        raw = _raw(case)
        try:
            policy = Policy.from_text(raw or b"", lenient=True)
        except ValueError:
            continue
        try:
            entry = CacheEntry(
                domain="example.com",
                record_id="20240306",
                policy=policy,
                fetched_at=now,
                expires_at=now,
                last_checked=now,
            )
        except ValueError:  # mode none is stored as no policy
            continue
        yield b"\x00" + entry.to_json().encode("utf-8")
    yield b"\x00" + CacheEntry(domain="example.com", negative_until=now).to_json().encode()


def _result_keys() -> Iterator[bytes]:
    from smtpsts import ResultType  # noqa: PLC0415
    from smtpsts.tlsrpt import PolicyInfo, SessionResult  # noqa: PLC0415
    from smtpsts.tlsrpt.collect import result_key  # noqa: PLC0415

    policy = PolicyInfo(
        "sts", "example.com", ("version: STSv1", "mode: enforce"), ("mx.example.com",)
    )
    yield result_key(SessionResult(policy, success=True)).encode("utf-8")
    yield result_key(
        SessionResult(
            policy,
            success=False,
            result_type=ResultType.CERTIFICATE_EXPIRED,
            receiving_mx_hostname="mx.example.com",
            receiving_ip="192.0.2.1",
            failure_reason_code="expired",
        )
    ).encode("utf-8")


def _netstrings() -> Iterator[bytes]:
    for seed, cap in ((0, 255), (7, 255), (3, 16)):
        yield bytes([seed, cap]) + b"7:mta-sts,11:hello world,0:,"
        yield bytes([seed, cap]) + b"24:mta-sts example.com,3:abc"
        yield bytes([seed, cap]) + b"00000000001:x,12:"


def _requests() -> Iterator[bytes]:
    for key in (
        "example.com",
        "EXAMPLE.com.",
        "[mx.example.com]:25",
        "mx.example.com:587",
        ".example.com",
        "[192.0.2.1]",
        "[ipv6:2001:db8::1]",
        "bücher.example",
        "xn--bcher-kva.example",
    ):
        yield f"mta-sts {key}".encode()


def _responses(policies: list[bytes]) -> Iterator[bytes]:
    # byte 0: read splits; byte 1: flags (bit 0 proxy, bit 1 any media type)
    def head(status: str, *fields: str) -> bytes:
        return "\r\n".join([f"HTTP/1.1 {status}", *fields, "", ""]).encode("latin-1")

    plain = "Content-Type: text/plain; charset=utf-8"
    for i, body in enumerate(policies[:12]):
        yield bytes([i, 0]) + head("200 OK", plain, f"Content-Length: {len(body)}") + body
    body = b"version: STSv1\r\nmode: enforce\r\nmx: mx.example.com\r\nmax_age: 86400\r\n"
    packed = gzip.compress(body, mtime=0)
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:20], body[20:])) + b"0\r\n\r\n"
    yield bytes([1, 0]) + head("200 OK", plain, "Transfer-Encoding: chunked") + chunked
    yield (
        bytes([2, 0])
        + head("200 OK", plain, "Content-Encoding: gzip", f"Content-Length: {len(packed)}")
        + packed
    )
    yield bytes([3, 0]) + head("100 Continue") + head("200 OK", plain, "Connection: close") + body
    yield bytes([4, 2]) + head("200 OK", f"Content-Length: {len(body)}") + body
    yield bytes([5, 0]) + head("200 OK", "Content-Type: text/html", "Content-Length: 2") + b"hi"
    yield bytes([6, 0]) + head("301 Moved Permanently", "Location: https://evil.example/")
    yield bytes([7, 0]) + head("404 Not Found", "Content-Length: 0")
    yield (
        bytes([8, 1])
        + b"HTTP/1.1 200 Connection established\r\n\r\n"
        + head("200 OK", plain, f"Content-Length: {len(body)}")
        + body
    )
    yield bytes([9, 1]) + b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n"


def seeds(target: str) -> list[bytes]:
    """
    The generated seeds of one target (without the committed ones).

    Args:
        target: The target name (``fuzz_<target>.py``).

    Returns:
        The seed inputs; empty for a target with committed seeds only.
    """
    policies = [b"\x00" + r for c in _cases("sts-policy") if (r := _raw(c)) is not None]
    makers: dict[str, Any] = {
        "sts_record": lambda: _records("sts-record"),
        "tlsrpt_record": lambda: _records("tlsrpt-record"),
        "lint_record": lambda: (s[1:] for s in _records("sts-record") if s[0] == 0),
        "policy": lambda: (p[1:] for p in policies),
        "policy_lenient": lambda: policies,
        "policy_fetch": lambda: _responses([p[1:] for p in policies]),
        "report_json": lambda: (b"\x00" + r for r in _reports()),
        "report_gzip": lambda: [
            *(b"\x01" + r for r in _reports()),
            *(b"\x00" + gzip.compress(r, mtime=0)[2:] for r in list(_reports())[:8]),
        ],
        "report_mail": _mails,
        "netstring": _netstrings,
        "socketmap_request": _requests,
        "tlsa": _tlsa,
        "cache_entry": _cache_entries,
        "result_key": _result_keys,
    }
    maker = makers.get(target)
    return [] if maker is None else list(maker())


def write(target: str, directory: Path) -> int:
    """
    Write the generated seeds of ``target`` into ``directory``.

    Args:
        target: The target name.
        directory: The corpus directory (created if needed).

    Returns:
        How many seeds were written.
    """
    directory.mkdir(parents=True, exist_ok=True)
    found = seeds(target)
    for data in found:
        (directory / f"seed-{hashlib.sha1(data).hexdigest()}").write_bytes(data)  # noqa: S324
    return len(found)
