"""
Benchmark the certificate and DANE checks.

Run: ``python benchmarks/bench_certs.py [--check]`` (``--check``: exit 1
when a target is missed). Prints, for a P-256 root ->
intermediate -> leaf chain:

- ``check_certificate`` against calling cryptography's verifier directly with
  the same reused ``Store`` (target: ratio <= 1.10);
- a DANE-EE(3) ``3 1 1`` match per call (target: <= 20 us).
"""

from __future__ import annotations

import hashlib
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import PolicyBuilder

from certfactory import NOW, pki
from smtpsts.certs import TrustStore, check_certificate
from smtpsts.dane import TLSARecord, match_tlsa

HOST = "mx1.example.com"
NUMBER = 2000
REPEAT = 7


def best(func, number: int = NUMBER) -> float:
    """Best per-call time in microseconds."""
    return min(timeit.repeat(func, number=number, repeat=REPEAT)) / number * 1e6


def main() -> int:
    ca = pki(HOST)
    chain = ca.chain
    leaf, intermediates = chain[0], list(chain[1:])
    trust = TrustStore([ca.root.cert])
    store = trust.store
    assert store is not None

    def direct() -> None:
        builder = PolicyBuilder().store(store).time(NOW)
        builder.build_server_verifier(x509.DNSName(HOST)).verify(leaf, intermediates)

    verifier = PolicyBuilder().store(store).time(NOW).build_server_verifier(x509.DNSName(HOST))

    def direct_reused() -> None:
        verifier.verify(leaf, intermediates)

    def ours() -> None:
        check_certificate(chain, HOST, trust=trust, now=NOW)

    assert check_certificate(chain, HOST, trust=trust, now=NOW).ok
    # Interleave short runs and take the median ratio of each pair, so that
    # drift on a shared machine hits both sides alike.
    pairs = []
    for _ in range(15):
        d_run = best(direct, 300)
        o_run = best(ours, 300)
        pairs.append((o_run / d_run, d_run, o_run))
    pairs.sort()
    ratio, d, o = pairs[len(pairs) // 2]
    r = best(direct_reused)
    print(f"cryptography verifier, reused verifier        : {r:8.1f} us/check")
    print(f"cryptography verifier, built per check (name) : {d:8.1f} us/check")
    print(f"smtpsts.check_certificate                     : {o:8.1f} us/check")
    print(f"ratio check_certificate / direct (median pair): {ratio:8.3f}x  (target <= 1.10)")
    print(f"ratio check_certificate / reused verifier     : {o / r:8.3f}x")

    spki = leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = TLSARecord(3, 1, 1, hashlib.sha256(spki).digest())

    def dane_ee() -> None:
        match_tlsa([record], chain, names=[HOST], now=NOW)

    assert match_tlsa([record], chain, names=[HOST], now=NOW).authenticated
    e = best(dane_ee, number=20000)
    print(f"DANE-EE 3 1 1 match_tlsa                      : {e:8.1f} us/call  (target <= 20)")
    ta = TLSARecord(
        2,
        0,
        1,
        hashlib.sha256(ca.intermediate.cert.public_bytes(serialization.Encoding.DER)).digest(),
    )

    def dane_ta() -> None:
        match_tlsa([ta], chain, names=[HOST], now=NOW)

    assert match_tlsa([ta], chain, names=[HOST], now=NOW).authenticated
    print(f"DANE-TA 2 0 1 match_tlsa (chain of 2)         : {best(dane_ta, 500):8.1f} us/call")
    missed = [name for name, hit in (("ratio", ratio <= 1.10), ("dane-ee", e <= 20)) if not hit]
    if missed:
        print(f"targets missed: {', '.join(missed)}")
    return 1 if missed and "--check" in sys.argv[1:] else 0


if __name__ == "__main__":
    raise SystemExit(main())
