"""The one way tests, benchmarks and the lab wait for something: poll a predicate, never sleep a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """What was waited for did not happen in time (an AssertionError, so a test reads it as a failed check)."""


def wait_for(
    predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.005, what: str = "",
    error: type[Exception] = WaitTimeout,
) -> T:
    """Poll `predicate` until it returns something truthy, and return that; raise `error` after `timeout`.

    Polling with a short interval keeps a wait as short as what it waits for. Exceptions of the predicate count as
    "not yet" until the deadline, then are chained to the error. The timeout only keeps a broken build from
    hanging; it is never what a test checks.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = predicate()
            if result:
                return result
        except Exception as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            raise error(f"timed out after {timeout} s waiting for {what or predicate}") from last_error
        time.sleep(interval)
