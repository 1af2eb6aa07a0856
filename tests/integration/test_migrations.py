"""The Alembic migrations build exactly the schema the models declare, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from singleid.db import Base, Database, alembic_config


def test_migrations_match_the_models(db: Database) -> None:
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_migrating_twice_is_a_no_op(db: Database) -> None:
    db.migrate()
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    with db.engine.connect() as connection:
        assert set(MigrationContext.configure(connection).get_current_heads()) == set(heads)
