"""``python -m smtpsts``: the command-line interface."""

from __future__ import annotations

from ._cli import main

raise SystemExit(main())
