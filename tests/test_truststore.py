"""Tests for smtpsts.io.truststore: trust stores from files and the system bundle."""

from __future__ import annotations

import logging
import re
import ssl
from pathlib import Path

import pytest

from certfactory import NOW, pki
from smtpsts.certs import check_certificate
from smtpsts.exceptions import ConfigError
from smtpsts.io import truststore
from smtpsts.io.truststore import clear_cache, load_system_trust_store, load_trust_store


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_cache()
    yield
    clear_cache()


@pytest.fixture(scope="module")
def ca():
    return pki(ca_name="Store")


def test_file(tmp_path, ca):
    """STS-CERT-19: a PEM file is a configurable trust store, and it anchors checks."""
    bundle = tmp_path / "roots.pem"
    bundle.write_bytes(ca.root.pem)
    store = load_trust_store(bundle)
    assert (ca.root.cert,) == store.certificates
    assert check_certificate(ca.chain, "mx1.example.com", trust=store, now=NOW).ok


def test_cached(tmp_path, ca):
    """Repeated loads of one path return the same store; clear_cache forgets it."""
    bundle = tmp_path / "roots.pem"
    bundle.write_bytes(ca.root.pem)
    first = load_trust_store(str(bundle))
    assert first is load_trust_store(bundle)
    clear_cache()
    assert first is not load_trust_store(bundle)


def test_directory(tmp_path, ca):
    """STS-CERT-19: a directory of PEM files, hash links included, loads each root once."""
    (tmp_path / "root.pem").write_bytes(ca.root.pem)
    (tmp_path / "inter.crt").write_bytes(ca.intermediate.pem)
    (tmp_path / "abcdef01.0").symlink_to(tmp_path / "root.pem")
    (tmp_path / "sub").mkdir()
    store = load_trust_store(tmp_path)
    assert {ca.root.cert, ca.intermediate.cert} == set(store.certificates)
    assert 2 == len(store)


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("missing", "no such file or directory"),
        ("empty file", "no trust anchors"),
        ("empty directory", "no trust anchors"),
    ],
)
def test_named_file_that_cannot_be_used_is_an_error(tmp_path, kind, says):
    """Issue 12 item 7: a trust file the caller named is used or refused, never an empty store."""
    path = tmp_path / "bundle.pem"
    if kind == "empty file":
        path.write_bytes(b"")
    elif kind == "empty directory":
        path.mkdir()
    with pytest.raises(ConfigError, match=f"^trust store {re.escape(str(path))}.*{says}"):
        load_trust_store(path)


def test_oversized(tmp_path, ca, monkeypatch):
    """Files over the size cap are not read, and a named one is refused."""
    bundle = tmp_path / "big.pem"
    bundle.write_bytes(ca.root.pem)
    monkeypatch.setattr(truststore, "MAX_BUNDLE_BYTES", 10)
    with pytest.raises(ConfigError, match="larger than 10 bytes"):
        load_trust_store(bundle)


def test_unreadable_file(tmp_path, ca, monkeypatch):
    """A named file that cannot be read is refused with the reason."""
    bundle = tmp_path / "root.pem"
    bundle.write_bytes(ca.root.pem)

    def refuse(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(ConfigError, match="cannot read: Permission denied"):
        load_trust_store(bundle)


def test_unlistable_directory(tmp_path, monkeypatch):
    """A named directory that cannot be listed is refused."""

    def refuse(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "iterdir", refuse)
    with pytest.raises(ConfigError, match="cannot list: Permission denied"):
        load_trust_store(tmp_path)


def test_bad_file_in_directory_is_skipped(tmp_path, ca, monkeypatch, caplog):
    """Within a named directory one unusable file is skipped with a warning; the rest load."""
    (tmp_path / "root.pem").write_bytes(ca.root.pem)
    big = tmp_path / "zz-big.pem"
    big.write_bytes(ca.root.pem * 50)
    monkeypatch.setattr(truststore, "MAX_BUNDLE_BYTES", len(ca.root.pem) + 1)
    with caplog.at_level(logging.WARNING):
        assert 1 == len(load_trust_store(tmp_path))
    assert "zz-big.pem: larger than" in caplog.text


@pytest.mark.parametrize("fault", ["missing", "unreadable"])
def test_system_store_sources_are_best_effort(tmp_path, ca, monkeypatch, caplog, fault):
    """STS-CERT-19: an unusable SSL_CERT_FILE gives an empty store and warnings, not an exception."""
    bundle = tmp_path / "system.pem"
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    if fault == "unreadable":
        bundle.write_bytes(ca.root.pem)

        def refuse(self):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(Path, "read_bytes", refuse)
    with caplog.at_level(logging.WARNING):
        assert 0 == len(load_system_trust_store())
    assert "no trust anchors found" in caplog.text
    assert ("no such file" if fault == "missing" else "cannot read") in caplog.text


def test_system_default(monkeypatch):
    """STS-CERT-19: without overrides the system store is OpenSSL's default CA file."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    paths = ssl.get_default_verify_paths()
    if paths.cafile is None:
        pytest.skip("this system has no default CA file")
    store = load_system_trust_store()
    assert store is load_system_trust_store()
    assert load_trust_store(paths.cafile).certificates == store.certificates


def test_system_env_file(tmp_path, ca, monkeypatch):
    """STS-CERT-19: SSL_CERT_FILE overrides the system bundle."""
    bundle = tmp_path / "roots.pem"
    bundle.write_bytes(ca.root.pem)
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    assert (ca.root.cert,) == load_system_trust_store().certificates


def test_system_env_dir_and_file(tmp_path, ca, monkeypatch):
    """STS-CERT-19: SSL_CERT_DIR alone, or with SSL_CERT_FILE, is honoured."""
    directory = tmp_path / "certs"
    directory.mkdir()
    (directory / "inter.pem").write_bytes(ca.intermediate.pem)
    bundle = tmp_path / "roots.pem"
    bundle.write_bytes(ca.root.pem)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.setenv("SSL_CERT_DIR", str(directory))
    assert (ca.intermediate.cert,) == load_system_trust_store().certificates
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    assert (ca.root.cert, ca.intermediate.cert) == load_system_trust_store().certificates


def test_system_capath_fallback(tmp_path, ca, monkeypatch):
    """STS-CERT-19: with no default CA file, the default CA directory is used."""
    (tmp_path / "root.pem").write_bytes(ca.root.pem)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    fake = ssl.DefaultVerifyPaths(
        None, str(tmp_path), "SSL_CERT_FILE", "/nonexistent", "SSL_CERT_DIR", str(tmp_path)
    )
    monkeypatch.setattr(ssl, "get_default_verify_paths", lambda: fake)
    assert (ca.root.cert,) == load_system_trust_store(skip_deprecated=True).certificates


def test_skip_deprecated_is_part_of_the_key(tmp_path, ca):
    """Stores loaded with and without skip_deprecated are cached separately."""
    bundle = tmp_path / "roots.pem"
    bundle.write_bytes(ca.root.pem)
    assert load_trust_store(bundle) is not load_trust_store(bundle, skip_deprecated=True)
