"""
Log output for the long-running commands: plain text or one JSON object per line.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Final

__all__ = ["TEXT_FORMAT", "JSONFormatter", "configure"]

TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
"""The text log line of ``smtpsts postfix serve``."""


class JSONFormatter(logging.Formatter):
    """
    One JSON object per record: ``time`` (RFC 3339, UTC), ``level``, ``logger``, ``message``.

    An exception adds ``exception`` (its traceback as text). Log shippers
    (journald with a JSON parser, Vector, Fluent Bit, Loki) read it as is.
    """

    def format(self, record: logging.LogRecord) -> str:
        """
        The record as one line of JSON.

        Args:
            record: The log record.

        Returns:
            The JSON text, without a newline.
        """
        doc = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def configure(level: str, log_format: str) -> None:
    """
    Send the package's logs to stderr at ``level`` in ``log_format``.

    Args:
        level: A logging level name (``info``, ``debug`` ...).
        log_format: ``text`` or ``json``.
    """
    handler = logging.StreamHandler(sys.stderr)
    formatter = JSONFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
