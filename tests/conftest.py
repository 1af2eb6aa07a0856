"""Shared fixtures: databases (SQLite, and PostgreSQL when present), and real servers.

A test that needs PostgreSQL skips with the reason when it is absent, except
under CI=true, where a missing service fails the run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import make_url

from singleid.db import Database
from singleid.keyring import KeyMaterial, Keyring
from singleid.plugins import load_models
from singleid.testing import ServerProcess

PG_URL = os.environ.get("SINGLEID_TEST_PG_URL",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/test")
ON_CI = os.environ.get("CI", "").lower() == "true"


def require(available: bool, reason: str) -> None:
    """Skip when a service is absent; under CI=true, fail instead."""
    if available:
        return
    if ON_CI:
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


def _pg_admin_conninfo() -> str:
    url = make_url(PG_URL).set(drivername="postgresql", database="postgres")
    return url.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_available() -> bool:
    try:
        with psycopg.connect(_pg_admin_conninfo(), connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


@pytest.fixture(scope="session")
def pg_server_url(pg_available: bool) -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    require(pg_available, f"PostgreSQL is not reachable at {PG_URL}")
    name = f"singleid_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_pg_admin_conninfo(), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(_pg_admin_conninfo(), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_server_url: str) -> Iterator[str]:
    """An empty PostgreSQL schema for one test (the session database, wiped)."""
    yield pg_server_url
    with psycopg.connect(make_url(pg_server_url).set(drivername="postgresql")
                         .render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'singleid.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    load_models()
    database = Database(database_url, pool_size=5)
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture
def keyring() -> Keyring:
    return Keyring(KeyMaterial.generate())


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    """A real ``singleid serve`` on free ports, on SQLite or PostgreSQL."""
    process = ServerProcess(data_dir=tmp_path / "data", database_url=database_url).start()
    yield process
    process.stop()
