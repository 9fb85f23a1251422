"""
``smtpsts vectors run --exec``: the vectors against another implementation (issue 14, items 2-3).

The protocol is tested with smtpsts's own adapter (every case must agree),
with a fake peer that misbehaves in each way a real one can (each is a failed
case, never a crash or hang of smtpsts), and with the real peers' adapters in
``interop/`` (they must run and give results; agreement is not required).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import REQUIRE_SERVICES, require_binary
from smtpsts import vectors
from smtpsts._cli import main
from smtpsts.io import peer
from smtpsts.io.peer import Peer, run_exec
from smtpsts.vectors import Answer, CaseResult, Comparison, protocol

ROOT = Path(__file__).resolve().parent.parent
INTEROP = ROOT / "interop"
DOCS = vectors.shipped_documents()
TOTAL = sum(len(d["cases"]) for d in DOCS)
OWN = [sys.executable, str(INTEROP / "smtpsts_adapter.py")]


def _policy_doc(n: int = 4) -> dict:
    doc = next(d for d in DOCS if d["group"] == "sts-policy")
    return {**doc, "cases": doc["cases"][:n]}


class TestOwnAdapter:
    def test_every_case_agrees(self):
        """The protocol's own test: smtpsts through the protocol agrees with every case, omitting nothing."""
        results = run_exec(OWN, DOCS)
        bad = [r for r in results if not r.ok or r.omitted]
        assert (TOTAL, []) == (len(results), bad)

    def test_cli(self, tmp_path, capsys):
        """`vectors run --exec` prints one line per group, the total, and writes --json."""
        out = tmp_path / "r.json"
        command = " ".join(OWN)
        assert 0 == main(["vectors", "run", "--exec", command, "--json", str(out)])
        lines = capsys.readouterr().out.splitlines()
        assert f"{TOTAL} agreed, 0 disagreed, 0 unsupported" == lines[-1]
        assert len(vectors.GROUPS) + 1 == len(lines)
        doc = json.loads(out.read_text())
        assert (OWN, TOTAL) == (doc["command"], len(doc["results"]))
        assert {"agreed"} == {r["outcome"] for r in doc["results"]}

    def test_cli_group_and_verbose(self, capsys):
        """--group runs only that group; -v lists agreeing cases too."""
        args = ["vectors", "run", "-v", "--exec", " ".join(OWN), "--group", "mx-match"]
        assert 0 == main(args)
        out = capsys.readouterr().out
        assert "mx-match: 72 agreed, 0 disagreed, 0 unsupported" in out
        assert "agreed      mx-match/" in out
        assert "sts-policy" not in out

    def test_in_process_json_and_group(self, tmp_path, capsys):
        """Without --exec, --group and --json work on this implementation too."""
        out = tmp_path / "r.json"
        assert 0 == main(["vectors", "run", "--group", "decision", "--json", str(out)])
        assert capsys.readouterr().out.endswith("36 passed, 0 failed\n")
        assert [None, 36] == [
            json.loads(out.read_text())["command"],
            len(json.loads(out.read_text())["results"]),
        ]


FAKE = textwrap.dedent(
    """
    import json, sys, time
    mode = sys.argv[1]
    for line in sys.stdin:
        req = json.loads(line)
        if mode == "crash":
            sys.stderr.write("boom on " + req["id"] + "\\n")
            sys.exit(3)
        if mode == "hang":
            time.sleep(60)
        if mode == "garbage":
            print("this is not json", flush=True)
            continue
        if mode == "long":
            print("x" * 5000, flush=True)
            continue
        if mode == "wrongid":
            print(json.dumps({"id": "other", "unsupported": True}), flush=True)
            continue
        if mode == "disagree":
            out = {"id": req["id"], "error": "NoSuchError"}
        elif mode == "unsupported":
            out = {"id": req["id"], "unsupported": True}
        elif mode == "empty":
            out = {"id": req["id"], "result": {}}
        elif mode == "shape":
            out = {"id": req["id"], "result": 7}
        elif mode == "hang-on":
            if req["id"] == first:
                time.sleep(60)
            out = {"id": req["id"], "unsupported": True}
        print(json.dumps(out), flush=True)
    """
)


