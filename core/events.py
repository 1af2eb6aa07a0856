"""The outbox table and the CloudEvents envelope.

A mutation that others care about writes its event here in the same
transaction as the change, so nothing is published that was not committed and
nothing committed is lost; a relay publishes the rows. Event data carries IDs
and names of what changed, never personal values.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, Session, mapped_column

from singleid.db import Base, utcnow

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


def emit(session: Session, *, type: str, source: str, subject: str,
         data: dict[str, Any]) -> OutboxEvent:
    """Record an event in the caller's transaction."""
    event = OutboxEvent(event_id=str(uuid.uuid4()), type=TYPE_PREFIX + type, source=source,
                        subject=subject, time=utcnow(), data=data)
    session.add(event)
    return event
