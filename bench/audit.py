"""Audit trail benchmark: hash-chained appends per second on SQLite and PostgreSQL.

``--processes`` separate processes (spawned, each with its own engine, as
several ``singleid serve`` workers would be) append for ``--duration`` seconds
per round, through ``singleid.audit.append`` (one record, one transaction) and
``append_many`` (``--batch`` records, one transaction). The baseline, in the
same run and alternating rounds, is the same processes inserting the same rows
into a plain table with no chain and no head lock: the ratio is what the chain
(the serialised head, the hash) costs. A third figure has ``--in-flight``
callers per process on one event loop awaiting ``GroupAppender.append`` (group
commit), against ``append`` one per transaction. After the run the chain is
verified.

Figures (one JSON object a line): appends/s per backend and mode, with the
plain inserts/s as baseline. On a shared 2-core machine absolute figures are
noisy; the ratio measured in one run is the one to compare.

    python bench/audit.py [--duration 3] [--rounds 2] [--processes 2] [--batch 50] [--in-flight 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    insert,
    make_url,
)

from singleid import audit
from singleid.audit import AuditEntry
from singleid.db import Database, UTCDateTime, utcnow

BENCHMARK = "audit"
PG_ADMIN_URL = os.environ.get("SINGLEID_BENCH_PG_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
ENTRY = AuditEntry(actor="client:cards", action="/singleid.v1.ProfileService/UpdateProfile",
                   outcome="OK", peer="ipv4:127.0.0.1:50123",
                   customer_id="0d3x7k9q2m8v4n6r1t5w0y3z7a", attributes=("given_name",))
_plain_metadata = MetaData()
PLAIN = Table(  # the same row and indexes, without the chain
    "bench_plain_audit", _plain_metadata,
    Column("seq", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True,
           autoincrement=True),
    Column("at", UTCDateTime(timezone=True)), Column("actor", String(140)),
    Column("action", String(200)), Column("outcome", String(32)), Column("peer", String(200)),
    Column("customer_id", String(64)), Column("attributes", JSON),
    Column("prev_hash", LargeBinary(32)), Column("hash", LargeBinary(32)),
    Index("ix_bench_plain_audit_at", "at"), Index("ix_bench_plain_audit_customer_id",
                                                  "customer_id"))


def progress(message: str) -> None:
    print(f"[audit] {message}", file=sys.stderr, flush=True)


def _plain_rows(count: int) -> list[dict[str, object]]:
    return [{"at": utcnow(), "actor": ENTRY.actor, "action": ENTRY.action,
             "outcome": ENTRY.outcome, "peer": ENTRY.peer, "customer_id": ENTRY.customer_id,
             "attributes": list(ENTRY.attributes), "prev_hash": bytes(32),
             "hash": bytes(32)} for _ in range(count)]


PLAIN_MODE, CHAINED_MODE, GROUP_MODE = "plain", "chained", "group"


def _worker(url: str, mode: str, batch: int, duration: float,
            results: multiprocessing.Queue[int]) -> None:
    db = Database(url, pool_size=2)
    deadline = time.perf_counter() + duration
    if mode == GROUP_MODE:
        done = asyncio.run(_group(db, batch, deadline))
    else:
        done = 0
        while time.perf_counter() < deadline:
            if mode == CHAINED_MODE:
                audit.append_many(db, [ENTRY] * batch)
            else:
                with db.write() as session:
                    session.execute(insert(PLAIN), _plain_rows(batch))
            done += batch
    db.dispose()
    results.put(done)


async def _group(db: Database, in_flight: int, deadline: float) -> int:
    """``in_flight`` callers on one loop, each appending one entry after another."""
    group = audit.GroupAppender(db)
    done = 0

    async def caller() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await group.append(ENTRY)
            done += 1

    await asyncio.gather(*(caller() for _ in range(in_flight)))
    return done


def measure(url: str, mode: str, *, batch: int, processes: int, duration: float) -> float:
    spawn = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[int] = spawn.Queue()
    workers = [spawn.Process(target=_worker, args=(url, mode, batch, duration, results))
               for _ in range(processes)]
    for worker in workers:
        worker.start()
    total = sum(results.get(timeout=duration + 120) for _ in workers)
    for worker in workers:
        worker.join()
    # Each worker appends for ``duration`` by its own clock, after its start-up.
    return total / duration


def figure(name: str, value: float, baseline: float, baseline_name: str,
           **extra: object) -> None:
    print(json.dumps({"benchmark": BENCHMARK, "figure": name, "value": round(value, 1),
                      "unit": "appends/s", "baseline": round(baseline, 1),
                      "baseline_name": baseline_name,
                      "ratio": round(value / baseline, 3) if baseline else None, **extra}),
          flush=True)


def compare(name: str, subject: tuple[str, int], baseline: tuple[str, int],
            url: str, args: argparse.Namespace) -> tuple[float, float]:
    """Mean rates of subject and baseline over alternating rounds."""
    totals = [0.0, 0.0]
    for round_number in range(args.rounds):
        for i, (mode, batch) in enumerate((baseline, subject)):
            totals[i] += measure(url, mode, batch=batch, processes=args.processes,
                                 duration=args.duration)
        progress(f"{name} {subject}: round {round_number + 1} done")
    return totals[1] / args.rounds, totals[0] / args.rounds


def run_backend(name: str, url: str, args: argparse.Namespace) -> None:
    db = Database(url)
    db.migrate()
    _plain_metadata.create_all(db.write_engine)
    plain = "plain inserts of the same rows, no chain"
    for batch in (1, args.batch):
        value, base = compare(name, (CHAINED_MODE, batch), (PLAIN_MODE, batch), url, args)
        figure(f"audit append, {name}, {batch} per transaction", value, base, plain,
               processes=args.processes, batch=batch)
    value, base = compare(name, (GROUP_MODE, args.in_flight), (CHAINED_MODE, 1), url, args)
    figure(f"audit group append, {name}, {args.in_flight} callers per process", value, base,
           "audit.append, one per transaction", processes=args.processes,
           in_flight=args.in_flight)
    result = audit.verify(db)
    assert result.broken is None, result.broken
    progress(f"{name}: chain of {result.records} records verified")
    db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--in-flight", type=int, default=32,
                        help="Concurrent callers per process of the GroupAppender figure.")
    parser.add_argument("--backends", default="sqlite,postgres")
    args = parser.parse_args()
    backends = args.backends.split(",")
    if "sqlite" in backends:
        with tempfile.TemporaryDirectory() as tmp:
            run_backend("sqlite", f"sqlite:///{Path(tmp) / 'audit.db'}", args)
    if "postgres" in backends:
        admin = make_url(PG_ADMIN_URL).set(drivername="postgresql")
        name = f"singleid_bench_audit_{uuid.uuid4().hex[:8]}"
        conninfo = admin.render_as_string(hide_password=False)
        with psycopg.connect(conninfo, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        try:
            run_backend("postgres", make_url(PG_ADMIN_URL).set(database=name)
                        .render_as_string(hide_password=False), args)
        finally:
            with psycopg.connect(conninfo, autocommit=True) as connection:
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
