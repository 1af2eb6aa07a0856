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
from singleid.profile.service.types import (
    CONSENT_GRANTED,
    CONSENT_WITHDRAWN,
    EVENT_SOURCE,
    PROFILE_MERGED,
    PROFILE_UNMERGED,
)

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
        their_consents = list(session.scalars(select(models.Consent).where(
            models.Consent.customer_id == merged_id)))
        if not theirs and not their_consents:
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
        consents = _merge_consents(session, survivor_id, their_consents, version)
        changed = sorted(replaced)
        if consents:
            replaced[CONSENTS_KEY] = consents
        session.add(models.ProfileMerge(merge_id=merge_id, survivor_id=survivor_id,
                                        merged_id=merged_id, version=version, replaced=replaced,
                                        merged_at=now))
        if replaced:
            profile.version, profile.updated_at = version, now
        events.emit(session, type=PROFILE_MERGED, source=EVENT_SOURCE, subject=survivor_id,
                    data={"customer_id": survivor_id, "merged_customer_id": merged_id,
                          "merge_id": merge_id, "version": profile.version,
                          "attributes": [{"name": n, "version": version} for n in changed],
                          "consents": sorted(consents)})

    def unmerged(self, session: Session, survivor_id: str, merged_id: str, merge_id: str) -> None:
        merge = session.get(models.ProfileMerge, merge_id)
        if merge is None or merge.unmerged_at is not None:
            return
        profile = rows.lock_profile(session, survivor_id, create=True)
        assert profile is not None
        version, now = profile.version + 1, utcnow()
        restored = []
        replaced = dict(merge.replaced)
        consents = _unmerge_consents(session, survivor_id, replaced.pop(CONSENTS_KEY, {}),
                                     merge.version, version)
        for name, old in sorted(replaced.items()):
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
        if restored or consents:
            profile.version, profile.updated_at = version, now
        events.emit(session, type=PROFILE_UNMERGED, source=EVENT_SOURCE, subject=survivor_id,
                    data={"customer_id": survivor_id, "merged_customer_id": merged_id,
                          "merge_id": merge_id, "version": profile.version,
                          "attributes": [{"name": n, "version": version} for n in restored],
                          "consents": consents})


CONSENTS_KEY = "__consents__"


def _consent_doc(row: models.Consent | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {"granted": row.granted, "text_version": row.text_version, "channel": row.channel,
            "changed_at": row.changed_at.isoformat(), "version": row.version}


def _consent_event(session: Session, row: models.Consent, was_granted: bool | None) -> None:
    """A consent.granted/withdrawn event when a merge or un-merge flips the survivor's state."""
    if was_granted is not None and was_granted == row.granted:
        return
    if was_granted is None and not row.granted:
        return  # nothing was granted before, nothing is now
    events.emit(session, type=CONSENT_GRANTED if row.granted else CONSENT_WITHDRAWN,
                source=EVENT_SOURCE, subject=row.customer_id,
                data={"customer_id": row.customer_id, "purpose": row.purpose,
                      "text_version": row.text_version, "channel": row.channel,
                      "time": row.changed_at.isoformat(), "version": row.version})


def _merge_consents(session: Session, survivor_id: str, theirs: list[models.Consent],
                    version: int) -> dict[str, Any]:
    """Per purpose, the most recent decision wins (a later withdrawal beats an older grant)."""
    replaced: dict[str, Any] = {}
    for candidate in sorted(theirs, key=lambda c: c.purpose):
        ours = session.get(models.Consent, (survivor_id, candidate.purpose))
        if ours is not None and ours.changed_at >= candidate.changed_at:
            continue
        replaced[candidate.purpose] = _consent_doc(ours)
        was = ours.granted if ours is not None else None
        if ours is None:
            ours = models.Consent(customer_id=survivor_id, purpose=candidate.purpose)
            session.add(ours)
        ours.granted, ours.text_version, ours.channel, ours.changed_at = (
            candidate.granted, candidate.text_version, candidate.channel, candidate.changed_at)
        ours.version = version
        _consent_event(session, ours, was)
    return replaced


def _unmerge_consents(session: Session, survivor_id: str, snapshots: dict[str, Any],
                      merge_version: int, version: int) -> list[str]:
    restored = []
    for purpose, old in sorted(snapshots.items()):
        row = session.get(models.Consent, (survivor_id, purpose))
        if row is None or row.version != merge_version:
            continue  # decided again since the merge: that decision stands
        was = row.granted
        if old is None:
            session.delete(row)
            if was:
                row.granted = False
                _consent_event(session, row, True)
        else:
            row.granted, row.text_version, row.channel = (
                old["granted"], old["text_version"], old["channel"])
            row.changed_at, row.version = datetime.fromisoformat(old["changed_at"]), version
            _consent_event(session, row, was)
        restored.append(purpose)
    return restored


hook = ProfileMergeHook()
