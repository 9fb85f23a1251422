"""
The smtpsts reference test vectors.

Vectors are JSON files shipped in this package, one per group
(``sts-record.json``, ``sts-policy.json``, ...). Each holds cases with an
input and either the expected result or the expected error, and cites the
conformance IDs it exercises (docs/conformance.md). The format is documented in
``docs/vectors.md``
so that other implementations can run them too; :func:`run` runs them against
this one.

A group's checker is a module ``smtpsts.vectors._check_<group>`` (dashes
become underscores) with a function ``check(case) -> None`` that raises
:class:`VectorMismatch` when this implementation disagrees with the case.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import attrs

from smtpsts.exceptions import VectorFormatError, VectorMismatch

__all__ = [
    "FORMAT",
    "GROUPS",
    "CaseResult",
    "VectorFormatError",
    "VectorMismatch",
    "case_input",
    "check_case",
    "export",
    "load",
    "load_document",
    "run",
    "shipped_documents",
]

FORMAT = "smtpsts-vectors/1"
"""The value of the ``format`` member of every vector file."""

GROUPS = (
    "sts-record",
    "sts-policy",
    "mx-match",
    "tlsrpt-record",
    "tlsrpt-report",
    "tlsrpt-aggregate",
    "cert-check",
    "dane-match",
    "policy-machine",
    "decision",
    "delivery-walk",
)
"""Every group this implementation knows how to check."""

_ID = re.compile(r"[a-z0-9][a-z0-9._-]*\Z")
_CONFORMANCE_ID = re.compile(r"(?:[A-Z]+-[A-Z]+-\d\d|DANE-\d\d|SEC-\d\d|AMB-\d\d)\Z")


@attrs.frozen
class CaseResult:
    """
    The outcome of running one vector case.

    Attributes:
        group: The vector group.
        case_id: The case's ``id``.
        ok: Whether this implementation agreed with the case.
        message: What disagreed (empty when ``ok``).
    """

    group: str
    case_id: str
    ok: bool
    message: str = ""


def case_input(case: Mapping[str, Any]) -> Any:
    """
    Return a case's input: ``input`` as given, or ``input_hex`` decoded to bytes.

    Args:
        case: One case of a vector document.

    Returns:
        The input value.
    """
    if "input_hex" in case:
        return bytes.fromhex(case["input_hex"])
    return case["input"]


def _validate(doc: Any, origin: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise VectorFormatError(f"{origin}: top level must be an object")
    if doc.get("format") != FORMAT:
        raise VectorFormatError(f"{origin}: format must be {FORMAT!r}, not {doc.get('format')!r}")
    group = doc.get("group")
    if group not in GROUPS:
        raise VectorFormatError(f"{origin}: unknown group {group!r}")
    if not isinstance(doc.get("spec"), str):
        raise VectorFormatError(f"{origin}: spec must be a string")
    cases = doc.get("cases")
    if not isinstance(cases, list) or not cases:
        raise VectorFormatError(f"{origin}: cases must be a non-empty list")
    seen: set[str] = set()
    for i, case in enumerate(cases):
        where = f"{origin}: case {i}"
        if not isinstance(case, dict):
            raise VectorFormatError(f"{where}: must be an object")
        cid = case.get("id")
        if not isinstance(cid, str) or not _ID.match(cid):
            raise VectorFormatError(f"{where}: id must match {_ID.pattern!r}, got {cid!r}")
        if cid in seen:
            raise VectorFormatError(f"{where}: duplicate id {cid!r}")
        seen.add(cid)
        if ("input" in case) == ("input_hex" in case):
            raise VectorFormatError(f"{where} ({cid}): exactly one of input/input_hex")
        if ("expect" in case) == ("error" in case):
            raise VectorFormatError(f"{where} ({cid}): exactly one of expect/error")
        ids = case.get("conformance")
        if not isinstance(ids, list) or not ids:
            raise VectorFormatError(f"{where} ({cid}): conformance must be a non-empty list")
        for ident in ids:
            if not isinstance(ident, str) or not _CONFORMANCE_ID.match(ident):
                raise VectorFormatError(f"{where} ({cid}): bad conformance ID {ident!r}")
    return doc


def load_document(source: str | bytes | Path) -> dict[str, Any]:
    """
    Load and validate one vector document.

    Args:
        source: A path to a vector file, or its JSON text.

    Returns:
        The document, as decoded JSON.

    Raises:
        VectorFormatError: The document does not follow the format.
    """
    text: str | bytes
    if isinstance(source, Path):
        origin, text = str(source), source.read_bytes()
    else:
        origin, text = "<vectors>", source
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise VectorFormatError(f"{origin}: not JSON: {e}") from None
    return _validate(doc, origin)


def shipped_documents() -> list[dict[str, Any]]:
    """
    Load every vector file shipped in this package, in group order.

    Returns:
        The documents.
    """
    docs = []
    root = resources.files(__name__)
    for group in GROUPS:
        entry = root / f"{group}.json"
        if entry.is_file():
            docs.append(_validate(json.loads(entry.read_bytes()), f"{group}.json"))
    return docs


def load(group: str) -> list[dict[str, Any]]:
    """
    Return the cases of one shipped group.

    Args:
        group: One of :data:`GROUPS`.

    Returns:
        The cases (empty if the group ships no file yet).
    """
    for doc in shipped_documents():
        if doc["group"] == group:
            return list(doc["cases"])
    return []


def _checker(group: str) -> Any:
    module = importlib.import_module(f"{__name__}._check_{group.replace('-', '_')}")
    return module.check


def check_case(group: str, case: Mapping[str, Any]) -> CaseResult:
    """
    Run one case against this implementation.

    Args:
        group: The case's group.
        case: The case.

    Returns:
        The result; an unexpected exception counts as a failure, not a crash.
    """
    try:
        _checker(group)(case)
    except VectorMismatch as e:
        return CaseResult(group, case["id"], ok=False, message=str(e))
    except Exception as e:  # noqa: BLE001 -- any crash is a failed case, reported as such
        return CaseResult(group, case["id"], ok=False, message=f"crashed: {e!r}")
    return CaseResult(group, case["id"], ok=True)


def run(documents: Iterable[Mapping[str, Any]]) -> list[CaseResult]:
    """
    Run every case of the given documents.

    Args:
        documents: Validated vector documents.

    Returns:
        One result per case, in order.
    """
    return [check_case(doc["group"], case) for doc in documents for case in doc["cases"]]


def export(directory: Path, documents: Sequence[Mapping[str, Any]] | None = None) -> list[Path]:
    """
    Write vector files to a directory, one ``<group>.json`` each.

    Args:
        directory: Where to write; created if missing.
        documents: What to write; the shipped vectors by default.

    Returns:
        The paths written.
    """
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for doc in documents if documents is not None else shipped_documents():
        path = directory / f"{doc['group']}.json"
        path.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(path)
    return written
