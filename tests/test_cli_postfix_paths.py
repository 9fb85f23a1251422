"""Issue 12 item 4: `smtpsts postfix serve` refuses bad settings in one line and makes no directory it was not asked for."""

from __future__ import annotations

import importlib.util

import pytest

from smtpsts._cli import main
from smtpsts._cli import postfix as cli


def serve(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    status = main(["postfix", "serve", *args])
    return status, capsys.readouterr().err


@pytest.fixture
def no_serving(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Replace the server with a recorder: these tests stop before or at serving."""
    served: list[object] = []
    monkeypatch.setattr("smtpsts.postfix.server.serve", served.append)
    return served


def test_bad_listen_in_the_file_is_one_line(tmp_path, capsys, no_serving):
    config = tmp_path / "smtpsts.toml"
    config.write_text('[server]\nlisten = ["127.0.0.1:99999"]\n')
    status, err = serve(capsys, "--config", str(config))
    assert (2, []) == (status, no_serving)
    assert err == (
        "smtpsts postfix: error: listen address '127.0.0.1:99999': expected HOST:PORT,"
        f" [IPv6]:PORT or unix:PATH (in {config})\n"
    )


def test_cache_directory_the_user_named_must_exist(tmp_path, capsys, no_serving):
    config = tmp_path / "smtpsts.toml"
    config.write_text(f'[cache]\nbackend = "sqlite"\npath = "{tmp_path}/typo/cache.db"\n')
    status, err = serve(capsys, "--config", str(config))
    assert (2, []) == (status, no_serving)
    assert f"[cache] path {tmp_path}/typo/cache.db: no such directory" in err
    assert not (tmp_path / "typo").exists()


def test_default_cache_directory_is_made_and_said(
    tmp_path, capsys, monkeypatch, no_serving, caplog
):
    default = tmp_path / "var" / "lib" / "smtpsts" / "cache.db"
    monkeypatch.setattr(cli, "DEFAULT_SQLITE_PATH", str(default))
    config = tmp_path / "smtpsts.toml"
    config.write_text(f'[cache]\nbackend = "sqlite"\npath = "{default}"\n')
    status, err = serve(capsys, "--config", str(config), "--log-level", "info")
    assert 0 == status
    assert default.parent.is_dir()
    assert f"created {default.parent} for the policy cache" in err
    assert 1 == len(no_serving)


def test_redis_backend_without_the_package(tmp_path, capsys, monkeypatch, no_serving):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "redis" else real(name, *a)
    )
    status, err = serve(capsys, "--cache", "redis:redis://127.0.0.1:1/0")
    assert (2, []) == (status, no_serving)
    assert "pip install 'smtpsts[redis]'" in err
