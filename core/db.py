"""Engines, sessions, the declarative base, and migrations at start-up.

The same code runs on SQLite (the embedded default, WAL mode) and PostgreSQL
(psycopg 3). A mutation runs in one :meth:`Database.write` transaction, so a
request that fails leaves nothing half-written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import DateTime, Engine, MetaData, create_engine, event, make_url
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

log = logging.getLogger(__name__)

_NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
SQLITE_BUSY_TIMEOUT_MS = 10_000
T = TypeVar("T")
# Any constant shared by every singleid process; serialises concurrent migrations.
MIGRATION_LOCK_ID = 726_195_001
POOL_RECYCLE_SECONDS = 1800


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on both backends (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime; use singleid.db.utcnow()")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class EncryptedColumn:
    """Declares where a model keeps a sealed value, for key rotation to find it.

    ``purpose`` gives the associated data the value was sealed with, from the row.
    """

    ciphertext: str
    key_id: str
    purpose: Callable[[Any], str]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=_NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime}
    __encrypted__: ClassVar[tuple[EncryptedColumn, ...]] = ()


class Database:
    """Two session factories over one database: reads, and serialised writes.

    On SQLite a write transaction starts with ``BEGIN IMMEDIATE``, so concurrent
    writers queue on the lock instead of failing when a read turns into a write.
    """

    def __init__(self, url: str, *, pool_size: int = 10, echo: bool = False) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite:
            _ensure_sqlite_dir(self.url.database)
            self.engine = _sqlite_engine(url, pool_size, begin="BEGIN", echo=echo)
            self.write_engine = _sqlite_engine(url, pool_size, begin="BEGIN IMMEDIATE", echo=echo)
        else:
            # No pre-ping (a round trip per checkout): a dropped connection fails its
            # call as UNAVAILABLE, which clients retry, and SQLAlchemy then replaces the
            # pool's connections. pool_recycle retires connections idle servers may cut.
            self.engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size,
                                        pool_recycle=POOL_RECYCLE_SECONDS, echo=echo)
            self.write_engine = self.engine
        # Reads on PostgreSQL run without BEGIN and COMMIT, two round trips fewer. At its
        # READ COMMITTED level every statement takes its own snapshot inside a transaction
        # too, so a read sees the same rows either way. SQLite keeps its read transaction:
        # there it is what gives the statements of one read a single snapshot.
        self.read_engine = (self.engine if self.is_sqlite
                            else self.engine.execution_options(isolation_level="AUTOCOMMIT"))
        self._reader = sessionmaker(self.read_engine, expire_on_commit=False)
        self._writer = sessionmaker(self.write_engine, expire_on_commit=False)

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._reader() as session, session.begin():
            yield session

    @contextmanager
    def read_connection(self) -> Iterator[Connection]:
        """A Core connection for hot read paths that need no ORM identity map."""
        with self.read_engine.connect() as connection, connection.begin():
            yield connection

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One transaction: commits when the block ends, rolls back if it raises."""
        with self._writer() as session, session.begin():
            yield session

    def run_write(self, work: Callable[[Session], T], *, attempts: int = 5) -> T:
        """Run ``work`` in one write transaction, re-running it after a lost race.

        A unique-key race (two callers inserting the same row) or a transient lock
        rolls the whole transaction back; the next attempt sees the winner's row.
        """
        for attempt in range(1, attempts + 1):
            try:
                with self.write() as session:
                    return work(session)
            except (IntegrityError, OperationalError) as exc:
                if attempt == attempts or not (isinstance(exc, IntegrityError)
                                               or is_retryable(exc)):
                    raise
                log.debug("write transaction lost a race; retrying", extra={"attempt": attempt})
        raise AssertionError("unreachable")

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision."""
        with self.write_engine.begin() as connection:
            upgrade(connection)

    def dispose(self) -> None:
        self.engine.dispose()
        if self.write_engine is not self.engine:
            self.write_engine.dispose()


def _ensure_sqlite_dir(database: str | None) -> None:
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def _sqlite_engine(url: str, pool_size: int, *, begin: str, echo: bool) -> Engine:
    engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size, echo=echo,
                           connect_args={"check_same_thread": False,
                                         "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event, not the driver, start transactions.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql(begin)

    return engine


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files("singleid.migrations")))
    config.attributes["connection"] = connection
    return config


def upgrade(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        # Several processes may start at once; one migrates, the others wait.
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})")
    # Each domain keeps its own branch of revisions (from the shared base), so
    # domains add migrations without coordinating revision numbers.
    command.upgrade(alembic_config(connection), "heads")


def is_retryable(exc: BaseException) -> bool:
    """A transient lock or serialisation failure worth one more try."""
    if not isinstance(exc, OperationalError):
        return False
    text = str(exc.orig).lower()
    return "database is locked" in text or "deadlock" in text or "could not serialize" in text
