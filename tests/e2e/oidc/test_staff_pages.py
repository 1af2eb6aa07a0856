"""The staff realm over HTTP: CSRF, where it may send the browser, its cookie, and sign-out."""

from __future__ import annotations

import pyotp
import pytest

from singleid.idp.oidc.service.staff import STAFF_COOKIE
from singleid.idp.oidc.testing import Oidc, form_fields

pytestmark = pytest.mark.slow

STAFF_PASSWORD = "staff password 1"


def _add_staff(oidc: Oidc) -> tuple[str, pyotp.TOTP]:
    login = oidc.unique("op").lower()
    created = oidc.cli("staff", "add", "--login", login, "--role", "admin",
                       stdin=STAFF_PASSWORD + "\n")
    totp = pyotp.parse_uri(created["provisioning_uri"])
    assert isinstance(totp, pyotp.TOTP)
    return login, totp


def test_a_form_from_elsewhere_is_refused(oidc: Oidc) -> None:
    with oidc.browser() as browser:
        response = browser.post("/staff/login", data={"login": "x", "password": "y"})
    assert response.status_code == 403


def test_sign_in_never_sends_the_browser_to_another_site(oidc: Oidc) -> None:
    with oidc.browser() as browser:
        page = browser.get("/staff/login", params={"next": "//evil.example/review"})
    assert form_fields(page.text)["next"] == "/review"


def test_password_code_then_the_page_asked_for_and_sign_out(oidc: Oidc) -> None:
    login, totp = _add_staff(oidc)
    client = oidc.add_client()
    with oidc.browser() as browser:
        fields = form_fields(browser.get("/staff/login", params={"next": "/review/7"}).text)
        wrong = browser.post("/staff/login", data={**fields, "login": login,
                                                   "password": "not the password"})
        assert wrong.status_code == 401
        assert 'role="alert"' in wrong.text
        first = browser.post("/staff/login", data={**fields, "login": login,
                                                   "password": STAFF_PASSWORD})
        assert first.status_code == 200
        assert 'name="code"' in first.text
        cookie_header = first.headers["set-cookie"].lower()
        assert "httponly" in cookie_header
        assert "samesite=strict" in cookie_header
        # A staff session signs no customer in: the customer login page still shows.
        customer = browser.get("/authorize", params=oidc.auth_params(client["client_id"]))
        assert customer.status_code == 200
        assert 'action="/login"' in customer.text
        pending = browser.cookies[STAFF_COOKIE]
        second = browser.post("/staff/otp", data={**form_fields(first.text),
                                                  "code": totp.now()})
        assert second.status_code == 303
        assert second.headers["location"] == "/review/7"
        assert browser.cookies[STAFF_COOKIE] != pending
        signed_out = browser.post("/staff/logout", data={"csrf": fields["csrf"]})
        assert signed_out.status_code == 200
        review = browser.get("/review")
        assert review.status_code == 303
        assert review.headers["location"].startswith("/staff/login")


def test_a_disabled_account_loses_its_session_at_once(oidc: Oidc) -> None:
    login, totp = _add_staff(oidc)
    with oidc.browser() as browser:
        fields = form_fields(browser.get("/staff/login").text)
        first = browser.post("/staff/login", data={**fields, "login": login,
                                                   "password": STAFF_PASSWORD})
        browser.post("/staff/otp", data={**form_fields(first.text), "code": totp.now()})
        assert browser.get("/review").status_code == 200
        assert oidc.cli("staff", "disable", "--login", login) == {"login": login,
                                                                   "disabled": True}
        assert browser.get("/review").status_code == 303
        again = browser.post("/staff/login", data={**fields, "login": login,
                                                   "password": STAFF_PASSWORD})
        assert again.status_code == 401
