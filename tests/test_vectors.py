"""Every shipped reference vector passes, and the vector tooling behaves."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from smtpsts import vectors
from smtpsts._cli import main

SHIPPED = [
    pytest.param(doc["group"], case, id=f"{doc['group']}/{case['id']}")
    for doc in vectors.shipped_documents()
    for case in doc["cases"]
]


@pytest.mark.parametrize(("group", "case"), SHIPPED)
def test_shipped_vector(group, case):
    """Each shipped case agrees with this implementation."""
    result = vectors.check_case(group, case)
    assert (True, "") == (result.ok, result.message)


def _doc(**over):
    doc = {
        "format": vectors.FORMAT,
        "group": "sts-record",
        "spec": "RFC 8461 §3.1",
        "cases": [{"id": "a", "input": "x", "expect": {}, "conformance": ["STS-REC-06"]}],
    }
    doc.update(over)
    return doc


class TestFormat:
    def test_valid_document_loads(self):
        """A well-formed document loads from text and from a path."""
        text = json.dumps(_doc())
        assert "sts-record" == vectors.load_document(text)["group"]

    def test_path(self, tmp_path):
        """A document loads from a file."""
        p = tmp_path / "v.json"
        p.write_text(json.dumps(_doc()))
        assert 1 == len(vectors.load_document(p)["cases"])

    @pytest.mark.parametrize(
        ("doc", "fragment"),
        [
            ([], "top level"),
            (_doc(format="x/2"), "format"),
            (_doc(group="nope"), "unknown group"),
            (_doc(spec=3), "spec"),
            (_doc(cases=[]), "non-empty"),
            (_doc(cases=["x"]), "must be an object"),
            (_doc(cases=[{"id": "Bad Id"}]), "id must match"),
            (
                _doc(
                    cases=[{"id": "a", "input": 1, "expect": 1, "conformance": ["STS-REC-01"]}] * 2
                ),
                "duplicate id",
            ),
            (_doc(cases=[{"id": "a", "expect": 1, "conformance": ["STS-REC-01"]}]), "input"),
            (_doc(cases=[{"id": "a", "input": 1, "conformance": ["STS-REC-01"]}]), "expect/error"),
            (_doc(cases=[{"id": "a", "input": 1, "expect": 1}]), "conformance must"),
            (
                _doc(cases=[{"id": "a", "input": 1, "expect": 1, "conformance": ["XYZ"]}]),
                "bad conformance ID",
            ),
        ],
    )
    def test_invalid_documents(self, doc, fragment):
        """Malformed vector documents are refused with a message naming the problem."""
        with pytest.raises(vectors.VectorFormatError, match=fragment):
            vectors.load_document(json.dumps(doc))

    def test_not_json(self):
        """Text that is not JSON is a VectorFormatError."""
        with pytest.raises(vectors.VectorFormatError, match="not JSON"):
            vectors.load_document("{")

    def test_case_input_hex(self):
        """input_hex gives bytes; input is passed through."""
        assert b"\xff\x00" == vectors.case_input({"input_hex": "ff00"})
        assert "x" == vectors.case_input({"input": "x"})


class TestRun:
    def test_crash_is_a_failure(self, monkeypatch):
        """A checker that crashes yields a failed case, not an exception."""

        def boom(case):
            raise KeyError("missing")

        monkeypatch.setattr(vectors, "_checker", lambda group: boom)
        result = vectors.check_case("sts-record", {"id": "a"})
        assert (False, "crashed: KeyError('missing')") == (result.ok, result.message)

    def test_mismatch_is_a_failure(self, monkeypatch):
        """A VectorMismatch yields a failed case with its message."""

        def differ(case):
            raise vectors.VectorMismatch("expected 1, got 2")

        monkeypatch.setattr(vectors, "_checker", lambda group: differ)
        results = vectors.run([_doc()])
        assert [
            vectors.CaseResult("sts-record", "a", ok=False, message="expected 1, got 2")
        ] == results

    def test_load_unknown_group_is_empty(self):
        """A group that ships no file has no cases."""
        assert [] == vectors.load("no-such-group")

    def test_export_round_trip(self, tmp_path):
        """Exported files load back identically."""
        paths = vectors.export(tmp_path / "out")
        docs = vectors.shipped_documents()
        assert len(docs) == len(paths)
        for path, doc in zip(paths, docs, strict=True):
            assert doc == vectors.load_document(path)


class TestCLI:
    def test_run_all(self, capsys):
        """`smtpsts vectors run` runs every shipped vector and ends with 'N passed, N failed'."""
        total = len(SHIPPED)
        assert 0 == main(["vectors", "run"])
        assert f"{total} passed, 0 failed" == capsys.readouterr().out.splitlines()[-1]

    def test_run_failing_file(self, tmp_path, capsys, monkeypatch):
        """A failing case is listed and the exit status is 1."""
        monkeypatch.setattr(vectors, "_checker", lambda group: _fail)
        p = tmp_path / "v.json"
        p.write_text(json.dumps(_doc()))
        assert 1 == main(["vectors", "run", str(p)])
        out = capsys.readouterr().out
        assert "FAIL sts-record/a: differs" in out
        assert out.endswith("0 passed, 1 failed\n")

    def test_run_verbose(self, tmp_path, capsys, monkeypatch):
        """-v lists passing cases too."""
        monkeypatch.setattr(vectors, "_checker", lambda group: lambda case: None)
        p = tmp_path / "v.json"
        p.write_text(json.dumps(_doc()))
        assert 0 == main(["vectors", "run", "-v", str(p)])
        assert "ok   sts-record/a\n1 passed, 0 failed\n" == capsys.readouterr().out

    def test_run_bad_file(self, tmp_path, capsys):
        """A missing or malformed file is exit status 2 with a message."""
        assert 2 == main(["vectors", "run", str(tmp_path / "missing.json")])
        assert "smtpsts:" in capsys.readouterr().err

    def test_export(self, tmp_path, capsys):
        """`smtpsts vectors export DIR` writes one file per group and lists them."""
        assert 0 == main(["vectors", "export", str(tmp_path)])
        listed = capsys.readouterr().out.split()
        assert sorted(str(p) for p in tmp_path.iterdir()) == sorted(listed)

    def test_export_unwritable(self, tmp_path, capsys):
        """An unwritable destination is exit status 2."""
        target = tmp_path / "file"
        target.write_text("")
        assert 2 == main(["vectors", "export", str(target / "sub")])
        assert "smtpsts:" in capsys.readouterr().err


def _fail(case):
    raise vectors.VectorMismatch("differs")


def test_python_dash_m(tmp_path):
    """`python -m smtpsts` is the same command line."""
    out = subprocess.run(
        [sys.executable, "-m", "smtpsts", "vectors", "export", str(tmp_path)],
        check=True,
        capture_output=True,
        text=True,
    )
    assert sorted(str(p) for p in tmp_path.iterdir()) == sorted(out.stdout.split())


def _mutations(case):
    """Yield copies of a case whose expectation is wrong in one way."""
    if "error" in case:
        wrong = dict(case)
        wrong["error"] = "NoSuchError"
        yield wrong
        flipped = {k: v for k, v in case.items() if k != "error"}
        flipped["expect"] = {"__never__": True}
        yield flipped
    elif isinstance(case["expect"], dict) and case["expect"]:
        key = min(case["expect"])
        wrong = dict(case)
        wrong["expect"] = {**case["expect"], key: ["__never__"]}
        yield wrong
        errored = {k: v for k, v in case.items() if k != "expect"}
        errored["error"] = "NoSuchError"
        yield errored


MUTATED = [
    pytest.param(group, wrong, id=f"{group}/{case['id']}/{n}")
    for doc in vectors.shipped_documents()
    for group in [doc["group"]]
    for case in doc["cases"][:: max(1, len(doc["cases"]) // 12)]
    for n, wrong in enumerate(_mutations(case))
]


@pytest.mark.parametrize(("group", "case"), MUTATED)
def test_checkers_can_fail(group, case):
    """A case with a wrong expectation is reported as failed: no checker accepts anything."""
    assert False is vectors.check_case(group, case).ok


def test_every_group_ships_vectors():
    """Each known group ships a non-empty vector file; a group without a file is simply absent."""
    assert set(vectors.GROUPS) == {doc["group"] for doc in vectors.shipped_documents()}


def test_missing_group_file_is_skipped(monkeypatch):
    """A group this implementation knows but that ships no file yet is left out, not an error."""
    monkeypatch.setattr(vectors, "GROUPS", (*vectors.GROUPS, "not-shipped"))
    assert "not-shipped" not in {doc["group"] for doc in vectors.shipped_documents()}
