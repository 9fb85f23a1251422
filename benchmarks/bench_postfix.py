"""
Postfix socketmap servers side by side: smtpsts, postfix-mta-sts-resolver, the limit.

Usage: ``benchmarks/.venv/bin/python benchmarks/bench_postfix.py [--check]``
(``benchmarks/run postfix`` runs it too).

Three servers answer Postfix ``socketmap_table(5)`` lookups on loopback TCP,
in the same run, on this machine:

- ``smtpsts postfix serve`` (a subprocess from ``benchmarks/.venv``, memory
  cache, uvloop when installed);
- postfix-mta-sts-resolver 1.5.1's ``mta-sts-daemon`` (same venv, internal
  cache, uvloop), in a private mount namespace whose ``/etc/resolv.conf`` names
  the loopback DNS server (PEERS.md A.4; needs root and ``unshare``);
- the physical limit: a bare asyncio + uvloop server in this file that splits
  netstrings and answers from a dict of pre-encoded replies.

Both real servers use the DNS and HTTPS policy servers of ``bench_policy.py``
(its ``--serve`` process; the policy host listens on 127.0.0.44:443, the only
port the peer fetches from). The load comes from separate processes
(``--load``) that speak netstrings over raw sockets with ``TCP_NODELAY``:
``seq`` = strict request/response on one connection (4 processes for "4
connections", q/s = all queries / the slowest process's time), ``pipe 64`` =
one connection with 64 requests in flight. Server CPU per query is the change
of utime+stime in ``/proc/<pid>/stat`` over the 1-connection run. Each figure
is the best of ``ROUNDS`` rounds. Every loop is bounded (query counts, socket
timeouts, process deadlines).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT), str(ROOT / "tests")]

import bench_policy  # noqa: E402 -- after the path is set

HOT = "hot." + bench_policy.SUFFIX
NO_POLICY = bench_policy.NO_POLICY
QUERIES = 20_000
NEG_QUERIES = {"ours": 20_000, "peer": 3_000, "limit": 20_000}
ROUNDS = 5
DEPTH = 64
CONNS = 4
FILL = 100_000
SOCKET_TIMEOUT = 10.0
PROCESS_DEADLINE = 120.0
CLK_TCK = os.sysconf("SC_CLK_TCK")

# CPU placement, the same for the three servers. With two or more CPUs, the
# server under test runs on the first; the DNS and HTTPS servers and the
# "seq 4" and "pipe 64" clients run on the others. The "seq 1" client runs
# beside the server on its CPU: a strict request/response ping-pong across
# CPUs measures the wake-up latency between CPUs, which on a small shared
# machine varies from run to run more than the servers differ. Left to the
# scheduler, the same server measured 11k and 38k q/s in two runs.
_CPUS = sorted(os.sched_getaffinity(0))
SERVER_CPUS = set(_CPUS[:1]) if len(_CPUS) > 1 else set(_CPUS)
OTHER_CPUS = set(_CPUS[1:]) if len(_CPUS) > 1 else set(_CPUS)


def pin_server(pid: int) -> None:
    """Move every thread of a running server process to the server CPU."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            os.sched_setaffinity(int(task.name), SERVER_CPUS)


# Targets: ours / peer for q/s (at least), ours / peer for CPU (at most).
TARGETS: dict[str, tuple[str, float]] = {
    "hit seq 1": (">=", 1.3),
    "hit seq 4": (">=", 2.0),
    "hit pipe 64": (">=", 4.0),
    "CPU us/query seq 1": ("<=", 0.5),
    "no policy seq 1": (">=", 4.0),
    "no policy pipe 64": (">=", 10.0),
}


def netstring(data: bytes) -> bytes:
    """Encode one netstring."""
    return b"%d:%s," % (len(data), data)


# --------------------------------------------------------------------------- load generator


def _split(buffer: bytearray) -> list[bytes]:
    """Remove and return the complete netstrings at the start of ``buffer``."""
    out: list[bytes] = []
    while True:
        colon = buffer.find(b":")
        if colon < 0:
            return out
        length = int(buffer[:colon])
        end = colon + 1 + length
        if len(buffer) <= end:
            return out
        out.append(bytes(buffer[colon + 1 : end]))
        del buffer[: end + 1]


