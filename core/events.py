"""The outbox table and the CloudEvents envelope.

A mutation that others care about writes its event here in the same
transaction as the change, so nothing is published that was not committed and
nothing committed is lost; a relay publishes the rows. Event data carries IDs
and names of what changed, never personal values.

Rows are kept for a retention period and then pruned; the horizon (the highest
sequence number pruned) lets readers tell "nothing there" from "gone".
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from singleid.db import Base, Database, utcnow

SPEC_VERSION = "1.0"
TYPE_PREFIX = "singleid."


class OutboxEvent(Base):
    __tablename__ = "outbox_events"
    __table_args__ = (Index("ix_outbox_events_unpublished", "published_at", "seq"),)

    seq: Mapped[int] = mapped_column(
        # SQLite only autoincrements INTEGER PRIMARY KEY.
        BigInteger().with_variant(Integer(), "sqlite"),
        primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    type: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(String(200))
    time: Mapped[datetime]
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    published_at: Mapped[datetime | None]

    def envelope(self) -> dict[str, Any]:
        """The CloudEvents 1.0 structured-mode JSON form."""
        return {
            "specversion": SPEC_VERSION,
            "id": self.event_id,
            "type": self.type,
            "source": self.source,
            "subject": self.subject,
            "time": self.time.isoformat().replace("+00:00", "Z"),
            "datacontenttype": "application/json",
            "data": self.data,
        }

    def to_json(self) -> bytes:
        return json.dumps(self.envelope(), separators=(",", ":")).encode()


class OutboxHorizon(Base):
    """One row: every outbox seq at or below ``pruned_through`` may have been deleted."""

    __tablename__ = "outbox_horizon"

    name: Mapped[str] = mapped_column(String(16), primary_key=True)
    pruned_through: Mapped[int] = mapped_column(BigInteger)


HORIZON = "outbox"
PRUNE_BATCH = 1000


def emit(session: Session, *, type: str, source: str, subject: str,
         data: dict[str, Any]) -> OutboxEvent:
    """Record an event in the caller's transaction."""
    event = OutboxEvent(event_id=str(uuid.uuid4()), type=TYPE_PREFIX + type, source=source,
                        subject=subject, time=utcnow(), data=data)
    session.add(event)
    return event


def pruned_through(session: Session) -> int:
    """The horizon: the highest seq that pruning may have removed (0 when nothing was)."""
    row = session.get(OutboxHorizon, HORIZON)
    return row.pruned_through if row is not None else 0


def prune(db: Database, older_than: datetime, *, published_only: bool,
          batch: int = PRUNE_BATCH) -> int:
    """Delete events from before ``older_than``, oldest first, a batch per transaction.

    Only the oldest run of prunable rows goes: pruning stops at the first row that
    must stay (say, one still unpublished), so the horizon never passes a kept
    event. Returns how many rows were deleted.
    """
    deleted = 0
    while True:
        removed = db.run_write(lambda session: _prune_batch(session, older_than,
                                                            published_only, batch))
        deleted += removed
        if removed < batch:
            return deleted


def _prune_batch(session: Session, older_than: datetime, published_only: bool,
                 batch: int) -> int:
    oldest = select(OutboxEvent.seq, OutboxEvent.time, OutboxEvent.published_at) \
        .order_by(OutboxEvent.seq).limit(batch)
    prunable: list[int] = []
    for seq, time, published_at in session.execute(oldest):
        if time >= older_than or (published_only and published_at is None):
            break
        prunable.append(seq)
    if not prunable:
        return 0
    session.execute(delete(OutboxEvent).where(OutboxEvent.seq.in_(prunable)))
    horizon = session.get(OutboxHorizon, HORIZON, with_for_update=True)
    if horizon is None:
        session.add(OutboxHorizon(name=HORIZON, pruned_through=prunable[-1]))
    else:
        horizon.pruned_through = max(horizon.pruned_through, prunable[-1])
    return len(prunable)

