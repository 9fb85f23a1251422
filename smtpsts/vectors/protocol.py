"""
The JSON-lines protocol that runs the vectors against another implementation.

``smtpsts vectors run --exec COMMAND`` starts COMMAND and, for each case,
writes one request line and reads one response line (specified in
``docs/vectors.md``, "Running the vectors against another implementation").
This module is the sans-I/O half: it builds request lines, decodes response
lines into :class:`~smtpsts.vectors.Answer` values, and counts results per
group. :mod:`smtpsts.io.peer` runs the process.

A request::

    {"v": 1, "group": "sts-policy", "id": "pol-empty", "input": ""}

(``input_hex`` instead of ``input`` when the case has it; ``options`` when
the case has them.) A response is one of::

    {"id": "pol-empty", "result": {...}}
    {"id": "pol-empty", "error": "PolicySyntaxError", "reason": "empty-policy"}
    {"id": "pol-empty", "unsupported": true}
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from smtpsts.vectors import Answer, CaseResult, VectorMismatch

__all__ = [
    "MAX_LINE",
    "VERSION",
    "decode_request",
    "decode_response",
    "encode_request",
    "encode_response",
    "tally",
]

VERSION = 1
"""The protocol version, the ``v`` member of every request."""

MAX_LINE = 1 << 20
"""The default cap on a response line, in bytes, without its newline."""

_ERROR_NAME_MAX = 100


def encode_request(group: str, case: Mapping[str, Any]) -> bytes:
    """
    Build the request line for one case.

    Args:
        group: The case's group.
        case: The case; only its id, input and options are sent, never what
            it expects.

    Returns:
        One line of UTF-8 JSON, ending in a newline.
    """
    request: dict[str, Any] = {"v": VERSION, "group": group, "id": case["id"]}
    if "input_hex" in case:
        request["input_hex"] = case["input_hex"]
    else:
        request["input"] = case["input"]
    if "options" in case:
        request["options"] = case["options"]
    return json.dumps(request, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def decode_request(line: bytes | str) -> dict[str, Any]:
    """
    Read a request line back into a case (for implementations written in Python).

    Args:
        line: One request line.

    Returns:
        ``{"group", "id", "input" or "input_hex", "options"?}``: the case
        without its expectation, plus its group.

    Raises:
        VectorMismatch: The line is not a version 1 request.
    """
    try:
        request = json.loads(line)
    except ValueError:
        raise VectorMismatch(f"not a JSON request line: {line!r:.200}") from None
    if not (
        isinstance(request, dict)
        and request.get("v") == VERSION
        and isinstance(request.get("group"), str)
        and isinstance(request.get("id"), str)
        and ("input" in request) != ("input_hex" in request)
    ):
        raise VectorMismatch(f"not a version {VERSION} request: {line!r:.200}")
    return {k: v for k, v in request.items() if k != "v"}


def encode_response(case_id: str, answer: Answer) -> bytes:
    """
    Build the response line for an answer.

    Args:
        case_id: The request's ``id``.
        answer: The answer.

    Returns:
        One line of UTF-8 JSON, ending in a newline.
    """
    response = {"id": case_id, **answer.to_json()}
    return json.dumps(response, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def decode_response(line: bytes, case_id: str) -> Answer:
    """
    Decode one response line.

    Args:
        line: The line as read, without its newline.
        case_id: The ``id`` of the request it answers.

    Returns:
        The answer.

    Raises:
        VectorMismatch: The line is not a response to this request: not
            UTF-8 JSON, not an object, another ``id``, not exactly one of
            ``result``/``error``/``unsupported``, or members of the wrong
            type. Every message starts ``bad response``.
    """
    try:
        response = json.loads(line.decode("utf-8"))
    except ValueError:
        raise VectorMismatch(f"bad response (not UTF-8 JSON): {line!r:.200}") from None
    if not isinstance(response, dict):
        raise VectorMismatch(f"bad response (not an object): {line!r:.200}")
    if response.get("id") != case_id:
        raise VectorMismatch(f"bad response (id {response.get('id')!r}, not {case_id!r})")
    kinds = [k for k in ("result", "error", "unsupported") if k in response]
    if len(kinds) != 1:
        raise VectorMismatch(
            f"bad response (needs exactly one of result, error, unsupported): {line!r:.200}"
        )
    if kinds == ["unsupported"]:
        if response["unsupported"] is not True:
            raise VectorMismatch("bad response (unsupported must be true)")
        return Answer(unsupported=True)
    if kinds == ["result"]:
        return Answer(result=response["result"])
    error, reason, detail = response["error"], response.get("reason"), response.get("detail", "")
    if not (isinstance(error, str) and 0 < len(error) <= _ERROR_NAME_MAX):
        raise VectorMismatch(f"bad response (error must be a class name): {error!r:.200}")
    if not (reason is None or isinstance(reason, str)) or not isinstance(detail, str):
        raise VectorMismatch("bad response (reason and detail must be strings)")
    return Answer(error=error, reason=reason, detail=detail)


def tally(results: Iterable[CaseResult]) -> dict[str, dict[str, int]]:
    """
    Count results per group.

    Args:
        results: Case results.

    Returns:
        ``{group: {"agreed": n, "disagreed": n, "unsupported": n}}`` in the
        order groups first appear.
    """
    counts: dict[str, dict[str, int]] = {}
    for r in results:
        row = counts.setdefault(r.group, {"agreed": 0, "disagreed": 0, "unsupported": 0})
        row["unsupported" if r.unsupported else "agreed" if r.ok else "disagreed"] += 1
    return counts
