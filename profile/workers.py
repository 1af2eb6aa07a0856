"""The profile's background tasks in each ``singleid serve`` process (``singleid.workers``).

- ``relay_worker``: the outbox relay to the configured broker. Every process runs
  one, and the database lease lets exactly one of them publish at a time.
- ``watch_notifier``: ends this process's WatchChanges streams when it stops,
  so a shutdown does not wait for subscribers.
- ``outbox_pruner``: deletes events past the retention period. Every process
  runs one; deleting is idempotent, so no lease is needed.
"""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import timedelta

from singleid.db import utcnow
from singleid.events import prune
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


async def outbox_pruner(context: AppContext, stop: asyncio.Event) -> None:
    settings = get_profile_settings()
    # Unpublished events wait for the relay; without a broker nothing is ever published.
    published_only = settings.event_broker != "none"
    while True:
        # Spread the processes' runs over the interval instead of all at once.
        pause = settings.outbox_prune_interval_seconds * random.uniform(0.5, 1.0)  # noqa: S311
        try:
            await asyncio.wait_for(stop.wait(), pause)
            return
        except TimeoutError:
            pass
        cutoff = utcnow() - timedelta(hours=settings.outbox_retention_hours)
        try:
            deleted = await context.run_blocking(prune, context.db, cutoff,
                                                 published_only=published_only)
        except Exception as exc:
            log.warning("outbox pruning failed; trying again next interval",
                        extra={"error": type(exc).__name__})
            continue
        if deleted:
            log.info("outbox pruned", extra={"deleted": deleted})
