"""Issue 12 item 4: `smtpsts tlsrpt send` says what is wrong with a path, and makes nothing it was not asked for."""

from __future__ import annotations

import pytest

from smtpsts._cli import main
from smtpsts.stores.tlsrpt_sqlite import SQLiteTLSRPTStore

BASE = ["tlsrpt", "send", "--organization-name", "X", "--contact-info", "a@b.example"]
BASE += ["--allow-unsigned", "--nameserver", "127.0.0.1:9"]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    status = main([*BASE, *args])
    return status, capsys.readouterr().err


@pytest.mark.parametrize("store", ["missing-dir/s.sqlite", "typo.sqlite"])
def test_missing_collection_store_is_refused(tmp_path, capsys, store):
    """A mistyped --store is exit 2 and one line; no empty store is created that "sends" nothing."""
    path = tmp_path / store
    status, err = run(capsys, "--store", str(path))
    assert (2, f"smtpsts: --store {path}: no such file") == (status, err.split(" (")[0])
    assert 1 == len(err.strip().splitlines())
    assert [] == list(tmp_path.iterdir())


def test_outbox_in_a_missing_directory_is_refused(tmp_path, capsys):
    """The outbox may be a new file, but not in a directory that does not exist."""
    store = tmp_path / "t.db"
    SQLiteTLSRPTStore(store).close()
    status, err = run(capsys, "--store", str(store), "--outbox", str(tmp_path / "no" / "o.db"))
    assert (2, f"smtpsts: --outbox {tmp_path / 'no' / 'o.db'}: no such directory\n") == (
        status,
        err,
    )
    assert not (tmp_path / "no").exists()


def test_a_file_that_is_not_a_store_is_one_line(tmp_path, capsys):
    """A --store that is not an SQLite database is exit 1 and one line naming it, no traceback."""
    store = tmp_path / "notes.txt"
    store.write_text("not a database\n" * 100)
    status, err = run(capsys, "--store", str(store))
    assert (1, 1) == (status, len(err.strip().splitlines()))
    assert err.startswith(f"smtpsts: cannot open --store {store} / --outbox {store}: ")


def test_existing_store_and_new_outbox_work(tmp_path, capsys):
    """The happy path: nothing due, a new outbox file is made where it was asked for."""
    store = tmp_path / "t.db"
    SQLiteTLSRPTStore(store).close()
    outbox = tmp_path / "outbox.db"
    assert 0 == main([*BASE, "--store", str(store), "--outbox", str(outbox)])
    assert "built: 0" in capsys.readouterr().out
    assert outbox.is_file()