@pytest.fixture
def fake(tmp_path):
    """A misbehaving peer: ``fake(mode)`` is its command."""
    script = tmp_path / "fake.py"

    def command(mode: str, first: str = "") -> list[str]:
        script.write_text(f"first = {first!r}\n" + FAKE)
        return [sys.executable, str(script), mode]

    return command


class TestMisbehavingPeers:
    def test_disagrees(self, fake):
        """Answers that differ are disagreements, with what differed."""
        results = run_exec(fake("disagree"), [_policy_doc()])
        assert [False] * 4 == [r.ok for r in results]
        assert all("NoSuchError" in r.message and not r.unsupported for r in results)

    def test_unsupported(self, fake):
        """An implementation that does not do a case says so; it is neither agreed nor disagreed."""
        results = run_exec(fake("unsupported"), [_policy_doc()])
        assert {(False, True)} == {(r.ok, r.unsupported) for r in results}

    def test_empty_result_is_unjudgeable(self, fake):
        """A result that gives no member of expect cannot be judged: unsupported, with the reason."""
        doc = _policy_doc(40)
        doc["cases"] = [c for c in doc["cases"] if "expect" in c][:2]
        results = run_exec(fake("empty"), [doc])
        assert {(False, True, True)} == {
            (r.ok, r.unsupported, "no member of expect" in r.message) for r in results
        }

    def test_wrong_shape(self, fake):
        """A result that is not an object is a disagreement, not a crash."""
        doc = _policy_doc(40)
        doc["cases"] = [c for c in doc["cases"] if "expect" in c][:2]
        results = run_exec(fake("shape"), [doc])
        assert {(False, False)} == {(r.ok, r.unsupported) for r in results}
        assert "expected an object" in results[0].message

    @pytest.mark.parametrize(
        ("mode", "fragment"),
        [
            ("garbage", "bad response (not UTF-8 JSON)"),
            ("long", "longer than 1000 bytes"),
            ("wrongid", "bad response (id 'other'"),
        ],
    )
    def test_bad_lines_fail_the_case(self, fake, mode, fragment):
        """A bad or overlong line fails that case; the run goes on with a fresh process."""
        results = run_exec(fake(mode), [_policy_doc()], max_line=1000)
        assert 4 == len(results)
        assert all(fragment in r.message and not r.ok for r in results), results

    def test_crash(self, fake):
        """A peer that exits fails the case with its status and stderr, then the run gives up."""
        results = run_exec(fake("crash"), [_policy_doc(6)])
        first = results[0]
        assert ("the program exited (3)", True) == (
            first.message.split(":")[0],
            "boom on" in first.message,
        )
        given_up = results[peer.GIVE_UP_AFTER :]
        assert all(r.message.startswith("not run: the program failed") for r in given_up)

    def test_hang_deadline(self, fake):
        """A hung peer costs one deadline per try, is killed, and the run gives up after three."""
        start = time.monotonic()
        results = run_exec(fake("hang"), [_policy_doc(6)], timeout=0.5)
        elapsed = time.monotonic() - start
        assert all("no response within 0.5 s" in r.message for r in results[: peer.GIVE_UP_AFTER])
        assert all("not run" in r.message for r in results[peer.GIVE_UP_AFTER :])
        assert elapsed < 0.5 * peer.GIVE_UP_AFTER + 6

    def test_one_hang_then_recovery(self, fake):
        """After a timeout the next case runs on a fresh process."""
        doc = _policy_doc(3)
        results = run_exec(fake("hang-on", doc["cases"][1]["id"]), [doc], timeout=0.5)
        assert [True, False, True] == [r.unsupported for r in results]

    def test_cannot_start(self, tmp_path):
        """A command that cannot be started fails every case, once."""
        results = run_exec([str(tmp_path / "missing")], [_policy_doc()])
        assert results[0].message.startswith("cannot start")
        assert all(r.message.startswith("not run") for r in results[1:])

    def test_cli_disagreement_exit_1(self, fake, capsys):
        """Disagreements are listed by id and the exit status is 1; unsupported alone is 0."""
        cmd = " ".join(fake("disagree"))
        assert 1 == main(["vectors", "run", "--exec", cmd, "--group", "sts-policy"])
        out = capsys.readouterr().out
        assert "DISAGREE sts-policy/" in out
        assert 0 == main(
            ["vectors", "run", "--exec", " ".join(fake("unsupported")), "--group", "dane-match"]
        )
        assert "dane-match: 0 agreed, 0 disagreed, 53 unsupported" in capsys.readouterr().out

    @pytest.mark.parametrize("command", ["'unbalanced", ""])
    def test_cli_bad_command(self, command, capsys):
        """An unparsable or empty command is exit status 2."""
        assert 2 == main(["vectors", "run", "--exec", command])
        assert "smtpsts:" in capsys.readouterr().err

    def test_cli_unwritable_json(self, tmp_path, capsys):
        """An unwritable --json file is exit status 2."""
        out = tmp_path / "no" / "such" / "dir.json"
        assert 2 == main(
            ["vectors", "run", "--exec", " ".join(OWN), "--group", "decision", "--json", str(out)]
        )
        assert 2 == main(["vectors", "run", "--group", "decision", "--json", str(out)])

    def test_peer_close_kills_a_child_that_ignores_eof(self, tmp_path):
        """close() kills a child that does not exit when its stdin closes."""
        script = tmp_path / "stubborn.py"
        script.write_text(
            "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(60)\n"
        )
        p = Peer([sys.executable, str(script)])
        start = time.monotonic()
        assert -9 == p.close()
        assert time.monotonic() - start < 5

    def test_last_line_without_newline(self, tmp_path):
        """A final response without a newline is still read."""
        script = tmp_path / "nonl.py"
        script.write_text(
            "import sys, json\nreq = json.loads(sys.stdin.readline())\n"
            "sys.stdout.write(json.dumps({'id': req['id'], 'unsupported': True}))\n"
        )
        with Peer([sys.executable, str(script)]) as p:
            line = p.ask(protocol.encode_request("sts-policy", _policy_doc()["cases"][0]))
        assert b'"unsupported": true' in line


