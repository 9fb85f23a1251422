"""
Local faults are not remote verdicts (issue 17 item 2, issue 10 item 4; RFC 8461 §10).

When this host runs out of descriptors, buffers or memory, the DNS, DNSSEC,
HTTPS and STARTTLS adapters raise :class:`smtpsts.LocalResourceError` instead
of returning ``TXTFailure`` / ``FetchFailed`` / ``TEMPFAIL`` / a failed probe,
so the policy machine stores no fetch backoff and no negative entry for it.

The adapter tests exhaust descriptors for real: the soft ``RLIMIT_NOFILE`` of
this process is lowered to the lowest free descriptor number (every number
below it is in use, so the next ``socket()`` fails with ``EMFILE``) around one
operation against a real loopback server, then restored, and the same adapter
object must succeed at once. Nothing else runs while the limit is low: the
servers' threads are idle (the client cannot even open a socket), and the
assertions come after the limit is back.
"""

from __future__ import annotations

import asyncio
import errno
import os
import resource
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, TypeVar

import dns.message
import dns.resolver
import pytest

from certfactory import pki
from dnsserver import DNSServer
from fakes import T0, ScriptedDNS, ok, txt
from httpsservers import ENFORCE, HTTPSServer, policy
from smtpsts import LocalFaultError, LocalResourceError
from smtpsts.actions import FetchFailed, FetchFailure, FetchPolicy, HTTPResponse, TXTAnswer
from smtpsts.actions import TXTFailure as TXTFailureResult
from smtpsts.cache import PolicySource
from smtpsts.io import _faults
from smtpsts.io._faults import (
    RESOURCE_ERRNOS,
    descriptor_shortage,
    local_fault,
    lookup_fault,
    raise_local_fault,
)
from smtpsts.io._resolver import make_async_resolver, make_resolver
from smtpsts.io.dns import AsyncDNSResolver, DNSResolver, mx_result, txt_result
from smtpsts.io.dnssec import AsyncDNSSECResolver, DNSSECResolver, DNSStatus, interpret
from smtpsts.io.drivers import resolve_policy
from smtpsts.io.http import AsyncHTTPSFetcher, HTTPSFetcher
from smtpsts.io.starttls import aprobe_starttls, probe_starttls
from smtpsts.io.tls import classify_tls_error
from smtpsts.policy import Mode
from smtpsts.stores.memory import MemoryPolicyStore
from tlsservers import SMTPServer, server_context

T = TypeVar("T")

EMFILE = OSError(errno.EMFILE, os.strerror(errno.EMFILE))
DOMAIN = "example.com"
POLICY_HOST = f"mta-sts.{DOMAIN}"
MX = "mx1.example.test"
MX_PKI = pki(MX)


# --------------------------------------------------------------------------- helpers


def _lowest_free_descriptor() -> int:
    # os.fstat opens nothing (listing /proc/self/fd would use a descriptor).
    fd = 0
    while True:
        try:
            os.fstat(fd)
        except OSError:
            return fd
        fd += 1


