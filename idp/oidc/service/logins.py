"""Ecosystem logins (phone or email + argon2id password), legacy logins, and lockout.

Failed attempts are limited twice: per account (``MAX_ACCOUNT_FAILURES`` in a
row locks it for ``LOCKOUT``) and per client address (``MAX_ADDRESS_FAILURES``
in ``ADDRESS_WINDOW`` locks the address). Each lockout writes an audit event to
the outbox; client addresses are kept only as HMAC blind indexes.

A legacy login is a product account's old password hash, imported with the
account (:meth:`LoginService.add_legacy_login`). It signs nobody in by itself:
the first time it verifies, its owner is asked whether to make it their
ecosystem login. Agreeing records the consent (time, text version) and moves
the password, rehashed with argon2id, into an ecosystem login; refusing links
nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from singleid import events
from singleid.db import Database, utcnow
from singleid.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from singleid.idp import ids
from singleid.idp.normalize import Canonical, IdentifierKind, NormalizationError, normalize
from singleid.idp.oidc import models
from singleid.idp.oidc.service import passwords
from singleid.idp.oidc.service.passwords import LegacyFormat
from singleid.idp.service import CustomerService, ProductService
from singleid.idp.service.records import blind_index
from singleid.idp.service.types import CustomerState, IdentifierInput, Lookup
from singleid.keyring import Keyring

ECOSYSTEM_PRODUCT = "singleid"
ECOSYSTEM_PRODUCT_NAME = "singleid: the ecosystem login"
LOGIN_KINDS = (IdentifierKind.PHONE, IdentifierKind.EMAIL)
MAX_ACCOUNT_FAILURES = 5
MAX_ADDRESS_FAILURES = 20
ADDRESS_WINDOW = timedelta(minutes=15)
LOCKOUT = timedelta(minutes=15)
PENDING_LINK_TTL = timedelta(minutes=10)
LEGACY_CONSENT_VERSION = "legacy-link-2026-11"
PASSWORD_ACR = "urn:singleid:loa:1"  # noqa: S105 - a level of assurance
PASSWORD_AMR = ("pwd",)
MAX_NAME = 200
EVENT_SOURCE = "/singleid/idp/oidc"
ADDRESS_PURPOSE = "oidc.client_address"


class Outcome(StrEnum):
    OK = "ok"
    LEGACY_CONSENT = "legacy_consent"
    FAILED = "failed"
    LOCKED = "locked"


@dataclass(frozen=True)
class SignIn:
    outcome: Outcome
    customer_id: str = ""
    pending_link: str = ""  # for LEGACY_CONSENT: the token the consent form carries
    product: str = ""


_NOT_LOOKED_UP: Any = object()  # _put_legacy looks the stored login up itself


@dataclass(frozen=True)
class LegacyLoginInput:
    """A product account's old password hash, to become a legacy login."""

    product: str
    account_id: str
    kind: IdentifierKind
    value: str
    password_hash: str
    hash_format: LegacyFormat | str = ""  # empty: told by the hash's layout


