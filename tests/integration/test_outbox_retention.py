"""Outbox pruning on SQLite and PostgreSQL, and what WatchChanges cursors do across it."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from singleid.db import Database
from singleid.errors import FailedPrecondition
from singleid.events import OutboxEvent, prune, pruned_through
from singleid.plugins import load_models
from singleid.profile.service import ChangeFeed, Cursor, Filters
from singleid.testing import ServerProcess

NOW = datetime.now(UTC)
OLD = NOW - timedelta(days=30)


def add(db: Database, seq: int, when: datetime, *, published: bool = True) -> None:
    with db.write() as session:
        session.add(OutboxEvent(seq=seq, event_id=str(uuid.uuid4()), type="singleid.t.v1",
                                source="/t", subject="s", time=when, data={},
                                published_at=when if published else None))


def horizon(db: Database) -> int:
    with db.read() as session:
        return pruned_through(session)


def remaining(db: Database) -> list[int]:
    with db.read() as session:
        return sorted(session.scalars(OutboxEvent.__table__.select().with_only_columns(
            OutboxEvent.seq)))


def test_prunes_old_events_in_batches_and_records_the_horizon(db: Database) -> None:
    for seq in range(1, 8):
        add(db, seq, OLD)
    add(db, 8, NOW)
    assert prune(db, NOW - timedelta(days=7), published_only=True, batch=3) == 7
    assert remaining(db) == [8]
    assert horizon(db) == 7
    assert prune(db, NOW - timedelta(days=7), published_only=True) == 0
    assert horizon(db) == 7


def test_an_unpublished_event_stops_pruning_while_a_broker_waits_for_it(db: Database) -> None:
    add(db, 1, OLD)
    add(db, 2, OLD, published=False)
    add(db, 3, OLD)
    assert prune(db, NOW - timedelta(days=7), published_only=True) == 1
    assert (remaining(db), horizon(db)) == ([2, 3], 1)
    assert prune(db, NOW - timedelta(days=7), published_only=False) == 2
    assert (remaining(db), horizon(db)) == ([], 3)


def test_a_cursor_that_waits_for_a_pruned_event_must_resync(db: Database) -> None:
    feed = ChangeFeed(db)
    add(db, 1, OLD)
    early = Cursor()
    assert len(feed.poll(early, Filters())) == 1  # it saw seq 1 and nothing after
    for seq in (2, 3):
        add(db, seq, OLD)
    add(db, 4, NOW)
    prune(db, NOW - timedelta(days=7), published_only=True)
    with pytest.raises(FailedPrecondition) as expired:
        feed.poll(Cursor.parse(early.token()), Filters())
    assert (expired.value.field, expired.value.reason) == ("resume_token",
                                                           "RESUME_TOKEN_EXPIRED")
    with pytest.raises(FailedPrecondition):
        feed.poll(Cursor(), Filters())


def test_a_watch_from_the_start_begins_at_the_oldest_retained_event(db: Database) -> None:
    feed = ChangeFeed(db)
    add(db, 1, OLD)
    add(db, 2, NOW)
    prune(db, NOW - timedelta(days=7), published_only=True)
    cursor = Cursor.parse(feed.start_token())
    assert [e.type for e in feed.poll(cursor, Filters())] == ["singleid.t.v1"]
    assert cursor.watermark == 2
    add(db, 3, NOW)
    assert len(feed.poll(Cursor.parse(cursor.token()), Filters())) == 1


def test_serve_prunes_on_its_own(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'singleid.db'}"
    load_models()
    db = Database(url)
    db.migrate()
    add(db, 1, OLD)
    add(db, 2, NOW)
    server = ServerProcess(data_dir=tmp_path / "data", database_url=url, env={
        "SINGLEID_OUTBOX_PRUNE_INTERVAL_SECONDS": "0.2"}).start()
    try:
        deadline = time.monotonic() + 20
        while remaining(db) != [2] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert remaining(db) == [2]
    finally:
        server.stop()
        db.dispose()
