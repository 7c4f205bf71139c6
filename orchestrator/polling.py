"""Polls on tenacity: call a check at a fixed interval until its result is what is waited for, or time is up.

The retries proper (calls that fail and are tried again) use tenacity directly where they happen.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_result, stop_after_delay, stop_never, wait_fixed

T = TypeVar("T")


def _last(state: RetryCallState):
    assert state.outcome is not None  # tenacity calls this after an attempt only
    return state.outcome.result()


def poll(check: Callable[[], T], done: Callable[[T], object], timeout_s: float | None, interval_s: float) -> T:
    """Call `check` every `interval_s` seconds until `done(result)` is true or `timeout_s` has passed since the
    first call (None: no limit; 0: one call). Returns the last result, done or not; an exception from `check`
    ends the poll at once."""
    retrying: Retrying = Retrying(
        retry=retry_if_result(lambda result: not done(result)),
        stop=stop_never if timeout_s is None else stop_after_delay(timeout_s),
        wait=wait_fixed(interval_s),
        retry_error_callback=_last,
    )
    return retrying(check)
