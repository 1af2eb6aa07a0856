"""Consents per purpose: marketing, biometrics, and sharing with a product (``sharing.<product>``).

Each records the text version the customer agreed to, the time and the channel.
Granting emits ``singleid.consent.granted.v1``; withdrawing emits
``singleid.consent.withdrawn.v1`` (the voiceprint service deletes the template
on the biometrics one). Other domains ask :meth:`ConsentService.has_consent`.
"""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from singleid import events, idempotency
from singleid.db import Database, utcnow
from singleid.errors import Violations
from singleid.profile import models
from singleid.profile.catalogue import Catalogue, load_cached
from singleid.profile.config import get_profile_settings
from singleid.profile.service import rows
from singleid.profile.service.types import (
    CONSENT_GRANTED,
    CONSENT_WITHDRAWN,
    EVENT_SOURCE,
    ConsentView,
)

PURPOSE = re.compile(r"^(marketing|biometrics|sharing\.[a-z][a-z0-9_]{0,31})$")
TEXT_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
CHANNEL = re.compile(r"^[a-z][a-z0-9_.-]{0,31}$")


class ConsentService:
    def __init__(self, db: Database, catalogue: Catalogue | None = None) -> None:
        self._db = db
        self._catalogue = catalogue or load_cached(get_profile_settings().profile_catalogue)

    def has_consent(self, customer_id: str, purpose: str) -> bool:
        """Whether the customer (merge aliases followed) has granted ``purpose`` and not withdrawn.

        An unknown customer raises NotFound; a malformed purpose InvalidArgument.
        """
        consent = self.get(customer_id, purpose)
        return consent is not None and consent.granted

    def get(self, customer_id: str, purpose: str) -> ConsentView | None:
        violations = Violations()
        rows.check_customer_id(violations, customer_id)
        _purpose(violations, purpose)
        violations.raise_if_any()
        with self._db.read() as session:
            survivor = rows.survivor_id(session, customer_id)
            row = session.get(models.Consent, (survivor, purpose))
            return _view(row) if row is not None else None

    def list(self, customer_id: str) -> list[ConsentView]:
        violations = Violations()
        rows.check_customer_id(violations, customer_id)
        violations.raise_if_any()
        with self._db.read() as session:
            survivor = rows.survivor_id(session, customer_id)
            return [_view(r) for r in session.scalars(select(models.Consent).where(
                models.Consent.customer_id == survivor).order_by(models.Consent.purpose))]

    def set(self, customer_id: str, purpose: str, granted: bool, text_version: str,
            channel: str, change_time: datetime | None = None,
            idempotency_key: str = "") -> ConsentView:
        """Grant or withdraw; a change to the same state with the same text is a no-op."""
        violations = Violations()
        rows.check_customer_id(violations, customer_id)
        _purpose(violations, purpose)
        if not TEXT_VERSION.match(text_version):
            violations.add("text_version", "must name the consent text's version "
                           "(letters, digits, . _ -; at most 64)")
        if not CHANNEL.match(channel):
            violations.add("channel", "must name the channel (e.g. app, web, ivr, branch; "
                           "at most 32 characters)")
        when = change_time or utcnow()
        if when.tzinfo is None:
            violations.add("change_time", "must carry a time zone")
        violations.raise_if_any()
        request = {"customer_id": customer_id, "purpose": purpose, "granted": granted,
                   "text_version": text_version, "channel": channel, "time": when.isoformat()}

        def work(session: Session) -> ConsentView:
            return idempotency.run_once(
                session, "SetConsent", idempotency_key, request,
                lambda: self._set(session, customer_id, purpose, granted, text_version, channel,
                                  when), ConsentView)

        return self._db.run_write(work)

    def _set(self, session: Session, customer_id: str, purpose: str, granted: bool,
             text_version: str, channel: str, when: datetime) -> ConsentView:
        survivor = rows.survivor_id(session, customer_id)
        profile = rows.lock_profile(session, survivor, create=True)
        assert profile is not None
        row = session.get(models.Consent, (survivor, purpose))
        if (row is not None and row.granted == granted and row.text_version == text_version):
            return _view(row)
        version = profile.version + 1
        profile.version, profile.updated_at = version, utcnow()
        if row is None:
            row = models.Consent(customer_id=survivor, purpose=purpose)
            session.add(row)
        row.granted, row.text_version, row.channel, row.changed_at, row.version = (
            granted, text_version, channel, when, version)
        rows.record_change(session, self._catalogue, customer_id=survivor,
                           name=f"consent.{purpose}", kind="granted" if granted else "withdrawn",
                           source=channel, source_time=when, version=version,
                           reason=f"text {text_version}")
        events.emit(session, type=CONSENT_GRANTED if granted else CONSENT_WITHDRAWN,
                    source=EVENT_SOURCE, subject=survivor,
                    data={"customer_id": survivor, "purpose": purpose,
                          "text_version": text_version, "channel": channel,
                          "time": when.isoformat(), "version": version})
        session.flush()
        return _view(row)


def _purpose(violations: Violations, purpose: str) -> None:
    if not PURPOSE.match(purpose):
        violations.add("purpose", "must be marketing, biometrics or sharing.<product>")


def _view(row: models.Consent) -> ConsentView:
    return ConsentView(customer_id=row.customer_id, purpose=row.purpose, granted=row.granted,
                       text_version=row.text_version, channel=row.channel,
                       change_time=row.changed_at, version=row.version)
