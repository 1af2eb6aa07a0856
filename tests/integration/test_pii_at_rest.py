"""Personal data at rest: never in plaintext in the database, and re-sealed by key rotation.

Each test has a server and an empty database of its own (``server``), and reads
that database directly: for SQLite the raw bytes of the database file and its
WAL, for PostgreSQL every row of every table as JSON text.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import create_engine, make_url, select, text

from singleid.clients import CustomersClient
from singleid.clients.customers import identifier
from singleid.db import Base
from singleid.keyring import DEV_KEYRING_NAME
from singleid.plugins import load_models
from singleid.testing import ServerProcess
from singleid.v1 import customers_pb2

PHONE = customers_pb2.IDENTIFIER_KIND_PHONE
EMAIL = customers_pb2.IDENTIFIER_KIND_EMAIL
PASSPORT = customers_pb2.IDENTIFIER_KIND_PASSPORT
TELEGRAM = customers_pb2.IDENTIFIER_KIND_TELEGRAM
TIMEOUT_SECONDS = 30.0
# The key ring reloads a changed file at most this long after the change (keyring.py).
KEYRING_RELOAD_SECONDS = 1.0

# (account, display name, phone as sent, its E.164, email as sent, passport as sent, its digits)
PEOPLE = [
    ("c-1001", "Анна Петровна Соколова", "8 (916) 123-45-67", "+79161234567",
     "Anna.Sokolova@Example.COM", "45 06 123456", "4506123456"),
    ("c-1002", "Boris Godunov-Smirnov", "+7 903 765-43-21", "+79037654321",
     "boris.godunov.smirnov@mail.example", "4512 654321", "4512654321"),
    ("c-1003", "Vera Kuznetsova-Lebedeva", "89251112233", "+79251112233",
     "VERA.KUZNETSOVA@corp.example", "4601987654", "4601987654"),
]
ADDED_PHONE = ("+7 999 888-77-66", "+79998887766")
ADDED_EMAIL = "late.addition.person@example.org"
TELEGRAM_ID = "987654321012"


def register_people(client: CustomersClient) -> dict[str, str]:
    """Register PEOPLE (plus an added phone and email, a merge); return account -> ID."""
    ids: dict[str, str] = {}
    for account, name, phone, _, email, passport, _ in PEOPLE:
        reg = client.register_customer(
            "cards", account, display_name=name, idempotency_key=f"reg-{account}",
            identifiers=[identifier(PHONE, phone, verified=True), identifier(EMAIL, email),
                         identifier(PASSPORT, passport)])
        ids[account] = reg.customer_id
    first = ids[PEOPLE[0][0]]
    client.add_identifier(first, identifier(PHONE, ADDED_PHONE[0]))
    client.add_identifier(first, identifier(EMAIL, ADDED_EMAIL, verified=True))
    client.add_identifier(first, identifier(TELEGRAM, TELEGRAM_ID))
    # Lookups and failed requests carry personal values too; none may leave a trace.
    client.resolve_by_identifier(PHONE, PEOPLE[1][2])
    merged = client.register_customer("loans", "l-2001", identifiers=[
        identifier(EMAIL, PEOPLE[2][4].lower())])  # shares Vera's email: a match candidate
    assert merged.match_candidate_recorded
    client.merge_customers(ids[PEOPLE[2][0]], merged.customer_id, reason="same email",
                           actor="reviewer", evidence={"rule": "email-exact"})
    return ids


def plaintext_forms() -> list[str]:
    """Every plaintext spelling of every personal value registered."""
    forms: list[str] = []
    for _, name, phone, e164, email, passport, digits in PEOPLE:
        forms += [name, phone, e164, e164[1:], "8" + e164[2:], e164[2:],
                  email, email.lower(), email.partition("@")[0].lower(), passport, digits]
    forms += [*ADDED_PHONE, ADDED_PHONE[1][2:], ADDED_EMAIL, TELEGRAM_ID]
    return forms


def encodings(value: str) -> list[bytes]:
    """How a value could appear in a file or a dump: UTF-8, UTF-16, JSON-escaped, hex."""
    return [value.encode(), value.encode("utf-16-le"),
            json.dumps(value).strip('"').encode(),
            value.encode().hex().encode()]  # PostgreSQL renders bytea as hex in JSON


def sqlite_bytes(database_url: str) -> bytes:
    path = Path(make_url(database_url).database or "")
    wal = path.with_name(path.name + "-wal")
    assert path.exists()
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def postgres_rows_as_text(database_url: str) -> bytes:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            tables = connection.execute(text(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'")).scalars().all()
            assert "customer_identifiers" in tables
            rows = [row for table in tables for row in connection.execute(
                text(f'SELECT row_to_json(t)::text FROM "{table}" t')).scalars()]
    finally:
        engine.dispose()
    return "\n".join(rows).encode()


def stored(database_url: str) -> bytes:
    if make_url(database_url).get_backend_name() == "sqlite":
        return sqlite_bytes(database_url)
    return postgres_rows_as_text(database_url)


def test_no_plaintext_personal_data_in_the_database(server: ServerProcess,
                                                    database_url: str) -> None:
    with CustomersClient(server.grpc_addr, timeout=TIMEOUT_SECONDS, auth=server.token) as client:
        assert isinstance(client, CustomersClient)
        client.create_product("cards")
        client.create_product("loans")
        ids = register_people(client)

        data = stored(database_url)

        # The scan sees the data: what is not personal is there in plaintext.
        for account, customer_id in ids.items():
            assert account.encode() in data
            assert customer_id.encode() in data
        leaks = [form for form in plaintext_forms()
                 if any(encoded in data for encoded in encodings(form))]
        assert leaks == []
        # And every value is still there, sealed: each one resolves.
        for account, _, phone, _, email, passport, _ in PEOPLE:
            for kind, value in ((PHONE, phone), (EMAIL, email), (PASSPORT, passport)):
                assert client.resolve_by_identifier(kind, value).customer_id == ids[account]


def sealed_key_ids(database_url: str) -> list[str]:
    """The key ID beside every sealed value in the database, in every domain's tables."""
    load_models()
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return [key_id
                    for mapper in Base.registry.mappers
                    for column in mapper.class_.__encrypted__
                    for key_id in connection.execute(
                        select(getattr(mapper.class_, column.key_id))
                        .where(getattr(mapper.class_, column.key_id).is_not(None))).scalars()]
    finally:
        engine.dispose()