def load(port: int, key: str, count: int, depth: int, cpus: set[int]) -> dict[str, Any]:
    """
    Send ``count`` lookups for ``key`` with ``depth`` in flight; time them.

    The first answer is parsed as a netstring; every later answer must be the
    same bytes (one key, one answer), so the loop only counts and compares
    bytes and the load generator stays cheap next to the servers it loads.
    It runs on ``cpus``.
    """
    os.sched_setaffinity(0, cpus)
    packet = netstring(f"postfix {key}".encode())
    sock = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    started = time.perf_counter()
    sock.sendall(packet)
    buffer = bytearray()
    while not (got := _split(buffer)):
        chunk = sock.recv(65536)
        if not chunk:
            msg = "connection closed before the first answer"
            raise RuntimeError(msg)
        buffer += chunk
    expected = netstring(got[0])
    size = len(expected)
    received = 1
    if depth == 1:
        recv = sock.recv
        send = sock.sendall
        while received < count:
            send(packet)
            data = recv(65536)
            while len(data) < size:
                more = recv(65536)
                if not more:
                    break
                data += more
            if data != expected:
                msg = f"unexpected answer {data[:80]!r} after {received} answers"
                raise RuntimeError(msg)
            received += 1
    else:
        sent = min(depth, count - 1)
        sock.sendall(packet * sent)
        pending = bytearray()
        while received < count:
            chunk = sock.recv(65536)
            if not chunk:
                msg = f"connection closed after {received} answers"
                raise RuntimeError(msg)
            pending += chunk
            done = len(pending) // size
            if not done:
                continue
            if pending[: done * size] != expected * done:
                msg = f"unexpected answer after {received} answers"
                raise RuntimeError(msg)
            del pending[: done * size]
            received += done
            more = min(done, count - 1 - sent)
            if more > 0:
                sock.sendall(packet * more)
                sent += more
    elapsed = time.perf_counter() - started
    sock.close()
    return {"elapsed": elapsed, "answer": got[0].decode(), "count": count}


def run_load(
    port: int, key: str, count: int, depth: int, conns: int, *, beside: bool = False
) -> dict[str, Any]:
    """Run ``conns`` load processes at once; return q/s and the first answer."""
    cpus = SERVER_CPUS if beside else OTHER_CPUS
    command = [sys.executable, __file__, "--load", str(port), key, str(count), str(depth)]
    command.append(",".join(map(str, sorted(cpus))))
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(conns)]
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=PROCESS_DEADLINE)
        if proc.returncode:
            msg = f"load generator failed against port {port}"
            raise RuntimeError(msg)
        results.append(json.loads(out))
    slowest = max(r["elapsed"] for r in results)
    return {"qps": count * conns / slowest, "answer": results[0]["answer"]}


# --------------------------------------------------------------------------- the limit server


def limit_server(port: int, replies: dict[str, str]) -> None:
    """Answer from a dict of pre-encoded replies, nothing else."""
    import uvloop  # type: ignore[import-not-found]  # noqa: PLC0415

    table = {netstring(k.encode()): netstring(v.encode()) for k, v in replies.items()}
    notfound = netstring(b"NOTFOUND ")

    class Limit(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: Any = transport
            self.buffer = b""

        def data_received(self, data: bytes) -> None:
            buffer = self.buffer + data
            out = []
            while True:
                colon = buffer.find(b":")
                if colon < 0:
                    break
                end = colon + 2 + int(buffer[:colon])
                if len(buffer) < end:
                    break
                out.append(table.get(buffer[:end], notfound))
                buffer = buffer[end:]
            self.buffer = buffer
            if out:
                self.transport.write(b"".join(out))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Limit, "127.0.0.1", port)
        print("ready", flush=True)
        await loop.run_in_executor(None, sys.stdin.readline)
        server.close()

    uvloop.run(main())


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    """A free loopback TCP port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_port(port: int, proc: subprocess.Popen[Any]) -> None:
    """Wait (bounded) until something accepts on ``port``."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            msg = f"server on port {port} exited with {proc.returncode}"
            raise RuntimeError(msg)
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.05)
    msg = f"nothing listens on port {port}"
    raise RuntimeError(msg)


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kib(pid: int) -> int:
    """Current resident set size of ``pid``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def fill_rss() -> dict[str, int]:
    """RSS growth of a process holding FILL entries in the server's memory store."""
    from smtpsts.cache import CacheEntry  # noqa: PLC0415
    from smtpsts.policy import Policy  # noqa: PLC0415
    from smtpsts.postfix import server  # noqa: PLC0415
    from smtpsts.postfix.config import ServerConfig  # noqa: PLC0415

    store = server.build_store(ServerConfig(cache_backend="memory"))
    before = rss_kib(os.getpid())
    fetched = datetime(2026, 6, 1, tzinfo=UTC)
    for i in range(FILL):
        domain = f"d{i}.{bench_policy.SUFFIX}"
        text = (
            f"version: STSv1\nmode: enforce\nmx: mail.{domain}\nmx: *.{domain}\nmax_age: 604800\n"
        )
        store.put(
            CacheEntry(
                domain,
                "20240101T000000",
                Policy.from_text(text),
                fetched_at=fetched,
                expires_at=fetched + timedelta(days=7),
            )
        )
    return {"before": before, "after": rss_kib(os.getpid()), "peak": resource.getrusage(0)[2]}


