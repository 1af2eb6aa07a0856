"""Reading the outbox in commit order for WatchChanges, with resume tokens that miss nothing.

Outbox sequence numbers are given out at insert, but transactions commit in
another order: on PostgreSQL a reader may see seq 12 before 11 commits. So the
cursor is a watermark (every seq at or below it was delivered or is a gap that
has stayed empty for ``GAP_SECONDS``) plus the seqs above it already delivered.
A reconnecting subscriber sends its last token and gets everything after it,
including a late commit below a seq it already saw.

A sequence value taken by a rolled-back transaction never fills; after
``GAP_SECONDS`` it is let go (docs/decisions: a transaction that holds its
event uncommitted for longer than that would be missed by watchers, never by
the broker relay, which selects unpublished rows).

Old events are pruned (``SINGLEID_OUTBOX_RETENTION_HOURS``). A token that
still waits for a pruned seq cannot be resumed without a hole, so it gets
FAILED_PRECONDITION and the subscriber resyncs; a watch from the start begins
at the oldest retained event.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, select

from singleid.db import Database
from singleid.errors import FailedPrecondition, InvalidArgument
from singleid.events import TYPE_PREFIX, OutboxEvent, pruned_through
from singleid.profile.service.types import ChangeEvent

GAP_SECONDS = 5.0
MAX_SEEN = 10_000
MAX_FILTERS = 50


@dataclass
class Cursor:
    watermark: int = 0
    seen: set[int] = field(default_factory=set)
    gaps: dict[int, float] = field(default_factory=dict)  # seq -> when first noticed (monotonic)

    def token(self) -> str:
        doc = {"w": self.watermark, "s": sorted(self.seen)}
        return base64.urlsafe_b64encode(json.dumps(doc, separators=(",", ":")).encode()).decode()

    @classmethod
    def parse(cls, token: str) -> Cursor:
        if not token:
            return cls()
        try:
            doc = json.loads(base64.urlsafe_b64decode(token.encode()))
            watermark = int(doc["w"])
            seen = {int(s) for s in doc["s"]}
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise InvalidArgument("not a token this service issued", field="resume_token",
                                  reason="BAD_RESUME_TOKEN") from None
        if watermark < 0 or any(s <= watermark for s in seen) or len(seen) > MAX_SEEN:
            raise InvalidArgument("not a token this service issued", field="resume_token",
                                  reason="BAD_RESUME_TOKEN")
        return cls(watermark, seen)

    def deliver(self, seq: int) -> None:
        self.seen.add(seq)

    def advance(self, highest: int) -> None:
        """Move the watermark over delivered seqs, and over gaps older than GAP_SECONDS."""
        now = time.monotonic()
        while True:
            nxt = self.watermark + 1
            if nxt in self.seen:
                self.seen.discard(nxt)
                self.gaps.pop(nxt, None)
                self.watermark = nxt
            elif nxt <= highest:
                first = self.gaps.setdefault(nxt, now)
                if now - first < GAP_SECONDS:
                    break
                self.gaps.pop(nxt)
                self.watermark = nxt
            else:
                break


@dataclass(frozen=True)
class Filters:
    types: frozenset[str] = frozenset()  # full CloudEvents types, or without "singleid."
    attributes: frozenset[str] = frozenset()

    @classmethod
    def of(cls, types: Sequence[str], attributes: Sequence[str]) -> Filters:
        if len(types) > MAX_FILTERS or len(attributes) > MAX_FILTERS:
            raise InvalidArgument(f"at most {MAX_FILTERS} filters of each kind", field="types")
        full = {t if t.startswith(TYPE_PREFIX) else TYPE_PREFIX + t for t in types}
        return cls(frozenset(full), frozenset(attributes))

    def match(self, event: OutboxEvent) -> bool:
        if self.types and event.type not in self.types and not any(
                event.type.startswith(t.rstrip("*")) for t in self.types if t.endswith("*")):
            return False
        if self.attributes:
            named = {a.get("name") for a in event.data.get("attributes", [])
                     if isinstance(a, dict)}
            return bool(named & self.attributes)
        return True


class ChangeFeed:
    def __init__(self, db: Database) -> None:
        self._db = db

    def poll(self, cursor: Cursor, filters: Filters, limit: int = 500) -> list[ChangeEvent]:
        """Events after the cursor that match, advancing the cursor over everything read."""
        top = max(cursor.seen, default=cursor.watermark)
        # Seqs below the highest delivered one that are still open: late commits land here.
        missing = [seq for seq in range(cursor.watermark + 1, top) if seq not in cursor.seen]
        with self._db.read() as session:
            _check_not_pruned(cursor, pruned_through(session))
            found = list(session.scalars(select(OutboxEvent).where(OutboxEvent.seq > top)
                                         .order_by(OutboxEvent.seq).limit(limit)))
            for chunk in range(0, len(missing), 1000):
                found.extend(session.scalars(select(OutboxEvent).where(
                    OutboxEvent.seq.in_(missing[chunk:chunk + 1000]))))
        found.sort(key=lambda event: event.seq)
        delivered: list[ChangeEvent] = []
        for event in found:
            if event.seq in cursor.seen:
                continue
            cursor.deliver(event.seq)
            cursor.advance(event.seq)
            if filters.match(event):
                # The token after this event: resuming from it misses nothing after it.
                delivered.append(ChangeEvent(
                    id=event.event_id, type=event.type, source=event.source,
                    subject=event.subject, time=event.time, data=event.data,
                    resume_token=cursor.token(), envelope_json=event.to_json()))
        cursor.advance(max(top, found[-1].seq if found else 0))
        return delivered

    def start_token(self) -> str:
        """A token before the oldest retained event: watch everything still kept."""
        with self._db.read() as session:
            return Cursor(watermark=pruned_through(session)).token()

    def head_token(self) -> str:
        """A token at the end of the outbox now: watch only what happens from here on."""
        with self._db.read() as session:
            highest = session.scalar(select(func.max(OutboxEvent.seq))) or 0
        return Cursor(watermark=int(highest)).token()


def _check_not_pruned(cursor: Cursor, horizon: int) -> None:
    """Refuse a cursor that still waits for an event pruning may have removed."""
    if cursor.watermark >= horizon:
        return
    behind = horizon - cursor.watermark  # more than it has seen: something is surely gone
    if behind > len(cursor.seen) or any(
            seq not in cursor.seen for seq in range(cursor.watermark + 1, horizon + 1)):
        raise FailedPrecondition(
            "the events after this token are past the outbox retention; "
            "read the current profile and watch again without a token",
            field="resume_token", reason="RESUME_TOKEN_EXPIRED")
