"""Steps that must finish or be undone as a whole, even when the user presses Ctrl-C in the middle.

A submission writes a registry row and then hands the job to the engine; an interrupt between the two used to
leave a row the engine never heard of. Inside `deferred_interrupt()`, a first Ctrl-C is held until the step is
done (and then raised), a second one (or SIGTERM) is raised at once so that the caller can roll back.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def deferred_interrupt(notice: str) -> Iterator[Callable[[], bool]]:
    """Hold the first SIGINT until the block ends; yields a function telling whether one came.

    A second SIGINT, or a SIGTERM, raises KeyboardInterrupt inside the block at once. Outside the main thread
    (where signal handlers cannot be set) this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    count = [0]

    def on_sigint(signum, frame):
        count[0] += 1
        if count[0] == 1:
            print(notice, file=sys.stderr, flush=True)
            return
        raise KeyboardInterrupt

    def on_sigterm(signum, frame):
        count[0] += 1
        raise KeyboardInterrupt

    old_int = signal.signal(signal.SIGINT, on_sigint)
    old_term = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield lambda: count[0] > 0
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


@contextmanager
def shielded() -> Iterator[None]:
    """No SIGINT/SIGTERM at all during a short clean-up (a roll-back must not be interrupted half-way)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    old_term = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
