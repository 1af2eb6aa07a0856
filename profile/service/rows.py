"""Row-level helpers the profile services share: customers through idp, sealing, history."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from singleid.db import utcnow
from singleid.errors import NotFound, Violations
from singleid.idp.service import records, validation
from singleid.keyring import Keyring, Sealed
from singleid.profile import models
from singleid.profile.catalogue import Catalogue


def check_customer_id(violations: Violations, value: str, field: str = "customer_id") -> None:
    validation.customer_id(violations, field, value)


def survivor_id(session: Session, customer_id: str, field: str = "customer_id") -> str:
    """The active customer an ID resolves to (following merge aliases), through idp's service.

    Raises NotFound (CUSTOMER_NOT_FOUND) naming ``field`` for an unknown ID.
    """
    return records.active_customer(session, customer_id, field).id


# idp's prebuilt statement for a customer's (id, merged_into): the hot paths join it.
CUSTOMER_LINK = records.CUSTOMER_LINK


def survivor_on(connection: Connection, customer_id: str, field: str = "customer_id") -> str:
    """:func:`survivor_id` on a Core connection, with idp's prebuilt statements (hot paths)."""
    row = connection.execute(CUSTOMER_LINK, {"id": customer_id}).one_or_none()
    if row is None:
        raise customer_not_found(customer_id, field)
    return follow_alias(connection, row[0], row[1])


def follow_alias(connection: Connection, customer_id: str, merged_into: str | None) -> str:
    """The active customer a CUSTOMER_LINK row resolves to, through idp's service."""
    return records.survivor_id(connection, customer_id, merged_into)


def customer_not_found(customer_id: str, field: str = "customer_id") -> NotFound:
    return NotFound(f"no customer {customer_id}", reason="CUSTOMER_NOT_FOUND", field=field)


def lock_profile(session: Session, customer_id: str, *, create: bool) -> models.Profile | None:
    """The profile row, locked for this transaction (created at version 0 when asked)."""
    row = session.get(models.Profile, customer_id, with_for_update=True)
    if row is None and create:
        now = utcnow()
        row = models.Profile(customer_id=customer_id, version=0, created_at=now, updated_at=now)
        session.add(row)
        session.flush()  # a concurrent creator loses here; Database.run_write re-runs it
    return row


def open_value(keyring: Keyring, row: models.ProfileAttribute) -> Any:
    if row.ciphertext is None:
        return row.value
    assert row.key_id is not None
    return open_sealed(keyring, row.name, row.key_id, row.ciphertext)


def open_sealed(keyring: Keyring, name: str, key_id: str, ciphertext: bytes) -> Any:
    return json.loads(keyring.open(Sealed(key_id, ciphertext), models.attribute_purpose(name)))


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def record_change(session: Session, catalogue: Catalogue, *, customer_id: str, name: str,
                  kind: str, source: str, source_time: datetime | None, version: int,
                  old: Any = None, new: Any = None, reason: str | None = None) -> None:
    attribute = catalogue.get(name)
    sensitive = attribute is None or attribute.sealed
    session.add(models.AttributeChange(
        customer_id=customer_id, name=name, kind=kind, source=source, source_time=source_time,
        version=version, changed_at=utcnow(), old_value=None if sensitive else old,
        new_value=None if sensitive else new, sensitive=sensitive, redacted=False,
        reason=reason))
