"""Reading and writing the consolidated profile; its history and erasure.

Every write is one transaction that locks the profile row, checks ownership,
validates every value before applying any, bumps the profile version once and
writes its CloudEvent to the outbox. Events name attributes and versions only,
never values.
"""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import and_, bindparam, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from singleid import events, idempotency
from singleid.db import Database, utcnow
from singleid.errors import (
    Aborted,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    PermissionDenied,
    Violations,
)
from singleid.keyring import Keyring
from singleid.profile import models
from singleid.profile.catalogue import (
    SOURCE_PATTERN,
    Attribute,
    Catalogue,
    Sensitivity,
    ValueProblem,
    load_cached,
    normalize,
)
from singleid.profile.config import get_profile_settings
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

log = logging.getLogger(__name__)

MAX_ATTRIBUTES_PER_WRITE = 50
MAX_REASON = 500
MAX_ACTOR = 32
MAX_CLOCK_SKEW = timedelta(minutes=5)
DEFAULT_PAGE = 100
MAX_PAGE = 1000

# The hot paths run prebuilt Core statements on a plain connection: building a
# statement per call and loading ORM objects cost more than the query itself.
_P, _A = models.Profile, models.ProfileAttribute
# The customer link (idp's prebuilt statement, so idp keeps what an alias is) comes
# in the same round trip; the profile is joined only when the ID is not an alias.
_LINK = rows.CUSTOMER_LINK.subquery("link")
_ACTIVE = and_(_P.customer_id == _LINK.c.id, _LINK.c.merged_into.is_(None))
_READ_COLUMNS = (_LINK.c.id, _LINK.c.merged_into, _P.version, _P.updated_at, _A.name,
                 _A.value, _A.ciphertext, _A.key_id, _A.source, _A.source_time, _A.version,
                 _A.updated_at)
READ_PROFILE = (select(*_READ_COLUMNS).select_from(_LINK).outerjoin(_P, _ACTIVE)
                .outerjoin(_A, _A.customer_id == _P.customer_id).order_by(_A.name))
READ_PROFILE_NAMED = (select(*_READ_COLUMNS).select_from(_LINK).outerjoin(_P, _ACTIVE)
                      .outerjoin(_A, and_(_A.customer_id == _P.customer_id,
                                          _A.name.in_(bindparam("names", expanding=True))))
                      .order_by(_A.name))
# UpdateProfile: the profile row locked with its attributes, then Core writes. All of
# them (at most the catalogue's few): an expanding IN list is re-rendered on every call.
# No row: the ID is unknown, an alias, or has no profile yet (the slow path sorts it out).
LOCK_PROFILE = (select(_P.version, _A.name, _A.value, _A.blind_index, _A.source_time)
                .select_from(_LINK).join(_P, _ACTIVE)
                .outerjoin(_A, _A.customer_id == _P.customer_id)
                .with_for_update(of=_P))
INSERT_PROFILE = insert(_P)
BUMP_PROFILE = (update(_P).where(_P.customer_id == bindparam("id"))
                .values(version=bindparam("version"), updated_at=bindparam("updated_at")))
INSERT_ATTRIBUTE = insert(_A)
UPDATE_ATTRIBUTE = (update(_A).where(_A.customer_id == bindparam("b_customer_id"),
                                     _A.name == bindparam("b_name"))
                    .values({c: bindparam(c) for c in (
                        "value", "ciphertext", "key_id", "blind_index", "source",
                        "source_time", "version", "updated_at")}))
INSERT_CHANGE = insert(models.AttributeChange)
INSERT_EVENT = insert(events.OutboxEvent)
_IDEMPOTENCY = idempotency.IdempotencyRecord
REPLAY = select(_IDEMPOTENCY.request_hash, _IDEMPOTENCY.result).where(
    _IDEMPOTENCY.scope == bindparam("scope"), _IDEMPOTENCY.key == bindparam("key"))
REMEMBER = insert(_IDEMPOTENCY)
_UPDATE_RESULT: TypeAdapter[UpdateResult] = TypeAdapter(UpdateResult)