class TestProtocol:
    def test_request_carries_no_expectation(self):
        """A request has v, group, id, input or input_hex, options; never expect/error."""
        case = {
            "id": "a",
            "input_hex": "00",
            "options": {"lenient": True},
            "error": "X",
            "conformance": [],
        }
        assert {
            "v": 1,
            "group": "g",
            "id": "a",
            "input_hex": "00",
            "options": {"lenient": True},
        } == json.loads(protocol.encode_request("g", case))

    def test_request_round_trip(self):
        """decode_request gives back the case's id, group and input."""
        line = protocol.encode_request("sts-policy", {"id": "x", "input": "é\n"})
        assert {"group": "sts-policy", "id": "x", "input": "é\n"} == protocol.decode_request(line)

    @pytest.mark.parametrize(
        "line", [b"nope", b"[1]", b'{"v": 2, "group": "g", "id": "a", "input": 1}']
    )
    def test_bad_requests(self, line):
        """A line that is not a version 1 request is refused."""
        with pytest.raises(vectors.VectorMismatch):
            protocol.decode_request(line)

    @pytest.mark.parametrize(
        ("line", "answer"),
        [
            (b'{"id": "a", "result": {"x": 1}}', Answer(result={"x": 1})),
            (
                b'{"id": "a", "error": "E", "reason": "r", "detail": "d"}',
                Answer(error="E", reason="r", detail="d"),
            ),
            (b'{"id": "a", "unsupported": true}', Answer(unsupported=True)),
        ],
    )
    def test_responses(self, line, answer):
        """Each kind of response decodes, and encodes back to the same members."""
        assert answer == protocol.decode_response(line, "a")
        assert json.loads(line) == json.loads(protocol.encode_response("a", answer))

    @pytest.mark.parametrize(
        ("line", "fragment"),
        [
            (b"\xff", "not UTF-8 JSON"),
            (b"[]", "not an object"),
            (b'{"id": "b", "unsupported": true}', "id 'b'"),
            (b'{"id": "a"}', "exactly one"),
            (b'{"id": "a", "result": 1, "error": "E"}', "exactly one"),
            (b'{"id": "a", "unsupported": 1}', "must be true"),
            (b'{"id": "a", "error": ""}', "class name"),
            (b'{"id": "a", "error": 5}', "class name"),
            (b'{"id": "a", "error": "E", "reason": 1}', "must be strings"),
            (b'{"id": "a", "error": "E", "detail": []}', "must be strings"),
        ],
    )
    def test_bad_responses(self, line, fragment):
        """A malformed response is a VectorMismatch starting 'bad response'."""
        with pytest.raises(vectors.VectorMismatch, match="bad response") as info:
            protocol.decode_response(line, "a")
        assert fragment in str(info.value)

    def test_tally(self):
        """Tally counts agreed, disagreed and unsupported per group."""
        results = [
            CaseResult("a", "1", ok=True),
            CaseResult("a", "2", ok=False),
            CaseResult("b", "3", ok=False, unsupported=True),
        ]
        assert {
            "a": {"agreed": 1, "disagreed": 1, "unsupported": 0},
            "b": {"agreed": 0, "disagreed": 0, "unsupported": 1},
        } == protocol.tally(results)


