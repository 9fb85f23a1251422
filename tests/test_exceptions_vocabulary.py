"""
One exception vocabulary (issue 11, Deliver 3).

Every public exception class is defined in :mod:`smtpsts.exceptions`, under
:class:`~smtpsts.exceptions.SMTPSTSError`, keeps its builtin base, and is the
same class when imported from the module that raises it.
"""

from __future__ import annotations

import importlib
import warnings

import pytest

from smtpsts import exceptions
from smtpsts.exceptions import ParseError, SMTPSTSError

#: (old module, class name, builtin base the class had before issue 11).
MOVED = [
    ("smtpsts.dane", "TLSASyntaxError", ValueError),
    ("smtpsts._entry", "CacheEntryFormatError", ValueError),
    ("smtpsts.cache", "CacheEntryFormatError", ValueError),
    ("smtpsts.tlsrpt.parse", "ReportNotAuthenticatedError", ValueError),
    ("smtpsts.postfix.protocol", "RequestSyntaxError", ValueError),
    ("smtpsts.postfix.netstring", "NetstringError", ValueError),
    ("smtpsts.postfix.config", "ConfigError", ValueError),
    ("smtpsts.vectors", "VectorFormatError", ValueError),
    ("smtpsts.smtp", "SMTPReplyError", Exception),
    ("smtpsts.tlsrpt.collect", "RowFormatError", ValueError),
    ("smtpsts.tlsrpt.inbox", "IntakeError", ValueError),
    ("smtpsts.stores._sqlite", "StoreVersionError", RuntimeError),
    ("smtpsts.lab.state", "LabStateError", ValueError),
    ("smtpsts.vectors", "VectorMismatch", AssertionError),
]


@pytest.mark.parametrize(("module", "name", "builtin"), MOVED)
def test_old_import_path_names_the_same_class(module, name, builtin):
    """Issue 11: a class moved to smtpsts.exceptions is still importable from its old module, as the same class."""
    cls = getattr(exceptions, name)
    assert cls is getattr(importlib.import_module(module), name)
    assert issubclass(cls, SMTPSTSError)
    assert issubclass(cls, builtin)


def test_every_public_exception_is_under_smtpsts_error():
    """Issue 11: every exception class exported by smtpsts.exceptions derives from SMTPSTSError."""
    names = [n for n in exceptions.__all__ if isinstance(getattr(exceptions, n), type)]
    assert [] == [n for n in names if not issubclass(getattr(exceptions, n), SMTPSTSError)]
    assert len(exceptions.__all__) == len(names)


def test_every_exported_class_is_in_the_tree_diagram():
    """Issue 11: the module docstring's hierarchy names every exported class, so it cannot drift."""
    doc = exceptions.__doc__ or ""
    assert [] == [n for n in exceptions.__all__ if f" {n} " not in doc and f" {n}\n" not in doc]


@pytest.mark.parametrize(
    "name", ["ConfigError", "VectorFormatError", "LabStateError", "StoreVersionError"]
)
def test_non_parse_errors_keep_their_message(name):
    """A class that gained SMTPSTSError as a base still reads as its message and exposes it as detail."""
    e = getattr(exceptions, name)("zones.default.strict: expected a boolean")
    assert "zones.default.strict: expected a boolean" == str(e)
    assert "zones.default.strict: expected a boolean" == e.detail
    assert not isinstance(e, ParseError)


def test_store_version_error_is_a_runtime_error_not_a_local_fault():
    """A newer store schema is the operator's to fix: a RuntimeError, not a LocalFaultError (issue 10 answers those)."""
    e = exceptions.StoreVersionError("policies.sqlite: schema 9 is newer")
    assert isinstance(e, RuntimeError)
    assert not isinstance(e, exceptions.LocalFaultError)


def test_intake_error_carries_status_and_reason():
    """RPT-SEND-26: a refused report body carries the HTTP status to answer and a reason code."""
    e = exceptions.IntakeError("not JSON", status=400, reason="not-json")
    assert (400, "not-json", ("RPT-SEND-26",)) == (e.status, e.reason, e.conformance)
    assert isinstance(e, exceptions.ReportSyntaxError)


def test_validation_error_is_deprecated():
    """Issue 11: smtpsts.exceptions.ValidationError still works for one release but warns on access."""
    with pytest.warns(DeprecationWarning, match=r"smtpsts\.exceptions\.ValidationError"):
        cls = exceptions.ValidationError
    assert "ValidationError" == cls.__name__
    assert issubclass(cls, SMTPSTSError)
    assert "validation-failure" == cls.result_type
    assert "ValidationError" not in exceptions.__all__


def test_validation_error_from_import_warns():
    """`from smtpsts.exceptions import ValidationError` warns too (PEP 562 __getattr__)."""
    with pytest.warns(DeprecationWarning, match="ValidationError is deprecated"):
        from smtpsts.exceptions import ValidationError  # noqa: F401


def test_other_names_stay_attribute_errors():
    """An unknown name is an AttributeError, without a warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(AttributeError, match="no_such_name"):
            _ = exceptions.no_such_name


def test_top_level_validation_error_is_the_same_class():
    """smtpsts.ValidationError (deprecated by smtpsts/__init__) is the class smtpsts.exceptions warns about."""
    import smtpsts

    with pytest.warns(DeprecationWarning, match=r"smtpsts\.ValidationError"):
        top = smtpsts.ValidationError
    with pytest.warns(DeprecationWarning, match="ValidationError is deprecated"):
        assert top is exceptions.ValidationError


def test_local_faults_carry_domain_and_errno():
    """Issue 10: local faults name the domain (and the OS error number) and are RuntimeErrors, never OSErrors."""
    e = exceptions.LocalResourceError("out of descriptors", errno=24, domain="example.com")
    assert (24, "example.com") == (e.errno, e.domain)
    assert isinstance(e, exceptions.LocalFaultError)
    assert isinstance(e, RuntimeError)
    assert not isinstance(e, OSError)
    assert exceptions.StoreError("locked").domain is None


def test_netstring_prefix_over_cap_is_refused_before_its_colon():
    """A socketmap length prefix already over the cap raises NetstringError (too-long) before ``:`` arrives."""
    from smtpsts.postfix.netstring import NetstringDecoder

    with pytest.raises(exceptions.NetstringError) as info:
        NetstringDecoder(max_length=1024).feed(b"1025")
    assert "too-long" == info.value.reason


def test_no_exception_class_is_defined_outside_the_exceptions_module():
    """Issue 11: one home for the public error vocabulary; other modules import and re-export.

    Public means reachable from a public module. Private control-flow exceptions (``_Retry``,
    or a class of a private module that no public module exports) never leave their code and
    may stay; CleartextLoginRefusedError is also an smtplib error, and the core never imports
    smtplib (the exceptions module's docstring says so).
    """
    import pkgutil

    import smtpsts

    modules = {}
    for info in pkgutil.walk_packages(smtpsts.__path__, "smtpsts."):
        if info.name.startswith("smtpsts.lab.scorecard") or info.name.endswith("__main__"):
            continue
        modules[info.name] = importlib.import_module(info.name)
    public = {n: m for n, m in modules.items() if not any(p.startswith("_") for p in n.split("."))}
    exported = {id(getattr(m, n, None)) for m in public.values() for n in getattr(m, "__all__", ())}
    stray = []
    for name, module in modules.items():
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__ == name
                and not value.__name__.startswith("_")
                and value.__name__ != "CleartextLoginRefusedError"
                and name != "smtpsts.exceptions"
                and (name in public or id(value) in exported)
            ):
                stray.append(f"{name}.{value.__qualname__}")
    assert [] == stray
