"""How many launches one CKAN process has in flight.

A launch holds a web server thread until the notebook server is ready (up to
``launch_timeout``, 180 s). Without a bound, a burst of slow launches takes
every thread and the whole portal stops answering; with one, the launches
past the bound are told at once to try again, and other pages keep working.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

from . import settings
from . import hub_client

#: what a refused launch is told to wait, in seconds
RETRY_AFTER = 15

_lock = threading.Lock()
_slots: tuple[int, threading.BoundedSemaphore] | None = None


def _semaphore() -> threading.BoundedSemaphore:
    """One semaphore per process, rebuilt if the configured size changes
    (tests change it; a deployment sets it once)."""
    global _slots
    size = settings.get("max_launches_in_flight")
    with _lock:
        if _slots is None or _slots[0] != size:
            _slots = (size, threading.BoundedSemaphore(size))
        return _slots[1]


@contextmanager
def launch_slot() -> Iterator[None]:
    """Hold one launch slot; raise ``LaunchesBusy`` at once if none is free."""
    semaphore = _semaphore()
    if not semaphore.acquire(blocking=False):
        raise hub_client.LaunchesBusy(RETRY_AFTER)
    try:
        yield
    finally:
        semaphore.release()