class TestPartialJudging:
    """The one comparison, in its partial form, as another implementation's answers meet it."""

    def _case(self, group, cid):
        return next(c for c in vectors.load(group) if c["id"] == cid)

    def test_omitted_members_are_listed(self):
        """A record result with only the id agrees and lists what it left out."""
        case = next(
            c
            for c in vectors.load("sts-record")
            if isinstance(c.get("input"), str) and "expect" in c
        )
        r = vectors.judge_answer("sts-record", case, Answer(result={"id": case["expect"]["id"]}))
        assert (True, ("extensions", "to_text", "lenient")) == (r.ok, r.omitted)

    def test_selection_record_only(self):
        """A selection result may give only the record."""
        case = next(
            c
            for c in vectors.load("sts-record")
            if isinstance(c.get("input"), dict) and "rrset" in c["input"] and c["expect"]["record"]
        )
        r = vectors.judge_answer(
            "sts-record", case, Answer(result={"record": {"id": case["expect"]["record"]["id"]}})
        )
        assert (True, True) == (r.ok, "record.to_text" in r.omitted)
        r = vectors.judge_answer(
            "sts-record", case, Answer(result={"status": case["expect"]["status"]})
        )
        assert (True, ("candidates", "record")) == (r.ok, r.omitted)

    def test_report_members(self):
        """A report compared member by member: extra non-empty members differ, empty ones do not."""
        case = next(c for c in vectors.load("tlsrpt-report") if "expect" in c)
        got = {**case["expect"], "extra": "", "none": None}
        assert vectors.judge_answer("tlsrpt-report", case, Answer(result=got)).ok
        got["extra"] = "x"
        assert (
            "extra: expected None"
            in vectors.judge_answer("tlsrpt-report", case, Answer(result=got)).message
        )

    def test_aggregate_without_report_id(self):
        """An aggregate result may leave report-id out; one that is not dot-atom fails."""
        case = next(
            c for c in vectors.load("tlsrpt-aggregate") if "expect" in c and c["expect"]["reports"]
        )
        reports = [
            {k: v for k, v in r.items() if k != "report-id"} for r in case["expect"]["reports"]
        ]
        assert vectors.judge_answer(
            "tlsrpt-aggregate", case, Answer(result={"reports": reports})
        ).ok
        bad = [{**reports[0], "report-id": "a b"}]
        assert (
            "dot-atom"
            in vectors.judge_answer(
                "tlsrpt-aggregate", case, Answer(result={"reports": bad})
            ).message
        )
        r = vectors.judge_answer("tlsrpt-aggregate", case, Answer(result={}))
        assert (True, "reports") == (r.unsupported, r.omitted[0])

    def test_error_reason_compared_only_when_given(self):
        """An error answer without a reason agrees; with the wrong reason it does not."""
        case = self._case("sts-policy", "pol-empty")
        assert vectors.judge_answer("sts-policy", case, Answer(error="PolicySyntaxError")).ok
        r = vectors.judge_answer(
            "sts-policy", case, Answer(error="PolicySyntaxError", reason="bom")
        )
        assert "expected reason" in r.message

    def test_wrong_shape_is_a_failure(self):
        """A result whose members have the wrong types is a failure, not a crash."""
        case = next(c for c in vectors.load("tlsrpt-aggregate") if "expect" in c)
        r = vectors.judge_answer("tlsrpt-aggregate", case, Answer(result={"reports": 5}))
        assert (False, True) == (r.ok, r.message.startswith("result of the wrong shape"))

    def test_record_errors(self):
        """A record case: an error against a record, and a wrong error class, are reported."""
        valid = next(
            c
            for c in vectors.load("tlsrpt-record")
            if isinstance(c.get("input"), str) and "expect" in c
        )
        invalid = next(c for c in vectors.load("tlsrpt-record") if "error" in c)
        assert (
            "expected a record"
            in vectors.judge_answer("tlsrpt-record", valid, Answer(error="X")).message
        )
        assert (
            "error: expected"
            in vectors.judge_answer("tlsrpt-record", invalid, Answer(error="X")).message
        )

    def test_complete_comparison_requires_members(self):
        """In process (complete), a member missing from the result is a failure."""
        with pytest.raises(vectors.VectorMismatch, match="unknown expect key"):
            Comparison().members({"a": 1}, {})