# --------------------------------------------------------------------------- servers


def start_ours(servers: Any, port: int) -> subprocess.Popen[Any]:
    """``smtpsts postfix serve`` with a memory cache."""
    exe = Path(sys.executable).parent / "smtpsts"
    command = [str(exe), "postfix", "serve", "--listen", f"127.0.0.1:{port}"]
    command += ["--nameserver", servers.nameserver, "--cafile", servers.ca]
    command += ["--cache", "memory", "--timeout", "4", "--log-level", "error"]
    return subprocess.Popen(command, stdin=subprocess.DEVNULL)


def start_peer(servers: Any, port: int, tmp: Path) -> subprocess.Popen[Any]:
    """``mta-sts-daemon`` in a private mount namespace (PEERS.md A.4)."""
    resolv = tmp / "resolv.conf"
    resolv.write_text(f"nameserver {servers.nameserver}\n", encoding="ascii")
    config = tmp / "daemon.yml"
    config.write_text(
        f"host: 127.0.0.1\nport: {port}\nreuse_port: true\ncache_grace: 60\n"
        "cache: {type: internal, options: {cache_size: 10000}}\n"
        "default_zone: {strict_testing: false, timeout: 4}\n",
        encoding="ascii",
    )
    daemon = Path(sys.executable).parent / "mta-sts-daemon"
    script = f'mount --bind "{resolv}" /etc/resolv.conf && exec "$@"'
    command = ["unshare", "-m", "sh", "-c", script, "sh", str(daemon), "-c", str(config)]
    command += ["-v", "error"]
    env = {**os.environ, "SSL_CERT_FILE": servers.ca}
    for name in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        env.pop(name, None)
    return subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)


def start_limit(port: int, replies: dict[str, str]) -> subprocess.Popen[Any]:
    """The bare limit server in a subprocess."""
    command = [sys.executable, __file__, "--limit", str(port), json.dumps(replies)]
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    proc.stdout.readline()
    return proc


