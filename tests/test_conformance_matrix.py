"""
Tests of tools/conformance.py, the generator of docs/conformance.md.

They run the tool on small synthetic repositories in tmp_path; the live coverage
of the real repository is checked by a nox session, not here.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

TOOL = Path(__file__).resolve().parent.parent / "tools" / "conformance.py"


def _load_tool() -> ModuleType:
    """Import tools/conformance.py, which is a script, not a package module."""
    spec = importlib.util.spec_from_file_location("smtpsts_conformance_tool", TOOL)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


conformance = _load_tool()

SPEC = textwrap.dedent(
    """\
    # checklist

    ## 1. How to use

    | ID | Ref | Level | Requirement | Example |
    |---|---|---|---|---|
    | STS-REC-99 | 8461 §9 | MUST | Not in section 2, so ignored. | - |

    ## 2. Normative items

    ### 2.1 STS-REC: MTA-STS TXT record (`_mta-sts`)

    | ID | Ref | Level | Requirement | Example |
    |---|---|---|---|---|
    | STS-REC-01 | 8461 §3.1 | REQ | The record is a TXT RRset. It lives at `_mta-sts`. | x |
    | STS-REC-02 | 8461 §3.1 | MUST | Pipes \\| escaped in a cell stay. | y |

    ### 2.2 STS-POL: policy file

    | ID | Ref | Level | Requirement | Example |
    |---|---|---|---|---|
    | STS-POL-01 | 8461 §3.2 | REQ | Lines end in LF or CRLF. | z |
    | STS-POL-02 | 8461 §3.2 | MUST | *withdrawn* | - |
    | STS-POL-03 | 8461 §3.2 | REQ | Mode is required. | - |

    ### 2.3 DANE: DANE for SMTP

    | ID | Ref | Level | Requirement | Example |
    |---|---|---|---|---|
    | DANE-01 | 7672 §2.1.1 | MUST | A security-aware resolver. | - |

    ## 3. Exact ABNF

    | STS-REC-03 | not | an | item | - |
    """
)

TESTS = textwrap.dedent(
    '''\
    def test_sts_rec_01_record_name():
        """The record name."""

    def test_plain():
        """STS-POL-01, DANE-01: first line names IDs.

        STS-POL-03 on a later line does not count.
        """

    class TestThing:
        def test_method(self):
            """STS-REC-02: in a class."""

        def helper_sts_pol_03(self):
            """Not a test: its name does not start with test."""

    def test_unknown():
        """STS-POL-77: not in the checklist."""

    def helper():
        """STS-POL-03: not a test either."""
    '''
)


def _repo(tmp_path: Path, *, tests: str = TESTS, vectors: dict | None = None, na: str = "") -> Path:
    """Lay out a synthetic repository: checklist, ID list, one test file, vectors, N/A list."""
    (tmp_path / "tools").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "smtpsts" / "vectors").mkdir(parents=True)
    spec = tmp_path / "CONFORMANCE.md"
    spec.write_text(SPEC, encoding="utf-8")
    assert 0 == conformance.main(["--root", str(tmp_path), "--refresh-ids", str(spec)])
    (tmp_path / "tests" / "test_x.py").write_text(tests, encoding="utf-8")
    if vectors is not None:
        (tmp_path / "smtpsts" / "vectors" / "sts-policy.json").write_text(
            json.dumps(vectors), encoding="utf-8"
        )
    if na:
        (tmp_path / "tools" / "conformance_na.toml").write_text(na, encoding="utf-8")
    return tmp_path


VECTORS = {
    "format": "smtpsts-vectors/1",
    "group": "sts-policy",
    "spec": "RFC 8461 §3.2",
    "cases": [
        {"id": "a", "input": "", "error": "X", "conformance": ["STS-POL-03", "AMB-05"]},
        {"id": "b", "input": "", "error": "X", "conformance": ["STS-POL-03"]},
        {"id": "c", "input": "", "error": "X", "conformance": ["SEC-42"]},
    ],
}


class TestParseSpec:
    def test_items_of_section_2_only(self):
        """Only section 2 rows become items, with group, ref, level and title."""
        items = conformance.parse_spec(SPEC)

        assert [
            "STS-REC-01",
            "STS-REC-02",
            "STS-POL-01",
            "STS-POL-02",
            "STS-POL-03",
            "DANE-01",
        ] == list(items)
        item = items["STS-REC-01"]
        assert ("STS-REC", "8461 §3.1", "REQ") == (item.group, item.ref, item.level)
        assert "MTA-STS TXT record (`_mta-sts`)" == item.title

    def test_requirement_is_first_sentence(self):
        """The short requirement is the first sentence; escaped pipes are unescaped."""
        items = conformance.parse_spec(SPEC)

        assert "The record is a TXT RRset." == items["STS-REC-01"].requirement
        assert "Pipes | escaped in a cell stay." == items["STS-REC-02"].requirement

    def test_withdrawn(self):
        """An item marked withdrawn is recognised as such."""
        items = conformance.parse_spec(SPEC)

        assert items["STS-POL-02"].withdrawn
        assert not items["STS-POL-01"].withdrawn

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("# nothing\n", "no section 2 items"),
            (
                "## 2. x\n### 2.1 STS-REC: t\n" + "| STS-REC-01 | a | b | c |\n" * 2,
                "duplicate",
            ),
            ("## 2. x\n### 2.1 STS-POL: t\n| STS-REC-01 | a | b | c |\n", "not in section"),
            ("## 2. x\n### 2.1 STS-REC: t\n| STS-REC-01 | a |\n", "expected ID"),
        ],
    )
    def test_malformed(self, text, message):
        """Malformed checklists raise ConformanceError naming the problem."""
        with pytest.raises(conformance.ConformanceError, match=message):
            conformance.parse_spec(text)


class TestShorten:
    def test_long_text_cut_at_word(self):
        """A long first sentence is cut at a word boundary with an ellipsis."""
        text = "word " * 60

        short = conformance.shorten(text, limit=30)

        assert short.endswith(" …")
        assert len(short) <= 32

    def test_open_code_span_not_left(self):
        """A cut never leaves a code span open."""
        short = conformance.shorten("aaaa `bbbb cccc dddd eeee` ffff", limit=15)

        assert "aaaa …" == short


class TestScan:
    def test_ids_in_names_and_first_docstring_lines(self, tmp_path):
        """Test names (underscored) and docstring first lines map IDs to tests."""
        repo = _repo(tmp_path)

        found = conformance.scan_tests(repo / "tests", repo)

        assert ["tests/test_x.py::test_sts_rec_01_record_name"] == found["STS-REC-01"]
        assert ["tests/test_x.py::TestThing::test_method"] == found["STS-REC-02"]
        assert ["tests/test_x.py::test_plain"] == found["STS-POL-01"]
        assert ["tests/test_x.py::test_plain"] == found["DANE-01"]
        assert "STS-POL-03" not in found

    def test_id_helpers(self):
        """Both spellings of an ID are recognised, and neighbours are not."""
        assert {"STS-POL-06", "DANE-12", "SEC-01"} == conformance.ids_in_text(
            "STS-POL-06, DANE-12 and SEC-01; not XSTS-POL-07 or STS-POL-123"
        )
        assert {"STS-POL-06", "RPT-REC-01", "DANE-05"} == conformance.ids_in_name(
            "test_sts_pol_06_and_rpt_rec_01_dane_05_x"
        )

    def test_unparsable_test_file(self, tmp_path):
        """A test file with a syntax error is reported, not skipped."""
        repo = _repo(tmp_path, tests="def test_(:\n")

        with pytest.raises(conformance.ConformanceError, match=r"test_x\.py"):
            conformance.scan_tests(repo / "tests", repo)

    def test_vectors(self, tmp_path):
        """Vector cases map their conformance IDs to group/case."""
        repo = _repo(tmp_path, vectors=VECTORS)

        found = conformance.scan_vectors(repo / "smtpsts" / "vectors")

        assert {"sts-policy": ["a", "b"]} == found["STS-POL-03"]

    def test_bad_vector_file(self, tmp_path):
        """A vector file that is not one is reported."""
        repo = _repo(tmp_path, vectors={"format": "x"})

        with pytest.raises(conformance.ConformanceError, match=r"sts-policy\.json"):
            conformance.scan_vectors(repo / "smtpsts" / "vectors")


class TestMatrix:
    def test_statuses(self, tmp_path):
        """Covered, not applicable, withdrawn and uncovered items are told apart."""
        repo = _repo(tmp_path, vectors=VECTORS, na='[ids]\nDANE-01 = "ignored: covered"\n')
        (repo / "tests" / "test_x.py").write_text(
            'def test_a():\n    """STS-REC-01: x."""\n', encoding="utf-8"
        )
        (repo / "tools" / "conformance_na.toml").write_text(
            '[ids]\nSTS-REC-02 = "needs a live DNS server"\n', encoding="utf-8"
        )

        m = conformance.build(
            repo, repo / "tools" / "conformance_ids.json", repo / "tools" / "conformance_na.toml"
        )

        assert {
            "STS-REC-01": "covered",
            "STS-REC-02": "n/a",
            "STS-POL-01": "uncovered",
            "STS-POL-02": "withdrawn",
            "STS-POL-03": "covered",
            "DANE-01": "uncovered",
        } == {i: m.status(i) for i in m.items}
        assert ["STS-POL-01"] == m.uncovered(["STS-POL"])
        assert {"SEC-42": ["vector sts-policy/c"]} == m.unknown

    def test_render(self, tmp_path):
        """The page has a summary, a table per group, reasons and unknown IDs."""
        tests = (
            'def test_sts_rec_01():\n    """x."""\n'
            'def test_unknown():\n    """STS-POL-77: not in the checklist."""\n'
        )
        repo = _repo(
            tmp_path,
            tests=tests,
            vectors=VECTORS,
            na='[ids]\nSTS-POL-01 = "done by the adapter"\n',
        )

        text = conformance.render(
            conformance.build(
                repo,
                repo / "tools" / "conformance_ids.json",
                repo / "tools" / "conformance_na.toml",
            )
        )

        assert "| [STS-POL](#sts-pol) | 2 | 1 | 1 | 0 |" in text
        assert "| [DANE](#dane) | 1 | 0 | 0 | 1 |" in text
        assert "| **All** | **5** | **2** | **1** | **2** |" in text
        assert "| STS-REC-02 | 8461 §3.1 | MUST |" in text
        assert "**uncovered**" in text
        assert "## STS-REC: MTA-STS TXT record (`_mta-sts`)" in text
        assert "not applicable: done by the adapter" in text
        assert "2 sts-policy vectors" in text
        assert "Pipes \\| escaped in a cell stay." in text
        assert "- `STS-POL-77`: `tests/test_x.py::test_unknown`" in text
        assert "- `SEC-42`: `vector sts-policy/c`" in text
        assert "AMB-05" not in text

    def test_many_tests_are_summarised(self, tmp_path):
        """More than four tests for one ID are shown as a count."""
        tests = "".join(f'def test_{n}():\n    """STS-POL-01: x."""\n' for n in range(6))
        repo = _repo(tmp_path, tests=tests)

        text = conformance.render(
            conformance.build(
                repo,
                repo / "tools" / "conformance_ids.json",
                repo / "tools" / "conformance_na.toml",
            )
        )

        assert "and 2 more tests" in text


class TestNA:
    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("[ids]\nSTS-XX-01 = 'r'\n", "unknown ID"),
            ("[ids]\nSTS-REC-01 = ''\n", "needs a reason"),
            ("[ids]\nSTS-REC-01 = 3\n", "needs a reason"),
            ("ids = 3\n", "must be a table"),
            ("[ids\n", "conformance_na.toml"),
        ],
    )
    def test_malformed(self, tmp_path, text, message):
        """A bad not-applicable list is an error naming the problem."""
        repo = _repo(tmp_path, na=text)

        with pytest.raises(conformance.ConformanceError, match=message):
            conformance.load_na(repo / "tools" / "conformance_na.toml", ["STS-REC-01"])

    def test_missing_file_is_empty(self, tmp_path):
        """Without the file nothing is marked not applicable."""
        assert {} == conformance.load_na(tmp_path / "none.toml", [])


class TestMain:
    def test_write_then_check(self, tmp_path, capsys):
        """Writing makes --check pass; a new covering test makes it stale."""
        repo = _repo(tmp_path, vectors=VECTORS)
        root = ["--root", str(repo)]

        assert 0 == conformance.main(root)
        assert (repo / "docs" / "conformance.md").is_file()
        assert 0 == conformance.main([*root, "--check"])
        with (repo / "tests" / "test_x.py").open("a", encoding="utf-8") as f:
            f.write('\ndef test_more():\n    """STS-POL-01: new."""\n')
        assert 1 == conformance.main([*root, "--check"])
        assert "stale" in capsys.readouterr().out

    def test_require(self, tmp_path, capsys):
        """--require lists the uncovered IDs of the named groups and exits 1."""
        tests = 'def test_a():\n    """STS-REC-01, STS-REC-02: x."""\n'
        repo = _repo(tmp_path, tests=tests, vectors=VECTORS)
        root = ["--root", str(repo)]

        assert 0 == conformance.main([*root, "--require", "STS-REC"])
        assert 1 == conformance.main([*root, "--require", "STS-REC", "STS-POL", "DANE"])
        assert "2 uncovered: STS-POL-01 DANE-01" in capsys.readouterr().out
        assert 2 == conformance.main([*root, "--require", "NOPE"])

    def test_require_does_not_write(self, tmp_path):
        """--require and --check only read."""
        repo = _repo(tmp_path)

        conformance.main(["--root", str(repo), "--require", "STS-REC", "--check"])

        assert not (repo / "docs" / "conformance.md").exists()

    def test_bad_ids_file(self, tmp_path, capsys):
        """A broken ID list is a usage error (status 2)."""
        repo = _repo(tmp_path)
        (repo / "tools" / "conformance_ids.json").write_text("[1]", encoding="utf-8")

        assert 2 == conformance.main(["--root", str(repo)])
        assert "not a conformance ID list" in capsys.readouterr().err

    def test_shipped_ids_match_the_checklist_format(self):
        """The ID list in the repository loads and holds all 13 groups."""
        items = conformance.load_ids(TOOL.parent / "conformance_ids.json")

        assert 13 == len({i.group for i in items.values()})
        assert all(i.ref and i.level and i.requirement for i in items.values())


class TestProjectItems:
    def _repo(self, tmp_path: Path, project: dict[str, object]) -> Path:
        ids = {
            "SEC-01": {
                "ref": "8461 §10.2",
                "level": "SHOULD",
                "requirement": "Alert.",
                "group": "SEC",
            },
            "DANE-01": {
                "ref": "7672 §2",
                "level": "MUST",
                "requirement": "DNSSEC.",
                "group": "DANE",
            },
        }
        (tmp_path / "tools").mkdir()
        (tmp_path / "tools" / "conformance_ids.json").write_text(json.dumps(ids))
        (tmp_path / "tools" / "conformance_project.json").write_text(json.dumps(project))
        (tmp_path / "tests").mkdir()
        (tmp_path / "tests" / "test_x.py").write_text('def test_a():\n    """SEC-50: covered."""\n')
        return tmp_path

    def test_project_items_are_merged(self, tmp_path: Path) -> None:
        """Project items (tools/conformance_project.json) join their group, after its checklist items."""
        root = self._repo(
            tmp_path,
            {
                "SEC-50": {
                    "ref": "8461 §5.1",
                    "level": "PROJ",
                    "requirement": "Cache wins.",
                    "group": "SEC",
                }
            },
        )

        matrix = conformance.build(root, root / "tools" / "conformance_ids.json", root / "na.toml")

        assert ["DANE-01", "SEC-01", "SEC-50"] == sorted(matrix.items)
        assert ["SEC-01", "SEC-50"] == [i for i in matrix.items if i.startswith("SEC")]
        assert ["tests/test_x.py::test_a"] == matrix.coverage["SEC-50"].tests

    def test_project_item_may_not_shadow_checklist(self, tmp_path: Path) -> None:
        """A project item with a checklist ID is refused."""
        root = self._repo(
            tmp_path,
            {"SEC-01": {"ref": "x", "level": "PROJ", "requirement": "Again.", "group": "SEC"}},
        )

        with pytest.raises(conformance.ConformanceError, match="also in the checklist"):
            conformance.build(root, root / "tools" / "conformance_ids.json", root / "na.toml")
