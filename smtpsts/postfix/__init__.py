"""
The Postfix TLS policy server: ``smtp_tls_policy_maps = socketmap:...``.

- :mod:`smtpsts.postfix.netstring`: the socketmap framing (sans-I/O).
- :mod:`smtpsts.postfix.protocol`: requests, key normalisation and answers
  built from a :class:`~smtpsts.cache.PolicyOutcome` (pure).
- :mod:`smtpsts.postfix.config`: the TOML configuration, and the converter
  from a postfix-mta-sts-resolver YAML file.
- :mod:`smtpsts.postfix.server`: the asyncio server (``smtpsts postfix serve``),
  with :mod:`smtpsts.postfix.dane_checker` (the TLSA check behind DANE answers)
  and :mod:`smtpsts.postfix.metrics` (Prometheus).

Only the first three are pure; importing this package imports none of them.
"""

from __future__ import annotations
