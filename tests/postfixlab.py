"""
A private, loopback-only Postfix instance for integration tests (needs root).

It has its own ``config_directory``, ``queue_directory`` and
``data_directory`` under a temporary directory, no SMTP listener (mail is
injected with ``sendmail -C``), a log file instead of syslog, and runs in a
private mount namespace (``unshare -m``) whose ``/etc/hosts`` maps the test
domains to 127.0.0.1, so nothing on the machine is changed.

How mail is routed, and what that does and does not prove:

- ``transport_maps`` sends ``<domain>`` to ``smtp:<domain>:<port>``: the
  next hop stays the recipient domain, so Postfix looks up
  ``smtp_tls_policy_maps`` with the policy domain (RFC 8461 §3.4) exactly as
  in production, and applies our answer (``secure match=...``): certificate
  chain against ``smtp_tls_CAfile``, certificate names against the
  ``match=`` patterns, deferral on failure.
- ``smtp_host_lookup = native`` resolves the next hop through ``/etc/hosts``
  (Postfix's resolver cannot be pointed at a DNS server on another port), so
  Postfix does no MX lookup here: MX selection is not exercised, only the
  TLS policy the socketmap server hands out. (Postfix 3.7 checks the
  certificate against the ``match=`` patterns, not the MX host name; that is
  a Postfix property, not ours.)
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Self

from smtpsts.lab.scorecard.columns import postfix_main, write_postfix_config

__all__ = ["PostfixLab"]


class PostfixLab:
    """
    One private Postfix instance.

    Args:
        directory: Where its config, queue, data and log live.
        policy_map: The ``smtp_tls_policy_maps`` value.
        routes: ``{domain: port}``: mail for ``domain`` goes to
            ``127.0.0.1:port`` with ``domain`` as the next hop.
        cafile: The CA bundle the SMTP client trusts.
    """

    def __init__(
        self, directory: Path, *, policy_map: str, routes: dict[str, int], cafile: Path
    ) -> None:
        self.dir = directory
        self.config = directory / "etc"
        self.queue = directory / "spool"
        self.data = directory / "data"
        self.log = directory / "maillog"
        self.hosts = directory / "hosts"
        self.policy_map = policy_map
        self.routes = routes
        self.cafile = cafile
        self.postfix = shutil.which("postfix", path="/usr/sbin:/usr/bin") or "postfix"

    def _write(self) -> None:
        for d in (self.config, self.queue, self.data):
            d.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.data, "postfix", "postfix")
        transport = "".join(f"{d} smtp:{d}:{port}\n" for d, port in self.routes.items())
        (self.config / "transport").write_text(transport)
        self.hosts.write_text(
            "127.0.0.1 localhost\n" + "".join(f"127.0.0.1 {d}\n" for d in self.routes)
        )
        main = postfix_main(
            self.dir,
            self.cafile,
            transport_maps=f"texthash:{self.config / 'transport'}",
            smtp_host_lookup="native",
            smtp_tls_policy_maps=self.policy_map,
        )
        write_postfix_config(self.config, main)

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(args), capture_output=True, text=True, timeout=60, check=check)

    def start(self) -> Self:
        """Write the configuration and start the master in a private mount namespace."""
        self._write()
        script = (
            f"mount --bind {self.hosts} /etc/hosts && exec {self.postfix} -c {self.config} start"
        )
        result = self._run(
            "unshare", "-m", "--propagation", "private", "sh", "-c", script, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"postfix start failed: {result.stdout}{result.stderr}{self.logs()}")
        return self

    def stop(self) -> None:
        """Stop the instance (waits for the master to exit)."""
        self._run(self.postfix, "-c", str(self.config), "stop", check=False)

    def send(self, recipient: str, subject: str) -> None:
        """Inject one message with ``sendmail -C``."""
        message = f"From: lab@lab.test\nTo: {recipient}\nSubject: {subject}\n\nhello\n"
        subprocess.run(
            ["/usr/sbin/sendmail", "-C", str(self.config), "-f", "lab@lab.test", recipient],
            input=message,
            text=True,
            check=True,
            timeout=30,
        )

    def flush(self) -> None:
        """Ask for an immediate delivery attempt of the deferred queue."""
        self._run("/usr/sbin/postqueue", "-c", str(self.config), "-f", check=False)

    def queue_entries(self) -> list[dict[str, Any]]:
        """The queue as ``postqueue -j`` reports it (one dict per message)."""
        result = self._run("/usr/sbin/postqueue", "-c", str(self.config), "-j", check=False)
        return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]

    def deferred_reasons(self, domain: str) -> list[str]:
        """``delay_reason`` of the queued recipients in ``domain``."""
        return [
            r.get("delay_reason", "")
            for entry in self.queue_entries()
            for r in entry.get("recipients", [])
            if r.get("address", "").endswith("@" + domain)
        ]

    def logs(self) -> str:
        """The instance's mail log."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_for(self, predicate: Any, timeout: float = 30.0) -> bool:
        """Poll ``predicate()`` until it is true or ``timeout`` passes (flushing the queue)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.3)
        return bool(predicate())

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