def test_key_rotation_reseals_everything_and_keeps_it_readable(
        server: ServerProcess, database_url: str) -> None:
    ring_file = server.data_dir / DEV_KEYRING_NAME
    with CustomersClient(server.grpc_addr, timeout=TIMEOUT_SECONDS, auth=server.token) as client:
        assert isinstance(client, CustomersClient)
        client.create_product("cards")
        client.create_product("loans")
        ids = register_people(client)
        before = {cid: client.get_customer(cid) for cid in set(ids.values())}
        old_key = json.loads(ring_file.read_text())["primary"]
        assert set(sealed_key_ids(database_url)) == {old_key}
        sealed_before = len(sealed_key_ids(database_url))

        rotated = subprocess.run(  # the command an operator runs, beside the running server
            [sys.executable, "-m", "singleid", "keys", "rotate"],
            env={**os.environ, "SINGLEID_DATA_DIR": str(server.data_dir),
                 "SINGLEID_DATABASE_URL": database_url, **server.env},
            capture_output=True, text=True, timeout=120, check=False)

        assert rotated.returncode == 0, rotated.stdout + rotated.stderr
        ring = json.loads(ring_file.read_text())
        new_key = ring["primary"]
        assert new_key != old_key
        assert set(ring["keys"]) == {old_key, new_key}
        assert f"{old_key} -> {new_key}" in rotated.stdout
        assert f"re-encrypted {sealed_before} values" in rotated.stdout
        assert len(sealed_key_ids(database_url)) == sealed_before
        assert set(sealed_key_ids(database_url)) == {new_key}

        # The running server reads every value under the new key.
        for customer_id, customer in before.items():
            assert client.get_customer(customer_id) == customer
        for account, _, phone, _, email, passport, _ in PEOPLE:
            for kind, value in ((PHONE, phone), (EMAIL, email), (PASSPORT, passport)):
                assert client.resolve_by_identifier(kind, value).customer_id == ids[account]
        assert client.resolve_by_identifier(TELEGRAM, TELEGRAM_ID).customer_id == ids["c-1001"]

        # Within a second it seals new values with the new key too.
        time.sleep(KEYRING_RELOAD_SECONDS + 0.2)
        late = client.register_customer("cards", "c-late", display_name="Late Comer",
                                         identifiers=[identifier(PHONE, "+7 926 555-44-33")])
        assert set(sealed_key_ids(database_url)) == {new_key}
        assert client.get_customer(late.customer_id).display_name == "Late Comer"
