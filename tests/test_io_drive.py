"""Tests for smtpsts.io._drive: the one pair of driver loops (issue 11)."""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any

import pytest

from smtpsts import LocalResourceError
from smtpsts.io._drive import adrive, drive


def adder(closed: list[bool]) -> Generator[str, Any, int]:
    """Ask for two numbers and return their sum; an OSError for one counts as 0."""
    try:
        first = yield "first"
        try:
            second = yield "second"
        except OSError:
            second = 0
        return int(first) + int(second)
    finally:
        closed.append(True)


def test_drive_sends_results_and_returns() -> None:
    """Issue 11: drive performs each request in order and returns the conversation's value."""
    closed: list[bool] = []
    asked: list[str] = []

    def perform(request: str) -> int:
        asked.append(request)
        return {"first": 2, "second": 3}[request]

    assert 5 == drive(adder(closed), perform)
    assert (["first", "second"], [True]) == (asked, closed)


def test_drive_throws_into_the_conversation() -> None:
    """Issue 11: a failure of perform is thrown in where it was asked; caught ones continue."""

    def perform(request: str) -> int:
        if request == "second":
            raise ConnectionResetError("reset")
        return 7

    assert 7 == drive(adder([]), perform)


def test_drive_lets_uncaught_faults_out() -> None:
    """Issue 11, SEC-52: a failure the conversation does not catch comes out unchanged; it is closed."""
    closed: list[bool] = []

    def perform(request: str) -> int:
        raise LocalResourceError("out of descriptors", errno=24)

    with pytest.raises(LocalResourceError, match="out of descriptors"):
        drive(adder(closed), perform)
    assert [True] == closed


def test_adrive_matches_drive() -> None:
    """Issue 11: adrive is drive with an awaited perform, including thrown failures."""

    async def perform(request: str) -> int:
        await asyncio.sleep(0)
        if request == "second":
            raise OSError("unreachable")
        return 4

    async def fault(request: str) -> int:
        raise LocalResourceError("out of memory", errno=12)

    assert 4 == asyncio.run(adrive(adder([]), perform))
    closed: list[bool] = []
    with pytest.raises(LocalResourceError):
        asyncio.run(adrive(adder(closed), fault))
    assert [True] == closed


def test_adrive_cancelled_closes_the_conversation() -> None:
    """Issue 11: cancelling adrive ends the loop without resuming the conversation, and closes it."""
    closed: list[bool] = []

    async def perform(request: str) -> int:
        await asyncio.sleep(10)
        return 1

    async def main() -> None:
        task = asyncio.create_task(adrive(adder(closed), perform))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert [True] == closed