def stop(proc: subprocess.Popen[Any]) -> None:
    """Terminate one server process we started."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def measure_round(name: str, port: int, pid: int, result: dict[str, Any]) -> None:
    """One round of every figure for one server; keeps the best of each in ``result``."""
    best: dict[str, float] = result.setdefault("best", {})
    answers: dict[str, str] = result.setdefault("answers", {})

    def keep(label: str, value: float, *, lower: bool = False) -> None:
        old = best.get(label)
        if old is None or (value < old if lower else value > old):
            best[label] = value

    cpu0 = cpu_seconds(pid)
    r = run_load(port, HOT, QUERIES, 1, 1, beside=True)
    cpu = (cpu_seconds(pid) - cpu0) / QUERIES * 1e6
    keep("hit seq 1", r["qps"])
    keep("CPU us/query seq 1", cpu, lower=True)
    answers["hit"] = r["answer"]
    keep("hit seq 4", run_load(port, HOT, QUERIES // CONNS, 1, CONNS)["qps"])
    keep("hit pipe 64", run_load(port, HOT, QUERIES, DEPTH, 1)["qps"])
    neg = NEG_QUERIES[name]
    r = run_load(port, NO_POLICY, neg, 1, 1, beside=True)
    answers["none"] = r["answer"]
    keep("no policy seq 1", r["qps"])
    keep("no policy pipe 64", run_load(port, NO_POLICY, neg, DEPTH, 1)["qps"])
    result["rss_kib"] = rss_kib(pid)


def main(argv: list[str]) -> int:
    """Start the servers, measure, print the table."""
    check = "--check" in argv
    os.sched_setaffinity(0, OTHER_CPUS)
    why = bench_policy.peer_available()
    if why is not None:
        print(f"skipped: {why}")
        return 1 if check else 0
    servers = bench_policy.Servers()
    procs: list[subprocess.Popen[Any]] = []
    results: dict[str, dict[str, Any]] = {}
    tmp = Path(tempfile.mkdtemp(prefix="smtpsts-bench-pf-"))
    try:
        ports = {"ours": free_port(), "peer": free_port(), "limit": free_port()}
        ours = start_ours(servers, ports["ours"])
        procs.append(ours)
        peer = start_peer(servers, ports["peer"], tmp)
        procs.append(peer)
        first: dict[str, str] = {}
        for key, proc in (("ours", ours), ("peer", peer)):
            wait_port(ports[key], proc)
            # The first lookups fetch the policy / learn there is none.
            for domain in (HOT, NO_POLICY):
                answer = run_load(ports[key], domain, 1, 1, 1)["answer"]
                first.setdefault(domain, answer)
        # The limit answers exactly what ours answered.
        replies = {f"postfix {HOT}": first[HOT], f"postfix {NO_POLICY}": first[NO_POLICY]}
        limit = start_limit(ports["limit"], replies)
        procs.append(limit)
        pids = {"ours": ours.pid, "peer": peer.pid, "limit": limit.pid}
        for pid in pids.values():
            pin_server(pid)
        # Rounds interleave the servers, so drift in the machine's speed (other
        # tenants, frequency changes) touches all three alike.
        for _ in range(ROUNDS):
            for who in ("ours", "peer", "limit"):
                measure_round(who, ports[who], pids[who], results.setdefault(who, {}))
    finally:
        for proc in reversed(procs):
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            stop(proc)
        servers.close()
        shutil.rmtree(tmp, ignore_errors=True)

    fill = json.loads(
        subprocess.run(
            [sys.executable, __file__, "--fill"],
            capture_output=True,
            text=True,
            check=True,
            timeout=PROCESS_DEADLINE,
        ).stdout
    )

    print(f"socketmap lookups on loopback, best of {ROUNDS} rounds, {os.cpu_count()} CPUs")
    for who in ("ours", "peer"):
        a = results[who]["answers"]
        print(f"  {who} answers: hit {a['hit']!r}; no policy {a['none']!r}")
    header = f"{'figure':<20} {'smtpsts':>10} {'peer':>10} {'limit':>10}"
    header += f" {'ours/peer':>10} {'target':>8} {'limit/peer':>10} {'ours/limit':>10}  verdict"
    print(header)
    misses = []
    for label, (op, target) in TARGETS.items():
        o, p, lim = (results[w]["best"][label] for w in ("ours", "peer", "limit"))
        ratio = o / p
        ok = ratio >= target if op == ">=" else ratio <= target
        if not ok:
            misses.append(label)
        fmt = "{:>10.1f}" if label.startswith("CPU") else "{:>10.0f}"
        row = f"{label:<20} " + " ".join(fmt.format(v) for v in (o, p, lim))
        row += f" {ratio:>9.2f}x {op}{target:>5.1f}x {lim / p:>9.2f}x {o / lim:>9.2f}x"
        print(row + ("  ok" if ok else "  MISS"))
    print(
        f"RSS after the run: smtpsts {results['ours']['rss_kib'] / 1024:.1f} MiB, "
        f"peer {results['peer']['rss_kib'] / 1024:.1f} MiB, "
        f"limit {results['limit']['rss_kib'] / 1024:.1f} MiB"
    )
    grow = (fill["after"] - fill["before"]) / 1024
    print(
        f"RSS with {FILL:,} cached domains (server RSS + growth of the memory store filled "
        f"in-process through its API): {results['ours']['rss_kib'] / 1024 + grow:.1f} MiB "
        f"(store growth {grow:.1f} MiB, {grow * 1024 * 1024 / FILL:.0f} bytes/domain)"
    )
    if misses:
        print("missed targets: " + ", ".join(misses))
    return 1 if check and misses else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--load"]:
        p, k, c, d, cpu = sys.argv[2:7]
        print(json.dumps(load(int(p), k, int(c), int(d), {int(x) for x in cpu.split(",")})))
    elif sys.argv[1:2] == ["--limit"]:
        limit_server(int(sys.argv[2]), json.loads(sys.argv[3]))
    elif sys.argv[1:2] == ["--fill"]:
        print(json.dumps(fill_rss()))
    else:
        sys.exit(main(sys.argv[1:]))
