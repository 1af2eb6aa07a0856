"""The voice domain's background task in each ``singleid serve`` process (``singleid.workers``).

``consent_withdrawals``: follows the profile's consent events and deletes the
voiceprint of every customer who withdraws biometric consent. It wakes on this
process's own commits and polls every second for the other processes'.
"""

from __future__ import annotations

import asyncio
import logging

from singleid.profile.service.notify import changes
from singleid.server.context import AppContext
from singleid.voiceprint.service import ConsentWithdrawals

POLL_SECONDS = 1.0
log = logging.getLogger(__name__)


async def consent_withdrawals(context: AppContext, stop: asyncio.Event) -> None:
    withdrawals = ConsentWithdrawals(context.db)
    while not stop.is_set():
        try:
            while await context.run_blocking(withdrawals.poll) and not stop.is_set():
                pass  # a backlog (the first start reads the outbox from its beginning)
        except Exception:
            log.exception("reading the profile's consent events failed; retrying")
        await changes.wait(POLL_SECONDS)