def parse_identifier(raw: str) -> Canonical:
    """A phone or an email, as typed into the one login field."""
    kind = IdentifierKind.EMAIL if "@" in raw else IdentifierKind.PHONE
    try:
        return normalize(kind, raw)
    except NormalizationError as exc:
        raise InvalidArgument(exc.description, field=kind.value, reason=exc.reason) from None


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class LoginService:
    def __init__(self, db: Database, keyring: Keyring) -> None:
        self._db = db
        self._keyring = keyring
        self._customers = CustomerService(db, keyring)
        self._products = ProductService(db)

    # -- ecosystem logins ---------------------------------------------------

    def register(self, identifier: str, password: str, name: str) -> str:
        """Create a customer (through CustomerService, product ``singleid``) and their login."""
        canonical = parse_identifier(identifier)
        _check_password(password)
        name = name.strip()
        if not name or len(name) > MAX_NAME:
            raise InvalidArgument(f"1 to {MAX_NAME} characters", field="name")
        index = blind_index(self._keyring, canonical)
        with self._db.read() as session:
            if self._login(session, canonical.kind, index) is not None:
                raise AlreadyExists("this login exists; sign in instead", reason="LOGIN_EXISTS",
                                    field=canonical.kind.value)
        self._ensure_product()
        password_hash = passwords.hash_password(password)
        registration = self._customers.register(
            ECOSYSTEM_PRODUCT, "login-" + ids.new_id(),
            [IdentifierInput(canonical.kind, canonical.value, verified=False)],
            display_name=name)
        self._create_login(registration.customer_id, canonical, index, password_hash)
        return registration.customer_id

    def add_login(self, customer_id: str, identifier: str, password: str) -> str:
        """Give an existing customer (say, one a messenger bot registered) an ecosystem login."""
        canonical = parse_identifier(identifier)
        _check_password(password)
        customer = self._customers.get(customer_id)
        if customer.state != CustomerState.ACTIVE:
            raise FailedPrecondition("merged into another customer; give the survivor's ID",
                                     field="customer_id", reason="CUSTOMER_MERGED")
        index = blind_index(self._keyring, canonical)
        with self._db.read() as session:
            if self._login(session, canonical.kind, index) is not None:
                raise AlreadyExists("this login exists", reason="LOGIN_EXISTS",
                                    field=canonical.kind.value)
        self._create_login(customer_id, canonical, index, passwords.hash_password(password))
        return customer_id

    def _create_login(self, customer_id: str, canonical: Canonical, index: bytes,
                      password_hash: str, session: Session | None = None) -> models.Login:
        now = utcnow()
        row = models.Login(customer_id=customer_id, kind=canonical.kind.value,
                           blind_index=index, password_hash=password_hash, failed_attempts=0,
                           created_at=now, updated_at=now)

        def apply(s: Session) -> models.Login:
            s.add(row)
            s.flush()
            events.emit(s, type="login.created.v1", source=EVENT_SOURCE, subject=customer_id,
                        data={"customer_id": customer_id, "kind": canonical.kind.value})
            return row

        if session is not None:
            return apply(session)
        try:
            return self._db.run_write(apply, attempts=1)
        except IntegrityError:
            raise AlreadyExists("this login exists; sign in instead", reason="LOGIN_EXISTS",
                                field=canonical.kind.value) from None

    def _ensure_product(self) -> None:
        try:
            self._products.get(ECOSYSTEM_PRODUCT)
        except NotFound:
            with contextlib.suppress(AlreadyExists):
                self._products.create(ECOSYSTEM_PRODUCT, ECOSYSTEM_PRODUCT_NAME)

    @staticmethod
    def _login(session: Session, kind: IdentifierKind, index: bytes) -> models.Login | None:
        return session.scalars(select(models.Login).where(
            models.Login.kind == kind.value, models.Login.blind_index == index)).one_or_none()

    # -- signing in -----------------------------------------------------------

    def sign_in(  # noqa: PLR0911 - each outcome returns where it is decided
            self, identifier: str, password: str, address: str) -> SignIn:
        now = utcnow()
        address_index = self._keyring.blind_index(address, ADDRESS_PURPOSE).hex()
        with self._db.read() as session:
            throttle = session.get(models.IpThrottle, address_index)
            if throttle is not None and throttle.locked_until and throttle.locked_until > now:
                return SignIn(Outcome.LOCKED)
        try:
            canonical = parse_identifier(identifier)
        except InvalidArgument:
            self._address_failed(address_index)
            return SignIn(Outcome.FAILED)
        if len(password) > passwords.MAX_PASSWORD_LENGTH:
            self._address_failed(address_index)
            return SignIn(Outcome.FAILED)
        index = blind_index(self._keyring, canonical)
        with self._db.read() as session:
            login = self._login(session, canonical.kind, index)
            login_view = (login.id, login.customer_id, login.password_hash,
                          login.locked_until, login.failed_attempts) if login else None
            legacy = [] if login else [
                (r.id, LegacyFormat(r.hash_format), r.password_hash, r.locked_until,
                 r.product_code)
                for r in session.scalars(select(models.LegacyLogin).where(
                    models.LegacyLogin.kind == canonical.kind.value,
                    models.LegacyLogin.blind_index == index,
                    models.LegacyLogin.consented_at.is_(None)))]
        if login_view is not None:
            login_id, customer_id, stored, locked_until, failures = login_view
            if locked_until is not None and locked_until > now:
                return SignIn(Outcome.LOCKED)
            if passwords.verify_password(stored, password):
                if failures or locked_until is not None:  # no write for the common case
                    self._succeeded(models.Login, login_id)
                return SignIn(Outcome.OK, customer_id=customer_id)
            locked = self._failed(models.Login, login_id, address_index, customer_id)
            return SignIn(Outcome.LOCKED if locked else Outcome.FAILED)
        open_legacy = [r for r in legacy if not (r[3] is not None and r[3] > now)]
        if legacy and not open_legacy:
            return SignIn(Outcome.LOCKED)
        for legacy_id, hash_format, stored_hash, _, product in open_legacy:
            if stored_hash and passwords.verify_legacy(hash_format, stored_hash, password):
                self._succeeded(models.LegacyLogin, legacy_id)
                token = self._pending_link(legacy_id, password)
                return SignIn(Outcome.LEGACY_CONSENT, pending_link=token, product=product)
        if not open_legacy:
            passwords.burn_time(password)
            self._address_failed(address_index)
            return SignIn(Outcome.FAILED)
        locked = False
        for legacy_id, *_ in open_legacy:
            locked = self._failed(models.LegacyLogin, legacy_id, address_index, "") or locked
        return SignIn(Outcome.LOCKED if locked else Outcome.FAILED)

    def _succeeded(self, model: type[models.Login] | type[models.LegacyLogin],
                   row_id: int) -> None:
        with self._db.write() as session:
            session.execute(update(model).where(model.id == row_id, model.failed_attempts > 0)
                            .values(failed_attempts=0, locked_until=None))

    def _failed(self, model: type[models.Login] | type[models.LegacyLogin], row_id: int,
                address_index: str, customer_id: str) -> bool:
        """Count a failure for the account and the address; True if the account is now locked."""
        now = utcnow()

        def apply(session: Session) -> bool:
            row: Any = session.get(model, row_id)
            assert row is not None
            row.failed_attempts += 1
            locked = row.failed_attempts >= MAX_ACCOUNT_FAILURES
            if locked:
                row.failed_attempts = 0
                row.locked_until = now + LOCKOUT
                events.emit(session, type="login.locked.v1", source=EVENT_SOURCE,
                            subject=customer_id or f"{model.__tablename__}/{row_id}",
                            data={"login": f"{model.__tablename__}/{row_id}",
                                  "customer_id": customer_id,
                                  "failures": MAX_ACCOUNT_FAILURES,
                                  "locked_until": (now + LOCKOUT).isoformat()})
            self._count_address(session, address_index, now)
            return bool(locked)

        return self._db.run_write(apply)

    def _address_failed(self, address_index: str) -> None:
        self._db.run_write(lambda s: self._count_address(s, address_index, utcnow()))

    @staticmethod
    def _count_address(session: Session, address_index: str, now: datetime) -> None:
        row = session.get(models.IpThrottle, address_index)
        if row is None:
            row = models.IpThrottle(address=address_index, window_start=now, failures=0)
            session.add(row)
        if now - row.window_start > ADDRESS_WINDOW:
            row.window_start, row.failures = now, 0
        row.failures += 1
        if row.failures >= MAX_ADDRESS_FAILURES:
            row.failures = 0
            row.window_start = now
            row.locked_until = now + LOCKOUT
            events.emit(session, type="login.address_locked.v1", source=EVENT_SOURCE,
                        subject=f"address/{address_index[:16]}",
                        data={"address_index": address_index[:16],
                              "failures": MAX_ADDRESS_FAILURES,
                              "locked_until": (now + LOCKOUT).isoformat()})

    # -- legacy logins ----------------------------------------------------------

    def add_legacy_login(self, product: str, account_id: str, kind: IdentifierKind, value: str,
                         hash_format: LegacyFormat | str, password_hash: str) -> int:
        """Attach a legacy password hash to an imported product account.

        The account must already be registered (``CustomerService.register``);
        ``hash_format`` is one of :class:`LegacyFormat`, whose layouts
        ``singleid.idp.oidc.service.passwords`` documents. Adding the same
        (product, account, kind) again replaces the hash, unless the owner has
        already made it their ecosystem login. Returns the legacy login's ID.
        """
        item = LegacyLoginInput(product, account_id, kind, value, password_hash, hash_format)
        checked = self._check_legacy(item)
        # The account must exist; its customer is resolved again at sign-in (merges move it).
        self._customers.resolve(Lookup(product_account=(product, account_id)))

        def apply(session: Session) -> int:
            row = self._put_legacy(session, *checked)
            if row is None:
                raise FailedPrecondition("the owner already made this their ecosystem login",
                                         reason="LEGACY_LOGIN_LINKED", field="account_id")
            session.flush()
            return row.id

        return self._db.run_write(apply)

    def add_legacy_logins(self, session: Session, items: list[LegacyLoginInput]) -> int:
        """Many legacy logins inside the caller's transaction (matching's import).

        The accounts were registered in the same import. Each item is checked as
        :meth:`add_legacy_login` checks it (``InvalidArgument`` names the field);
        a login its owner already linked is left as it is. Returns how many
        were added or replaced.
        """
        checked = [self._check_legacy(item) for item in items]
        if not checked:
            return 0
        # One query and one flush for the lot: an import writes them by the thousand.
        with session.no_autoflush:
            existing = {(r.product_code, r.account_id, r.kind): r for r in session.scalars(
                select(models.LegacyLogin).where(
                    models.LegacyLogin.product_code.in_({i.product for i, _, _ in checked}),
                    models.LegacyLogin.account_id.in_({i.account_id for i, _, _ in checked})))}
            added = sum(self._put_legacy(session, item, fmt, index, existing.get(
                (item.product, item.account_id, item.kind.value))) is not None
                        for item, fmt, index in checked)
        session.flush()
        return added

    def _check_legacy(self, item: LegacyLoginInput
                      ) -> tuple[LegacyLoginInput, LegacyFormat, bytes]:
        if item.kind not in LOGIN_KINDS:
            raise InvalidArgument("a legacy login is a phone or an email", field="kind")
        try:
            fmt = (LegacyFormat(item.hash_format) if item.hash_format
                   else passwords.detect_legacy_format(item.password_hash))
        except ValueError:
            raise InvalidArgument(f"one of {', '.join(LegacyFormat)}",
                                  field="hash_format") from None
        try:
            passwords.check_legacy_format(fmt, item.password_hash)
        except passwords.MalformedHash as exc:
            raise InvalidArgument(str(exc), field="password_hash",
                                  reason="MALFORMED_HASH") from None
        try:
            canonical = normalize(item.kind, item.value)
        except NormalizationError as exc:
            raise InvalidArgument(exc.description, field="value", reason=exc.reason) from None
        return item, fmt, blind_index(self._keyring, canonical)

    @staticmethod
    def _put_legacy(session: Session, item: LegacyLoginInput, fmt: LegacyFormat,
                    index: bytes, row: Any = _NOT_LOOKED_UP) -> models.LegacyLogin | None:
        """Insert or replace; None when the owner already linked it (it stays as it is).

        ``row``: the stored login or None, when a bulk query already looked.
        """
        if row is _NOT_LOOKED_UP:
            row = session.scalars(select(models.LegacyLogin).where(
                models.LegacyLogin.product_code == item.product,
                models.LegacyLogin.account_id == item.account_id,
                models.LegacyLogin.kind == item.kind.value)).one_or_none()
        if row is not None and row.consented_at is not None:
            return None
        if row is None:
            row = models.LegacyLogin(product_code=item.product, account_id=item.account_id,
                                     kind=item.kind.value, failed_attempts=0,
                                     created_at=utcnow())
            session.add(row)
        row.blind_index, row.hash_format, row.password_hash = index, fmt.value, item.password_hash
        events.emit(session, type="login.legacy_added.v1", source=EVENT_SOURCE,
                    subject=f"products/{item.product}/accounts/{item.account_id}",
                    data={"product": item.product, "account_id": item.account_id,
                          "kind": item.kind.value, "hash_format": fmt.value})
        return row  # type: ignore[no-any-return]

    def _pending_link(self, legacy_id: int, password: str) -> str:
        token = secrets.token_urlsafe(32)
        password_hash = passwords.hash_password(password)
        with self._db.write() as session:
            session.add(models.PendingLink(digest=_digest(token), legacy_login_id=legacy_id,
                                           password_hash=password_hash,
                                           expires_at=utcnow() + PENDING_LINK_TTL))
        return token

    def pending_product(self, token: str) -> str | None:
        with self._db.read() as session:
            pending = session.get(models.PendingLink, _digest(token))
            if pending is None or pending.expires_at < utcnow():
                return None
            legacy = session.get(models.LegacyLogin, pending.legacy_login_id)
            return legacy.product_code if legacy else None

    def link_legacy(self, token: str) -> str:
        """The owner agreed: record the consent, make the login theirs; return the customer ID."""
        with self._db.read() as session:
            pending = session.get(models.PendingLink, _digest(token))
            if pending is None or pending.expires_at < utcnow():
                raise NotFound("this sign-in has expired; sign in again",
                               reason="PENDING_LINK_NOT_FOUND", field="link")
            legacy = session.get(models.LegacyLogin, pending.legacy_login_id)
            assert legacy is not None
            product, account_id = legacy.product_code, legacy.account_id
        customer_id = self._customers.resolve(
            Lookup(product_account=(product, account_id))).customer_id
        now = utcnow()

        def apply(session: Session) -> str:
            pending = session.get(models.PendingLink, _digest(token))
            if pending is None:
                raise NotFound("this sign-in has expired; sign in again",
                               reason="PENDING_LINK_NOT_FOUND", field="link")
            legacy = session.get(models.LegacyLogin, pending.legacy_login_id)
            assert legacy is not None
            canonical_kind = IdentifierKind(legacy.kind)
            if self._login(session, canonical_kind, legacy.blind_index) is not None:
                raise AlreadyExists("this login already belongs to an ecosystem account",
                                    reason="LOGIN_EXISTS", field=legacy.kind)
            login = models.Login(customer_id=customer_id, kind=legacy.kind,
                                 blind_index=legacy.blind_index,
                                 password_hash=pending.password_hash, failed_attempts=0,
                                 created_at=now, updated_at=now)
            session.add(login)
            session.flush()
            legacy.consented_at = now
            legacy.consent_text_version = LEGACY_CONSENT_VERSION
            legacy.login_id = login.id
            legacy.password_hash = None  # rehashed with argon2id; the old hash is dropped
            session.delete(pending)
            events.emit(session, type="login.legacy_linked.v1", source=EVENT_SOURCE,
                        subject=customer_id,
                        data={"customer_id": customer_id, "product": legacy.product_code,
                              "account_id": legacy.account_id,
                              "consent_text_version": LEGACY_CONSENT_VERSION,
                              "consented_at": now.isoformat()})
            return customer_id

        return self._db.run_write(apply, attempts=1)

    def refuse_legacy(self, token: str) -> None:
        """The owner declined: forget the pending sign-in; nothing is linked."""
        with self._db.write() as session:
            pending = session.get(models.PendingLink, _digest(token))
            if pending is not None:
                session.delete(pending)

    def legacy_state(self, product: str, account_id: str) -> list[tuple[str, datetime | None,
                                                                        str | None]]:
        """(kind, consented_at, consent_text_version) of an account's legacy logins."""
        with self._db.read() as session:
            return [(r.kind, r.consented_at, r.consent_text_version)
                    for r in session.scalars(select(models.LegacyLogin).where(
                        models.LegacyLogin.product_code == product,
                        models.LegacyLogin.account_id == account_id))]


def _check_password(password: str) -> None:
    if not passwords.MIN_PASSWORD_LENGTH <= len(password) <= passwords.MAX_PASSWORD_LENGTH:
        raise InvalidArgument(f"{passwords.MIN_PASSWORD_LENGTH} to "
                              f"{passwords.MAX_PASSWORD_LENGTH} characters", field="password",
                              reason="PASSWORD_LENGTH")
