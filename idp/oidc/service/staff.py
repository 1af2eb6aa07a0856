"""Staff accounts: operators and administrators, who sign in with a password and TOTP.

Staff are people who work on singleid, not customers: they have a login name,
never a central customer ID, and their own session table and cookie, so that a
staff session never passes for a customer's in the OpenID Connect flow and a
customer's never opens a staff page. See docs/decisions/0922.

Signing in takes two steps. The password (argon2id, the provider's hasher)
opens a session whose ``amr`` is ["pwd"]; it reaches nothing but the second
step, and only for ``OTP_WINDOW``. A TOTP code (RFC 6238: 30-second steps,
six digits, one step of clock drift either way, each step good once) then
replaces it with a new session (a new cookie) whose ``amr`` is ["pwd", "otp"].
Failures count per staff member and lock the account like customer logins do.
Each step appends an audit record, actor ``operator:<login>``.
"""

from __future__ import annotations

import hmac
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import pyotp
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from singleid import audit
from singleid.audit import AuditEntry
from singleid.db import Database, utcnow
from singleid.errors import AlreadyExists, InvalidArgument, NotFound
from singleid.idp.oidc import models
from singleid.idp.oidc.service import passwords
from singleid.idp.oidc.service.clients import digest
from singleid.idp.oidc.service.logins import LOCKOUT, MAX_ACCOUNT_FAILURES
from singleid.idp.oidc.service.sessions import ABSOLUTE_TIMEOUT, IDLE_TIMEOUT, TOUCH_INTERVAL
from singleid.keyring import Keyring, Sealed

# The cookie a staff session travels in (the staff pages and the review page read it).
STAFF_COOKIE = "singleid_staff"
OTP_WINDOW = timedelta(minutes=5)
PASSWORD_AMR = ("pwd",)
TWO_FACTOR_AMR = ("pwd", "otp")
TOTP_ISSUER = "singleid"
TOTP_DRIFT_STEPS = 1
_LOGIN = re.compile(r"[a-z][a-z0-9._-]{1,63}")
_CODE = re.compile(r"\d{6}")


class Role(StrEnum):
    OPERATOR = "operator"
    ADMIN = "admin"


class Step(StrEnum):
    """How a sign-in step ended."""

    OK = "ok"
    FAILED = "failed"
    LOCKED = "locked"


@dataclass(frozen=True)
class NewStaff:
    login: str
    role: Role
    provisioning_uri: str  # otpauth://totp/…, shown once for the authenticator app


@dataclass(frozen=True)
class StaffSessionView:
    sid: str
    login: str
    role: Role
    amr: tuple[str, ...]

    @property
    def actor(self) -> str:
        return f"operator:{self.login}"

    @property
    def two_factor(self) -> bool:
        return "otp" in self.amr


@dataclass(frozen=True)
class StepResult:
    step: Step
    cookie: str = ""
    session: StaffSessionView | None = None


