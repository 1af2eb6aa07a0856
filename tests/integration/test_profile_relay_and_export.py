"""The relay's lease and outbox marking, the export command, and the catalogue at start-up."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import select

from singleid.db import Database
from singleid.events import OutboxEvent
from singleid.idp.service import CustomerService, ProductService
from singleid.keyring import KeyMaterial, Keyring
from singleid.profile import catalogue
from singleid.profile.config import ProfileSettings
from singleid.profile.service import ProfileService
from singleid.profile.service.relay import Outgoing, Relay, take_lease


def test_one_relay_holds_the_lease_until_it_expires(db: Database) -> None:
    assert take_lease(db, "a", 0.5)
    assert not take_lease(db, "b", 0.5)
    assert take_lease(db, "a", 0.5)  # renewal
    time.sleep(0.6)
    assert take_lease(db, "b", 5)
    assert not take_lease(db, "a", 5)


class FlakyPublisher:
    """Fails its first two batches (an outage), then keeps what it is sent."""

    def __init__(self) -> None:
        self.failures = 2
        self.received: list[Outgoing] = []

    async def publish(self, batch: Sequence[Outgoing]) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("broker down")
        self.received.extend(batch)

    async def close(self) -> None:
        return None


def test_the_relay_retries_then_publishes_everything_once_in_order(
        db: Database, keyring: Keyring) -> None:
    ProductService(db).create("cards")
    cid = CustomerService(db, keyring).register("cards", "r-1").customer_id
    profiles = ProfileService(db, keyring, catalogue.load())
    for tier in ("gold", "silver", "basic"):
        profiles.update(cid, "loyalty", {"loyalty_tier": tier})
    publisher = FlakyPublisher()
    settings = ProfileSettings(relay_max_backoff_seconds=0.2, relay_poll_seconds=0.05)
    relay = Relay(db, publisher, settings)

    async def run() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(relay.run(stop))
        for _ in range(100):
            await asyncio.sleep(0.05)
            if len(publisher.received) >= 4:
                break
        stop.set()
        await task

    asyncio.run(run())
    with db.read() as session:
        outbox = session.scalars(select(OutboxEvent).order_by(OutboxEvent.seq)).all()
    assert [e.event_id for e in publisher.received] == [e.event_id for e in outbox]
    assert all(e.published_at is not None for e in outbox)
    assert publisher.failures == 0


def _singleid(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "singleid", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120, check=False)


def test_export_in_every_format_leaves_sensitive_out(database_url: str, tmp_path: Path) -> None:
    keyring = KeyMaterial.generate()
    env = {"SINGLEID_DATABASE_URL": database_url, "SINGLEID_DATA_DIR": str(tmp_path),
           "SINGLEID_KEYRING": "env:TEST_KEYRING", "TEST_KEYRING": keyring.to_json()}
    db = Database(database_url)
    db.migrate()
    ProductService(db).create("cards")
    ring = Keyring(keyring)
    profiles = ProfileService(db, ring, catalogue.load())
    for i in range(3):
        cid = CustomerService(db, ring).register("cards", f"x-{i}").customer_id
        profiles.update(cid, "customer", {"preferred_name": f"Name {i}", "language": "ru"})
    db.dispose()

    lines = _singleid(["profile", "export", "--format", "jsonl"], env)
    assert lines.returncode == 0, lines.stderr
    rows = [json.loads(line) for line in lines.stdout.splitlines()]
    assert len(rows) == 3
    assert all(r["language"] == "ru" and "preferred_name" not in r for r in rows)
    assert "exported 3 profiles" in lines.stderr

    out = tmp_path / "p.csv"
    done = _singleid(["profile", "export", "--format", "csv", "-o", str(out),
                      "--include-personal"], env)
    assert done.returncode == 0, done.stderr
    table = list(csv.DictReader(out.open()))
    assert sorted(r["preferred_name"] for r in table) == ["Name 0", "Name 1", "Name 2"]
    assert "passport" not in table[0]

    parquet = tmp_path / "p.parquet"
    done = _singleid(["profile", "export", "--format", "parquet", "-o", str(parquet)], env)
    assert done.returncode == 0, done.stderr
    import pyarrow.parquet as pq  # noqa: PLC0415 - heavy

    read = pq.read_table(parquet)
    assert read.num_rows == 3
    assert "preferred_name" not in read.column_names
    assert read.column("language").to_pylist() == ["ru"] * 3


def test_a_bad_catalogue_is_refused_naming_the_attribute(tmp_path: Path) -> None:
    bad = tmp_path / "catalogue.toml"
    bad.write_text('version = 2\n[attributes.nick]\ntype = "colour"\n'
                   'sensitivity = "ordinary"\nowners = ["cards"]\n')
    result = _singleid(["profile", "catalogue"], {"SINGLEID_PROFILE_CATALOGUE": str(bad)})
    assert result.returncode != 0
    assert "attributes.nick: type must be one of" in result.stderr
