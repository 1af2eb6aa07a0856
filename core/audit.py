"""The audit trail: who did what to whom, when, from where, and how it ended.

Every record names an actor (``client:<id>`` or ``operator:<id>``), an action
(a gRPC method or a page action), the customer ID and the attribute *names* it
touched, the peer address and the outcome (``OK`` or a gRPC status code name).
Never a personal value: the entry has no field that could carry one, and the
fields it has only accept identifiers.

The records form one hash chain. Each stores the previous record's hash and
its own, SHA-256 over a canonical JSON serialisation (:func:`record_hash`),
and numbers follow each other without gaps. Appends are serialised on a
one-row chain head (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite's write
transactions, ``BEGIN IMMEDIATE``, are serialised already), so concurrent
appenders in any number of processes extend one chain and never fork it.
:func:`verify` walks the chain and names the first record that was changed
or removed; see docs/decisions/0921.

Writing: :func:`append` (a transaction of its own), :func:`append_in` (inside
the change's own write transaction), :func:`append_many` (a batch, one lock),
and :class:`GroupAppender` (group commit for callers on an event loop).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Integer, LargeBinary, String, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, Session, mapped_column

from singleid.db import Base, Database, utcnow
from singleid.errors import FieldViolation, InvalidArgument

HASH_BYTES = 32
GENESIS_HASH = bytes(HASH_BYTES)  # the "previous hash" of record 1
HEAD_ID = 1
OK = "OK"
# The gRPC status code names (grpc.StatusCode), without importing grpc into core.
STATUS_NAMES = frozenset({
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
    "UNAUTHENTICATED",
})
MAX_PEER = 200
MAXATTRIBUTES = 200
EXPORT_BATCH = 1000
_ACTOR = re.compile(r"(client|operator):[A-Za-z0-9._@-]{1,128}")
_ACTION = re.compile(r"[A-Za-z0-9_./:-]{1,200}")
# What an entry may name as a customer ID and as attributes (identifiers, never values).
CUSTOMER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
ATTRIBUTE = re.compile(r"[a-z][a-z0-9_.]{0,99}")
_SEQ_TYPE = BigInteger().with_variant(Integer(), "sqlite")


@dataclass(frozen=True)
class AuditEntry:
    """One thing that happened, before it is numbered and chained."""

    actor: str
    action: str
    outcome: str
    peer: str
    customer_id: str | None = None
    attributes: tuple[str, ...] = ()


class AuditRecord(Base):
    __tablename__ = "audit_records"

    seq: Mapped[int] = mapped_column(_SEQ_TYPE, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(140))
    action: Mapped[str] = mapped_column(String(200))
    outcome: Mapped[str] = mapped_column(String(32))
    peer: Mapped[str] = mapped_column(String(MAX_PEER))
    customer_id: Mapped[str | None] = mapped_column(String(64), index=True)
    attributes: Mapped[list[str]] = mapped_column(JSON)
    prev_hash: Mapped[bytes] = mapped_column(LargeBinary(HASH_BYTES))
    hash: Mapped[bytes] = mapped_column(LargeBinary(HASH_BYTES))


class AuditChainHead(Base):
    """The one row every append locks: the last record's number and hash."""

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(_SEQ_TYPE)
    hash: Mapped[bytes] = mapped_column(LargeBinary(HASH_BYTES))


# -- appending ---------------------------------------------------------------------------------


def append(db: Database, entry: AuditEntry) -> None:
    """Append one record in a transaction of its own."""
    append_many(db, (entry,))


def append_many(db: Database, entries: Sequence[AuditEntry]) -> None:
    """Append several records in one transaction: one lock of the head for the batch."""
    checked = [_checked(e) for e in entries]
    if checked:
        db.run_write(lambda session: _append(session, checked))


def append_in(session: Session, entry: AuditEntry) -> None:
    """Append inside the caller's write transaction: the record commits with the change.

    The chain head stays locked until that transaction ends, so keep it short.
    """
    _append(session, [_checked(entry)])