@contextmanager
def descriptors_exhausted() -> Iterator[None]:
    """Lower the soft RLIMIT_NOFILE so that no new descriptor can be opened; restore it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (_lowest_free_descriptor(), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def starved(operation: Callable[[], T]) -> T | BaseException:
    """Run ``operation`` with no descriptor left: its result, or what it raised."""
    with descriptors_exhausted():
        try:
            return operation()
        except Exception as exc:
            return exc


async def astarved(operation: Callable[[], Awaitable[T]]) -> T | BaseException:
    """:func:`starved` for a coroutine, inside the running loop (which stays usable)."""
    with descriptors_exhausted():
        try:
            return await operation()
        except Exception as exc:
            return exc


def run_three(
    operation: Callable[[], Any], *, is_async: bool
) -> tuple[Any, BaseException | Any, Any]:
    """Run ``operation`` normally, starved of descriptors, and normally again."""
    if not is_async:
        return operation(), starved(operation), operation()

    async def scenario() -> tuple[Any, BaseException | Any, Any]:
        # The loop (epoll, self-pipe) exists before the limit is lowered.
        before = await operation()
        for _ in range(3):
            # Let the loop finish closing the first run's sockets (abort()
            # closes on the next iteration), so none frees up while starved.
            await asyncio.sleep(0)
        during = await astarved(operation)
        return before, during, await operation()

    return asyncio.run(scenario())


def assert_emfile(result: object, *words: str) -> None:
    """``result`` is a LocalResourceError for EMFILE whose detail names ``words``."""
    assert isinstance(result, LocalResourceError), result
    assert errno.EMFILE == result.errno
    assert "Too many open files" in result.detail
    for word in words:
        assert word in result.detail


# --------------------------------------------------------------------------- the classifier


class TestClassifier:
    @pytest.mark.parametrize("code", sorted(errno.errorcode))
    def test_every_errno(self, code: int) -> None:
        """Issue 17: exactly EMFILE, ENFILE, ENOBUFS and ENOMEM are local resource faults."""
        fault = local_fault(OSError(code, os.strerror(code)), operation="test")
        expected = code in {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
        assert expected == (fault is not None)
        if fault is not None:
            assert code == fault.errno

    def test_resource_errnos(self) -> None:
        """Issue 17: the set holds the four POSIX codes (and Winsock twins on Windows only)."""
        posix = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
        assert posix == RESOURCE_ERRNOS & posix
        assert set() == RESOURCE_ERRNOS - posix - {
            getattr(errno, "WSAEMFILE", None),
            getattr(errno, "WSAENOBUFS", None),
        }

    def test_detail_and_fields(self) -> None:
        """Issue 17: the detail names the operation, the host and the OS error text."""
        fault = local_fault(
            EMFILE, operation="policy fetch (connect)", host=POLICY_HOST, domain=DOMAIN
        )
        assert fault is not None
        assert (
            "local resource shortage during policy fetch (connect) of mta-sts.example.com: "
            "[Errno 24] Too many open files"
        ) == fault.detail
        assert (errno.EMFILE, DOMAIN) == (fault.errno, fault.domain)
        assert isinstance(fault, LocalFaultError)
        assert not isinstance(fault, OSError)  # no OSError handler can take it for remote

    def test_without_host(self) -> None:
        """Issue 17: without a host the detail is just the operation and the error."""
        fault = local_fault(OSError(errno.ENOBUFS, "No buffer space available"), operation="x")
        assert fault is not None
        assert "local resource shortage during x: [Errno 105] No buffer space available" == (
            fault.detail
        )

    @pytest.mark.parametrize(
        ("exc", "text"),
        [
            (MemoryError(), "out of memory (MemoryError)"),
            (MemoryError("big"), "(MemoryError: big)"),
        ],
    )
    def test_memory_error(self, exc: MemoryError, text: str) -> None:
        """Issue 17: MemoryError is a local resource fault, reported as ENOMEM."""
        fault = local_fault(exc, operation="DNS lookup")
        assert fault is not None
        assert errno.ENOMEM == fault.errno
        assert text in fault.detail

    @pytest.mark.parametrize(
        "exc",
        [
            TimeoutError("timed out"),
            ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"),
            OSError(errno.EHOSTUNREACH, "No route to host"),
            OSError("no errno"),
            socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
            socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"),
            ssl.SSLError(errno.EMFILE, "an SSL_ERROR code that happens to be 24"),
            ValueError("bad"),
            dns.resolver.NoNameservers(),
            EOFError(),
        ],
        ids=repr,
    )
    def test_remote_failures_stay_remote(self, exc: BaseException) -> None:
        """Issue 17: timeouts, refusals, NXDOMAIN-like and TLS errors are no local fault."""
        assert local_fault(exc, operation="x") is None

    def test_eai_memory(self) -> None:
        """Issue 17: getaddrinfo's EAI_MEMORY is out of memory (ENOMEM)."""
        fault = local_fault(
            socket.gaierror(socket.EAI_MEMORY, "Memory allocation failure"), operation="x"
        )
        assert fault is not None
        assert errno.ENOMEM == fault.errno

    def test_cause(self) -> None:
        """Issue 17: a fault in ``__cause__`` counts (``raise X from OSError``)."""
        outer = RuntimeError("wrapper")
        outer.__cause__ = EMFILE
        assert_emfile(local_fault(outer, operation="x"))

    def test_context(self) -> None:
        """Issue 17: a fault being handled when another was raised counts (``__context__``)."""
        try:
            try:
                raise OSError(errno.ENFILE, "Too many open files in system")  # noqa: TRY301
            except OSError:
                raise ValueError("while handling")  # noqa: B904 -- the point of the test
        except ValueError as exc:
            fault = local_fault(exc, operation="x")
        assert fault is not None
        assert errno.ENFILE == fault.errno

    def test_suppressed_context(self) -> None:
        """Issue 17: ``raise ... from None`` hides the context on purpose: not followed."""
        try:
            try:
                raise EMFILE
            except OSError:
                raise ValueError("unrelated") from None
        except ValueError as exc:
            fault = local_fault(exc, operation="x")
        assert fault is None

    def test_exception_group(self) -> None:
        """Issue 17: a member of an ExceptionGroup (create_connection(all_errors=True)) counts."""
        group = ExceptionGroup("all", [ConnectionRefusedError(111, "refused"), EMFILE])
        assert_emfile(local_fault(group, operation="x"))

    def test_dnspython_no_nameservers(self) -> None:
        """Issue 17: dnspython keeps the OSError in NoNameservers' errors, unchained."""
        query = dns.message.make_query("_mta-sts.example.com.", "TXT")
        exc = dns.resolver.NoNameservers(
            request=query,
            errors=[
                ("Do53:127.0.0.1@53", False, 53, "SERVFAIL", None),
                ("Do53:127.0.0.2@53", False, 53, EMFILE, None),
            ],
        )
        assert_emfile(local_fault(exc, operation="DNS TXT lookup"))

    def test_dnspython_lifetime_timeout(self) -> None:
        """Issue 17: a MemoryError retried until the lifetime ends sits in LifetimeTimeout."""
        exc = dns.resolver.LifetimeTimeout(
            timeout=2.0, errors=[("Do53:127.0.0.1@53", False, 53, MemoryError(), None)]
        )
        fault = local_fault(exc, operation="x")
        assert fault is not None
        assert errno.ENOMEM == fault.errno

    def test_odd_kwargs_are_ignored(self) -> None:
        """Issue 17: only (…, exception, …) tuples in ``kwargs["errors"]`` are looked into."""
        exc = ValueError("x")
        exc.kwargs = {"errors": ["not a tuple", (1, 2)]}  # type: ignore[attr-defined]
        assert local_fault(exc, operation="x") is None
        exc.kwargs = "not a dict"  # type: ignore[attr-defined]
        assert local_fault(exc, operation="x") is None

    def test_cycles_end(self) -> None:
        """Issue 17: a cyclic chain is walked once."""
        a, b = ValueError("a"), ValueError("b")
        a.__cause__, b.__cause__ = b, a
        assert local_fault(a, operation="x") is None

    def test_walk_is_bounded(self) -> None:
        """Issue 17: the walk stops after 64 exceptions (a fault deeper down is not seen)."""

        def chain(depth: int) -> BaseException:
            head: BaseException = OSError(errno.EMFILE, "deep")
            for i in range(depth):
                outer = ValueError(i)
                outer.__cause__ = head
                head = outer
            return head

        assert local_fault(chain(10), operation="x") is not None
        assert local_fault(chain(100), operation="x") is None

    def test_already_classified(self) -> None:
        """Issue 17: a LocalResourceError is returned as is (and re-raised unchained)."""
        fault = LocalResourceError("already", errno=errno.EMFILE)
        assert fault is local_fault(fault, operation="x")
        with pytest.raises(LocalResourceError) as info:
            raise_local_fault(fault, operation="x")
        assert fault is info.value
        assert info.value.__cause__ is None

    def test_raise_chains(self) -> None:
        """Issue 17: raise_local_fault chains the OS error and returns for anything else."""
        with pytest.raises(LocalResourceError) as info:
            raise_local_fault(EMFILE, operation="x", host="h", domain="d")
        assert EMFILE is info.value.__cause__
        assert "d" == info.value.domain
        assert raise_local_fault(TimeoutError(), operation="x") is None  # type: ignore[func-returns-value]


