"""Server-side browser sessions with idle and absolute timeouts.

The cookie holds 256 random bits; the table keeps their SHA-256 digest, so a
copy of the database does not hand out sessions. ``sid`` is the public session
ID that ID tokens and back-channel logout tokens carry.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update

from singleid.db import Database, utcnow
from singleid.idp.oidc import models

IDLE_TIMEOUT = timedelta(minutes=30)
ABSOLUTE_TIMEOUT = timedelta(hours=12)
# last_seen_at is written at most this often, so that a busy session is not a write per page.
TOUCH_INTERVAL = timedelta(seconds=60)


@dataclass(frozen=True)
class SessionView:
    sid: str
    customer_id: str
    auth_time: datetime
    acr: str
    amr: tuple[str, ...]


@dataclass
class NewSession:
    """A session just signed in to: its cookie, and whether its row is written yet."""

    cookie: str
    view: SessionView
    stored: bool = False

    def values(self) -> dict[str, Any]:
        """Its ``oidc_sessions`` row."""
        view = self.view
        return {"digest": _digest(self.cookie), "sid": view.sid,
                "customer_id": view.customer_id, "auth_time": view.auth_time, "acr": view.acr,
                "amr": list(view.amr), "created_at": view.auth_time,
                "last_seen_at": view.auth_time, "ended_at": None}


def _digest(cookie: str) -> bytes:
    return hashlib.sha256(cookie.encode()).digest()


class SessionService:
    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, customer_id: str, *, acr: str,
               amr: tuple[str, ...]) -> tuple[str, SessionView]:
        new = self.start(customer_id, acr=acr, amr=amr)
        self.store(new)
        return new.cookie, new.view

    @staticmethod
    def start(customer_id: str, *, acr: str, amr: tuple[str, ...]) -> NewSession:
        """A session not stored yet: the caller stores it, alone or in its own transaction."""
        now = utcnow()
        view = SessionView(secrets.token_hex(16), customer_id, now, acr, amr)
        return NewSession(secrets.token_urlsafe(32), view)

    def store(self, new: NewSession) -> None:
        with self._db.write() as session:
            session.execute(insert(models.BrowserSession), new.values())
        new.stored = True

    def get(self, cookie: str | None, now: datetime | None = None) -> SessionView | None:
        """The live session the cookie names, or None (unknown, ended, idle or too old)."""
        if not cookie or len(cookie) > 100:
            return None
        now = now or utcnow()
        with self._db.read() as session:
            row = session.get(models.BrowserSession, _digest(cookie))
            if row is None or not _alive(row, now):
                return None
            view = _view(row)
            stale = now - row.last_seen_at > TOUCH_INTERVAL
        if stale:
            with self._db.write() as session:
                session.execute(update(models.BrowserSession)
                                .where(models.BrowserSession.digest == _digest(cookie))
                                .values(last_seen_at=now))
        return view

    def end(self, cookie: str | None) -> tuple[SessionView, list[str]] | None:
        """End the session; return it and the IDs of the clients it gave tokens to."""
        if not cookie:
            return None
        now = utcnow()
        with self._db.write() as session:
            row = session.get(models.BrowserSession, _digest(cookie))
            if row is None or row.ended_at is not None:
                return None
            row.ended_at = now
            clients = list(session.scalars(select(models.SessionClient.client_id)
                                           .where(models.SessionClient.sid == row.sid)))
            view = _view(row)
            session.execute(update(models.Grant).where(models.Grant.sid == row.sid,
                                                       models.Grant.revoked_at.is_(None))
                            .values(revoked_at=now))
            return view, clients


def _alive(row: models.BrowserSession, now: datetime) -> bool:
    return (row.ended_at is None and now - row.last_seen_at <= IDLE_TIMEOUT
            and now - row.created_at <= ABSOLUTE_TIMEOUT)


def _view(row: models.BrowserSession) -> SessionView:
    return SessionView(row.sid, row.customer_id, row.auth_time, row.acr, tuple(row.amr))
