"""Staff accounts: password, then TOTP; sessions apart from customers'; every step audited."""

from __future__ import annotations

import pyotp
import pytest
from sqlalchemy import select

from singleid import audit
from singleid.db import Database
from singleid.errors import AlreadyExists, InvalidArgument
from singleid.idp.oidc import models
from singleid.idp.oidc.service.logins import MAX_ACCOUNT_FAILURES
from singleid.idp.oidc.service.sessions import SessionService
from singleid.idp.oidc.service.staff import NewStaff, Role, StaffService, Step
from singleid.keyring import Keyring
from singleid.plugins import load_models
from singleid.rotation import reencrypt_all

PASSWORD = "correct horse battery"
PEER = "127.0.0.1"


@pytest.fixture
def staff(db: Database, keyring: Keyring) -> StaffService:
    return StaffService(db, keyring)


@pytest.fixture
def ivanova(staff: StaffService) -> NewStaff:
    return staff.add("ivanova", "operator", PASSWORD)


def _code(account: NewStaff) -> str:
    totp = pyotp.parse_uri(account.provisioning_uri)
    assert isinstance(totp, pyotp.TOTP)
    return totp.now()


def _actions(db: Database) -> list[tuple[str, str, str]]:
    return [(r["actor"], r["action"], r["outcome"]) for r in audit.export(db)]


def test_add_returns_a_provisioning_uri_and_seals_the_secret(
        db: Database, ivanova: NewStaff) -> None:
    assert ivanova.role is Role.OPERATOR
    totp = pyotp.parse_uri(ivanova.provisioning_uri)
    assert ivanova.provisioning_uri.startswith("otpauth://totp/singleid:ivanova?")
    with db.read() as session:
        row = session.get(models.Staff, "ivanova")
        assert row is not None
        assert totp.secret.encode() not in row.totp_ciphertext
        assert row.password_hash.startswith("$argon2id$")


@pytest.mark.parametrize(("login", "role", "password", "field"), [
    ("Ivanova Anna", "operator", PASSWORD, "login"),
    ("ivanova", "root", PASSWORD, "role"),
    ("ivanova", "admin", "short", "password"),
])
def test_bad_accounts_are_refused_naming_the_field(
        staff: StaffService, login: str, role: str, password: str, field: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        staff.add(login, role, password)
    assert raised.value.field == field


def test_a_login_is_never_reused(staff: StaffService, ivanova: NewStaff) -> None:
    staff.disable("ivanova")
    with pytest.raises(AlreadyExists):
        staff.add("ivanova", "admin", PASSWORD)


def test_password_then_code_gives_a_two_factor_session(
        db: Database, staff: StaffService, ivanova: NewStaff) -> None:
    first = staff.sign_in("ivanova", PASSWORD, PEER)
    assert first.step is Step.OK
    assert first.session is not None
    assert first.session.amr == ("pwd",)
    assert staff.session(first.cookie) is None  # the password alone opens nothing
    assert staff.session(first.cookie, pending=True) is not None
    second = staff.second_factor(first.cookie, _code(ivanova), PEER)
    assert second.step is Step.OK
    assert second.cookie != first.cookie
    view = staff.session(second.cookie)
    assert view is not None
    assert (view.login, view.role, view.amr) == ("ivanova", Role.OPERATOR, ("pwd", "otp"))
    assert staff.session(first.cookie, pending=True) is None  # the old cookie is spent
    assert _actions(db) == [("operator:ivanova", "staff.sign_in", "OK"),
                            ("operator:ivanova", "staff.second_factor", "OK")]
    assert audit.verify(db).broken is None


def test_a_code_is_good_once(staff: StaffService, ivanova: NewStaff) -> None:
    code = _code(ivanova)
    first = staff.sign_in("ivanova", PASSWORD, PEER)
    assert staff.second_factor(first.cookie, code, PEER).step is Step.OK
    again = staff.sign_in("ivanova", PASSWORD, PEER)
    assert staff.second_factor(again.cookie, code, PEER).step is Step.FAILED


def test_wrong_passwords_and_codes_lock_the_account(
        db: Database, staff: StaffService, ivanova: NewStaff) -> None:
    first = staff.sign_in("ivanova", PASSWORD, PEER)
    assert staff.second_factor(first.cookie, "000000" if _code(ivanova) != "000000"
                               else "111111", PEER).step is Step.FAILED
    for _ in range(MAX_ACCOUNT_FAILURES - 2):
        assert staff.sign_in("ivanova", "wrong password", PEER).step is Step.FAILED
    assert staff.sign_in("ivanova", "wrong password", PEER).step is Step.LOCKED
    assert staff.sign_in("ivanova", PASSWORD, PEER).step is Step.LOCKED
    outcomes = [outcome for _, _, outcome in _actions(db)]
    assert outcomes.count("UNAUTHENTICATED") == MAX_ACCOUNT_FAILURES
    assert outcomes[-1] == "RESOURCE_EXHAUSTED"


def test_an_unknown_login_is_not_audited(db: Database, staff: StaffService) -> None:
    assert staff.sign_in("+7 916 123-45-67", PASSWORD, PEER).step is Step.FAILED
    assert _actions(db) == []


def test_disabling_ends_the_sessions_and_refuses_sign_in(
        db: Database, staff: StaffService, ivanova: NewStaff) -> None:
    first = staff.sign_in("ivanova", PASSWORD, PEER)
    second = staff.second_factor(first.cookie, _code(ivanova), PEER)
    staff.disable("ivanova")
    assert staff.session(second.cookie) is None
    assert staff.sign_in("ivanova", PASSWORD, PEER).step is Step.FAILED
    with db.read() as session:
        assert session.scalars(select(models.StaffSession.ended_at)).all() != [None]


def test_a_staff_session_is_not_a_customer_session(
        db: Database, staff: StaffService, ivanova: NewStaff) -> None:
    first = staff.sign_in("ivanova", PASSWORD, PEER)
    second = staff.second_factor(first.cookie, _code(ivanova), PEER)
    with db.read() as session:
        assert session.scalars(select(models.BrowserSession)).all() == []
    assert SessionService(db).get(second.cookie) is None


def test_the_totp_secret_follows_a_key_rotation(
        db: Database, keyring: Keyring, ivanova: NewStaff) -> None:
    rotated = Keyring(keyring.material.rotated())
    load_models()
    assert reencrypt_all(db, rotated) >= 1
    with db.read() as session:
        row = session.get(models.Staff, "ivanova")
        assert row is not None
        assert row.totp_key_id == rotated.primary_key_id
    staff = StaffService(db, rotated)
    first = staff.sign_in("ivanova", PASSWORD, PEER)
    assert staff.second_factor(first.cookie, _code(ivanova), PEER).step is Step.OK
