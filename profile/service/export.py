"""Streaming every profile for offline analytics: one row per customer, batch by batch.

Sensitive attributes (personal, special) are left out unless asked for
explicitly. Profiles of customers merged into another are left out: their
survivor's row holds the merged profile.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import func, select

from singleid.db import Database
from singleid.keyring import Keyring
from singleid.profile import models
from singleid.profile.catalogue import Catalogue, Sensitivity
from singleid.profile.service import rows

BATCH = 500


class ExportService:
    def __init__(self, db: Database, keyring: Keyring, catalogue: Catalogue) -> None:
        self._db = db
        self._keyring = keyring
        self._catalogue = catalogue

    def columns(self, include: frozenset[Sensitivity]) -> list[str]:
        """The attribute columns an export with these sensitivities has, in catalogue order."""
        allowed = include | {Sensitivity.ORDINARY}
        return [a.name for a in self._catalogue.attributes.values() if a.sensitivity in allowed]

    def count(self) -> int:
        with self._db.read() as session:
            return int(session.scalar(select(func.count()).select_from(models.Profile)) or 0)

    def rows(self, include: frozenset[Sensitivity] = frozenset()) -> Iterator[dict[str, Any]]:
        """Each profile as {customer_id, version, update_time, <attribute>: value or None}."""
        names = set(self.columns(include))
        after = ""
        while True:
            with self._db.read() as session:
                profiles = session.scalars(select(models.Profile).where(
                    models.Profile.customer_id > after).order_by(models.Profile.customer_id)
                    .limit(BATCH)).all()
                if not profiles:
                    return
                ids = [p.customer_id for p in profiles]
                merged = set(session.scalars(select(models.ProfileMerge.merged_id).where(
                    models.ProfileMerge.merged_id.in_(ids),
                    models.ProfileMerge.unmerged_at.is_(None))))
                values: dict[str, dict[str, Any]] = {i: {} for i in ids}
                for row in session.scalars(select(models.ProfileAttribute).where(
                        models.ProfileAttribute.customer_id.in_(ids),
                        models.ProfileAttribute.name.in_(names))):
                    values[row.customer_id][row.name] = rows.open_value(self._keyring, row)
            for profile in profiles:
                if profile.customer_id in merged:
                    continue
                yield {"customer_id": profile.customer_id, "version": profile.version,
                       "update_time": profile.updated_at.isoformat(),
                       **{n: values[profile.customer_id].get(n) for n in sorted(names)}}
            after = profiles[-1].customer_id
