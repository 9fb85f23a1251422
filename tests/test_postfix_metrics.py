"""
Prometheus metrics and JSON logs of ``smtpsts postfix serve`` (issue 12 item 6).

The endpoint is scraped over real HTTP from a running server that answered
real lookups (a DNS server and policy hosts on loopback), and its text is
read back with prometheus_client's own parser.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dnsserver import DNSServer
from httpsservers import HTTPSServer
from smtpsts._cli._logging import JSONFormatter
from smtpsts.io.drivers import PolicyResolver
from smtpsts.postfix.config import ConfigError, load_config, metrics_address, split_address
from smtpsts.postfix.metrics import LATENCY_BUCKETS, LookupMetrics, answer_label, start_metrics
from smtpsts.postfix.protocol import Answer, AnswerKind
from smtpsts.postfix.server import run
from test_postfix_server import (  # the module's fixtures too
    SECURE,
    Client,
    dns_server,
    https,
    make_config,
    make_resolver,
    serving,
)

__all__ = ["dns_server", "https"]  # fixtures shared with test_postfix_server

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(host: str, port: int) -> Samples:
    """GET /metrics (bounded) and parse it: {(sample name, sorted labels): value}."""
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        assert 200 == response.status
        text = response.read(1 << 20).decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- counters


def test_answer_labels() -> None:
    """Issue 12 item 6: each answer kind has its label; an OK that is not ``secure`` is DANE."""
    assert "secure" == answer_label(Answer(AnswerKind.OK, "secure match=.example.com"))
    assert "dane" == answer_label(Answer(AnswerKind.OK, "dane-only"))
    assert "notfound" == answer_label(Answer(AnswerKind.NOTFOUND))
    assert "temp" == answer_label(Answer(AnswerKind.TEMP, "x"))
    assert "perm" == answer_label(Answer(AnswerKind.PERM, "x"))


def test_lookup_metrics_buckets() -> None:
    """Issue 12 item 6: lookups land in the first bucket whose bound they do not exceed."""
    metrics = LookupMetrics()
    secure = Answer(AnswerKind.OK, "secure")
    metrics.observe("default", secure, 0.001, None, False)
    metrics.observe("default", secure, 0.2, "sts-policy-fetch-error", True)
    metrics.observe("strict", Answer(AnswerKind.TEMP, "x"), 99.0, None, False)

    assert {("default", "secure"): 2, ("strict", "temp"): 1} == metrics.answers
    assert {"sts-policy-fetch-error": 1} == metrics.failures
    assert 1 == metrics.fallbacks
    assert 1 == metrics.buckets[0]  # <= 1 ms
    assert 1 == metrics.buckets[LATENCY_BUCKETS.index(0.25)]
    assert 1 == metrics.buckets[-1]  # over every bound
    assert pytest.approx(99.201) == metrics.seconds


def test_collector_reads_failures_and_fallbacks() -> None:
    """Issue 12 item 6: failures by result type and cached fallbacks reach the scrape."""
    from prometheus_client import CollectorRegistry, generate_latest

    from smtpsts.postfix.metrics import _Collector
    from smtpsts.postfix.server import PolicyServer

    server = PolicyServer(make_config(), PolicyResolver())
    server.metrics.observe(
        "default", Answer(AnswerKind.OK, "secure"), 0.01, "sts-webpki-invalid", True
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(server))
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
    }
    key = ("smtpsts_policy_failures_total", (("result_type", "sts-webpki-invalid"),))
    assert 1 == samples[key]
    assert 1 == samples[("smtpsts_cached_fallbacks_total", ())]
    assert 0 == samples[("smtpsts_connections", ())]


# --------------------------------------------------------------------------- the endpoint


@pytest.mark.asyncio
@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
async def test_endpoint_scraped(https: HTTPSServer, dns_server: DNSServer, host: str) -> None:
    """
    Issue 12 item 6: /metrics shows lookups by answer, cache hits, latency, connections.

    Two lookups of an enforce domain (one fetched, one from the answer
    cache) and one of a domain without a policy host; the scrape, over real
    HTTP on IPv4 and IPv6 loopback, counts each where it belongs.
    """
    async with serving(make_config(), make_resolver(https, dns_server)) as running:
        stop = start_metrics(host, 0, running)
        try:
            assert running.metrics_address is not None
            client = await Client.connect(running)
            assert [SECURE] == await client.ask("postfix enforce.test")
            assert [SECURE] == await client.ask("postfix enforce.test")
            assert [b"NOTFOUND "] == await client.ask("postfix nothing.test")
            samples = await asyncio.to_thread(scrape, *running.metrics_address)
            client.close()
        finally:
            stop()

    assert 3 == samples[("smtpsts_requests_total", ())]
    assert 1 == samples[("smtpsts_answer_cache_hits_total", ())]
    assert 1 == samples[("smtpsts_lookups_total", (("answer", "secure"), ("zone", "default")))]
    assert 1 == samples[("smtpsts_lookups_total", (("answer", "notfound"), ("zone", "default")))]
    assert 2 == samples[("smtpsts_lookup_seconds_count", ())]
    assert 2 == samples[("smtpsts_lookup_seconds_bucket", (("le", "+Inf"),))]
    assert 0 < samples[("smtpsts_lookup_seconds_sum", ())]
    assert 1 == samples[("smtpsts_connections", ())]
    assert 1 == samples[("smtpsts_connections_total", ())]
    assert 0 == samples[("smtpsts_connections_refused_total", (("reason", "full"),))]
    assert 0 == samples[("smtpsts_local_faults_total", ())]
    assert 0 == samples[("smtpsts_errors_total", ())]


@pytest.mark.asyncio
async def test_endpoint_stops(https: HTTPSServer, dns_server: DNSServer) -> None:
    """Issue 12 item 6: after stop() the listener is closed (connections refused)."""
    async with serving(make_config(), make_resolver(https, dns_server)) as running:
        stop = start_metrics("127.0.0.1", 0, running)
        assert running.metrics_address is not None
        host, port = running.metrics_address
        stop()
        with pytest.raises(OSError):
            await asyncio.to_thread(scrape, host, port)


@pytest.mark.asyncio
async def test_run_serves_metrics_when_configured(dns_server: DNSServer) -> None:
    """Issue 12 item 6: ``[metrics] listen`` makes run() serve /metrics until it stops."""
    port = free_port()
    config = make_config(nameservers=(dns_server.address,), metrics_listen=f"127.0.0.1:{port}")
    stop = asyncio.Event()
    task = asyncio.create_task(run(config, stop=stop))
    samples: Samples = {}
    try:
        for _ in range(100):
            with contextlib.suppress(OSError):
                samples = await asyncio.to_thread(scrape, "127.0.0.1", port)
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
    assert 0 == samples[("smtpsts_requests_total", ())]
    with pytest.raises(OSError):
        await asyncio.to_thread(scrape, "127.0.0.1", port)


# --------------------------------------------------------------------------- configuration


def test_config_sections() -> None:
    """Issue 12 items 4, 6: ``[metrics] listen`` and ``[logging] format`` are read and checked."""
    config = load_config('[metrics]\nlisten = "[::1]:9464"\n[logging]\nformat = "json"\n')
    assert "[::1]:9464" == config.metrics_listen
    assert ("::1", 9464) == split_address(config.metrics_listen)
    assert "json" == config.log_format
    assert (None, "text") == (load_config("").metrics_listen, load_config("").log_format)


@pytest.mark.parametrize("bad", ["9464", "localhost:", "127.0.0.1:99999", ":80", "h:x"])
def test_bad_metrics_address(bad: str) -> None:
    """Issue 12 item 4: a bad metrics address is a ConfigError naming the setting, no traceback."""
    with pytest.raises(ConfigError, match=r"metrics\.listen"):
        load_config(f'[metrics]\nlisten = "{bad}"\n')
    with pytest.raises(ConfigError, match="--metrics"):
        metrics_address("--metrics", bad)


def test_bad_log_format() -> None:
    """Issue 12 item 4: an unknown log format is a ConfigError listing the choices."""
    with pytest.raises(ConfigError, match="text, json"):
        load_config('[logging]\nformat = "xml"\n')


# --------------------------------------------------------------------------- logs and the CLI


def test_json_formatter() -> None:
    """Issue 12 item 6: one JSON object per record, exceptions included."""
    record = logging.LogRecord("smtpsts.x", logging.WARNING, __file__, 1, "a %s", ("b",), None)
    doc = json.loads(JSONFormatter().format(record))
    assert ("WARNING", "smtpsts.x", "a b") == (doc["level"], doc["logger"], doc["message"])
    assert doc["time"].endswith("+00:00")
    try:
        raise ValueError("boom")  # noqa: TRY301
    except ValueError:
        record.exc_info = sys.exc_info()
    assert "ValueError: boom" in json.loads(JSONFormatter().format(record))["exception"]


@pytest.fixture
def serve_command(tmp_path: Path) -> list[str]:
    """``smtpsts postfix serve`` on a unix socket in tmp_path, memory cache, no refresh."""
    return [
        sys.executable,
        "-m",
        "smtpsts",
        "postfix",
        "serve",
        "--listen",
        f"unix:{tmp_path / 's.sock'}",
        "--cache",
        "memory",
    ]


def test_cli_json_logs_and_metrics(serve_command: list[str], tmp_path: Path) -> None:
    """
    Issue 12 item 6: ``--log-format json --metrics HOST:PORT`` on the command line.

    The server's log lines on stderr are JSON objects, one names the metrics
    address, and /metrics answers while it runs.
    """
    port = free_port()
    command = [*serve_command, "--log-format", "json", "--metrics", f"127.0.0.1:{port}"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        samples: Samples = {}
        for _ in range(200):
            with contextlib.suppress(OSError):
                samples = scrape("127.0.0.1", port)
                break
            if process.poll() is not None:
                break
            asyncio.run(asyncio.sleep(0.05))
        assert 0 == samples[("smtpsts_requests_total", ())]
    finally:
        process.terminate()
        _out, err = process.communicate(timeout=15)
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert any(f"127.0.0.1:{port}/metrics" in line["message"] for line in lines), err
    assert {"time", "level", "logger", "message"} <= set(lines[0])


def test_cli_metrics_without_the_extra(serve_command: list[str]) -> None:
    """Issue 12 item 4: metrics without prometheus_client is a one-line error naming the fix."""
    code = (
        "import sys; sys.modules['prometheus_client'] = None\n"
        "from smtpsts._cli import main\n"
        f"sys.exit(main({[*serve_command[3:], '--metrics', '127.0.0.1:0']!r}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert 2 == done.returncode
    assert "pip install 'smtpsts[metrics]'" in done.stderr
    assert "Traceback" not in done.stderr