class ProfileService:
    def __init__(self, db: Database, keyring: Keyring, catalogue: Catalogue) -> None:
        self._db = db
        self._keyring = keyring
        self.catalogue = catalogue

    @classmethod
    def configured(cls, db: Database, keyring: Keyring) -> ProfileService:
        """The service on the deployment's catalogue (``SINGLEID_PROFILE_CATALOGUE``), for
        other domains, which know neither the catalogue nor its settings."""
        return cls(db, keyring, load_cached(get_profile_settings().profile_catalogue))

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
        statement = READ_PROFILE if names is None else READ_PROFILE_NAMED
        params: dict[str, Any] = {"id": customer_id, "names": names}
        with self._db.read_connection() as connection:
            # One round trip for the customer link, the profile and its attributes.
            found = connection.execute(statement, params).all()
            if not found:
                raise rows.customer_not_found(customer_id)
            survivor = customer_id
            if found[0][1] is not None:  # an alias: read the survivor's
                survivor = rows.follow_alias(connection, found[0][0], found[0][1])
                found = connection.execute(statement, params | {"id": survivor}).all()
        attributes = []
        lookup = self.catalogue.attributes
        keyring = self._keyring
        for (_, _, _, _, name, stored, ciphertext, key_id, source, source_time, attr_version,
             updated_at) in found:
            attribute = lookup.get(name) if name is not None else None
            if attribute is None:  # no attributes yet, or retired from the catalogue
                continue
            sensitivity = attribute.sensitivity
            if names is None and sensitivity is Sensitivity.SPECIAL:
                continue
            value = stored if ciphertext is None else rows.open_sealed(
                keyring, name, key_id, ciphertext)
            attributes.append(AttributeView(
                name=name, value=value, source=source, source_time=source_time,
                version=attr_version, update_time=updated_at, sensitivity=sensitivity.value))
        version = found[0][2] or 0
        return ProfileView(customer_id=survivor, requested_customer_id=customer_id,
                           resolved_from_alias=survivor != customer_id, version=version,
                           etag=etag(survivor, version), attributes=attributes,
                           update_time=found[0][3])

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
            connection = session.connection()
            return _run_once(
                connection, f"UpdateProfile:{source}", idempotency_key, request,
                lambda: self._apply(connection, customer_id, source, normalized,
                                    expected_version, when))

        return self._db.run_write(work)

    def write_owned(self, session: Session, customer_id: str, source: str,
                    values: Mapping[str, Any], *, source_time: datetime) -> list[str]:
        """What a source system knows of a customer, inside the caller's transaction.

        For matching's import of a product's legacy accounts: of ``values``, only
        the attributes ``source`` owns are written, and only valid ones (an
        invalid value is left out and logged by attribute name; the account is
        imported all the same). Older values stay, as in :meth:`update`; on a
        merge the survivorship rules choose among the products. Returns the
        attributes written.
        """
        owned: dict[str, Any] = {}
        for name, value in values.items():
            attribute = self.catalogue.attributes.get(name)
            if attribute is None or source not in attribute.owners:
                continue
            try:
                owned[name] = normalize(attribute, value)
            except ValueProblem:
                log.warning("a source's value is not valid for the profile",
                            extra={"attribute": name, "source_system": source})
        if not owned:
            return []
        return self._apply(session.connection(), customer_id, source, owned, None,
                           source_time).updated

    def _apply(self, connection: Connection, customer_id: str, source: str,
               values: dict[str, Any], expected_version: int | None,
               when: datetime) -> UpdateResult:
        survivor, found = _lock(connection, customer_id)
        now = utcnow()
        if found:
            current = found[0][0]
            stored = {row[1]: row for row in found if row[1] is not None}
        else:  # a concurrent creator loses here; Database.run_write re-runs it
            connection.execute(INSERT_PROFILE, {"customer_id": survivor, "version": 0,
                                                "created_at": now, "updated_at": now})
            current, stored = 0, {}
        if expected_version is not None and expected_version != current:
            raise Aborted(f"the profile is at version {current}, not {expected_version}",
                          reason="STALE_VERSION", field="expected_version",
                          metadata={"current_version": str(current)})
        updated, skipped, unchanged = [], [], []
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        history: list[dict[str, Any]] = []
        version = current + 1
        for name, value in sorted(values.items()):
            attribute = self.catalogue.attributes[name]
            row = stored.get(name)
            if row is not None and expected_version is None and when < row[4]:
                skipped.append(name)
                continue
            written = self._columns(attribute, row, value)
            if written is None:
                unchanged.append(name)
                continue
            written |= {"source": source, "source_time": when, "version": version,
                        "updated_at": now}
            if row is None:
                inserts.append(written | {"customer_id": survivor, "name": name})
            else:
                updates.append(written | {"b_customer_id": survivor, "b_name": name})
            sensitive = attribute.sealed
            history.append({
                "customer_id": survivor, "name": name, "kind": "set", "source": source,
                "source_time": when, "version": version, "changed_at": now,
                "old_value": None if sensitive or row is None else row[2],
                "new_value": None if sensitive else value, "sensitive": sensitive,
                "redacted": False, "reason": None})
            updated.append(name)
        if updated:
            if inserts:
                connection.execute(INSERT_ATTRIBUTE, inserts)
            if updates:
                connection.execute(UPDATE_ATTRIBUTE, updates)
            connection.execute(INSERT_CHANGE, history)
            connection.execute(BUMP_PROFILE, {"id": survivor, "version": version,
                                              "updated_at": now})
            connection.execute(INSERT_EVENT, {
                "event_id": str(uuid.uuid4()), "type": events.TYPE_PREFIX + PROFILE_UPDATED,
                "source": EVENT_SOURCE, "subject": survivor, "time": utcnow(),
                "published_at": None,
                "data": {"customer_id": survivor, "version": version, "source_system": source,
                         "attributes": [self._changed(n, version) for n in updated]}})
            current = version
        return UpdateResult(customer_id=survivor, version=current,
                            etag=etag(survivor, current), updated=updated,
                            skipped=skipped, unchanged=unchanged)

    def _columns(self, attribute: Attribute, row: Any, value: Any
                 ) -> dict[str, Any] | None:
        """The value columns to write, or None when the stored value is the same.

        A sealed value is compared by its blind index, without opening the stored one.
        """
        if attribute.sealed:
            text = rows.canonical_json(value)
            index = self._keyring.blind_index(text, attribute.purpose)
            if row is not None and row[3] == index:
                return None
            sealed = self._keyring.seal_text(text, attribute.purpose)
            return {"value": None, "ciphertext": sealed.ciphertext, "key_id": sealed.key_id,
                    "blind_index": index}
        if row is not None and row[2] == value:
            return None
        return {"value": value, "ciphertext": None, "key_id": None, "blind_index": None}

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


