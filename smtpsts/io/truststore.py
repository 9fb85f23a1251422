"""
Loading trust stores from files (adapter for :class:`smtpsts.certs.TrustStore`).

The default is the system bundle that OpenSSL would use, found with
:func:`ssl.get_default_verify_paths` and overridden by the ``SSL_CERT_FILE``
and ``SSL_CERT_DIR`` environment variables (STS-CERT-19). Stores are cached by
source, so repeated calls return the same :class:`~smtpsts.certs.TrustStore`
and its verifier store is built once.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from pathlib import Path

from smtpsts.certs import TrustStore
from smtpsts.exceptions import ConfigError

__all__ = ["MAX_BUNDLE_BYTES", "clear_cache", "load_system_trust_store", "load_trust_store"]

log = logging.getLogger(__name__)

MAX_BUNDLE_BYTES = 16 * 1024 * 1024
"""Files larger than this are not read (a bundle of 150 roots is about 200 KiB)."""

_lock = threading.Lock()
_cache: dict[tuple[str, ...], TrustStore] = {}


def clear_cache() -> None:
    """Forget every cached store (for example after the bundle on disk changed)."""
    with _lock:
        _cache.clear()


def _problem(strict: bool, message: str) -> None:
    # A file the caller named is an error when it cannot be used (issue 12); the
    # system store's sources are best effort, with a warning.
    if strict:
        raise ConfigError(f"trust store {message}")
    log.warning("%s", message)


def _read(path: Path, strict: bool) -> bytes:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        _problem(strict, f"{path}: no such file or directory")
        return b""
    except OSError as exc:
        _problem(strict, f"{path}: cannot read: {exc.strerror or exc}")
        return b""
    if size > MAX_BUNDLE_BYTES:
        _problem(strict, f"{path}: larger than {MAX_BUNDLE_BYTES} bytes, skipped")
        return b""
    try:
        return path.read_bytes()
    except OSError as exc:
        _problem(strict, f"{path}: cannot read: {exc.strerror or exc}")
        return b""


def _directory_pem(path: Path, strict: bool) -> bytes:
    # An OpenSSL capath holds one PEM file per root (plus hash links to them);
    # duplicates are dropped by TrustStore. Within a directory, one bad file is
    # skipped with a warning: the directory as a whole is what was named.
    try:
        entries = sorted(p for p in path.iterdir() if p.is_file())
    except OSError as exc:
        _problem(strict, f"{path}: cannot list: {exc.strerror or exc}")
        return b""
    return b"\n".join(_read(p, strict=False) for p in entries)


def _load(sources: tuple[str, ...], *, skip_deprecated: bool, strict: bool) -> TrustStore:
    key = (*sources, f"skip_deprecated={skip_deprecated}", f"strict={strict}")
    with _lock:
        cached = _cache.get(key)
        if cached is not None:
            return cached
        parts = []
        for source in sources:
            path = Path(source)
            parts.append(_directory_pem(path, strict) if path.is_dir() else _read(path, strict))
        store = TrustStore.from_pem(
            b"\n".join(parts), source=", ".join(sources), skip_deprecated=skip_deprecated
        )
        if not len(store):
            _problem(strict, f"{', '.join(sources) or '(nothing)'}: no trust anchors found")
        _cache[key] = store
        return store


def load_trust_store(path: str | os.PathLike[str], *, skip_deprecated: bool = False) -> TrustStore:
    """
    Load a trust store from a PEM file or a directory of PEM files, cached.

    The path must be usable: a missing, unreadable or oversized file, a
    directory that cannot be listed, or one in which no certificate parses is
    an error, never an empty store that fails every check later. Within a
    directory, an unreadable file and unparsable certificates are skipped with
    a logged warning (see :meth:`smtpsts.certs.TrustStore.from_pem`).

    Args:
        path: A PEM bundle, or a directory whose regular files are PEM.
        skip_deprecated: Drop roots cryptography deprecates (serial 0).

    Returns:
        The store; the same object for the same path until :func:`clear_cache`.

    Raises:
        smtpsts.exceptions.ConfigError: The path cannot be used, or holds no
            trust anchor; the message says which and why.
    """
    return _load((os.path.realpath(path),), skip_deprecated=skip_deprecated, strict=True)


def load_system_trust_store(*, skip_deprecated: bool = False) -> TrustStore:
    """
    Load the system trust store OpenSSL would use, cached (STS-CERT-19).

    ``SSL_CERT_FILE`` and ``SSL_CERT_DIR`` take precedence (both are used when
    both are set); otherwise the default CA file, or else the default CA
    directory, of :func:`ssl.get_default_verify_paths`.

    Args:
        skip_deprecated: Drop roots cryptography deprecates (serial 0).

    Returns:
        The store (empty, with a logged warning, when nothing is found).
    """
    paths = ssl.get_default_verify_paths()
    env_file = os.environ.get(paths.openssl_cafile_env)
    env_dir = os.environ.get(paths.openssl_capath_env)
    sources: tuple[str | None, ...]
    if env_file or env_dir:
        sources = (env_file, env_dir)
    elif paths.cafile:
        sources = (paths.cafile,)
    else:
        sources = (paths.capath,)
    return _load(
        tuple(os.path.realpath(s) for s in sources if s),
        skip_deprecated=skip_deprecated,
        strict=False,
    )
