"""Re-encrypting sealed columns under the key ring's current primary key.

Models declare their sealed columns in ``__encrypted__``; this walks them in
small batches, each its own transaction, so the service keeps serving while it
runs and an interrupted run simply resumes.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select

from singleid.db import Base, Database, EncryptedColumn
from singleid.keyring import Keyring, Sealed

BATCH_SIZE = 500


def reencrypt_all(db: Database, keyring: Keyring,
                  progress: Callable[[str, int], None] = lambda _model, _n: None) -> int:
    """Re-seal every value not sealed with the primary key; return how many."""
    total = 0
    for mapper in Base.registry.mappers:
        model = mapper.class_
        for column in model.__encrypted__:
            while count := _reencrypt_batch(db, keyring, model, column):
                total += count
                progress(model.__tablename__, count)
    return total


def _reencrypt_batch(db: Database, keyring: Keyring, model: type[Base],
                     column: EncryptedColumn) -> int:
    primary = keyring.primary_key_id
    key_attr = getattr(model, column.key_id)
    with db.write() as session:
        rows = session.scalars(
            select(model).where(key_attr.is_not(None), key_attr != primary).limit(BATCH_SIZE)
        ).all()
        for row in rows:
            purpose = column.purpose(row)
            sealed = Sealed(getattr(row, column.key_id), getattr(row, column.ciphertext))
            resealed = keyring.seal(keyring.open(sealed, purpose), purpose)
            setattr(row, column.ciphertext, resealed.ciphertext)
            setattr(row, column.key_id, resealed.key_id)
        return len(rows)