def _lock(connection: Connection, customer_id: str) -> tuple[str, Sequence[Any]]:
    """The survivor, and its profile row locked with its attributes (no rows: no profile).

    One round trip when the ID is not an alias and the profile exists.
    """
    found = connection.execute(LOCK_PROFILE, {"id": customer_id}).all()
    if found:
        return customer_id, found
    survivor = rows.survivor_on(connection, customer_id)  # unknown: NotFound
    if survivor == customer_id:
        return survivor, found
    return survivor, connection.execute(LOCK_PROFILE, {"id": survivor}).all()


def _run_once(connection: Connection, scope: str, key: str, request: Any,
              apply: Callable[[], UpdateResult]) -> UpdateResult:
    """``singleid.idempotency.run_once`` on a Core connection, with the same table and rules."""
    if not key:
        return apply()
    idempotency.check_key(key)
    request_hash = idempotency.fingerprint(request)
    stored = connection.execute(REPLAY, {"scope": scope, "key": key}).one_or_none()
    if stored is not None:
        if stored[0] != request_hash:
            raise FailedPrecondition(
                "this idempotency key was used for a different request",
                reason="IDEMPOTENCY_KEY_REUSED", field="idempotency_key")
        return _UPDATE_RESULT.validate_json(stored[1])
    result = apply()
    connection.execute(REMEMBER, {"scope": scope, "key": key, "request_hash": request_hash,
                                  "result": _UPDATE_RESULT.dump_json(result).decode(),
                                  "created_at": utcnow()})
    return result


def _page_token(violations: Violations, token: str) -> int:
    if not token:
        return 0
    if not token.isdigit() or len(token) > 19:
        violations.add("page_token", "not a token this service issued")
        return 0
    return int(token)