class GroupAppender:
    """Group commit for callers on an event loop (the gRPC interceptor, the pages).

    ``await group.append(entry)`` returns once the entry is committed, like
    :func:`append`, but entries that arrive while a batch is being written wait
    for the next one and share its transaction: one lock of the chain head and
    one commit for all of them. Under load, batches grow by themselves; alone,
    an entry is written at once. Runs the writes on ``executor`` (the server's
    bounded pool), never on the loop.
    """

    def __init__(self, db: Database, executor: Executor | None = None,
                 max_batch: int = 500) -> None:
        self._db = db
        self._executor = executor
        self._max_batch = max_batch
        self._waiting: list[tuple[AuditEntry, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def append(self, entry: AuditEntry) -> None:
        _checked(entry)  # a bad entry fails its own caller, not the batch
        done = asyncio.get_running_loop().create_future()
        self._waiting.append((entry, done))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write())
        await done

    async def _write(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._waiting:
                batch = self._waiting[:self._max_batch]
                del self._waiting[:self._max_batch]
                try:
                    await loop.run_in_executor(self._executor, append_many, self._db,
                                               [entry for entry, _ in batch])
                except Exception as exc:  # handed to every caller of the batch
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                else:
                    for _, done in batch:
                        if not done.done():
                            done.set_result(None)
        finally:
            self._writer = None


def _append(session: Session, entries: list[AuditEntry]) -> None:
    seq, prev = session.execute(
        select(AuditChainHead.seq, AuditChainHead.hash)
        .where(AuditChainHead.id == HEAD_ID).with_for_update()).one()
    # Taken under the lock, so times never go backwards along the chain.
    at = utcnow()
    rows = []
    for entry in entries:
        seq += 1
        digest = record_hash(seq, at, entry, prev)
        rows.append({"seq": seq, "at": at, "actor": entry.actor, "action": entry.action,
                     "outcome": entry.outcome, "peer": entry.peer,
                     "customer_id": entry.customer_id, "attributes": list(entry.attributes),
                     "prev_hash": prev, "hash": digest})
        prev = digest
    session.execute(insert(AuditRecord), rows)
    session.execute(update(AuditChainHead).where(AuditChainHead.id == HEAD_ID)
                    .values(seq=seq, hash=prev))


def record_hash(seq: int, at: datetime, entry: AuditEntry, prev_hash: bytes) -> bytes:
    """SHA-256 over the canonical serialisation: sorted keys, no spaces, UTF-8, UTC µs."""
    canonical = {
        "v": 1, "seq": seq, "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor": entry.actor, "action": entry.action, "outcome": entry.outcome,
        "peer": entry.peer, "customer_id": entry.customer_id,
        "attributes": list(entry.attributes), "prev": prev_hash.hex(),
    }
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).digest()


def _checked(entry: AuditEntry) -> AuditEntry:
    """The entry, or InvalidArgument naming each field that is not an identifier."""
    problems = []
    if not _ACTOR.fullmatch(entry.actor):
        problems.append(FieldViolation("actor", "must be client:<id> or operator:<id>"))
    if not _ACTION.fullmatch(entry.action):
        problems.append(FieldViolation("action", "a method or page action name, 1-200 of "
                                                 "A-Z a-z 0-9 _ . / : -"))
    if entry.outcome not in STATUS_NAMES:
        problems.append(FieldViolation("outcome", "OK or a gRPC status code name"))
    if not entry.peer or len(entry.peer) > MAX_PEER or not entry.peer.isprintable():
        problems.append(FieldViolation("peer", f"1 to {MAX_PEER} printable characters"))
    if entry.customer_id is not None and not CUSTOMER_ID.fullmatch(entry.customer_id):
        problems.append(FieldViolation("customer_id", "a customer ID, not a value"))
    if len(entry.attributes) > MAXATTRIBUTES or not all(
            ATTRIBUTE.fullmatch(a) for a in entry.attributes):
        problems.append(FieldViolation("attributes", f"at most {MAXATTRIBUTES} attribute "
                                                     "names (a-z 0-9 _ .), never values"))
    if problems:
        raise InvalidArgument.of(problems, reason="BAD_AUDIT_ENTRY")
    return entry


# -- reading and checking ------------------------------------------------------------------------


@dataclass(frozen=True)
class Break:
    """The first place the chain does not hold."""

    seq: int
    problem: str  # "altered" or "missing"
    detail: str


@dataclass(frozen=True)
class Verification:
    records: int
    head_seq: int
    head_hash: str
    broken: Break | None


def verify(db: Database) -> Verification:
    """Walk the whole chain in order, streaming; name the first altered or missing record."""
    with _snapshot(db) as connection:
        head_seq, head_hash = connection.execute(
            select(AuditChainHead.seq, AuditChainHead.hash)
            .where(AuditChainHead.id == HEAD_ID)).one()
        expected, prev, count = 1, GENESIS_HASH, 0
        for row in _stream(connection, None):
            broken = _check_link(row, expected, prev)
            if broken is not None:
                return Verification(count, head_seq, head_hash.hex(), broken)
            expected, prev, count = row.seq + 1, row.hash, count + 1
    broken = None
    if head_seq >= expected:
        broken = Break(expected, "missing", f"records {expected} to {head_seq} are missing "
                                            "(the chain head counts them)")
    elif head_seq != expected - 1 or head_hash != prev:
        broken = Break(head_seq, "altered", "the chain head does not match the last record")
    return Verification(count, head_seq, head_hash.hex(), broken)


def _check_link(row: Any, expected: int, prev: bytes) -> Break | None:
    if row.seq != expected:
        return Break(expected, "missing", f"record {expected} is missing (next is {row.seq})")
    entry = AuditEntry(row.actor, row.action, row.outcome, row.peer, row.customer_id,
                       tuple(row.attributes))
    if record_hash(row.seq, row.at, entry, row.prev_hash) != row.hash:
        return Break(row.seq, "altered", "its contents do not match its hash")
    if row.prev_hash != prev:
        return Break(row.seq, "altered", "its previous hash is not the hash of the record "
                                         "before it")
    return None


def export(db: Database, since: datetime | None = None) -> Iterator[dict[str, Any]]:
    """Every record (from ``since`` on), in chain order, as JSON-ready dicts; streamed."""
    with _snapshot(db) as connection:
        for row in _stream(connection, since):
            yield {"seq": row.seq, "at": row.at.astimezone(UTC).isoformat(),
                   "actor": row.actor, "action": row.action, "outcome": row.outcome,
                   "peer": row.peer, "customer_id": row.customer_id,
                   "attributes": list(row.attributes), "prev_hash": row.prev_hash.hex(),
                   "hash": row.hash.hex()}


@contextmanager
def _snapshot(db: Database) -> Iterator[Connection]:
    """One consistent read of the chain, even while appends go on.

    PostgreSQL: REPEATABLE READ in a real transaction (server-side cursors need
    one). SQLite: its read transaction is the snapshot (WAL).
    """
    engine = db.engine
    if not db.is_sqlite:
        engine = engine.execution_options(isolation_level="REPEATABLE READ")
    with engine.connect() as connection, connection.begin():
        yield connection


def _stream(connection: Connection, since: datetime | None) -> Iterable[Any]:
    table = AuditRecord.__table__
    query = select(table).order_by(table.c.seq)
    if since is not None:
        query = query.where(table.c.at >= since)
    # yield_per streams (a server-side cursor on PostgreSQL): never the table in memory.
    yield from connection.execution_options(yield_per=EXPORT_BATCH).execute(query)
