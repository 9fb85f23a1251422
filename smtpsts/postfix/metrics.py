"""
Prometheus metrics for ``smtpsts postfix serve`` (issue 12 item 6).

The server counts what it does in plain integers whether or not metrics are
on (:class:`LookupMetrics` on the lookup path, ``PolicyServer.stats`` for
connections, the resolver's ``stats`` for the policy cache), so the hot path
(answers from the answer cache) costs nothing more. When ``[metrics]
listen`` is set, :func:`start_metrics` serves them on ``/metrics`` in the
Prometheus text format: a collector reads the counters at scrape time. It
needs the ``metrics`` extra (``pip install smtpsts[metrics]``, which brings
``prometheus_client``).

Metric names (all prefixed ``smtpsts_``):

========================================  ====================================================
``requests_total``                        socketmap requests answered
``answer_cache_hits_total``               answered from the server's answer cache
``lookups_total{zone,answer}``            lookups by zone and answer (``secure``, ``dane``,
                                          ``notfound``, ``temp``, ``perm``)
``lookup_seconds``                        histogram of lookup time (answer-cache misses)
``policy_cache_answers_total``            lookups answered from a live cached policy at once
``policy_failures_total{result_type}``    discovery failures by RFC 8460 result type
``cached_fallbacks_total``                a cached policy applied after a failure
``lookup_timeouts_total``                 no cached policy, the zone deadline passed
``local_faults_total``                    store, descriptor or memory faults (answered TEMP)
``lookups_queued_total``                  uncached lookups that waited for a slot
``connections``                           connections open now (a gauge)
``connections_total``                     connections admitted
``connections_refused_total{reason}``     refused: ``full``, ``peer``, ``closing``
``connections_evicted_total{reason}``     evicted: ``stalled``, ``idle``
``timeouts_total{kind}``                  ``frame``, ``idle``, ``backstop``, ``dane``
``errors_total``                          internal errors (answered TEMP)
========================================  ====================================================
"""

from __future__ import annotations

import bisect
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Final

from smtpsts.postfix.protocol import Answer, AnswerKind

if TYPE_CHECKING:
    from smtpsts.postfix.server import PolicyServer

__all__ = ["LATENCY_BUCKETS", "LookupMetrics", "answer_label", "serve_collector", "start_metrics"]

log = logging.getLogger(__name__)

