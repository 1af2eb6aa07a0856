"""In-process wake-ups: a committed change wakes this process's watchers and relay at once.

Other processes' commits are seen by polling (every 50-100 ms), so a wake-up
is an optimisation for latency, never needed for correctness.
"""

from __future__ import annotations

import asyncio
import contextlib


class Changes:
    """A broadcast "something was committed" signal for one event loop."""

    def __init__(self) -> None:
        self._event: asyncio.Event | None = None
        self.stopping: asyncio.Event | None = None

    def _current(self) -> asyncio.Event:
        if self._event is None:
            self._event = asyncio.Event()
        return self._event

    def notify(self) -> None:
        """Wake every waiter (call on the loop, after a commit)."""
        event = self._current()
        self._event = asyncio.Event()
        event.set()

    async def wait(self, timeout: float) -> None:
        """Until the next notify, or ``timeout`` seconds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._current().wait(), timeout)


changes = Changes()