def _adapter_results(command, **kw):
    results = run_exec(command, DOCS, timeout=30, **kw)
    counts = protocol.tally(results)
    agreed = sum(c["agreed"] for c in counts.values())
    crashed = [
        r
        for r in results
        if "Crash" in r.message or "exited" in r.message or "no response" in r.message
    ]
    return results, agreed, crashed


def _require_module(name):
    if importlib.util.find_spec(name) is None:
        msg = f"the peer package {name} is not installed"
        if REQUIRE_SERVICES:
            pytest.fail(f"{msg}, and SMTPSTS_REQUIRE_SERVICES is set")
        pytest.skip(msg)


@pytest.mark.interop
@pytest.mark.parametrize(
    ("adapter", "module", "groups"),
    [
        (
            "checkdmarc_adapter.py",
            "checkdmarc",
            {"sts-record", "sts-policy", "mx-match", "tlsrpt-record"},
        ),
        ("resolver_adapter.py", "postfix_mta_sts_resolver", {"sts-record", "sts-policy"}),
        ("parsedmarc_adapter.py", "parsedmarc", {"tlsrpt-report"}),
    ],
)
def test_python_peer_adapters_run(adapter, module, groups):
    """Each Python peer's adapter answers every case of its groups (agreement not required) without crashing."""
    _require_module(module)
    results, agreed, crashed = _adapter_results([sys.executable, str(INTEROP / adapter)])
    answered = {r.group for r in results if not r.unsupported}
    assert (len(results), True, groups, []) == (TOTAL, agreed > 0, answered, crashed)


@pytest.fixture(scope="module")
def mailauth_installed():
    """Npm install mailauth into interop/node/ (at test time), or skip/fail without node and npm."""
    require_binary("node")
    npm = require_binary("npm")
    if not (INTEROP / "node" / "node_modules" / "mailauth").is_dir():
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund"],
            cwd=INTEROP / "node",
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            msg = f"npm install mailauth failed: {done.stderr[-500:]}"
            if REQUIRE_SERVICES:
                pytest.fail(msg)
            pytest.skip(msg)
    return shutil.which("node")


@pytest.mark.interop
def test_mailauth_adapter_runs(mailauth_installed):
    """The mailauth adapter answers its groups over the protocol without crashing."""
    results, agreed, crashed = _adapter_results(
        [mailauth_installed, str(INTEROP / "mailauth_adapter.mjs")]
    )
    answered = {r.group for r in results if not r.unsupported}
    assert (len(results), True, {"sts-record", "sts-policy", "mx-match"}, []) == (
        TOTAL,
        agreed > 0,
        answered,
        crashed,
    )


class TestOwnAnswerInProcess:
    def test_own_answer_gives_results_and_errors(self):
        """own_answer is what the smtpsts adapter sends: a result, or the error class with its reason."""
        case = next(c for c in vectors.load("sts-policy") if c["id"] == "pol-empty")
        answer = vectors.own_answer("sts-policy", case)
        assert ("PolicySyntaxError", "empty-policy") == (answer.error, answer.reason)
        assert {"error": "E"} == Answer(error="E").to_json()

    @pytest.mark.parametrize(
        ("group", "missing"),
        [
            ("decision", "verdicts"),
            ("delivery-walk", "attempts"),
            ("policy-machine", "store"),
            ("tlsrpt-report", "contact-info"),
        ],
    )
    def test_members_left_out_are_omitted(self, group, missing):
        """A protocol answer may leave a member out: it is listed as omitted, the rest still compared."""
        case = next(c for c in vectors.load(group) if "expect" in c and missing in c["expect"])
        result = {k: v for k, v in vectors.own_answer(group, case).result.items() if k != missing}
        r = vectors.judge_answer(group, case, Answer(result=result))
        assert (True, (missing,)) == (r.ok, r.omitted)
