"""Shared test configuration: hypothesis profiles and the real-services rule."""

from __future__ import annotations

import os
import shutil

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("ci", max_examples=300, deadline=None, derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")

REQUIRE_SERVICES = os.environ.get("SMTPSTS_REQUIRE_SERVICES", "") not in ("", "0")


def require_binary(name: str) -> str:
    """
    Return the path of a server binary a test needs.

    Skips the test when it is missing, unless ``SMTPSTS_REQUIRE_SERVICES`` is
    set (as in CI), where a missing binary fails the test instead.
    """
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/usr/local/bin")
    if path is None:
        msg = f"{name} is not installed"
        if REQUIRE_SERVICES:
            pytest.fail(f"{msg}, and SMTPSTS_REQUIRE_SERVICES is set")
        pytest.skip(msg)
    return path
