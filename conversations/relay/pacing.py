"""How long a generation gathers text before it sends a delta: longer when the process is behind.

Each delta costs the same whatever it carries (a group send, a fragment, a frame per
socket), so a process near saturation can relay more text by sending fewer, larger
deltas. The event loop's lag says when: a timer that should fire after `PERIOD` fires
late by however long the loop was busy with other work. While the lag grows, every
generation waits longer between deltas, up to STREAM_FLUSH_MAX_INTERVAL, so past the
saturation point every stream keeps moving with a bounded delay instead of queueing
seconds of deltas behind one another. Quiet again, the wait falls back to
STREAM_FLUSH_INTERVAL.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from django.conf import settings

PERIOD = 0.025  # how often the loop's lag is sampled
SMOOTHING = 0.2  # weight of the newest sample: a spike alone does not double the wait
LAG_FACTOR = 2.0  # the wait grows by this many times the lag


class LoopLag:
    """The event loop's lag, smoothed: how late a timer runs, in seconds."""

    def __init__(self) -> None:
        self.lag = 0.0
        self.loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None

    def ensure_running(self, busy: Callable[[], bool]) -> None:
        """Measure on the running loop while `busy()` (some generation runs); an idle
        process wakes for nothing, and a test's new loop gets a new measurement."""
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self.loop is not loop:
            self.loop, self.lag = loop, 0.0
            self._task = loop.create_task(self._measure(busy))

    def sample(self, late: float) -> None:
        self.lag += SMOOTHING * (max(late, 0.0) - self.lag)

    async def _measure(self, busy: Callable[[], bool]) -> None:
        while busy():
            before = time.monotonic()
            await asyncio.sleep(PERIOD)
            self.sample(time.monotonic() - before - PERIOD)
        self.lag = 0.0


_loop_lag = LoopLag()


def loop_lag() -> LoopLag:
    return _loop_lag


def flush_interval() -> float:
    """How long a generation gathers text before its next delta, given the loop's lag."""
    base, cap = settings.STREAM_FLUSH_INTERVAL, settings.STREAM_FLUSH_MAX_INTERVAL
    return min(max(cap, base), base + LAG_FACTOR * _loop_lag.lag)