class StaffService:
    def __init__(self, db: Database, keyring: Keyring) -> None:
        self._db = db
        self._keyring = keyring

    # -- accounts ---------------------------------------------------------------------------

    def add(self, login: str, role: str, password: str) -> NewStaff:
        """Create a staff account; the provisioning URI carries its new TOTP secret."""
        if not _LOGIN.fullmatch(login):
            raise InvalidArgument("2 to 64 of a-z 0-9 . _ -, starting with a letter",
                                  field="login")
        try:
            staff_role = Role(role)
        except ValueError:
            raise InvalidArgument("operator or admin", field="role") from None
        if not (passwords.MIN_PASSWORD_LENGTH <= len(password)
                <= passwords.MAX_PASSWORD_LENGTH):
            raise InvalidArgument(f"{passwords.MIN_PASSWORD_LENGTH} to "
                                  f"{passwords.MAX_PASSWORD_LENGTH} characters",
                                  field="password")
        secret = pyotp.random_base32()
        sealed = self._keyring.seal_text(secret, models.staff_totp_purpose(login))
        row = models.Staff(login=login, role=staff_role.value,
                           password_hash=passwords.hash_password(password),
                           totp_ciphertext=sealed.ciphertext, totp_key_id=sealed.key_id,
                           totp_last_step=0, failed_attempts=0, created_at=utcnow())

        def apply(session: Session) -> None:
            if session.get(models.Staff, login) is not None:
                raise AlreadyExists("this login exists (logins are never reused)",
                                    reason="STAFF_EXISTS", field="login")
            session.add(row)

        self._db.run_write(apply, attempts=1)
        uri = pyotp.TOTP(secret).provisioning_uri(name=login, issuer_name=TOTP_ISSUER)
        return NewStaff(login, staff_role, uri)

    def disable(self, login: str) -> None:
        """Disable the account for good and end its sessions."""
        now = utcnow()

        def apply(session: Session) -> None:
            row = session.get(models.Staff, login)
            if row is None:
                raise NotFound(f"no staff member {login!r}", field="login")
            row.disabled_at = row.disabled_at or now
            session.execute(update(models.StaffSession)
                            .where(models.StaffSession.login == login,
                                   models.StaffSession.ended_at.is_(None))
                            .values(ended_at=now))

        self._db.run_write(apply)

    # -- signing in ---------------------------------------------------------------------------

    def sign_in(self, login: str, password: str, peer: str) -> StepResult:
        """The first step: the password. OK opens a session that only the second step accepts."""
        now = utcnow()
        with self._db.read() as session:
            row = session.get(models.Staff, login) if _LOGIN.fullmatch(login) else None
            account = (row.password_hash, row.locked_until, row.disabled_at) if row else None
        if account is None or len(password) > passwords.MAX_PASSWORD_LENGTH:
            # Nobody to audit: what was typed may be anything, even a customer's phone.
            passwords.burn_time(password[:passwords.MAX_PASSWORD_LENGTH])
            return StepResult(Step.FAILED)
        stored, locked_until, disabled_at = account
        if locked_until is not None and locked_until > now:
            self._audit(login, "staff.sign_in", "RESOURCE_EXHAUSTED", peer)
            return StepResult(Step.LOCKED)
        if not passwords.verify_password(stored, password) or disabled_at is not None:
            return self._failed(login, "staff.sign_in", peer)
        return self._open(login, PASSWORD_AMR, "staff.sign_in", peer)

    def second_factor(self, cookie: str | None, code: str, peer: str) -> StepResult:
        """The second step: a TOTP code for the session the password opened."""
        pending = self.session(cookie, pending=True)
        if pending is None or pending.two_factor:
            return StepResult(Step.FAILED)
        with self._db.read() as session:
            row = session.get(models.Staff, pending.login)
            assert row is not None
            locked = row.locked_until is not None and row.locked_until > utcnow()
            sealed = Sealed(row.totp_key_id, row.totp_ciphertext)
            last_step = row.totp_last_step
        if locked:
            self._audit(pending.login, "staff.second_factor", "RESOURCE_EXHAUSTED", peer)
            return StepResult(Step.LOCKED)
        secret = self._keyring.open_text(sealed, models.staff_totp_purpose(pending.login))
        step = _matching_step(secret, code.replace(" ", ""), last_step)
        if step is None or not self._use_step(pending.login, step):
            return self._failed(pending.login, "staff.second_factor", peer)
        self.end(cookie)  # a new cookie for the stronger session: no fixation
        return self._open(pending.login, TWO_FACTOR_AMR, "staff.second_factor", peer)

    def session(self, cookie: str | None, *, pending: bool = False) -> StaffSessionView | None:
        """The live session the cookie names, of an enabled account, or None.

        A password-only session counts only when ``pending`` asks for it, and only
        within ``OTP_WINDOW`` of the password.
        """
        if not cookie or len(cookie) > 100:
            return None
        now = utcnow()
        with self._db.read() as session:
            found = session.execute(
                select(models.StaffSession, models.Staff.disabled_at)
                .join(models.Staff, models.Staff.login == models.StaffSession.login)
                .where(models.StaffSession.digest == digest(cookie))).one_or_none()
        if found is None:
            return None
        row, disabled_at = found
        view = StaffSessionView(row.sid, row.login, Role(row.role), tuple(row.amr))
        if disabled_at is not None or not _alive(row, now, view.two_factor):
            return None
        if not view.two_factor and not pending:
            return None
        if now - row.last_seen_at > TOUCH_INTERVAL:
            with self._db.write() as session:
                session.execute(update(models.StaffSession)
                                .where(models.StaffSession.digest == row.digest)
                                .values(last_seen_at=now))
        return view

    def end(self, cookie: str | None) -> None:
        if cookie:
            with self._db.write() as session:
                session.execute(update(models.StaffSession)
                                .where(models.StaffSession.digest == digest(cookie),
                                       models.StaffSession.ended_at.is_(None))
                                .values(ended_at=utcnow()))

    def csrf_token(self, view: StaffSessionView) -> str:
        """What a staff page's forms carry: bound to the session, useless to another site."""
        return self._keyring.blind_index(view.sid, "oidc.staff_csrf").hex()

    def csrf_ok(self, view: StaffSessionView, token: str) -> bool:
        return hmac.compare_digest(token, self.csrf_token(view))

    # -- internals ----------------------------------------------------------------------------

    def _open(self, login: str, amr: tuple[str, ...], action: str,
              peer: str) -> StepResult:
        cookie, sid, now = secrets.token_urlsafe(32), secrets.token_hex(16), utcnow()

        def apply(session: Session) -> Role:
            staff = session.get(models.Staff, login)
            assert staff is not None
            staff.failed_attempts = 0
            session.add(models.StaffSession(digest=digest(cookie), sid=sid, login=login,
                                            role=staff.role, amr=list(amr), created_at=now,
                                            last_seen_at=now))
            audit.append_in(session, AuditEntry(f"operator:{login}", action, audit.OK, peer))
            return Role(staff.role)

        role = self._db.run_write(apply)
        return StepResult(Step.OK, cookie, StaffSessionView(sid, login, role, amr))

    def _failed(self, login: str, action: str, peer: str) -> StepResult:
        now = utcnow()

        def apply(session: Session) -> bool:
            staff = session.get(models.Staff, login)
            assert staff is not None
            staff.failed_attempts += 1
            locked = staff.failed_attempts >= MAX_ACCOUNT_FAILURES
            if locked:
                staff.failed_attempts, staff.locked_until = 0, now + LOCKOUT
            audit.append_in(session, AuditEntry(f"operator:{login}", action,
                                                "UNAUTHENTICATED", peer))
            return locked

        locked = self._db.run_write(apply)
        return StepResult(Step.LOCKED if locked else Step.FAILED)

    def _use_step(self, login: str, step: int) -> bool:
        """Record the step as used; False if a concurrent sign-in used it (or a later one)."""
        with self._db.write() as session:
            result = session.execute(update(models.Staff)
                                     .where(models.Staff.login == login,
                                            models.Staff.totp_last_step < step)
                                     .values(totp_last_step=step))
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def _audit(self, login: str, action: str, outcome: str, peer: str) -> None:
        audit.append(self._db, AuditEntry(f"operator:{login}", action, outcome, peer))


def _matching_step(secret: str, code: str, last_step: int) -> int | None:
    """The time step (within the allowed drift, after the last used one) that gave ``code``."""
    if not _CODE.fullmatch(code):
        return None
    totp = pyotp.TOTP(secret)
    now_step = int(time.time()) // totp.interval
    for step in range(now_step - TOTP_DRIFT_STEPS, now_step + TOTP_DRIFT_STEPS + 1):
        if step > last_step and hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def _alive(row: models.StaffSession, now: datetime, two_factor: bool) -> bool:
    if row.ended_at is not None:
        return False
    if not two_factor:
        return now - row.created_at <= OTP_WINDOW
    return now - row.last_seen_at <= IDLE_TIMEOUT and now - row.created_at <= ABSOLUTE_TIMEOUT