LATENCY_BUCKETS: Final = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Upper bounds (seconds) of the ``smtpsts_lookup_seconds`` histogram buckets."""


def answer_label(answer: Answer) -> str:
    """
    The ``answer`` label of a lookup's answer.

    Args:
        answer: The socketmap answer.

    Returns:
        ``secure`` (an MTA-STS policy), ``dane`` (DANE answered), ``notfound``,
        ``temp`` or ``perm``.
    """
    if answer.kind is AnswerKind.OK:
        return "secure" if answer.data.startswith("secure") else "dane"
    return answer.kind.value.lower()


class LookupMetrics:
    """
    Counters of the lookup path (answer-cache misses), cheap enough to keep always.

    Attributes:
        answers: Lookups by ``(zone, answer label)``.
        failures: Discovery failures by RFC 8460 result type.
        fallbacks: Lookups answered from a cached policy after a failure.
        buckets: Lookup counts per :data:`LATENCY_BUCKETS` bound (the last
            slot counts lookups slower than every bound).
        seconds: The sum of lookup times.
    """

    def __init__(self) -> None:
        self.answers: dict[tuple[str, str], int] = {}
        self.failures: dict[str, int] = {}
        self.fallbacks = 0
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.seconds = 0.0

    def observe(
        self, zone: str, answer: Answer, elapsed: float, failure: str | None, fallback: bool
    ) -> None:
        """
        Count one lookup.

        Args:
            zone: The zone name.
            answer: What was answered.
            elapsed: Seconds the lookup took.
            failure: The discovery failure's result type, if any.
            fallback: Whether a cached policy was applied after a failure.
        """
        key = (zone, answer_label(answer))
        self.answers[key] = self.answers.get(key, 0) + 1
        if failure is not None:
            self.failures[failure] = self.failures.get(failure, 0) + 1
        self.fallbacks += fallback
        self.buckets[bisect.bisect_left(LATENCY_BUCKETS, elapsed)] += 1
        self.seconds += elapsed


class _Collector:
    # A prometheus_client custom collector: reads the counters at scrape time.

    def __init__(self, server: PolicyServer) -> None:
        self.server = server

    def describe(self) -> list[Any]:
        # Nothing up front: no collection at registration time.
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (  # noqa: PLC0415 -- the optional extra
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        server = self.server
        stats = dict(server.stats)
        resolver = dict(getattr(server.resolver, "stats", {}))
        metrics = server.metrics

        def counter(name: str, doc: str, value: float) -> Any:
            return CounterMetricFamily(f"smtpsts_{name}", doc, value=value)

        yield counter("requests", "Socketmap requests answered.", stats["requests"])
        yield counter(
            "answer_cache_hits", "Requests answered from the answer cache.", stats["cached"]
        )
        lookups = CounterMetricFamily(
            "smtpsts_lookups", "Lookups by zone and answer.", labels=("zone", "answer")
        )
        for (zone, label), value in sorted(metrics.answers.items()):
            lookups.add_metric((zone, label), value)
        yield lookups
        cumulative, buckets = 0, []
        for bound, count in zip(LATENCY_BUCKETS, metrics.buckets, strict=False):
            cumulative += count
            buckets.append((repr(bound), cumulative))
        total = cumulative + metrics.buckets[-1]
        buckets.append(("+Inf", total))
        yield HistogramMetricFamily(
            "smtpsts_lookup_seconds",
            "Lookup time (answer-cache misses).",
            buckets=buckets,
            sum_value=metrics.seconds,
        )
        yield counter(
            "policy_cache_answers",
            "Lookups answered from a live cached policy at once.",
            resolver.get("cache_answers", 0),
        )
        failures = CounterMetricFamily(
            "smtpsts_policy_failures",
            "Policy discovery failures by RFC 8460 result type.",
            labels=("result_type",),
        )
        for result_type, value in sorted(metrics.failures.items()):
            failures.add_metric((result_type,), value)
        yield failures
        yield counter(
            "cached_fallbacks", "A cached policy applied after a failure.", metrics.fallbacks
        )
        yield counter(
            "lookup_timeouts",
            "Lookups with no cached policy past the zone deadline.",
            stats["timeouts"],
        )
        yield counter(
            "local_faults",
            "Store, descriptor or memory faults (answered TEMP).",
            stats["local_faults"],
        )
        yield counter(
            "lookups_queued",
            "Uncached lookups that waited for a slot.",
            resolver.get("lookups_queued", 0),
        )
        yield GaugeMetricFamily(
            "smtpsts_connections", "Connections open now.", value=server.open_connections
        )
        yield counter("connections", "Connections admitted.", stats["connections"])
        refused = CounterMetricFamily(
            "smtpsts_connections_refused", "Connections refused.", labels=("reason",)
        )
        for reason in ("full", "peer", "closing"):
            refused.add_metric((reason,), stats[f"refused_{reason}"])
        yield refused
        evicted = CounterMetricFamily(
            "smtpsts_connections_evicted", "Connections evicted.", labels=("reason",)
        )
        for reason in ("stalled", "idle"):
            evicted.add_metric((reason,), stats[f"evicted_{reason}"])
        yield evicted
        timeouts = CounterMetricFamily("smtpsts_timeouts", "Timeouts by kind.", labels=("kind",))
        for kind, key in (
            ("frame", "frame_timeouts"),
            ("idle", "idle_timeouts"),
            ("backstop", "backstop_timeouts"),
            ("dane", "dane_timeouts"),
        ):
            timeouts.add_metric((kind,), stats[key])
        yield timeouts
        yield counter("errors", "Internal errors (answered TEMP).", stats["errors"])


def start_metrics(host: str, port: int, server: PolicyServer) -> Callable[[], None]:
    """
    Serve the server's metrics on ``http://HOST:PORT/metrics`` from a thread.

    Args:
        host: The address to listen on (``127.0.0.1`` keeps it local).
        port: The port (``0``: any free port; see the log line).
        server: The policy server whose counters to export.

    Returns:
        A function that stops the listener.

    Raises:
        ModuleNotFoundError: ``prometheus_client`` is not installed (the
            ``metrics`` extra); the caller turns it into a usage error.
        OSError: The address cannot be listened on.
    """
    address, stop = serve_collector(host, port, _Collector(server))
    server.metrics_address = address
    return stop


def serve_collector(
    host: str, port: int, collector: Any
) -> tuple[tuple[str, int], Callable[[], None]]:
    """
    Serve one Prometheus collector on ``http://HOST:PORT/metrics`` from a daemon thread.

    Shared by ``smtpsts postfix serve`` and ``smtpsts tlsrpt serve``.

    Args:
        host: The address to listen on.
        port: The port (``0``: any free port).
        collector: A ``prometheus_client`` collector (an object with ``collect()``).

    Returns:
        The bound ``(host, port)`` and a function that stops the listener.

    Raises:
        ModuleNotFoundError: ``prometheus_client`` is not installed.
        OSError: The address cannot be listened on.
    """
    from wsgiref.simple_server import (  # noqa: PLC0415
        WSGIRequestHandler,
        WSGIServer,
        make_server,
    )

    from prometheus_client import CollectorRegistry, make_wsgi_app  # noqa: PLC0415

    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    app = make_wsgi_app(registry)

    class _Handler(WSGIRequestHandler):
        timeout = 5  # seconds per read: a slow scraper cannot hold the thread

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            log.debug("metrics: %s", format % args)

    class _Server(WSGIServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    httpd = make_server(host, port, app, server_class=_Server, handler_class=_Handler)
    bound_host, bound_port = httpd.server_address[:2]
    address = (str(bound_host), int(bound_port))
    thread = threading.Thread(
        target=httpd.serve_forever,
        kwargs={"poll_interval": 0.5},
        name="smtpsts-metrics",
        daemon=True,
    )
    thread.start()
    log.info("metrics on http://%s:%d/metrics", *address)

    def stop() -> None:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)

    return address, stop
