"""The outbox relay: publishes committed events to a broker, in order, losing nothing.

It selects unpublished outbox rows (oldest first), publishes them and only then
marks them published; a crash in between publishes them again, which the
broker dedupes (NATS: ``Nats-Msg-Id`` = event id within the stream's duplicate
window; Kafka: consumers dedupe on the CloudEvents id). On a broker outage it
backs off exponentially (capped) and retries the same rows.

One relay is active at a time across every worker and every ``singleid
relay``: it holds a lease row in the database and renews it; another takes over
once the lease expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol, TypeVar

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from singleid.db import Database, utcnow
from singleid.events import OutboxEvent
from singleid.profile import models
from singleid.profile.config import ProfileSettings

log = logging.getLogger(__name__)
LEASE_NAME = "outbox-relay"
T = TypeVar("T")
Blocking = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class Outgoing:
    seq: int
    event_id: str
    type: str
    subject: str  # the central ID
    body: bytes  # the CloudEvents JSON


class Publisher(Protocol):
    """Where the relay sends events. ``publish`` returns only when the broker has them all."""

    async def publish(self, batch: Sequence[Outgoing]) -> None: ...

    async def close(self) -> None: ...


class NatsPublisher:
    """NATS JetStream: one subject per event type, ``Nats-Msg-Id`` = the event id."""

    def __init__(self, url: str, stream: str, subject_prefix: str = "",
                 ack_timeout: float = 5.0) -> None:
        self.url, self.stream, self.prefix = url, stream, subject_prefix
        self.ack_timeout = ack_timeout
        self._nc: Any = None
        self._js: Any = None

    def subject(self, event_type: str) -> str:
        return self.prefix + event_type

    async def _connect(self) -> Any:
        if self._nc is not None and self._nc.is_connected:
            return self._js
        await self.close()
        import nats  # noqa: PLC0415 - only when NATS is the broker
        from nats.js.api import StreamConfig  # noqa: PLC0415

        async def quiet(_exc: Exception) -> None:
            """The relay logs failures itself, once per attempt and without a traceback."""

        # We reconnect ourselves (with backoff), so nats-py tries each server once.
        self._nc = await asyncio.wait_for(nats.connect(
            self.url, connect_timeout=2, allow_reconnect=False, max_reconnect_attempts=1,
            reconnect_time_wait=0.1, error_cb=quiet, name="singleid-relay"), 5)
        self._js = self._nc.jetstream(timeout=self.ack_timeout)
        config = StreamConfig(name=self.stream, subjects=[self.subject("singleid.>")],
                              duplicate_window=120.0)
        try:
            await self._js.stream_info(self.stream)
        except Exception:
            await self._js.add_stream(config)
        return self._js

    async def publish(self, batch: Sequence[Outgoing]) -> None:
        js = await self._connect()
        acks = await asyncio.gather(*(
            js.publish(self.subject(e.type), e.body, stream=self.stream,
                       headers={"Nats-Msg-Id": e.event_id, "Ce-Id": e.event_id,
                                "Ce-Subject": e.subject})
            for e in batch), return_exceptions=True)
        failed = [a for a in acks if isinstance(a, BaseException)]
        if failed:
            await self.close()
            raise failed[0]

    async def close(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()


class KafkaPublisher:
    """Kafka through confluent-kafka: an idempotent producer, key = the central ID.

    One topic (``SINGLEID_KAFKA_TOPIC``) keyed by customer, so each customer's
    events stay in order in one partition; the CloudEvents type travels in the
    ``ce_type`` header (Kafka protocol binding).
    """

    def __init__(self, bootstrap: str, topic: str, flush_timeout: float = 10.0) -> None:
        try:
            from confluent_kafka import Producer  # noqa: PLC0415 - optional dependency
        except ImportError:
            raise RuntimeError("SINGLEID_EVENT_BROKER=kafka needs confluent-kafka: "
                               "pip install 'singleid[kafka]'") from None
        self.topic = topic
        self.flush_timeout = flush_timeout
        self._producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                                   "acks": "all", "linger.ms": 5,
                                   "client.id": f"singleid-relay-{socket.gethostname()}"})

    async def publish(self, batch: Sequence[Outgoing]) -> None:
        errors: list[str] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        for e in batch:
            self._producer.produce(self.topic, key=e.subject.encode(), value=e.body,
                                   headers=[("ce_id", e.event_id.encode()),
                                            ("ce_type", e.type.encode())],
                                   on_delivery=delivered)
        remaining = await asyncio.to_thread(self._producer.flush, self.flush_timeout)
        if remaining or errors:
            raise RuntimeError(f"kafka: {remaining} undelivered, errors: {errors[:3]}")

    async def close(self) -> None:
        await asyncio.to_thread(self._producer.flush, self.flush_timeout)


def publisher_from(settings: ProfileSettings) -> Publisher | None:
    if settings.event_broker == "nats":
        return NatsPublisher(settings.nats_url, settings.nats_stream,
                             settings.event_subject_prefix)
    if settings.event_broker == "kafka":
        return KafkaPublisher(settings.kafka_bootstrap, settings.kafka_topic)
    return None


# -- the database side (synchronous, run in the blocking pool) -------------------

def fetch_unpublished(db: Database, limit: int) -> list[Outgoing]:
    with db.read() as session:
        found = session.scalars(select(OutboxEvent).where(OutboxEvent.published_at.is_(None))
                                .order_by(OutboxEvent.seq).limit(limit)).all()
        return [Outgoing(e.seq, e.event_id, e.type, e.subject, e.to_json()) for e in found]


def mark_published(db: Database, seqs: Sequence[int]) -> None:
    with db.write() as session:
        session.execute(update(OutboxEvent).where(OutboxEvent.seq.in_(list(seqs)))
                        .values(published_at=utcnow()))


def take_lease(db: Database, holder: str, seconds: float) -> bool:
    """Take or renew the relay lease; False while someone else holds an unexpired one."""

    def work(session: Session) -> bool:
        now = utcnow()
        lease = session.get(models.RelayLease, LEASE_NAME, with_for_update=True)
        if lease is None:
            session.add(models.RelayLease(name=LEASE_NAME, holder=holder,
                                          expires_at=now + timedelta(seconds=seconds)))
            session.flush()
            return True
        if lease.holder != holder and lease.expires_at > now:
            return False
        lease.holder, lease.expires_at = holder, now + timedelta(seconds=seconds)
        return True

    return db.run_write(work)


def release_lease(db: Database, holder: str) -> None:
    with db.write() as session:
        lease = session.get(models.RelayLease, LEASE_NAME, with_for_update=True)
        if lease is not None and lease.holder == holder:
            lease.expires_at = utcnow()


# -- the loop ---------------------------------------------------------------------

class Relay:
    def __init__(self, db: Database, publisher: Publisher, settings: ProfileSettings,
                 run_blocking: Blocking | None = None) -> None:
        self.db = db
        self.publisher = publisher
        self.settings = settings
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._blocking = run_blocking or _to_thread
        self.wake = asyncio.Event()  # set after a local commit: publish without waiting a poll
        self.published = 0

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.0
        holding = False
        renew_at = 0.0
        loop = asyncio.get_running_loop()
        lease = self.settings.relay_lease_seconds
        try:
            while not stop.is_set():
                try:
                    if loop.time() >= renew_at:
                        was = holding
                        holding = await self._blocking(take_lease, self.db, self.holder, lease)
                        renew_at = loop.time() + lease / 3
                        if holding != was:
                            log.info("relay lease %s", "taken" if holding else "lost",
                                     extra={"holder": self.holder})
                    if not holding:
                        await _wait(stop, lease / 3)
                        continue
                    batch = await self._blocking(fetch_unpublished, self.db,
                                                 self.settings.relay_batch)
                    if not batch:
                        self.wake.clear()
                        await _wait_any(stop, self.wake, self.settings.relay_poll_seconds)
                        continue
                    await self.publisher.publish(batch)
                    await self._blocking(mark_published, self.db, [e.seq for e in batch])
                    self.published += len(batch)
                    backoff = 0.0
                except Exception as exc:
                    backoff = min(self.settings.relay_max_backoff_seconds,
                                  max(0.1, backoff * 2))
                    log.warning("relay: publishing failed; retrying in %.1fs", backoff,
                                extra={"error": type(exc).__name__, "detail": str(exc)[:200]})
                    await _wait(stop, backoff * random.uniform(0.8, 1.0))  # noqa: S311 - jitter
        finally:
            await self.publisher.close()
            if holding:
                with contextlib.suppress(Exception):
                    await self._blocking(release_lease, self.db, self.holder)


async def _to_thread(fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.to_thread(fn, *args)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def _wait_any(stop: asyncio.Event, wake: asyncio.Event, seconds: float) -> None:
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
