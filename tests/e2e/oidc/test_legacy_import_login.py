"""An account imported with its product's password signs in and opts in to an ecosystem login."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from singleid.idp.oidc.service.passwords import LegacyFormat, make_legacy_hash
from singleid.idp.oidc.testing import CALLBACK, Oidc, form_fields, pkce, query_of

pytestmark = pytest.mark.slow
HEADER = "account_id,last_name,first_name,birth_date,phone,email,password_hash\n"


def test_an_imported_cards_password_asks_to_become_the_ecosystem_login(
        oidc: Oidc, tmp_path: Path) -> None:
    product = "cards" + secrets.token_hex(2)
    oidc.cli("products", "add", product)
    email = f"imported-{secrets.token_hex(4)}@example.com"
    phone = "+7 916 " + str(secrets.randbelow(9_000_000) + 1_000_000)
    legacy_file = tmp_path / "cards.csv"
    legacy_file.write_text(HEADER + f"k-1,Петрова,Анна,05.03.1985,{phone},{email},"
                           f"{make_legacy_hash(LegacyFormat.BCRYPT, 'old cards pass')}\n",
                           encoding="utf-8")
    summary = oidc.cli("legacy", "import", "--product", product, "--no-progress",
                       str(legacy_file))
    assert (summary["imported"], summary["rejected"]) == (1, 0)
    customer_id = oidc.cli("customers", "resolve", "--kind", "email", "--value",
                           email)["customer_id"]
    client = oidc.add_client()
    verifier, challenge = pkce()
    params = oidc.auth_params(client["client_id"], code_challenge=challenge,
                              code_challenge_method="S256", ui_locales="en")
    with oidc.browser() as browser:
        wrong = oidc.sign_in(browser, params, email, "not the password")
        assert 'action="/legacy"' not in wrong.text
        asked = oidc.sign_in(browser, params, phone, "old cards pass")  # by phone, too
        assert asked.status_code == 200
        assert 'action="/legacy"' in asked.text
        agreed = browser.post("/legacy", data={**form_fields(asked.text), "decision": "agree"})
        if 'action="/consent"' in agreed.text:
            agreed = browser.post("/consent", data={**form_fields(agreed.text),
                                                    "decision": "allow"})
        code = query_of(agreed.headers["location"])["code"]
    tokens = oidc.token(client, grant_type="authorization_code", code=code,
                        redirect_uri=CALLBACK, code_verifier=verifier).json()
    keys = KeySet.import_key_set(oidc.jwks())  # type: ignore[arg-type]
    claims = jwt.decode(tokens["id_token"], keys, algorithms=["RS256", "ES256"]).claims
    assert claims["sub"] == customer_id
