"""The profile's background tasks in each ``singleid serve`` process (``singleid.workers``).

- ``relay_worker``: the outbox relay to the configured broker. Every process runs
  one, and the database lease lets exactly one of them publish at a time.
- ``watch_notifier``: ends this process's WatchChanges streams when it stops,
  so a shutdown does not wait for subscribers.
"""

from __future__ import annotations

import asyncio
import logging

from singleid.profile.config import get_profile_settings
from singleid.profile.service.notify import changes
from singleid.profile.service.relay import Relay, publisher_from
from singleid.server.context import AppContext

log = logging.getLogger(__name__)


async def relay_worker(context: AppContext, stop: asyncio.Event) -> None:
    settings = get_profile_settings()
    publisher = publisher_from(settings)
    if publisher is None or not settings.relay_in_serve:
        return
    relay = Relay(context.db, publisher, settings, run_blocking=context.run_blocking)
    log.info("relay started", extra={"broker": settings.event_broker, "holder": relay.holder})

    async def forward_wakeups() -> None:
        while not stop.is_set():
            await changes.wait(1.0)
            relay.wake.set()

    forwarder = asyncio.create_task(forward_wakeups())
    try:
        await relay.run(stop)
    finally:
        forwarder.cancel()


async def watch_notifier(context: AppContext, stop: asyncio.Event) -> None:
    changes.stopping = stop
    await stop.wait()
    changes.notify()