class TestDescriptorProbe:
    def test_probe(self) -> None:
        """Issue 17: the probe finds EMFILE while descriptors are exhausted, nothing after."""
        during = starved(descriptor_shortage)
        assert isinstance(during, OSError)
        assert errno.EMFILE == during.errno
        assert descriptor_shortage() is None

    def test_probe_ignores_other_errors(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Issue 17: a probe that fails for another reason (ENOENT) shows no shortage."""
        monkeypatch.setattr(_faults.os, "devnull", "/nonexistent/smtpsts-devnull")
        assert descriptor_shortage() is None

    def test_getaddrinfo_hides_emfile(self) -> None:
        """Issue 17: out of descriptors, getaddrinfo("localhost") says "not known"; we look closer."""
        failure = starved(lambda: socket.getaddrinfo("localhost", 443))
        if not isinstance(failure, socket.gaierror):
            # Depending on what glibc has loaded already, it says EAI_SYSTEM
            # with errno EMFILE, which needs no closer look.
            assert isinstance(failure, OSError)
            assert errno.EMFILE == failure.errno
            assert local_fault(failure, operation="lookup") is not None
            return
        # glibc cannot open /etc/hosts nor a socket, and answers EAI_NONAME.
        assert local_fault(failure, operation="lookup") is None  # the error alone hides it
        fault = starved(lambda: lookup_fault(failure, operation="lookup", host="localhost"))
        assert_emfile(fault, "lookup of localhost", str(failure))
        assert lookup_fault(failure, operation="lookup") is None  # descriptors to spare

    def test_lookup_fault_plain(self) -> None:
        """Issue 17: a gaierror with descriptors to spare is a remote failure."""
        assert lookup_fault(socket.gaierror(socket.EAI_NONAME, "x"), operation="x") is None
        assert lookup_fault(socket.gaierror(socket.EAI_MEMORY, "x"), operation="x") is not None


# --------------------------------------------------------------------------- pure adapter parts


class TestPureParts:
    def test_txt_result(self) -> None:
        """Issue 17: txt_result raises for a local fault, a TXTFailure for a remote one."""
        with pytest.raises(LocalResourceError):
            txt_result(EMFILE)
        with pytest.raises(LocalResourceError):
            mx_result(MemoryError())
        assert isinstance(txt_result(dns.resolver.NoNameservers()), TXTFailureResult)

    def test_interpret(self) -> None:
        """Issue 17, DANE-06: interpret raises for a local fault, TEMPFAIL for a remote one."""
        with pytest.raises(LocalResourceError) as info:
            interpret(EMFILE, "_25._tcp.mx.example", "TLSA", trusted=True)
        assert "DNS TLSA lookup of _25._tcp.mx.example" in info.value.detail
        remote = interpret(TimeoutError(), "_25._tcp.mx.example", "TLSA", trusted=True)
        assert DNSStatus.TEMPFAIL == remote.status

    def test_classify_tls_error(self) -> None:
        """Issue 17, STS-CERT-16: ENOBUFS in a handshake gets no TLS-RPT result type."""
        with pytest.raises(LocalResourceError) as info:
            classify_tls_error(OSError(errno.ENOBUFS, "No buffer space available"))
        assert errno.ENOBUFS == info.value.errno
        assert "io-error-during-handshake" == classify_tls_error(ConnectionResetError())[1]


# --------------------------------------------------------------------------- DNS adapters


@pytest.fixture(scope="module")
def dns_server() -> Iterator[DNSServer]:
    with DNSServer() as server:
        server.add(f"_mta-sts.{DOMAIN}", "TXT", '"v=STSv1; id=20260101;"')
        server.add(DOMAIN, "MX", "10 mail.example.com.")
        server.add(POLICY_HOST, "A", "127.0.0.1")
        server.add(POLICY_HOST, "AAAA", "::1")
        server.servfail("servfail.example")
        server.secure("secure.example")
        server.add("mx.secure.example", "A", "127.0.0.1")
        server.add("_25._tcp.mx.secure.example", "TLSA", "3 1 1 " + "ab" * 32)
        yield server


DNS_CALLS = {
    "lookup_txt": (f"_mta-sts.{DOMAIN}.", "DNS TXT lookup"),
    "lookup_mx": (DOMAIN, "DNS MX lookup"),
    "lookup_addresses": (POLICY_HOST, "DNS AAAA lookup"),
}


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("method", sorted(DNS_CALLS))
def test_dns_adapter(dns_server: DNSServer, kind: str, method: str) -> None:
    """
    Issue 17: out of descriptors, DNS lookups raise LocalResourceError, not TXTFailure/DNSFailure.

    dnspython reports the EMFILE of its UDP socket as NoNameservers (the OSError
    in ``errors``); the adapter tells it apart, and succeeds once the limit is back.
    """
    name, operation = DNS_CALLS[method]
    adapter = (DNSResolver if kind == "sync" else AsyncDNSResolver)([dns_server.address])
    before, during, after = run_three(
        lambda: getattr(adapter, method)(name), is_async=kind == "async"
    )
    assert_emfile(during, operation, name)
    assert isinstance(during.__cause__, dns.resolver.NoNameservers)
    assert type(before) is type(after)
    assert before == after
    assert not isinstance(after, TXTFailureResult)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_dns_remote_failure_stays_a_result(dns_server: DNSServer, kind: str) -> None:
    """Issue 17, STS-REC-17: SERVFAIL is still a TXTFailure value (nothing else changes)."""
    if kind == "sync":
        result = DNSResolver([dns_server.address]).lookup_txt("servfail.example.")
    else:
        result = asyncio.run(AsyncDNSResolver([dns_server.address]).lookup_txt("servfail.example."))
    assert isinstance(result, TXTFailureResult)


@pytest.mark.parametrize("factory", [make_resolver, make_async_resolver])
def test_resolver_configuration(factory: Callable[[], object]) -> None:
    """Issue 17: /etc/resolv.conf unreadable for EMFILE is a local fault, not "no configuration"."""
    during = starved(factory)
    assert_emfile(during, "reading the resolver configuration")
    assert isinstance(during.__cause__, dns.resolver.NoResolverConfiguration)
    factory()  # reads it fine now


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_dnssec_adapter(dns_server: DNSServer, kind: str) -> None:
    """Issue 17, DANE-08: out of descriptors, a TLSA lookup raises instead of giving TEMPFAIL."""
    cls = DNSSECResolver if kind == "sync" else AsyncDNSSECResolver
    adapter = cls([dns_server.address], trust_ad=True)
    before, during, after = run_three(
        lambda: adapter.lookup_tlsa("mx.secure.example"), is_async=kind == "async"
    )
    assert_emfile(during, "DNS A lookup of mx.secure.example")
    assert DNSStatus.SECURE == before.status == after.status
    assert before.records == after.records


# --------------------------------------------------------------------------- HTTPS adapters


@pytest.fixture(scope="module")
def https_server() -> Iterator[HTTPSServer]:
    with HTTPSServer() as server:
        server.route(POLICY_HOST, policy())
        server.route("localhost", policy())
        yield server


def _fetchers(server: HTTPSServer, kind: str, **options: Any) -> HTTPSFetcher | AsyncHTTPSFetcher:
    cls = HTTPSFetcher if kind == "sync" else AsyncHTTPSFetcher
    return cls(trust=server.trust, **options)


def _request(host: str = POLICY_HOST, port: int | None = None) -> FetchPolicy:
    authority = host if port is None else f"{host}:{port}"
    return FetchPolicy(f"https://{authority}/.well-known/mta-sts.txt", host, timeout=5.0)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_https_connect(https_server: HTTPSServer, kind: str) -> None:
    """
    Issue 17 (the loopback finding): an HTTPS connect failing with EMFILE is no FetchFailed.

    The error names the stage, the policy host, the address and "Too many
    open files", carries the policy domain, and the next fetch works at once.
    """
    fetcher = _fetchers(https_server, kind, connect_to=https_server.connect_to(POLICY_HOST))
    request = _request()
    before, during, after = run_three(lambda: fetcher.fetch(request), is_async=kind == "async")
    assert_emfile(during, "policy fetch (connect)", POLICY_HOST, f"127.0.0.1:{https_server.port}")
    assert DOMAIN == during.domain
    assert isinstance(before, HTTPResponse)
    assert (200, ENFORCE) == (before.status, before.body) == (after.status, after.body)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_https_through_dns_adapter(
    https_server: HTTPSServer, dns_server: DNSServer, kind: str
) -> None:
    """Issue 17, STS-FETCH-21: the policy host lookup out of descriptors is no DNS_ERROR."""
    resolver_cls = DNSResolver if kind == "sync" else AsyncDNSResolver
    fetcher = _fetchers(https_server, kind, resolver=resolver_cls([dns_server.address]))
    # The DNS server says ::1 and 127.0.0.1 for the policy host (the HTTPS
    # server listens on the latter).
    request = _request(port=https_server.port)
    before, during, after = run_three(lambda: fetcher.fetch(request), is_async=kind == "async")
    assert_emfile(during, "DNS AAAA lookup", POLICY_HOST)
    assert isinstance(before, HTTPResponse)
    assert (200, ENFORCE) == (after.status, after.body)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_https_getaddrinfo(https_server: HTTPSServer, kind: str) -> None:
    """
    Issue 17, STS-FETCH-21: getaddrinfo out of descriptors ("not known") is no "no such host".
    """
    fetcher = _fetchers(https_server, kind)
    request = _request("localhost", https_server.port)
    before, during, after = run_three(lambda: fetcher.fetch(request), is_async=kind == "async")
    assert isinstance(during, LocalResourceError), during
    assert errno.EMFILE == during.errno
    assert "localhost" in during.detail
    assert isinstance(before, HTTPResponse)
    assert (200, ENFORCE) == (after.status, after.body)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_https_memory_error(https_server: HTTPSServer, kind: str) -> None:
    """Issue 17: a MemoryError during a fetch (here in the revocation hook) is a local fault."""

    def revocation_check(_host: str, _der: bytes) -> str | None:
        raise MemoryError

    fetcher = _fetchers(
        https_server,
        kind,
        connect_to=https_server.connect_to(POLICY_HOST),
        revocation_check=revocation_check,
    )
    call = lambda: fetcher.fetch(_request())  # noqa: E731
    with pytest.raises(LocalResourceError) as info:
        asyncio.run(call()) if kind == "async" else call()  # type: ignore[arg-type]
    assert errno.ENOMEM == info.value.errno
    assert "MemoryError" in info.value.detail


# --------------------------------------------------------------------------- STARTTLS


@pytest.fixture(scope="module")
def smtp_server() -> Iterator[SMTPServer]:
    with SMTPServer(server_context(MX_PKI.leaf, MX_PKI.intermediate)) as server:
        yield server


@pytest.mark.parametrize(
    ("host", "target", "where"),
    [
        (MX, "127.0.0.1", f"{MX}:{{port}} (127.0.0.1)"),
        (MX, "localhost", f"{MX}:{{port}} (localhost)"),
        # No connect_to: the MX name itself is looked up (/etc/hosts here).
        ("localhost", None, "localhost:{port}: "),
    ],
)
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_starttls_probe(
    smtp_server: SMTPServer, kind: str, host: str, target: str | None, where: str
) -> None:
    """
    Issue 17, RFC 8460 §4.3: an MX connect out of descriptors is no connect-error probe.

    With a host name as target the name lookup fails first ("not known");
    that is told apart too.
    """
    probe = probe_starttls if kind == "sync" else aprobe_starttls
    call = lambda: probe(host, smtp_server.port, connect_to=target, timeout=5.0)  # noqa: E731
    before, during, after = run_three(call, is_async=kind == "async")
    assert isinstance(during, LocalResourceError), during
    assert errno.EMFILE == during.errno
    assert "STARTTLS probe (connect)" in during.detail
    assert where.format(port=smtp_server.port) in during.detail
    assert "Too many open files" in during.detail
    assert before.handshake_ok
    assert after.handshake_ok
    assert after.error is None


# --------------------------------------------------------------------------- the policy machine


class _RaisingFetcher:
    """A policy fetcher that is out of descriptors (the loopback finding, issue 17)."""

    def __init__(self) -> None:
        self.calls = 0

    def fetch(self, request: FetchPolicy) -> HTTPResponse | FetchFailed:
        self.calls += 1
        raise LocalResourceError(
            f"local resource shortage during policy fetch (connect) of {request.host}: "
            "[Errno 24] Too many open files",
            errno=errno.EMFILE,
            domain=DOMAIN,
        )


class _OKFetcher:
    def __init__(self) -> None:
        self.calls = 0

    def fetch(self, request: FetchPolicy) -> HTTPResponse | FetchFailed:
        self.calls += 1
        return ok()


RECORD = "v=STSv1; id=20260101;"


def test_driver_stores_nothing_for_a_local_fault() -> None:
    """
    Issue 10 item 4, issue 17: a fetcher's local fault leaves the store empty, and no backoff.

    The LocalResourceError propagates from resolve_policy, nothing is written
    (no 300 s fetch backoff, no negative entry), and the very next lookup
    fetches again and gets the policy.
    """
    # Expected behaviour while drivers.py changes in parallel (the lead's work):
    # the driver loop lets the adapter's exception through before the machine
    # gets a result, so nothing can be stored.
    store = MemoryPolicyStore()
    fetcher = _RaisingFetcher()
    with pytest.raises(LocalResourceError):
        resolve_policy(
            DOMAIN, resolver=ScriptedDNS([txt(RECORD)]), fetcher=fetcher, store=store, now=T0
        )
    assert 1 == fetcher.calls
    assert store.get(DOMAIN) is None
    assert 0 == len(store)
    later = T0 + timedelta(seconds=2)
    fine = _OKFetcher()
    outcome = resolve_policy(
        DOMAIN, resolver=ScriptedDNS([txt(RECORD)]), fetcher=fine, store=store, now=later
    )
    assert 1 == fine.calls  # no backoff held it back
    assert (Mode.ENFORCE, PolicySource.FRESH) == (outcome.mode, outcome.source)


def test_driver_keeps_a_cached_entry_on_a_local_fault() -> None:
    """
    Issue 10, RFC 8461 §10: a local fault during a refresh leaves the cached entry as it was.
    """
    store = MemoryPolicyStore()
    first = resolve_policy(
        DOMAIN, resolver=ScriptedDNS([txt(RECORD)]), fetcher=_OKFetcher(), store=store, now=T0
    )
    assert Mode.ENFORCE == first.mode
    cached = store.get(DOMAIN)
    with pytest.raises(LocalResourceError):
        resolve_policy(
            DOMAIN,
            resolver=ScriptedDNS([txt("v=STSv1; id=20260102;")]),  # a new id: fetch
            fetcher=_RaisingFetcher(),
            store=store,
            now=T0 + timedelta(hours=1),
        )
    assert cached == store.get(DOMAIN)


def test_driver_still_stores_a_remote_failure() -> None:
    """
    Issue 17 "nothing else changes": a real FetchFailed is still recorded by the machine.

    So the two tests above can tell the difference.
    """

    class Refused:
        def fetch(self, request: FetchPolicy) -> HTTPResponse | FetchFailed:
            return FetchFailed(FetchFailure.CONNECT_ERROR, "connection refused")

    store = MemoryPolicyStore()
    outcome = resolve_policy(
        DOMAIN, resolver=ScriptedDNS([txt(RECORD)]), fetcher=Refused(), store=store, now=T0
    )
    assert outcome.policy is None
    assert store.get(DOMAIN) is not None


def test_driver_end_to_end_descriptor_shortage(
    dns_server: DNSServer, https_server: HTTPSServer
) -> None:
    """
    Issue 17 (the loopback finding, end to end): out of descriptors, nothing is stored.

    Real DNS and HTTPS adapters out of descriptors make resolve_policy raise
    with the store untouched; once the shortage ends the same adapters give
    the enforce policy at once.
    """
    resolver = DNSResolver([dns_server.address])
    store = MemoryPolicyStore()

    def lookup(fetcher: HTTPSFetcher) -> Any:
        return resolve_policy(DOMAIN, resolver=resolver, fetcher=fetcher, store=store, now=T0)

    # Out of descriptors at the TXT lookup:
    fetcher = HTTPSFetcher(
        trust=https_server.trust, connect_to=https_server.connect_to(POLICY_HOST)
    )
    assert_emfile(starved(lambda: lookup(fetcher)), "DNS TXT lookup")
    assert 0 == len(store)
    # Out of descriptors at the fetch only (the TXT answer is already in hand):
    answer = resolver.lookup_txt(f"_mta-sts.{DOMAIN}.")
    assert isinstance(answer, TXTAnswer)

    class StarvedFetch:
        def fetch(self, request: FetchPolicy) -> HTTPResponse | FetchFailed:
            result = starved(lambda: fetcher.fetch(request))
            if isinstance(result, BaseException):
                raise result
            return result

    with pytest.raises(LocalResourceError) as info:
        resolve_policy(DOMAIN, resolver=resolver, fetcher=StarvedFetch(), store=store, now=T0)
    assert_emfile(info.value, "policy fetch (connect)")
    assert 0 == len(store)
    outcome = lookup(fetcher)
    assert (Mode.ENFORCE, PolicySource.FRESH) == (outcome.mode, outcome.source)
