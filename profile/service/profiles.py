"""Reading and writing the consolidated profile; its history and erasure.

Every write is one transaction that locks the profile row, checks ownership,
validates every value before applying any, bumps the profile version once and
writes its CloudEvent to the outbox. Events name attributes and versions only,
never values.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, select, true, update
from sqlalchemy.orm import Session

from singleid import events, idempotency
from singleid.db import Database, utcnow
from singleid.errors import (
    Aborted,
    FieldViolation,
    InvalidArgument,
    PermissionDenied,
    Violations,
)
from singleid.keyring import Keyring
from singleid.profile import models
from singleid.profile.catalogue import (
    SOURCE_PATTERN,
    Catalogue,
    Sensitivity,
    ValueProblem,
    normalize,
)
from singleid.profile.service import rows
from singleid.profile.service.types import (
    EVENT_SOURCE,
    PROFILE_ERASED,
    PROFILE_UPDATED,
    AttributeView,
    EraseResult,
    HistoryEntry,
    HistoryPage,
    ProfileView,
    UpdateResult,
    etag,
)

MAX_ATTRIBUTES_PER_WRITE = 50
MAX_REASON = 500
MAX_ACTOR = 32
MAX_CLOCK_SKEW = timedelta(minutes=5)
DEFAULT_PAGE = 100
MAX_PAGE = 1000


class ProfileService:
    def __init__(self, db: Database, keyring: Keyring, catalogue: Catalogue) -> None:
        self._db = db
        self._keyring = keyring
        self.catalogue = catalogue

    # -- reads ----------------------------------------------------------------

    def get(self, customer_id: str, read_mask: Sequence[str] | None = None) -> ProfileView:
        """The profile of the customer the ID resolves to (merge aliases followed).

        Without a mask: every attribute except special ones, which are returned
        only when the mask names them.
        """
        violations = Violations()
        rows.check_customer_id(violations, customer_id)
        names = self._mask(violations, read_mask, "read_mask") if read_mask else None
        violations.raise_if_any()
        attr = models.ProfileAttribute
        with rows.reading(self._db) as session:
            survivor = rows.survivor_id(session, customer_id)
            # One round trip for the profile and its attributes.
            joined = and_(attr.customer_id == models.Profile.customer_id,
                          attr.name.in_(names) if names is not None else true())
            found = session.execute(
                select(models.Profile.version, models.Profile.updated_at, attr.name, attr.value,
                       attr.ciphertext, attr.key_id, attr.source, attr.source_time, attr.version,
                       attr.updated_at)
                .select_from(models.Profile).outerjoin(attr, joined)
                .where(models.Profile.customer_id == survivor).order_by(attr.name)).all()
        attributes = []
        for row in found:
            attribute = self.catalogue.get(row[2]) if row[2] is not None else None
            if attribute is None:  # no attributes yet, or retired from the catalogue
                continue
            if names is None and attribute.sensitivity is Sensitivity.SPECIAL:
                continue
            value = row[3] if row[4] is None else rows.open_sealed(
                self._keyring, row[2], row[5], row[4])
            attributes.append(AttributeView(
                name=row[2], value=value, source=row[6], source_time=row[7], version=row[8],
                update_time=row[9], sensitivity=attribute.sensitivity.value))
        version = found[0][0] if found else 0
        return ProfileView(customer_id=survivor, requested_customer_id=customer_id,
                           resolved_from_alias=survivor != customer_id, version=version,
                           etag=etag(survivor, version), attributes=attributes,
                           update_time=found[0][1] if found else None)

    def _mask(self, violations: Violations, paths: Sequence[str], field: str) -> list[str]:
        names = []
        for index, path in enumerate(paths):
            if self.catalogue.get(path) is None:
                violations.add(f"{field}.paths[{index}]",
                               f"{path!r} is not an attribute of the catalogue")
            else:
                names.append(path)
        return names

    # -- writes ---------------------------------------------------------------

    def update(self, customer_id: str, source: str, values: Mapping[str, Any],  # noqa: PLR0912
               update_mask: Sequence[str] = (), *, expected_version: int | None = None,
               source_time: datetime | None = None, idempotency_key: str = "") -> UpdateResult:
        """Write what ``source`` owns, all or nothing.

        - an attribute ``source`` does not own: PermissionDenied naming it;
        - any bad value: InvalidArgument naming every bad attribute;
        - ``expected_version`` not the current version: Aborted;
        - without ``expected_version``, a value older (by source time) than the stored
          one is skipped, and reported so.
        """
        violations = Violations()
        rows.check_customer_id(violations, customer_id)
        if not SOURCE_PATTERN.match(source):
            violations.add("source", "must name the source system (lower_snake_case, "
                           "at most 32 characters)")
        if len(idempotency_key) > idempotency.MAX_KEY_LENGTH:
            violations.add("idempotency_key", f"at most {idempotency.MAX_KEY_LENGTH} characters")
        paths = list(update_mask) or sorted(values)
        if not paths:
            violations.add("update_mask", "names no attribute to update")
        if len(paths) > MAX_ATTRIBUTES_PER_WRITE:
            violations.add("update_mask", f"at most {MAX_ATTRIBUTES_PER_WRITE} attributes a call")
        if len(set(paths)) != len(paths):
            violations.add("update_mask", "names an attribute twice")
        names = self._mask(violations, paths, "update_mask")
        now = utcnow()
        when = source_time or now
        if when.tzinfo is None:
            violations.add("source_time", "must carry a time zone")
        elif when > now + MAX_CLOCK_SKEW:
            violations.add("source_time", "is in the future")
        if expected_version is not None and expected_version < 0:
            violations.add("expected_version", "must not be negative")
        violations.raise_if_any()

        unowned = [n for n in names if source not in self.catalogue.attributes[n].owners]
        if unowned:
            raise PermissionDenied(
                f"source {source!r} does not own {', '.join(unowned)}",
                reason="ATTRIBUTE_NOT_OWNED", field=unowned[0],
                metadata={"attributes": ",".join(unowned), "source": source})

        normalized: dict[str, Any] = {}
        problems: list[FieldViolation] = []
        for name in names:
            if name not in values:
                problems.append(FieldViolation(
                    name, "in update_mask but no value given (remove values with "
                    "EraseAttributes)"))
                continue
            try:
                normalized[name] = normalize(self.catalogue.attributes[name], values[name])
            except ValueProblem as exc:
                problems.append(FieldViolation(name, str(exc)))
        if problems:
            raise InvalidArgument.of(problems, reason="INVALID_ATTRIBUTE_VALUE")

        digest = self._keyring.blind_index(rows.canonical_json(
            {"values": normalized, "source": source, "expected": expected_version,
             "time": when.isoformat() if source_time else ""}), "profile.idempotency")
        request = {"customer_id": customer_id, "digest": base64.b64encode(digest).decode()}

        def work(session: Session) -> UpdateResult:
            return idempotency.run_once(
                session, f"UpdateProfile:{source}", idempotency_key, request,
                lambda: self._apply(session, customer_id, source, normalized, expected_version,
                                    when), UpdateResult)

        return self._db.run_write(work)

    def _apply(self, session: Session, customer_id: str, source: str, values: dict[str, Any],
               expected_version: int | None, when: datetime) -> UpdateResult:
        survivor = rows.survivor_id(session, customer_id)
        attr = models.ProfileAttribute
        # One round trip: the profile row, locked, and the attributes being written.
        found = session.execute(
            select(models.Profile, attr).outerjoin(attr, and_(
                attr.customer_id == models.Profile.customer_id, attr.name.in_(list(values))))
            .where(models.Profile.customer_id == survivor)
            .with_for_update(of=models.Profile)).all()
        stored = {row.name: row for _, row in found if row is not None}
        profile = found[0][0] if found else rows.lock_profile(session, survivor, create=True)
        assert profile is not None
        if expected_version is not None and expected_version != profile.version:
            raise Aborted(f"the profile is at version {profile.version}, not {expected_version}",
                          reason="STALE_VERSION", field="expected_version",
                          metadata={"current_version": str(profile.version)})
        updated, skipped, unchanged = [], [], []
        version = profile.version + 1
        now = utcnow()
        for name, value in sorted(values.items()):
            attribute = self.catalogue.attributes[name]
            row = stored.get(name)
            if row is not None and expected_version is None and when < row.source_time:
                skipped.append(name)
                continue
            if row is not None and rows.same_value(self._keyring, attribute, row, value):
                unchanged.append(name)
                continue
            old = row.value if row is not None else None
            if row is None:
                row = models.ProfileAttribute(customer_id=survivor, name=name)
                session.add(row)
            rows.store_value(self._keyring, attribute, row, value)
            row.source, row.source_time, row.version, row.updated_at = source, when, version, now
            rows.record_change(session, self.catalogue, customer_id=survivor, name=name,
                               kind="set", source=source, source_time=when, version=version,
                               old=old, new=value)
            updated.append(name)
        if updated:
            profile.version, profile.updated_at = version, now
            events.emit(session, type=PROFILE_UPDATED, source=EVENT_SOURCE, subject=survivor,
                        data={"customer_id": survivor, "version": version,
                              "source_system": source,
                              "attributes": [self._changed(n, version) for n in updated]})
        return UpdateResult(customer_id=survivor, version=profile.version,
                            etag=etag(survivor, profile.version), updated=updated,
                            skipped=skipped, unchanged=unchanged)

    def _changed(self, name: str, version: int) -> dict[str, Any]:
        """What an event says of a changed attribute: never its value."""
        return {"name": name, "version": version,
                "sensitivity": self.catalogue.attributes[name].sensitivity.value}

    # -- history and erasure ------------------------------------------------------

    def history(self, customer_id: str, attribute: str = "", page_size: int = 0,
                page_token: str = "") -> HistoryPage:
        violations = Violations()
        rows.check_customer_id(violations, customer_id)
        if attribute and self.catalogue.get(attribute) is None and not attribute.startswith(
                "consent."):
            violations.add("attribute", f"{attribute!r} is not an attribute of the catalogue")
        if page_size < 0:
            violations.add("page_size", "must not be negative")
        before = _page_token(violations, page_token)
        violations.raise_if_any()
        size = min(page_size or DEFAULT_PAGE, MAX_PAGE)
        with self._db.read() as session:
            survivor = rows.survivor_id(session, customer_id)
            query = select(models.AttributeChange).where(
                models.AttributeChange.customer_id == survivor)
            if attribute:
                query = query.where(models.AttributeChange.name == attribute)
            if before:
                query = query.where(models.AttributeChange.id < before)
            found = session.scalars(query.order_by(models.AttributeChange.id.desc())
                                    .limit(size + 1)).all()
        more = len(found) > size
        found = found[:size]
        entries = [HistoryEntry(
            name=r.name, kind=r.kind, source=r.source, source_time=r.source_time,
            version=r.version, change_time=r.changed_at, old_value=r.old_value,
            new_value=r.new_value, sensitive=r.sensitive, redacted=r.redacted,
            reason=r.reason or "") for r in found]
        return HistoryPage(entries, next_page_token=str(found[-1].id) if more else "")

    def erase(self, customer_id: str, attributes: Sequence[str], reason: str, *,
              erase_all: bool = False, actor: str = "", idempotency_key: str = "") -> EraseResult:
        """Right to erasure: the values go, the history is redacted, an event records it."""
        violations = Violations()
        rows.check_customer_id(violations, customer_id)
        if not reason.strip():
            violations.add("reason", "must say why (e.g. the erasure request's reference)")
        elif len(reason) > MAX_REASON:
            violations.add("reason", f"at most {MAX_REASON} characters")
        if erase_all and attributes:
            violations.add("attributes", "give either attributes or all, not both")
        elif not erase_all and not attributes:
            violations.add("attributes", "name the attributes to erase, or set all")
        if len(actor) > MAX_ACTOR:
            violations.add("actor", f"at most {MAX_ACTOR} characters")
        names = sorted(set(self._mask(violations, attributes, "attributes")))
        violations.raise_if_any()
        request = {"customer_id": customer_id, "names": names, "all": erase_all,
                   "reason": reason, "actor": actor}

        def work(session: Session) -> EraseResult:
            return idempotency.run_once(
                session, "EraseAttributes", idempotency_key, request,
                lambda: self._erase(session, customer_id, names, erase_all, reason,
                                    actor or "erasure"), EraseResult)

        return self._db.run_write(work)

    def _erase(self, session: Session, customer_id: str, names: list[str], erase_all: bool,
               reason: str, actor: str) -> EraseResult:
        survivor = rows.survivor_id(session, customer_id)
        profile = rows.lock_profile(session, survivor, create=True)
        assert profile is not None
        # The person's values may also sit under IDs merged into this one.
        owners = [survivor, *session.scalars(select(models.ProfileMerge.merged_id).where(
            models.ProfileMerge.survivor_id == survivor,
            models.ProfileMerge.unmerged_at.is_(None)))]
        query = select(models.ProfileAttribute).where(
            models.ProfileAttribute.customer_id.in_(owners))
        if not erase_all:
            query = query.where(models.ProfileAttribute.name.in_(names))
        found = session.scalars(query).all()
        erased = sorted({row.name for row in found} | set(names))
        version = profile.version + 1
        now = utcnow()
        for row in found:
            session.delete(row)
        history = update(models.AttributeChange).where(
            models.AttributeChange.customer_id.in_(owners))
        if not erase_all:
            history = history.where(models.AttributeChange.name.in_(erased))
        else:
            history = history.where(~models.AttributeChange.name.startswith("consent."))
        session.execute(history.values(old_value=None, new_value=None, redacted=True))
        for merge in session.scalars(select(models.ProfileMerge).where(
                models.ProfileMerge.survivor_id == survivor)):
            merge.replaced = {k: v for k, v in merge.replaced.items()
                              if not erase_all and k not in erased}
        for name in erased:
            rows.record_change(session, self.catalogue, customer_id=survivor, name=name,
                               kind="erased", source=actor, source_time=None, version=version,
                               reason=reason)
        profile.version, profile.updated_at = version, now
        events.emit(session, type=PROFILE_ERASED, source=EVENT_SOURCE, subject=survivor,
                    data={"customer_id": survivor, "version": version, "all": erase_all,
                          "attributes": [{"name": n, "version": version} for n in erased]})
        return EraseResult(customer_id=survivor, version=version, etag=etag(survivor, version),
                           erased=erased)


def _page_token(violations: Violations, token: str) -> int:
    if not token:
        return 0
    if not token.isdigit() or len(token) > 19:
        violations.add("page_token", "not a token this service issued")
        return 0
    return int(token)
