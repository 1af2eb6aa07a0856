"""The audit trail on SQLite and PostgreSQL: one unforked chain, and tampering found by name."""

from __future__ import annotations

import asyncio
import itertools
import json
import multiprocessing
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select, text, update

from singleid import audit
from singleid.audit import AuditEntry, AuditRecord
from singleid.db import Database, utcnow
from singleid.errors import InvalidArgument

PROCESSES = 4
APPENDS_PER_PROCESS = 25
PEER = "ipv4:127.0.0.1:50123"


def _entry(n: int, outcome: str = "OK") -> AuditEntry:
    return AuditEntry(actor=f"client:cards-{n % 3}",
                      action="/singleid.v1.ProfileService/UpdateProfile", outcome=outcome,
                      peer=PEER, customer_id="0d3x7k9q2m8v4n6r1t5w0y3z7a",
                      attributes=("given_name", "birth_date"))


def _append_from_another_process(url: str, start: int) -> None:
    db = Database(url, pool_size=1)
    for n in range(start, start + APPENDS_PER_PROCESS):
        audit.append(db, _entry(n))
    db.dispose()


def test_appends_chain_and_verify(db: Database) -> None:
    for n in range(5):
        audit.append(db, _entry(n))
    audit.append_many(db, [_entry(10), _entry(11, "PERMISSION_DENIED")])
    result = audit.verify(db)
    assert result.broken is None
    assert (result.records, result.head_seq) == (7, 7)
    records = list(audit.export(db))
    assert [r["seq"] for r in records] == list(range(1, 8))
    assert records[0]["prev_hash"] == "00" * 32
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(records))
    assert records[-1]["outcome"] == "PERMISSION_DENIED"
    assert records[-1]["attributes"] == ["given_name", "birth_date"]


def test_an_entry_in_a_transaction_that_fails_is_not_written(db: Database) -> None:
    def change_that_fails() -> None:
        with db.write() as session:
            audit.append_in(session, _entry(1))
            raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError):
        change_that_fails()
    audit.append(db, _entry(2))
    result = audit.verify(db)
    assert (result.broken, result.records) == (None, 1)


def test_concurrent_appenders_in_several_processes_never_fork_the_chain(
        database_url: str, db: Database) -> None:
    spawn = multiprocessing.get_context("spawn")
    workers = [spawn.Process(target=_append_from_another_process,
                             args=(database_url, i * APPENDS_PER_PROCESS))
               for i in range(PROCESSES)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    result = audit.verify(db)
    assert result.broken is None
    assert result.records == result.head_seq == PROCESSES * APPENDS_PER_PROCESS


def test_verify_names_the_record_changed_by_sql(db: Database) -> None:
    for n in range(6):
        audit.append(db, _entry(n))
    with db.write() as session:
        session.execute(update(AuditRecord).where(AuditRecord.seq == 4)
                        .values(outcome="PERMISSION_DENIED"))
    broken = audit.verify(db).broken
    assert broken is not None
    assert (broken.seq, broken.problem) == (4, "altered")


def test_verify_names_a_record_rehashed_after_a_change_by_its_successor(db: Database) -> None:
    for n in range(4):
        audit.append(db, _entry(n))
    with db.read() as session:
        row = session.get(AuditRecord, 2)
        assert row is not None
        forged = AuditEntry(row.actor, row.action, "OK", row.peer, None, ())
        digest = audit.record_hash(2, row.at, forged, row.prev_hash)
    with db.write() as session:
        session.execute(update(AuditRecord).where(AuditRecord.seq == 2)
                        .values(customer_id=None, attributes=[], hash=digest))
    broken = audit.verify(db).broken
    assert broken is not None
    assert (broken.seq, broken.problem) == (3, "altered")


def test_verify_names_the_gap_a_deleted_record_leaves(db: Database) -> None:
    for n in range(6):
        audit.append(db, _entry(n))
    with db.write() as session:
        session.execute(delete(AuditRecord).where(AuditRecord.seq == 3))
    broken = audit.verify(db).broken
    assert broken is not None
    assert (broken.seq, broken.problem) == (3, "missing")
    assert "next is 4" in broken.detail


def test_verify_names_records_deleted_from_the_end(db: Database) -> None:
    for n in range(5):
        audit.append(db, _entry(n))
    with db.write() as session:
        session.execute(delete(AuditRecord).where(AuditRecord.seq >= 4))
    broken = audit.verify(db).broken
    assert broken is not None
    assert (broken.seq, broken.problem) == (4, "missing")


def test_an_entry_that_could_carry_personal_values_is_refused_naming_the_fields(
        db: Database) -> None:
    bad = AuditEntry(actor="Анна Петрова", action="update profile!", outcome="fine",
                     peer="", customer_id="+7 916 123-45-67", attributes=("Анна",))
    with pytest.raises(InvalidArgument) as raised:
        audit.append(db, bad)
    assert raised.value.reason == "BAD_AUDIT_ENTRY"
    assert {v.field for v in raised.value.violations} == {
        "actor", "action", "outcome", "peer", "customer_id", "attributes"}
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(AuditRecord)) == 0


def test_export_since_a_time(db: Database) -> None:
    audit.append(db, _entry(1))
    with db.write() as session:  # make the first record look old (and so break its hash)
        session.execute(update(AuditRecord).values(at=utcnow() - timedelta(days=2)))
    audit.append(db, _entry(2))
    recent = list(audit.export(db, since=utcnow() - timedelta(days=1)))
    assert [r["seq"] for r in recent] == [2]


def _singleid(*args: str, url: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SINGLEID_DATABASE_URL": url, "SINGLEID_DATA_DIR": str(data_dir)}
    return subprocess.run([sys.executable, "-m", "singleid", "audit", *args],
                          capture_output=True, text=True, env=env, timeout=120, check=False)


@pytest.mark.slow
def test_the_audit_commands(db: Database, database_url: str, tmp_path: Path) -> None:
    for n in range(3):
        audit.append(db, _entry(n))
    intact = _singleid("verify", url=database_url, data_dir=tmp_path)
    assert intact.returncode == 0, intact.stderr
    assert "3 records" in intact.stdout
    exported = _singleid("export", "--since", "2000-01-01T00:00:00Z", url=database_url,
                         data_dir=tmp_path)
    assert exported.returncode == 0, exported.stderr
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    assert [line["seq"] for line in lines] == [1, 2, 3]
    assert lines[0]["actor"] == "client:cards-0"
    with db.write() as session:
        session.execute(text("UPDATE audit_records SET peer = 'ipv4:10.0.0.1:1' "
                             "WHERE seq = 2"))
    broken = _singleid("verify", url=database_url, data_dir=tmp_path)
    assert broken.returncode == 1
    assert "record 2" in broken.stderr
    bad = _singleid("export", "--since", "yesterday", url=database_url, data_dir=tmp_path)
    assert bad.returncode == 2
    assert "--since" in bad.stderr


def test_group_appends_share_transactions_and_keep_one_chain(db: Database) -> None:
    async def many() -> None:
        group = audit.GroupAppender(db, max_batch=50)
        await asyncio.gather(*(group.append(_entry(n)) for n in range(200)))
        with pytest.raises(InvalidArgument):
            await group.append(AuditEntry("nobody", "x", "OK", PEER))

    asyncio.run(many())
    result = audit.verify(db)
    assert (result.broken, result.records) == (None, 200)
    with db.read() as session:
        # Entries of one batch share its time, taken once under the lock.
        transactions = session.scalar(select(func.count(func.distinct(AuditRecord.at))))
    assert transactions is not None
    assert 4 <= transactions < 200
