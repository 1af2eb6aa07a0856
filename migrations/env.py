"""Alembic environment: runs on the connection singleid.db hands over (see ``db.upgrade``)."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from singleid import audit, events, idempotency  # noqa: F401 - their tables join the metadata
from singleid.db import Base, Database
from singleid.plugins import load_models
from singleid.settings import get_settings

load_models()
target_metadata = Base.metadata


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    # Plain `alembic` (e.g. `alembic revision --autogenerate`): use the settings' database.
    db = Database(get_settings().effective_database_url)
    with db.write_engine.begin() as own_connection:
        _migrate(own_connection)
    db.dispose()


def _migrate(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


run()
