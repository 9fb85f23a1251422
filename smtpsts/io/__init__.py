"""
Adapters: the parts of smtpsts that touch files, DNS, HTTPS and TLS.

Nothing here is imported by ``import smtpsts``; import the adapter you need.
"""

from __future__ import annotations
