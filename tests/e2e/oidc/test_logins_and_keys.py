"""Signing-key rotation, registration on the page, legacy logins, private_key_jwt."""

from __future__ import annotations

import base64
import json
import secrets
import sqlite3
import time
from pathlib import Path

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

from singleid.clients import CustomersClient
from singleid.clients.customers import identifier
from singleid.idp.oidc.service.passwords import LegacyFormat, make_legacy_hash
from singleid.idp.oidc.testing import CALLBACK, PASSWORD, Oidc, form_fields, pkce, query_of
from singleid.v1 import customers_pb2

pytestmark = pytest.mark.slow


def _verify(oidc: Oidc, token: str) -> dict[str, object]:
    keys = KeySet.import_key_set(oidc.jwks())  # type: ignore[arg-type]
    return dict(jwt.decode(token, keys, algorithms=["RS256", "ES256"]).claims)


def _header_kid(token: str) -> str:
    head = token.split(".", maxsplit=1)[0]
    return str(json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"])


def test_tokens_signed_before_and_after_a_rotation_both_validate(oidc: Oidc) -> None:
    client = oidc.add_client()
    es_client = oidc.add_client("--id-token-alg", "ES256")
    user, customer_id = oidc.add_login()
    before = oidc.tokens_for(client, user)["id_token"]
    old_kid = _header_kid(before)
    rotated = oidc.cli("oidc", "keys", "rotate")
    new_kids = {k["kid"] for k in rotated["created"]}
    assert {k["alg"] for k in rotated["created"]} == {"RS256", "ES256"}
    deadline = time.monotonic() + 10
    while not new_kids <= {k["kid"] for k in oidc.jwks()["keys"]}:
        assert time.monotonic() < deadline, "JWKS never published the new keys"
        time.sleep(0.2)
    time.sleep(1.2)  # the signing cache notices the new generation within a second
    after = oidc.tokens_for(client, user)["id_token"]
    es_after = oidc.tokens_for(es_client, user)["id_token"]
    assert _header_kid(after) in new_kids
    assert _header_kid(after) != old_kid
    assert _header_kid(es_after) in new_kids
    assert _header_kid(es_after).startswith("es256")
    published = {k["kid"] for k in oidc.jwks()["keys"]}
    assert old_kid in published  # the overlap
    for token in (before, after, es_after):
        assert _verify(oidc, token)["sub"] == customer_id
    oidc.cli("oidc", "keys", "rotate")
    deadline = time.monotonic() + 10
    while old_kid in {k["kid"] for k in oidc.jwks()["keys"]}:
        assert time.monotonic() < deadline, "the oldest generation is still published"
        time.sleep(0.2)
    assert len(oidc.jwks()["keys"]) == 4  # two generations of RS256 + ES256


def test_signing_keys_are_sealed_at_rest(oidc: Oidc) -> None:
    oidc.cli("oidc", "keys", "list")
    path = oidc.env["SINGLEID_DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT private_ciphertext, public_jwk FROM oidc_signing_keys").fetchall()
    assert rows
    for ciphertext, public in rows:
        assert b'"d"' not in ciphertext
        assert b"kty" not in ciphertext
        assert '"d"' not in public


def test_registration_on_the_page_creates_the_customer_and_signs_in(oidc: Oidc) -> None:
    client = oidc.add_client()
    verifier, challenge = pkce()
    params = oidc.auth_params(client["client_id"], code_challenge=challenge,
                              code_challenge_method="S256", ui_locales="en")
    email = f"new-{secrets.token_hex(4)}@example.com"
    with oidc.browser() as browser:
        login = browser.get("/authorize", params=params)
        assert "Sign in" in login.text
        page = browser.get("/register", params=params)
        assert page.status_code == 200
        assert "Create an account" in page.text
        fields = form_fields(page.text)
        short = browser.post("/register", data={**fields, "identifier": email, "name": "Max",
                                                "password": "short"})
        assert short.status_code == 400
        assert 'role="alert"' in short.text
        done = browser.post("/register", data={**fields, "identifier": email, "name": "Max",
                                               "password": PASSWORD})
        assert done.status_code == 200
        assert 'action="/consent"' in done.text
        code_reply = browser.post("/consent", data={**form_fields(done.text),
                                                    "decision": "allow"})
        code = query_of(code_reply.headers["location"])["code"]
        again = browser.post("/register", data={**fields, "identifier": email, "name": "Max",
                                                "password": PASSWORD})
        assert again.status_code == 409
    tokens = oidc.token(client, grant_type="authorization_code", code=code,
                        redirect_uri=CALLBACK, code_verifier=verifier).json()
    claims = _verify(oidc, tokens["id_token"])
    resolved = oidc.cli("customers", "resolve", "--kind", "email", "--value", email)
    assert claims["sub"] == resolved["customer_id"]
    assert claims["name"] == "Max"
    assert oidc.cli("customers", "get", str(claims["sub"]))["product_accounts"][0][
        "product"] == "singleid"


@pytest.mark.parametrize("hash_format", list(LegacyFormat))
def test_a_legacy_login_asks_first_and_refusal_links_nothing(oidc: Oidc,
                                                             hash_format: LegacyFormat) -> None:
    product = "shop" + secrets.token_hex(2)
    oidc.cli("products", "add", product)
    email = f"legacy-{secrets.token_hex(4)}@example.com"
    customers = CustomersClient(oidc.server.grpc_addr, auth=oidc.server.token)
    with customers:
        registration = customers.register_customer(
            product, "acc-1", display_name="Old Customer",
            identifiers=[identifier(customers_pb2.IDENTIFIER_KIND_EMAIL, email)])
    legacy_hash = make_legacy_hash(hash_format, "old secret 123")
    oidc.cli("login", "add-legacy", "--product", product, "--account-id", "acc-1",
             "--email", email, "--format", hash_format.value, stdin=legacy_hash + "\n")
    client = oidc.add_client()
    verifier, challenge = pkce()
    params = oidc.auth_params(client["client_id"], code_challenge=challenge,
                              code_challenge_method="S256", ui_locales="en")
    with oidc.browser() as browser:
        asked = oidc.sign_in(browser, params, email, "old secret 123")
        assert asked.status_code == 200
        assert 'action="/legacy"' in asked.text
        refused = browser.post("/legacy", data={**form_fields(asked.text),
                                                "decision": "refuse"})
        assert "Nothing was linked" in refused.text
        assert browser.get("/authorize", params={**params, "prompt": "none"}).headers[
            "location"].find("login_required") > 0
        # Refusal linked nothing: the next sign-in asks again.
        asked_again = oidc.sign_in(browser, params, email, "old secret 123")
        assert 'action="/legacy"' in asked_again.text
        agreed = browser.post("/legacy", data={**form_fields(asked_again.text),
                                               "decision": "agree"})
        if 'action="/consent"' in agreed.text:
            agreed = browser.post("/consent", data={**form_fields(agreed.text),
                                                    "decision": "allow"})
        code = query_of(agreed.headers["location"])["code"]
    tokens = oidc.token(client, grant_type="authorization_code", code=code,
                        redirect_uri=CALLBACK, code_verifier=verifier).json()
    assert _verify(oidc, tokens["id_token"])["sub"] == registration.customer_id
    path = oidc.env["SINGLEID_DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        consented, version, old_hash = conn.execute(
            "SELECT consented_at, consent_text_version, password_hash FROM oidc_legacy_logins "
            "WHERE product_code = ?", (product,)).fetchone()
        (new_hash,) = conn.execute(
            "SELECT password_hash FROM oidc_logins WHERE customer_id = ?",
            (registration.customer_id,)).fetchone()
    assert consented
    assert version
    assert old_hash is None
    assert new_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    # Now it is an ecosystem login: no question asked.
    with oidc.browser() as browser:
        direct = oidc.sign_in(browser, params, email, "old secret 123")
        assert 'action="/legacy"' not in direct.text


def test_private_key_jwt_client_authentication(oidc: Oidc, tmp_path: Path) -> None:
    key = ECKey.generate_key("P-256", parameters={"kid": "rp-1", "alg": "ES256"}, private=True)
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    client = oidc.add_client("--grant-type", "client_credentials", "--auth-method",
                             "private_key_jwt", "--jwks", str(jwks), redirect_uri="")
    assert "client_secret" not in client

    def assertion() -> str:
        now = int(time.time())
        return jwt.encode({"alg": "ES256", "kid": "rp-1"}, {
            "iss": client["client_id"], "sub": client["client_id"], "aud": oidc.url("/token"),
            "iat": now, "exp": now + 60, "jti": secrets.token_hex(8)}, key)

    form = {"grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}
    good = httpx.post(oidc.url("/token"), data={**form, "client_assertion": assertion()},
                      timeout=30)
    assert good.status_code == 200, good.text
    replayed_jwt = assertion()
    httpx.post(oidc.url("/token"), data={**form, "client_assertion": replayed_jwt}, timeout=30)
    replay = httpx.post(oidc.url("/token"), data={**form, "client_assertion": replayed_jwt},
                        timeout=30)
    assert replay.json()["error"] == "invalid_client"
    other = ECKey.generate_key("P-256", parameters={"kid": "rp-1"}, private=True)
    now = int(time.time())
    forged = jwt.encode({"alg": "ES256", "kid": "rp-1"}, {
        "iss": client["client_id"], "sub": client["client_id"], "aud": oidc.url("/token"),
        "iat": now, "exp": now + 60, "jti": "x"}, other)
    bad = httpx.post(oidc.url("/token"), data={**form, "client_assertion": forged}, timeout=30)
    assert bad.json()["error"] == "invalid_client"


def test_the_admin_grpc_service_registers_clients_and_rotates_keys(oidc: Oidc) -> None:
    import grpc  # noqa: PLC0415

    from singleid.v1 import oidc_pb2, oidc_pb2_grpc  # noqa: PLC0415

    with oidc.server.channel() as channel:
        admin = oidc_pb2_grpc.OidcAdminServiceStub(channel)
        created = admin.CreateOidcClient(oidc_pb2.CreateOidcClientRequest(
            client_id="grpc-made", redirect_uris=[CALLBACK]), timeout=30)
        assert created.client.name == "oidcClients/grpc-made"
        assert created.client_secret
        assert list(created.client.grant_types) == ["authorization_code", "refresh_token"]
        with pytest.raises(grpc.RpcError) as invalid:
            admin.CreateOidcClient(oidc_pb2.CreateOidcClientRequest(
                client_id="grpc-bad", redirect_uris=[CALLBACK], grant_types=["password"]),
                timeout=30)
        assert invalid.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as taken:
            admin.CreateOidcClient(oidc_pb2.CreateOidcClientRequest(
                client_id="grpc-made", redirect_uris=[CALLBACK]), timeout=30)
        assert taken.value.code() is grpc.StatusCode.ALREADY_EXISTS
        rotated = admin.RotateSigningKeys(oidc_pb2.RotateSigningKeysRequest(), timeout=30)
        assert {k.alg for k in rotated.created} == {"RS256", "ES256"}
        assert len(rotated.published) == 4
    grpc_client = {"client_id": "grpc-made", "client_secret": created.client_secret}
    user, _ = oidc.add_login()
    assert oidc.tokens_for(grpc_client, user)["id_token"]


def test_id_token_hint_and_login_hint(oidc: Oidc) -> None:
    client = oidc.add_client()
    first, _ = oidc.add_login()
    second, _ = oidc.add_login()
    hint_for_second = oidc.tokens_for(client, second)["id_token"]
    with oidc.browser() as browser:
        prefilled = browser.get("/authorize", params=oidc.auth_params(
            client["client_id"], login_hint=first))
        assert f'value="{first}"' in prefilled.text
        oidc.code(browser, oidc.auth_params(client["client_id"]), first)
        # The session is the first customer's; a hint naming the second needs a new login.
        silent = browser.get("/authorize", params=oidc.auth_params(
            client["client_id"], prompt="none", id_token_hint=hint_for_second))
        assert query_of(silent.headers["location"])["error"] == "login_required"
        garbage = browser.get("/authorize", params=oidc.auth_params(
            client["client_id"], id_token_hint="not.a.token"))
        assert query_of(garbage.headers["location"])["error"] == "invalid_request"
