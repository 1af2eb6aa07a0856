"""The whole flow with an independent relying party: pyoidc (the ``oic`` package from PyPI).

pyoidc does discovery, builds the authorization request with PKCE, exchanges
the code, validates the ID token against our JWKS (signature, issuer,
audience, nonce), calls userinfo and refreshes. It has no RFC 7009/7662 or
back-channel-logout client, so revocation, introspection and logout go over
plain HTTP (httpx) and the logout token is checked with joserfc. On SQLite
and on PostgreSQL, through a real ``singleid serve``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from oic import rndstr
from oic.oic import Client
from oic.oic.message import AuthorizationResponse, RegistrationResponse
from oic.utils.authn.client import CLIENT_AUTHN_METHOD

from singleid.idp.oidc.testing import CALLBACK, Oidc, form_fields, query_of, start_oidc

pytestmark = pytest.mark.slow
LOGGED_OUT = "http://127.0.0.1:65500/bye"


class _Backchannel(BaseHTTPRequestHandler):
    received: list[str]

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = parse_qs(self.rfile.read(length).decode())
        type(self).received.append(body["logout_token"][0])
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def backchannel() -> Iterator[tuple[str, list[str]]]:
    received: list[str] = []
    handler = type("Handler", (_Backchannel,), {"received": received})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/backchannel", received
    server.shutdown()


@pytest.fixture
def provider(database_url: str, tmp_path: Path) -> Iterator[Oidc]:
    oidc = start_oidc(tmp_path / "data", database_url)
    yield oidc
    oidc.server.stop()


def test_full_flow_with_pyoidc(provider: Oidc, backchannel: tuple[str, list[str]]) -> None:
    oidc = provider
    backchannel_uri, received = backchannel
    registered = oidc.add_client("--backchannel-logout-uri", backchannel_uri,
                                 "--post-logout-redirect-uri", LOGGED_OUT)
    user, customer_id = oidc.add_login(name="Анна Петровна")

    rp: Any = Client(client_authn_method=CLIENT_AUTHN_METHOD)  # pyoidc is partly typed
    rp.provider_config(oidc.issuer)
    registration: Any = RegistrationResponse
    rp.store_registration_info(registration(
        client_id=registered["client_id"], client_secret=registered["client_secret"],
        redirect_uris=[CALLBACK], token_endpoint_auth_method="client_secret_basic"))
    rp.redirect_uris = [CALLBACK]
    pkce_args, verifier = rp.add_code_challenge()
    random_string: Any = rndstr
    state, nonce = random_string(16), random_string(16)
    request = rp.construct_AuthorizationRequest(request_args={
        "client_id": registered["client_id"], "response_type": "code",
        "scope": ["openid", "profile", "email"], "nonce": nonce, "redirect_uri": CALLBACK,
        "state": state, **pkce_args})
    params = {k: v[0] for k, v in parse_qs(urlsplit(
        request.request(rp.authorization_endpoint)).query).items()}

    with oidc.browser() as browser:
        response = oidc.sign_in(browser, params, user)
        assert response.status_code == 302, response.text[-300:]
        authorization = rp.parse_response(AuthorizationResponse,
                                          info=urlsplit(response.headers["location"]).query,
                                          sformat="urlencoded")
        assert authorization["state"] == state

        tokens = rp.do_access_token_request(
            state=state, authn_method="client_secret_basic",
            request_args={"code": authorization["code"], "code_verifier": verifier,
                          "redirect_uri": CALLBACK})
        id_token = tokens["id_token"]  # pyoidc has verified it against our JWKS
        assert id_token["sub"] == customer_id
        assert id_token["nonce"] == nonce
        assert id_token["iss"] == oidc.issuer
        assert registered["client_id"] in id_token["aud"]
        raw_id_token = tokens.get("id_token_jwt", id_token.jwt)

        info = rp.do_user_info_request(state=state)
        assert info["sub"] == customer_id
        assert info["name"] == "Анна Петровна"
        assert info["email"] == user
        assert "phone_number" not in info.to_dict()  # the phone scope was not asked for
        by_get = httpx.get(oidc.url("/userinfo"), timeout=30,
                           headers={"Authorization": f"Bearer {tokens['access_token']}"})
        assert by_get.json()["sub"] == customer_id

        refreshed = rp.do_access_token_refresh(state=state, authn_method="client_secret_basic")
        assert refreshed["access_token"] != tokens["access_token"]
        assert refreshed["refresh_token"] != tokens["refresh_token"]  # rotation

        auth = (registered["client_id"], registered["client_secret"])
        introspected = httpx.post(oidc.url("/introspect"), auth=auth, timeout=30,
                                  data={"token": refreshed["access_token"]}).json()
        assert introspected["active"] is True
        assert introspected["sub"] == customer_id
        revoked = httpx.post(oidc.url("/revoke"), auth=auth, timeout=30,
                             data={"token": refreshed["access_token"],
                                   "token_type_hint": "access_token"})
        assert revoked.status_code == 200
        after = httpx.post(oidc.url("/introspect"), auth=auth, timeout=30,
                           data={"token": refreshed["access_token"]}).json()
        assert after == {"active": False}

        logout = browser.get("/logout", params={
            "id_token_hint": raw_id_token, "post_logout_redirect_uri": LOGGED_OUT,
            "state": "bye-1"})
        assert logout.status_code == 302
        assert logout.headers["location"] == LOGGED_OUT + "?state=bye-1"
        # The session is over: a silent request now needs a login.
        silent = browser.get("/authorize", params={**params, "prompt": "none"})
        assert query_of(silent.headers["location"])["error"] == "login_required"

    assert len(received) == 1
    keys = KeySet.import_key_set(oidc.jwks())  # type: ignore[arg-type]
    logout_token = jwt.decode(received[0], keys, algorithms=["RS256", "ES256"])
    assert logout_token.header["typ"] == "logout+jwt"
    assert logout_token.claims["sub"] == customer_id
    assert logout_token.claims["sid"] == id_token["sid"]
    assert logout_token.claims["aud"] == registered["client_id"]
    assert "http://schemas.openid.net/event/backchannel-logout" in logout_token.claims["events"]
    # The refresh token died with the session.
    dead = oidc.token(registered, grant_type="refresh_token",
                      refresh_token=refreshed["refresh_token"])
    assert dead.json()["error"] == "invalid_grant"


def test_logout_without_a_vouching_hint_asks_first(provider: Oidc) -> None:
    oidc = provider
    client = oidc.add_client("--post-logout-redirect-uri", LOGGED_OUT)
    user, _ = oidc.add_login()
    with oidc.browser() as browser:
        oidc.tokens_for(client, user)  # no session in this browser: sign in in it instead
        oidc.code(browser, oidc.auth_params(client["client_id"]), user)
        page = browser.get("/logout", params={"client_id": client["client_id"],
                                              "post_logout_redirect_uri": LOGGED_OUT})
        assert page.status_code == 200
        assert 'action="/logout"' in page.text
        done = browser.post("/logout", data=form_fields(page.text))
        assert done.headers["location"] == LOGGED_OUT
        unregistered = browser.get("/logout", params={
            "client_id": client["client_id"], "post_logout_redirect_uri": "http://evil.example/"})
        assert unregistered.status_code == 400
        assert "location" not in unregistered.headers
