"""The OIDC services on SQLite and PostgreSQL: sessions' timeouts, legacy-login import rules,
the shared replay check of client assertions."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from singleid.db import Database, utcnow
from singleid.errors import FailedPrecondition, InvalidArgument, NotFound
from singleid.idp.normalize import IdentifierKind
from singleid.idp.oidc import models
from singleid.idp.oidc.service.claims import ClaimSource
from singleid.idp.oidc.service.keys import SigningKeys
from singleid.idp.oidc.service.logins import LoginService, Outcome
from singleid.idp.oidc.service.passwords import LegacyFormat, make_legacy_hash
from singleid.idp.oidc.service.provider import Provider
from singleid.idp.oidc.service.sessions import (
    ABSOLUTE_TIMEOUT,
    IDLE_TIMEOUT,
    SessionService,
)
from singleid.idp.service import CustomerService, ProductService
from singleid.idp.service.types import IdentifierInput
from singleid.keyring import Keyring
from singleid.profile.catalogue import parse
from singleid.profile.service import ProfileService


def test_sessions_end_after_the_idle_and_the_absolute_timeouts(db: Database) -> None:
    sessions = SessionService(db)
    cookie, view = sessions.create("c" * 26, acr="1", amr=("pwd",))
    now = utcnow()
    assert sessions.get(cookie, now) == view
    assert sessions.get(cookie, now + IDLE_TIMEOUT + timedelta(seconds=5)) is None
    # Activity keeps it alive, but never past the absolute timeout.
    step = IDLE_TIMEOUT - timedelta(minutes=1)
    moment = now
    while moment + step < now + ABSOLUTE_TIMEOUT:
        moment += step
        assert sessions.get(cookie, moment) is not None
    assert sessions.get(cookie, now + ABSOLUTE_TIMEOUT + timedelta(seconds=1)) is None
    assert sessions.get("forged-cookie") is None
    assert sessions.end(cookie) is not None
    assert sessions.get(cookie) is None


def test_legacy_logins_attach_only_to_existing_accounts(db: Database, keyring: Keyring) -> None:
    logins = LoginService(db, keyring)
    stored = make_legacy_hash(LegacyFormat.SALTED_SHA256, "old password")
    ProductService(db).create("loyalty")
    with pytest.raises(NotFound):
        logins.add_legacy_login("loyalty", "acc-404", IdentifierKind.EMAIL, "a@example.com",
                                LegacyFormat.SALTED_SHA256, stored)
    registration = CustomerService(db, keyring).register(
        "loyalty", "acc-1", [IdentifierInput(IdentifierKind.EMAIL, "a@example.com")])
    with pytest.raises(InvalidArgument):
        logins.add_legacy_login("loyalty", "acc-1", IdentifierKind.EMAIL, "a@example.com",
                                LegacyFormat.BCRYPT, stored)  # the hash is not bcrypt
    with pytest.raises(InvalidArgument):
        logins.add_legacy_login("loyalty", "acc-1", IdentifierKind.PASSPORT, "4509 123456",
                                LegacyFormat.SALTED_SHA256, stored)
    first = logins.add_legacy_login("loyalty", "acc-1", IdentifierKind.EMAIL, "A@Example.com",
                                    "salted_sha256", stored)
    again = logins.add_legacy_login("loyalty", "acc-1", IdentifierKind.EMAIL, "a@example.com",
                                    LegacyFormat.SALTED_SHA256, stored)
    assert first == again  # re-importing replaces, it does not duplicate
    assert logins.sign_in("a@example.com", "wrong one", "10.0.0.1").outcome is Outcome.FAILED
    asked = logins.sign_in("a@example.com", "old password", "10.0.0.1")
    assert asked.outcome is Outcome.LEGACY_CONSENT
    assert asked.product == "loyalty"
    assert logins.legacy_state("loyalty", "acc-1")[0][1] is None  # nothing linked yet
    assert logins.link_legacy(asked.pending_link) == registration.customer_id
    assert logins.legacy_state("loyalty", "acc-1")[0][1] is not None
    with pytest.raises(FailedPrecondition):
        logins.add_legacy_login("loyalty", "acc-1", IdentifierKind.EMAIL, "a@example.com",
                                LegacyFormat.SALTED_SHA256, stored)
    signed_in = logins.sign_in("a@example.com", "old password", "10.0.0.1")
    assert signed_in == type(signed_in)(Outcome.OK, customer_id=registration.customer_id)


def test_rotation_keeps_two_generations_published(db: Database, keyring: Keyring) -> None:
    keys = SigningKeys(db, keyring)
    keys.ensure()
    keys.ensure()  # idempotent
    first = {k.kid for k in keys.published()}
    assert len(first) == 2
    keys.rotate()
    second = {k.kid for k in keys.published()}
    assert first < second
    assert len(second) == 4
    keys.rotate()
    assert not first & {k.kid for k in keys.published()}


def _assertions(db: Database) -> int:
    with db.read() as session:
        return int(session.scalar(select(func.count()).select_from(models.ClientAssertion)) or 0)


def test_an_assertion_id_is_accepted_once_across_processes(db: Database,
                                                           keyring: Keyring) -> None:
    # Two providers on one database stand for two `serve` processes.
    first, second = (Provider(db, keyring, "http://127.0.0.1:1") for _ in range(2))
    later = utcnow() + timedelta(minutes=1)
    assert first.remember_jti("app-1", "jti-1", later)
    assert not second.remember_jti("app-1", "jti-1", later)
    assert not first.remember_jti("app-1", "jti-1", later)
    assert second.remember_jti("app-2", "jti-1", later)  # assertion IDs are per client
    # Racing: of sixteen concurrent uses of one assertion ID, exactly one wins.
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: (first, second)[i % 2].remember_jti(
            "app-1", "jti-race", later), range(16)))
    assert results.count(True) == 1


def test_expired_assertion_ids_are_pruned(db: Database, keyring: Keyring) -> None:
    provider = Provider(db, keyring, "http://127.0.0.1:1")
    assert provider.remember_jti("app-1", "old", utcnow() - timedelta(seconds=1))
    assert provider.remember_jti("app-1", "fresh", utcnow() + timedelta(minutes=1))
    assert _assertions(db) == 2  # within the prune interval: nothing pruned yet
    provider._next_prune = 0.0  # the interval has passed
    assert provider.remember_jti("app-1", "new", utcnow() + timedelta(minutes=1))
    assert _assertions(db) == 2  # "old" is gone, "fresh" and "new" stay
    assert not provider.remember_jti("app-1", "fresh", utcnow() + timedelta(minutes=1))


def test_claims_follow_a_deployments_own_catalogue(db: Database, keyring: Keyring) -> None:
    # A catalogue with a preferred name only: the other scopes fall back to the record.
    catalogue = parse({"version": 1, "sources": {"trust": ["customer"]}, "attributes": {
        "preferred_name": {"type": "string", "sensitivity": "personal",
                           "owners": ["customer"]}}})
    profiles = ProfileService(db, keyring, catalogue)
    customer_id = LoginService(db, keyring).register("b@example.com", "long enough 123", "Bo")
    profiles.update(customer_id, "customer", {"preferred_name": "Bobby"})
    source = ClaimSource(db, keyring, profiles)
    assert source.claims(customer_id, "openid profile email phone address") == {
        "sub": customer_id, "name": "Bobby", "email": "b@example.com", "email_verified": False}
