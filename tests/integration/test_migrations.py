"""The Alembic migrations build exactly the schema the models declare, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from singleid.db import Base, Database


def test_migrations_match_the_models(db: Database) -> None:
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_migrating_twice_is_a_no_op(db: Database) -> None:
    db.migrate()
    with db.engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_heads() == ("0001",)
