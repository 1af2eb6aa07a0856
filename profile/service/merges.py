"""Profile survivorship when CustomerService merges two customers, and its undoing.

idp's MergeService calls :data:`hook` (the ``singleid.merge_hooks`` entry point)
inside the merge's own transaction, so the customer merge and the profile
merge commit together or not at all (docs/decisions/0102).

Survivorship, per attribute the merged-away customer has: the value from the
most trusted source wins (``[sources] trust`` in the catalogue), then the most
recent source timestamp; on a full tie the survivor keeps its own. The merged
customer's own rows are left as they are (its ID now resolves to the
survivor, so nobody reads them), and what the merge replaced in the survivor is
kept, so un-merge restores both: the merged ID gets its untouched rows back, and
the survivor gets back each value the merge replaced unless it changed since.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from singleid import events
from singleid.db import utcnow
from singleid.profile import models
from singleid.profile.catalogue import Catalogue, load_cached
from singleid.profile.config import get_profile_settings
from singleid.profile.service import rows
from singleid.profile.service.types import EVENT_SOURCE, PROFILE_MERGED, PROFILE_UNMERGED

_COLUMNS = ("value", "ciphertext", "key_id", "blind_index", "source", "source_time", "version",
            "updated_at")


def _wins(catalogue: Catalogue, candidate: models.ProfileAttribute,
          incumbent: models.ProfileAttribute | None) -> bool:
    if incumbent is None:
        return True
    ours, theirs = catalogue.trust_rank(incumbent.source), catalogue.trust_rank(candidate.source)
    if theirs != ours:
        return theirs < ours
    return candidate.source_time > incumbent.source_time


def _snapshot(row: models.ProfileAttribute | None) -> dict[str, Any] | None:
    if row is None:
        return None
    doc: dict[str, Any] = {}
    for column in _COLUMNS:
        value = getattr(row, column)
        if isinstance(value, bytes):
            value = {"b64": base64.b64encode(value).decode()}
        elif isinstance(value, datetime):
            value = {"time": value.isoformat()}
        doc[column] = value
    return doc


def _restore(row: models.ProfileAttribute, doc: dict[str, Any]) -> None:
    for column in _COLUMNS:
        value = doc[column]
        if isinstance(value, dict) and "b64" in value:
            value = base64.b64decode(value["b64"])
        elif isinstance(value, dict) and "time" in value and column != "value":
            value = datetime.fromisoformat(value["time"])
        setattr(row, column, value)


class ProfileMergeHook:
    """What idp's MergeService calls, in its transaction, after moving accounts and identifiers."""

    def __init__(self, catalogue: Catalogue | None = None) -> None:
        self._catalogue = catalogue

    @property
    def catalogue(self) -> Catalogue:
        if self._catalogue is None:
            self._catalogue = load_cached(get_profile_settings().profile_catalogue)
        return self._catalogue

    def merged(self, session: Session, survivor_id: str, merged_id: str, merge_id: str) -> None:
        theirs = list(session.scalars(select(models.ProfileAttribute).where(
            models.ProfileAttribute.customer_id == merged_id)))
        if not theirs:
            return
        profile = rows.lock_profile(session, survivor_id, create=True)
        assert profile is not None
        ours = {row.name: row for row in session.scalars(select(models.ProfileAttribute).where(
            models.ProfileAttribute.customer_id == survivor_id))}
        version, now = profile.version + 1, utcnow()
        replaced: dict[str, Any] = {}
        for candidate in sorted(theirs, key=lambda r: r.name):
            incumbent = ours.get(candidate.name)
            if not _wins(self.catalogue, candidate, incumbent):
                continue
            replaced[candidate.name] = _snapshot(incumbent)
            if incumbent is None:
                incumbent = models.ProfileAttribute(customer_id=survivor_id, name=candidate.name)
                session.add(incumbent)
            for column in _COLUMNS:
                setattr(incumbent, column, getattr(candidate, column))
            incumbent.version, incumbent.updated_at = version, now
            rows.record_change(session, self.catalogue, customer_id=survivor_id,
                               name=candidate.name, kind="merged", source=candidate.source,
                               source_time=candidate.source_time, version=version,
                               new=candidate.value, reason=f"merge {merge_id}")
        session.add(models.ProfileMerge(merge_id=merge_id, survivor_id=survivor_id,
                                        merged_id=merged_id, version=version, replaced=replaced,
                                        merged_at=now))
        if replaced:
            profile.version, profile.updated_at = version, now
        events.emit(session, type=PROFILE_MERGED, source=EVENT_SOURCE, subject=survivor_id,
                    data={"customer_id": survivor_id, "merged_customer_id": merged_id,
                          "merge_id": merge_id, "version": profile.version,
                          "attributes": [{"name": n, "version": version} for n in replaced]})

    def unmerged(self, session: Session, survivor_id: str, merged_id: str, merge_id: str) -> None:
        merge = session.get(models.ProfileMerge, merge_id)
        if merge is None or merge.unmerged_at is not None:
            return
        profile = rows.lock_profile(session, survivor_id, create=True)
        assert profile is not None
        version, now = profile.version + 1, utcnow()
        restored = []
        for name, old in sorted(merge.replaced.items()):
            row = session.get(models.ProfileAttribute, (survivor_id, name))
            if row is None or row.version != merge.version:
                continue  # changed (or erased) since the merge: the newer value stays
            if old is None:
                session.delete(row)
            else:
                _restore(row, old)
                row.version, row.updated_at = version, now
            rows.record_change(session, self.catalogue, customer_id=survivor_id, name=name,
                               kind="unmerged", source=row.source, source_time=None,
                               version=version, reason=f"unmerge {merge_id}")
            restored.append(name)
        merge.unmerged_at = now
        if restored:
            profile.version, profile.updated_at = version, now
        events.emit(session, type=PROFILE_UNMERGED, source=EVENT_SOURCE, subject=survivor_id,
                    data={"customer_id": survivor_id, "merged_customer_id": merged_id,
                          "merge_id": merge_id, "version": profile.version,
                          "attributes": [{"name": n, "version": version} for n in restored]})


hook = ProfileMergeHook()
