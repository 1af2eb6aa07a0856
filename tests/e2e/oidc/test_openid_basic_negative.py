"""The negative cases of the OpenID Basic certification plan, and the grants we do not offer.

All against one real ``singleid serve`` over HTTP; each test registers its own
clients and logins, so they do not depend on each other.
"""

from __future__ import annotations

import sqlite3
import time

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from singleid.idp.oidc.testing import CALLBACK, PASSWORD, Oidc, form_fields, pkce, query_of

pytestmark = pytest.mark.slow


def _db(oidc: Oidc) -> sqlite3.Connection:
    return sqlite3.connect(oidc.env["SINGLEID_DATABASE_URL"].removeprefix("sqlite:///"))


def test_a_second_use_of_a_code_fails_and_revokes_the_tokens_it_issued(oidc: Oidc) -> None:
    client = oidc.add_client()
    user, _ = oidc.add_login()
    verifier, challenge = pkce()
    params = oidc.auth_params(client["client_id"], code_challenge=challenge,
                              code_challenge_method="S256")
    with oidc.browser() as browser:
        code = oidc.code(browser, params, user)
    exchange = {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK,
                "code_verifier": verifier}
    first = oidc.token(client, **exchange)
    assert first.status_code == 200, first.text
    tokens = first.json()
    second = oidc.token(client, **exchange)
    assert second.status_code == 400
    assert second.json()["error"] == "invalid_grant"
    # The access and refresh tokens issued from the code are revoked with it.
    userinfo = httpx.get(oidc.url("/userinfo"), timeout=30,
                         headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert userinfo.status_code == 401
    refresh = oidc.token(client, grant_type="refresh_token",
                         refresh_token=tokens["refresh_token"])
    assert refresh.json()["error"] == "invalid_grant"


def test_an_unregistered_redirect_uri_gets_an_error_page_never_a_redirect(oidc: Oidc) -> None:
    client = oidc.add_client()
    _, challenge = pkce()
    with oidc.browser() as browser:
        for uri in ("http://127.0.0.1:65500/cb/evil", "http://evil.example/cb", CALLBACK + "?x=1"):
            params = oidc.auth_params(client["client_id"], redirect_uri=uri,
                                      code_challenge=challenge, code_challenge_method="S256")
            page = browser.get("/authorize", params=params)
            assert page.status_code == 400
            assert "location" not in page.headers
            assert "invalid_request" in page.text
        unknown = browser.get("/authorize", params=oidc.auth_params("no-such-client"))
        assert unknown.status_code == 400
        assert "location" not in unknown.headers


def test_a_missing_or_wrong_pkce_verifier_is_refused(oidc: Oidc) -> None:
    client = oidc.add_client()
    user, _ = oidc.add_login()
    verifier, challenge = pkce()
    params = oidc.auth_params(client["client_id"], code_challenge=challenge,
                              code_challenge_method="S256")
    with oidc.browser() as browser:
        code = oidc.code(browser, params, user)
        missing = oidc.token(client, grant_type="authorization_code", code=code,
                             redirect_uri=CALLBACK)
        assert missing.status_code == 400
        assert missing.json()["error"] == "invalid_request"
        params = {**params, "state": "s2"}
        code = oidc.code(browser, params, user)
    wrong = oidc.token(client, grant_type="authorization_code", code=code,
                       redirect_uri=CALLBACK, code_verifier=pkce()[0])
    assert wrong.json()["error"] == "invalid_grant"
    right_after_wrong = oidc.token(client, grant_type="authorization_code", code=code,
                                   redirect_uri=CALLBACK, code_verifier=verifier)
    assert right_after_wrong.status_code == 200  # a failed check does not consume the code


def test_pkce_plain_is_refused_and_public_clients_must_use_pkce(oidc: Oidc) -> None:
    public = oidc.add_client("--public")
    assert "client_secret" not in public
    with oidc.browser() as browser:
        plain = browser.get("/authorize", params=oidc.auth_params(
            public["client_id"], code_challenge="a" * 43, code_challenge_method="plain"))
        assert plain.status_code == 302
        assert query_of(plain.headers["location"])["error"] == "invalid_request"
        absent = browser.get("/authorize", params=oidc.auth_params(public["client_id"]))
        assert absent.status_code == 302
        returned = query_of(absent.headers["location"])
        assert returned["error"] == "invalid_request"
        assert "PKCE" in returned["error_description"]


def test_the_nonce_is_echoed_and_the_id_token_carries_what_the_issue_asks(oidc: Oidc) -> None:
    client = oidc.add_client()
    user, customer_id = oidc.add_login()
    tokens = oidc.tokens_for(client, user, nonce="n-0S6_WzA2Mj")
    keys = KeySet.import_key_set(oidc.jwks())  # type: ignore[arg-type]
    token = jwt.decode(tokens["id_token"], keys, algorithms=["RS256", "ES256"])
    claims = token.claims
    assert token.header["kid"] in {k["kid"] for k in oidc.jwks()["keys"]}
    assert claims["nonce"] == "n-0S6_WzA2Mj"
    assert claims["sub"] == customer_id
    assert claims["iss"] == oidc.issuer
    assert claims["aud"] == client["client_id"]
    assert claims["amr"] == ["pwd"]
    assert claims["acr"]
    assert abs(claims["auth_time"] - time.time()) < 120
    assert claims["at_hash"]
    assert claims["email"] == user


def test_prompt_none_without_a_session_returns_login_required(oidc: Oidc) -> None:
    client = oidc.add_client()
    _, challenge = pkce()
    params = oidc.auth_params(client["client_id"], prompt="none", code_challenge=challenge,
                              code_challenge_method="S256")
    with oidc.browser() as browser:
        response = browser.get("/authorize", params=params)
    assert response.status_code == 302
    returned = query_of(response.headers["location"])
    assert returned["error"] == "login_required"
    assert returned["state"] == params["state"]
    assert response.headers["location"].startswith(CALLBACK + "?")


def test_max_age_and_prompt_are_honoured(oidc: Oidc) -> None:
    client = oidc.add_client()
    user, _ = oidc.add_login()
    _, challenge = pkce()
    pk = {"code_challenge": challenge, "code_challenge_method": "S256"}
    with oidc.browser() as browser:
        oidc.code(browser, oidc.auth_params(client["client_id"], **pk), user)
        # A live session: prompt=none gives a code at once.
        silent = browser.get("/authorize", params=oidc.auth_params(client["client_id"],
                                                                   prompt="none", **pk))
        assert "code" in query_of(silent.headers["location"])
        time.sleep(1.1)
        # The session is older than max_age: sign in again, or login_required when silent.
        stale = browser.get("/authorize", params=oidc.auth_params(client["client_id"],
                                                                  max_age="0", **pk))
        assert stale.status_code == 200
        assert 'action="/login"' in stale.text
        stale_silent = browser.get("/authorize", params=oidc.auth_params(
            client["client_id"], max_age="0", prompt="none", **pk))
        assert query_of(stale_silent.headers["location"])["error"] == "login_required"
        relaxed = browser.get("/authorize", params=oidc.auth_params(
            client["client_id"], max_age="3600", **pk))
        assert relaxed.status_code == 302
        assert "code" in query_of(relaxed.headers["location"])
        forced = browser.get("/authorize", params=oidc.auth_params(
            client["client_id"], prompt="login", **pk))
        assert forced.status_code == 200
        assert 'action="/login"' in forced.text
        # After signing in again under prompt=login, the flow ends with a code (no loop).
        again = oidc.code(browser, oidc.auth_params(client["client_id"], prompt="login", **pk),
                          user)
        assert again
        consent = browser.get("/authorize", params=oidc.auth_params(
            client["client_id"], prompt="consent", **pk))
        assert consent.status_code == 200
        assert 'action="/consent"' in consent.text


def test_a_wrong_client_secret_is_refused(oidc: Oidc) -> None:
    client = oidc.add_client("--grant-type", "client_credentials", redirect_uri="")
    wrong = oidc.token({**client, "client_secret": "not-the-secret"},
                       grant_type="client_credentials")
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_client"
    right = oidc.token(client, grant_type="client_credentials")
    assert right.status_code == 200, right.text
    assert "refresh_token" not in right.json()


def test_an_expired_code_is_refused(oidc: Oidc) -> None:
    client = oidc.add_client()
    user, _ = oidc.add_login()
    verifier, challenge = pkce()
    params = oidc.auth_params(client["client_id"], code_challenge=challenge,
                              code_challenge_method="S256")
    with oidc.browser() as browser:
        code = oidc.code(browser, params, user)
    with _db(oidc) as conn:
        conn.execute("UPDATE oidc_codes SET expires_at = '2020-01-01 00:00:00.000000' "
                     "WHERE client_id = ?", (client["client_id"],))
    response = oidc.token(client, grant_type="authorization_code", code=code,
                          redirect_uri=CALLBACK, code_verifier=verifier)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_a_reused_refresh_token_revokes_the_whole_grant(oidc: Oidc) -> None:
    client = oidc.add_client()
    user, _ = oidc.add_login()
    tokens = oidc.tokens_for(client, user)
    first = oidc.token(client, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert first.status_code == 200, first.text
    rotated = first.json()
    assert rotated["refresh_token"] != tokens["refresh_token"]
    replay = oidc.token(client, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    # The replay revoked the grant: the rotated refresh token and its access token are dead too.
    after = oidc.token(client, grant_type="refresh_token", refresh_token=rotated["refresh_token"])
    assert after.json()["error"] == "invalid_grant"
    userinfo = httpx.get(oidc.url("/userinfo"), timeout=30,
                         headers={"Authorization": f"Bearer {rotated['access_token']}"})
    assert userinfo.status_code == 401


def test_client_secret_basic_and_client_secret_post_both_work(oidc: Oidc) -> None:
    client = oidc.add_client("--grant-type", "client_credentials", redirect_uri="")
    basic = oidc.token(client, grant_type="client_credentials")
    assert basic.status_code == 200, basic.text
    post = httpx.post(oidc.url("/token"), timeout=30, data={
        "grant_type": "client_credentials", "client_id": client["client_id"],
        "client_secret": client["client_secret"]})
    assert post.status_code == 200, post.text
    introspected = httpx.post(oidc.url("/introspect"), timeout=30,
                              auth=(client["client_id"], client["client_secret"]),
                              data={"token": post.json()["access_token"]}).json()
    assert introspected["active"] is True
    assert introspected["client_id"] == client["client_id"]


def test_implicit_and_password_grants_are_not_offered(oidc: Oidc) -> None:
    client = oidc.add_client()
    with oidc.browser() as browser:
        implicit = browser.get("/authorize", params=oidc.auth_params(
            client["client_id"], response_type="id_token token"))
    assert query_of(implicit.headers["location"])["error"] == "unsupported_response_type"
    password = oidc.token(client, grant_type="password", username="x", password=PASSWORD)
    assert password.status_code == 400
    assert password.json()["error"] == "unsupported_grant_type"


def test_consent_refused_returns_access_denied(oidc: Oidc) -> None:
    client = oidc.add_client()
    user, _ = oidc.add_login()
    _, challenge = pkce()
    params = oidc.auth_params(client["client_id"], code_challenge=challenge,
                              code_challenge_method="S256")
    with oidc.browser() as browser:
        page = oidc.sign_in(browser, params, user, consent=False)
        assert 'action="/consent"' in page.text
        denied = browser.post("/consent", data={**form_fields(page.text), "decision": "deny"})
    assert query_of(denied.headers["location"])["error"] == "access_denied"


def test_every_form_needs_its_csrf_token(oidc: Oidc) -> None:
    client = oidc.add_client()
    user, _ = oidc.add_login()
    with oidc.browser() as browser:
        page = browser.get("/authorize", params=oidc.auth_params(client["client_id"]))
        fields = form_fields(page.text)
        forged = browser.post("/login", data={**fields, "csrf": "0" * 64, "identifier": user,
                                              "password": PASSWORD})
        assert forged.status_code == 403
    with oidc.browser() as other:  # another browser's token is worthless here
        stolen = other.post("/login", data={**fields, "identifier": user, "password": PASSWORD})
        assert stolen.status_code == 403
