"""
A small X.509 factory for tests, built on cryptography.

Certificates are ready for ``cryptography.x509.verification``: the SAN is
non-critical, CAs carry basicConstraints and keyUsage, and every certificate
has subject and authority key identifiers. Not trustme: its SAN is always
critical and fails the verifier (DEPS.md §3).

Typical use::

    root = make("Root CA", ca=True)
    inter = make("Intermediate", issuer=root, ca=True)
    leaf = make("mx1.example.com", issuer=inter)
    pem = chain_pem(leaf, inter)  # leaf + intermediates + key, for a TLS server
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

NOT_BEFORE = datetime(2000, 1, 1, tzinfo=UTC)
"""Default start of validity."""
NOT_AFTER = datetime(2099, 12, 31, 23, 59, 59, tzinfo=UTC)
"""Default end of validity."""
NOW = datetime(2026, 1, 1, tzinfo=UTC)
"""A verification time inside the default validity."""

SERVER_AUTH = ExtendedKeyUsageOID.SERVER_AUTH
CLIENT_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH
ANY_EKU = ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE


@dataclasses.dataclass(frozen=True)
class Issued:
    """A certificate with its private key."""

    cert: x509.Certificate
    key: PrivateKey

    @property
    def pem(self) -> bytes:
        """The certificate in PEM."""
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        """The private key in unencrypted PKCS#8 PEM."""
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def new_key(
    seed: int | None = None, *, rsa_bits: int | None = None, ed25519_key: bool = False
) -> PrivateKey:
    """A P-256 key (fixed when ``seed`` is given), an RSA key of ``rsa_bits``, or Ed25519."""
    if ed25519_key:
        return ed25519.Ed25519PrivateKey.generate()
    if rsa_bits is not None:
        return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    if seed is not None:
        return ec.derive_private_key(seed, ec.SECP256R1())
    return ec.generate_private_key(ec.SECP256R1())


def make(
    cn: str | None,
    issuer: Issued | None = None,
    *,
    key: PrivateKey | None = None,
    ca: bool = False,
    san: Sequence[str | x509.GeneralName] | None = None,
    eku: Sequence[x509.ObjectIdentifier] | None = (SERVER_AUTH,),
    not_before: datetime = NOT_BEFORE,
    not_after: datetime = NOT_AFTER,
    pathlen: int | None = None,
    serial: int | None = None,
    extra: Sequence[tuple[x509.ExtensionType, bool]] = (),
) -> Issued:
    """
    Issue one certificate (self-signed when ``issuer`` is ``None``).

    Args:
        cn: Subject common name (``None`` for an empty subject).
        issuer: The issuing CA, or ``None`` for a self-signed certificate.
        key: The subject key (a fresh P-256 key by default).
        ca: Make a CA (basicConstraints CA=true, keyCertSign; no EKU, no SAN).
        san: DNS names (``str``) or general names; ``None`` means ``[cn]``
            for a leaf and none for a CA; ``()`` means no SAN extension.
        eku: Extended key usages of a leaf (``None``: no EKU extension).
        not_before: Start of validity.
        not_after: End of validity.
        pathlen: pathLenConstraint of a CA.
        serial: Serial number (random by default).
        extra: More extensions as ``(extension, critical)`` pairs.

    Returns:
        The certificate and its key.
    """
    key = key if key is not None else new_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
    signer_key = issuer.key if issuer is not None else key
    issuer_name = issuer.cert.subject if issuer is not None else subject
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()),
            critical=False,
        )
    )
    if ca:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=pathlen), critical=True
        ).add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=False, path_length=None), critical=True
        )
        if eku is not None:
            builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    names = san if san is not None else ([] if ca or not cn else [cn])
    if names:
        general = [x509.DNSName(n) if isinstance(n, str) else n for n in names]
        builder = builder.add_extension(x509.SubjectAlternativeName(general), critical=False)
    for extension, critical in extra:
        builder = builder.add_extension(extension, critical=critical)
    digest = None if isinstance(signer_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return Issued(builder.sign(signer_key, digest), key)


@dataclasses.dataclass(frozen=True)
class PKI:
    """A root, an intermediate and a leaf."""

    root: Issued
    intermediate: Issued
    leaf: Issued

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        """What a server sends: leaf then intermediate."""
        return (self.leaf.cert, self.intermediate.cert)


def pki(host: str = "mx1.example.com", *, ca_name: str = "Test", **leaf_options: object) -> PKI:
    """A fresh root -> intermediate -> leaf for ``host`` (options go to the leaf's make())."""
    root = make(f"{ca_name} Root CA", ca=True)
    intermediate = make(f"{ca_name} Intermediate CA", issuer=root, ca=True)
    leaf = make(host, issuer=intermediate, **leaf_options)  # type: ignore[arg-type]
    return PKI(root, intermediate, leaf)


def chain_pem(leaf: Issued, *intermediates: Issued) -> bytes:
    """
    PEM of the leaf, then the intermediates, then the leaf's private key.

    The format ``ssl.SSLContext.load_cert_chain`` reads from one file.
    """
    return b"".join([leaf.pem, *(i.pem for i in intermediates), leaf.key_pem])


def with_serial_zero(cert: x509.Certificate) -> bytes:
    """
    The DER of ``cert`` (issued with ``serial=1``) re-encoded with serial 0.

    cryptography refuses to build such certificates, but real root bundles
    hold some; loading one raises a ``CryptographyDeprecationWarning``. The
    signature no longer matches the TBS, which does not matter for an anchor.
    """
    der = cert.public_bytes(serialization.Encoding.DER)
    # [0] version v3, then INTEGER serial 1.
    marker = b"\xa0\x03\x02\x01\x02\x02\x01\x01"
    if marker not in der:
        raise ValueError("issue the certificate with serial=1 first")
    return der.replace(marker, marker[:-1] + b"\x00", 1)
