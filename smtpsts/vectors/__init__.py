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
become underscores) with three functions:

- ``compute(case)`` runs this implementation on the case's input and returns
  its result in the group's ``expect`` vocabulary, or raises the
  :class:`~smtpsts.exceptions.SMTPSTSError` it rejects the input with;
- ``judge(case, answer, comparison)`` compares an :class:`Answer` (a result,
  an error class name, or neither) with the case and raises
  :class:`VectorMismatch` when they disagree;
- ``check(case)`` judges this implementation's own answer.

``judge`` is the one comparison both paths use: :func:`check_case` judges
this implementation's answer, and :func:`judge_answer` judges an answer that
another implementation gave over the JSON-lines protocol of
:mod:`smtpsts.vectors.protocol` (``smtpsts vectors run --exec``).
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

from smtpsts.exceptions import SMTPSTSError, VectorFormatError, VectorMismatch

__all__ = [
    "FORMAT",
    "GROUPS",
    "Answer",
    "CaseResult",
    "Comparison",
    "VectorFormatError",
    "VectorMismatch",
    "answer_from",
    "case_input",
    "check_case",
    "error_of",
    "export",
    "judge_answer",
    "load",
    "load_document",
    "own_answer",
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
        ok: Whether the implementation agreed with the case.
        message: What disagreed (empty when ``ok``).
        unsupported: The implementation said it does not do this case (then
            ``ok`` is false and the case is neither agreed nor disagreed).
        omitted: Members of ``expect`` the implementation's result left out,
            which were not compared (only answers given over the protocol
            may leave members out).
    """

    group: str
    case_id: str
    ok: bool
    message: str = ""
    unsupported: bool = False
    omitted: tuple[str, ...] = ()


@attrs.frozen
class Answer:
    """
    What an implementation said about one case.

    Exactly one of the three kinds: a ``result`` in the group's ``expect``
    vocabulary, an ``error`` naming the class it rejected the input with
    (the vectors' ``error`` vocabulary), or ``unsupported``.

    Attributes:
        result: The result, as decoded JSON (``None`` for the other kinds).
        error: The error class name, or ``None``.
        reason: With ``error``, an optional short reason code (compared
            only when both the case and the answer give one).
        detail: With ``error``, an optional human explanation.
        unsupported: The implementation does not do this case.
    """

    result: Any = None
    error: str | None = None
    reason: str | None = None
    detail: str = ""
    unsupported: bool = False

    def to_json(self) -> dict[str, Any]:
        """
        Describe the answer as the members of a protocol response.

        Returns:
            ``{"result": ...}``, ``{"error": ..., "reason"?: ...,
            "detail"?: ...}`` or ``{"unsupported": true}``.
        """
        if self.unsupported:
            return {"unsupported": True}
        if self.error is None:
            return {"result": self.result}
        out: dict[str, Any] = {"error": self.error}
        if self.reason is not None:
            out["reason"] = self.reason
        if self.detail:
            out["detail"] = self.detail
        return out


class Comparison:
    """
    Compares the members of a result with a case's ``expect``, keeping count.

    A *complete* comparison (this implementation, in process) treats a
    member of ``expect`` that the result lacks as a disagreement. A partial
    one (another implementation, over the protocol) skips it and lists it
    in :attr:`omitted`: an implementation need not model every member (a
    record parser without a serialiser has no ``to_text``). A partial
    comparison that compares nothing at all is still a disagreement
    (:func:`judge_answer`).

    Attributes:
        complete: Whether every member must be present.
        compared: The members compared so far.
        omitted: The members skipped because the result lacks them.
    """

    def __init__(self, *, complete: bool = True) -> None:
        self.complete = complete
        self.compared: list[str] = []
        self.omitted: list[str] = []

    def present(self, what: str, got: Any, key: str) -> bool:
        """
        Say whether a result has a member, recording it as omitted if not.

        Args:
            what: The member's name in messages (``record.id``).
            got: The result object.
            key: The member.

        Returns:
            True when the member is there to compare.

        Raises:
            VectorMismatch: The comparison is complete and the member is
                missing, or ``got`` is not an object.
        """
        if not isinstance(got, Mapping):
            raise VectorMismatch(f"{what}: expected an object, got {got!r}")
        if key in got:
            self.compared.append(what)
            return True
        if self.complete:
            raise VectorMismatch(f"unknown expect key {key!r}")
        self.omitted.append(what)
        return False

    def value(self, what: str, expected: Any, actual: Any) -> None:
        """
        Compare one value, in the ``what: expected X, got Y`` style.

        Args:
            what: The member, for the message.
            expected: The case's value.
            actual: The implementation's value.

        Raises:
            VectorMismatch: They differ.
        """
        self.compared.append(what)
        if expected != actual:
            raise VectorMismatch(f"{what}: expected {expected!r}, got {actual!r}")

    def members(
        self, expect: Mapping[str, Any], got: Any, *, detail: str = "", prefix: str = ""
    ) -> None:
        """
        Compare each member ``expect`` gives, in the ``expected K V, got W`` style.

        Args:
            expect: The case's object; only its members are compared.
            got: The implementation's object.
            detail: Appended to a mismatch message in parentheses.
            prefix: Prepended to member names in :attr:`omitted`.

        Raises:
            VectorMismatch: A member differs (or is missing, when complete).
        """
        for key, want in expect.items():
            if not self.present(prefix + key, got, key):
                continue
            if got[key] != want:
                extra = f" ({detail})" if detail else ""
                raise VectorMismatch(f"expected {key} {want!r}, got {got[key]!r}{extra}")


def error_of(case: Mapping[str, Any], answer: Answer, noun: str) -> bool:
    """
    Judge the error side of an answer, in the ``expected X, got Y`` style.

    Args:
        case: The case.
        answer: The answer.
        noun: What a valid input gives, for messages (``"a policy"``).

    Returns:
        True when the case expects an error and the answer gives that error
        (the case is settled); False when neither has one (compare results).

    Raises:
        VectorMismatch: One side has an error and the other does not, the
            class names differ, or both give a reason and they differ.
    """
    if answer.error is not None:
        if "error" not in case:
            raise VectorMismatch(f"expected {noun}, got {answer.error}: {answer.detail}")
        if answer.error != case["error"]:
            raise VectorMismatch(f"expected {case['error']}, got {answer.error}: {answer.detail}")
        if "reason" in case and answer.reason is not None and answer.reason != case["reason"]:
            raise VectorMismatch(
                f"expected reason {case['reason']!r}, got {answer.reason!r}: {answer.detail}"
            )
        return True
    if "error" in case:
        raise VectorMismatch(f"expected {case['error']}, got {noun}: {answer.result!r}")
    return False


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


def _module(group: str) -> Any:
    return importlib.import_module(f"{__name__}._check_{group.replace('-', '_')}")


def _checker(group: str) -> Any:
    return _module(group).check


def own_answer(group: str, case: Mapping[str, Any]) -> Answer:
    """
    Run this implementation on a case and give its answer.

    Args:
        group: The case's group.
        case: The case.

    Returns:
        The result, or the name of the :class:`~smtpsts.exceptions.SMTPSTSError`
        subclass the input was rejected with (with its ``reason`` if it has one).

    Raises:
        VectorMismatch: This implementation disagrees with itself, or the case
            is malformed for the group (a checker's own consistency checks).
    """
    return answer_from(_module(group).compute, case)


def answer_from(compute: Any, case: Mapping[str, Any]) -> Answer:
    """
    Call a checker's ``compute`` and wrap what it returns or raises.

    Args:
        compute: The checker's ``compute(case)``.
        case: The case.

    Returns:
        The answer: the result, or the rejecting exception's class name.

    Raises:
        VectorMismatch: ``compute`` raised it (a consistency check failed).
    """
    try:
        return Answer(result=compute(case))
    except VectorMismatch:
        raise
    except SMTPSTSError as e:
        reason = getattr(e, "reason", None)
        return Answer(
            error=type(e).__name__,
            reason=reason if isinstance(reason, str) else None,
            detail=str(e),
        )


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


def judge_answer(group: str, case: Mapping[str, Any], answer: Answer) -> CaseResult:
    """
    Judge another implementation's answer to a case with the group's checker.

    The comparison is partial (:class:`Comparison`): members of ``expect``
    the result leaves out are listed in :attr:`CaseResult.omitted`, not
    failed. A result that gives none of them (an implementation without a
    serialiser, on a case about ``to_text`` only) cannot be judged and
    counts as unsupported, with a message saying so.

    Args:
        group: The case's group.
        case: The case.
        answer: What the implementation said.

    Returns:
        The result; a result of the wrong shape is a disagreement, not a crash.
    """
    cid = case["id"]
    if answer.unsupported:
        return CaseResult(group, cid, ok=False, unsupported=True)
    comparison = Comparison(complete=False)
    try:
        _module(group).judge(case, answer, comparison)
    except VectorMismatch as e:
        return CaseResult(group, cid, ok=False, message=str(e))
    except Exception as e:  # noqa: BLE001 -- a result of the wrong shape is a failed case
        return CaseResult(group, cid, ok=False, message=f"result of the wrong shape: {e!r}")
    omitted = tuple(comparison.omitted)
    if answer.error is None and not comparison.compared:
        message = f"the result gives no member of expect ({', '.join(omitted)})"
        return CaseResult(group, cid, ok=False, message=message, unsupported=True, omitted=omitted)
    return CaseResult(group, cid, ok=True, omitted=omitted)


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
