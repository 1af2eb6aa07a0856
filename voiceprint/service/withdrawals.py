"""The profile's biometric-consent withdrawals delete the voiceprint.

:class:`ConsentWithdrawals` reads the profile's ``consent.withdrawn.v1`` events
from its change feed and deletes the voiceprint and its replay fingerprints.
Its resume token is kept in ``voiceprint_consent_feed`` and committed with the
deletions, so a restart resumes where it stopped; a deletion repeated after a
crash finds nothing. Until the worker catches up (about a second), the consent
check in Enroll and Verify already refuses the customer. See decision 0502.
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from singleid.db import Database, utcnow
from singleid.profile.service import ChangeFeed, Cursor, Filters
from singleid.voiceprint import models
from singleid.voiceprint.service.consent import BIOMETRICS
from singleid.voiceprint.service.voiceprints import remove_voiceprint

WITHDRAWN = "consent.withdrawn.v1"
FEED = "profile.consents"
log = logging.getLogger(__name__)


class ConsentWithdrawals:
    """Deletes the voiceprints of customers who withdrew their biometric consent."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._feed = ChangeFeed(db)
        self._filters = Filters.of([WITHDRAWN], [])
        self._cursor: Cursor | None = None

    def _load_cursor(self) -> Cursor:
        with self._db.read() as session:
            row = session.get(models.ConsentFeedCursor, FEED)
            return Cursor.parse(row.token if row is not None else "")

    def poll(self, limit: int = 500) -> bool:
        """Apply the withdrawals committed since the last poll; whether the feed moved on."""
        if self._cursor is None:
            self._cursor = self._load_cursor()
        before = self._cursor.token()
        events = self._feed.poll(self._cursor, self._filters, limit)
        token = self._cursor.token()
        if token == before:
            return False
        customers = [str(e.data.get("customer_id", "")) for e in events
                     if e.data.get("purpose") == BIOMETRICS]

        def apply(session: Session) -> int:
            removed = sum(remove_voiceprint(session, c, reason="consent_withdrawn")
                          for c in customers if c)
            row = session.get(models.ConsentFeedCursor, FEED)
            if row is None:
                row = models.ConsentFeedCursor(name=FEED, token=token, updated_at=utcnow())
                session.add(row)
            row.token, row.updated_at = token, utcnow()
            return removed

        try:
            removed = self._db.run_write(apply)
        except Exception:
            self._cursor = None  # re-read the committed token: nothing is skipped
            raise
        if removed:
            log.info("voiceprints deleted after consent withdrawals", extra={"count": removed})
        return True
