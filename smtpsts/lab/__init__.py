"""
``smtpsts lab``: an offline sandbox that shows the whole library at work.

:mod:`smtpsts.lab.servers` holds the loopback servers (DNS, HTTPS policy
host and TLS-RPT receiver, STARTTLS SMTP receivers, a CA made on the fly);
:mod:`smtpsts.lab.scenarios` the named scenarios run against them.
"""

from __future__ import annotations

__all__: list[str] = []
