"""
Domain name normalisation.

Every domain smtpsts accepts may be a U-label or an A-label, in any case, with
or without the trailing root dot. The core works on one form only: lower-case
A-labels without the trailing dot (RFC 8461 §3.1, §4.1; RFC 5890 for IDNA).
"""

from __future__ import annotations

import functools
import re

import idna

from .exceptions import DomainNameError

__all__ = ["MAX_LABEL", "MAX_NAME", "is_normal_name", "to_alabel", "to_ulabel"]

MAX_LABEL = 63
"""RFC 1035 §2.3.4: a label is at most 63 octets."""

MAX_NAME = 253
"""RFC 1035 §2.3.4: 255 octets on the wire is 253 characters of text without the root dot."""

# RFC 5321 §4.1.2 sub-domain = Let-dig [Ldh-str]; underscores only where allowed
# (service labels such as _mta-sts, _25, _tcp).
_LDH = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\Z")
_LDH_UNDERSCORE = re.compile(r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?\Z")
# is_normal_name(): the characters of a name in normal form, and a label too long.
_NORMAL_CHARS = re.compile(r"[a-z0-9.-]+\Z")
_LONG_LABEL = re.compile(r"[^.]{64}")


def is_normal_name(name: str, start: int = 0) -> bool:
    """
    Tell, without :func:`to_alabel`, whether a name is a host name already in normal form.

    ``True`` means ``to_alabel(name[start:]) == name[start:]``: for the usual
    ASCII name this avoids both the conversion and a place in its cache (which
    is kept for names looked up again and again). ``False`` says nothing:
    such a name may still be valid (an ``xn--`` label, upper case), so ask
    :func:`to_alabel`.

    Args:
        name: The text.
        start: Where the name starts in ``name`` (after a ``*.``, say).

    Returns:
        Whether ``name[start:]`` is lower-case letter-digit-hyphen labels of
        1 to 63 characters, at most 253 characters in all, none of them
        starting ``xn--``, and no trailing dot.
    """
    # RFC 1035 §2.3.4, RFC 5321 §4.1.2: the labels are non-empty, start and end
    # with a letter or digit, and have at most 63 characters (a shorter name has
    # no longer label). A match before ``start`` only makes the answer False.
    size = len(name) - start
    return (
        0 < size <= MAX_NAME
        and _NORMAL_CHARS.match(name, start) is not None
        and name[start] not in ".-"
        and name[-1] not in ".-"
        and ".." not in name
        and ".-" not in name
        and "-." not in name
        and "xn--" not in name
        and (size <= MAX_LABEL or _LONG_LABEL.search(name, start) is None)
    )


def to_alabel(name: str | bytes, *, allow_underscore: bool = False) -> str:
    """
    Normalise a domain name to lower-case A-labels without the trailing dot.

    Args:
        name: The name, as U-labels or A-labels, any case, with or without
            one trailing dot. Bytes must be UTF-8.
        allow_underscore: Accept ``_`` in labels (service names such as
            ``_mta-sts.example.com``); host names never have them.

    Returns:
        The normalised name, for example ``"xn--mx-lka.example"`` for
        ``"MØX.example."``.

    Raises:
        smtpsts.DomainNameError: The name is empty, has an empty label, a
            label over 63 octets, is over 253 octets, has characters a host
            name cannot have, or is not valid IDNA 2008.
    """
    if isinstance(name, bytes):
        try:
            name = name.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DomainNameError(
                f"domain name is not UTF-8: {name!r}", offset=e.start, reason="invalid-name"
            ) from None
    return _to_alabel(name, allow_underscore)


@functools.lru_cache(maxsize=4096)
def _to_alabel(name: str, allow_underscore: bool) -> str:
    text = name.removesuffix(".")
    if not text:
        raise DomainNameError(f"empty domain name: {name!r}", offset=0, reason="invalid-name")
    if not text.isascii():
        try:
            text = idna.encode(text, uts46=True, transitional=False).decode("ascii")
        except (idna.IDNAError, UnicodeError) as e:
            raise DomainNameError(
                f"domain name {name!r} is not valid IDNA 2008: {e}", reason="invalid-idna"
            ) from None
    text = text.lower()
    if len(text) > MAX_NAME:
        raise DomainNameError(
            f"domain name is {len(text)} octets long; at most {MAX_NAME} are allowed",
            offset=MAX_NAME,
            reason="name-too-long",
        )
    pattern = _LDH_UNDERSCORE if allow_underscore else _LDH
    offset = 0
    for label in text.split("."):
        if not label:
            raise DomainNameError(
                f"empty label in domain name {name!r}", offset=offset, reason="empty-label"
            )
        if len(label) > MAX_LABEL:
            raise DomainNameError(
                f"label {label[:16]!r}... in {name!r} is {len(label)} octets; at most 63 allowed",
                offset=offset,
                reason="label-too-long",
            )
        if not pattern.match(label):
            raise DomainNameError(
                f"label {label!r} in {name!r} is not a valid host name label "
                "(letters, digits and inner hyphens only)",
                offset=offset,
                reason="invalid-label",
            )
        if label.startswith("xn--"):
            try:
                idna.decode(label)
            except (idna.IDNAError, UnicodeError) as e:
                raise DomainNameError(
                    f"label {label!r} in {name!r} is not a valid A-label: {e}",
                    offset=offset,
                    reason="invalid-idna",
                ) from None
        offset += len(label) + 1
    return text


def to_ulabel(name: str) -> str:
    """
    Turn a normalised name back into U-labels, for display only.

    Args:
        name: A name as :func:`to_alabel` returns it.

    Returns:
        The name with every ``xn--`` label decoded; the input itself when it
        cannot be decoded.
    """
    try:
        return str(idna.decode(name))
    except (idna.IDNAError, UnicodeError):
        return name
