"""The standard claims come from the consolidated profile, through real HTTP.

Profile attributes are written over gRPC as a product would, then a browser signs
in and the claims are read from the ID token (verified against JWKS) and from
userinfo. Without profile data the customer record is the fallback.
"""

from __future__ import annotations

import json
from typing import Any

import grpc
import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from singleid.clients.customers import CustomersClient, identifier
from singleid.clients.profile import ProfileClient
from singleid.idp.oidc.testing import Oidc
from singleid.v1 import customers_pb2

pytestmark = pytest.mark.slow
ALL_SCOPES = "openid profile email phone address"
PHONE = "+79165550123"


def _id_token_claims(oidc: Oidc, token: str) -> dict[str, Any]:
    keys = KeySet.import_key_set(oidc.jwks())  # type: ignore[arg-type]
    return dict(jwt.decode(token, keys, algorithms=["RS256", "ES256"]).claims)


def _userinfo(oidc: Oidc, access_token: str) -> dict[str, Any]:
    response = httpx.get(oidc.url("/userinfo"), timeout=30,
                         headers={"Authorization": f"Bearer {access_token}"})
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_claims_come_from_the_profile(oidc: Oidc, channel: grpc.Channel) -> None:
    client = oidc.add_client()
    user, customer_id = oidc.add_login(name="Anna")
    # The login's phone, verified by a product: phone_number_verified follows it.
    CustomersClient(channel=channel).add_identifier(customer_id, identifier(
        customers_pb2.IDENTIFIER_KIND_PHONE, PHONE, verified=True))
    profiles = ProfileClient(channel=channel)
    profiles.update_profile(customer_id, "customer", {
        "preferred_name": "Аня", "emails": ["Anya.Work@Example.com", user],
        "phones": ["8 (916) 555-01-23"], "language": "ru",
        "postal_addresses": [{"country": "RU", "region": "Москва", "city": "Москва",
                              "street": "Тверская ул.", "house": "1",
                              "apartment": "12", "postal_code": "125009"}]})
    profiles.update_profile(customer_id, "kyc", {
        "full_name": {"last": "Петрова", "first": "Анна", "patronymic": "Сергеевна"},
        "birth_date": "1990-05-17",
        # Special: never a claim, even when every scope is granted.
        "passport": {"series": "4510", "number": "123456"}})

    tokens = oidc.tokens_for(client, user, scope=ALL_SCOPES)
    expected = {
        "sub": customer_id, "name": "Аня", "given_name": "Анна", "family_name": "Петрова",
        "middle_name": "Сергеевна", "birthdate": "1990-05-17", "locale": "ru",
        # The profile's first e-mail is not a login the customer proved: not verified.
        "email": "Anya.Work@example.com", "email_verified": False,
        "phone_number": PHONE, "phone_number_verified": True,
        "address": {"country": "RU", "region": "Москва", "locality": "Москва",
                    "street_address": "Тверская ул., 1, 12", "postal_code": "125009",
                    "formatted": "Тверская ул., 1, 12, Москва, Москва, 125009, RU"}}
    id_token = _id_token_claims(oidc, tokens["id_token"])
    assert {k: id_token.get(k) for k in expected} == expected
    userinfo = _userinfo(oidc, tokens["access_token"])
    assert userinfo == expected
    assert "123456" not in json.dumps([id_token, userinfo])


def test_each_scope_gives_only_its_claims(oidc: Oidc, channel: grpc.Channel) -> None:
    client = oidc.add_client()
    user, customer_id = oidc.add_login(name="Anna")
    ProfileClient(channel=channel).update_profile(customer_id, "customer", {
        "preferred_name": "Аня", "phones": [PHONE],
        "postal_addresses": [{"country": "RU", "line": "Москва, Тверская ул., 1"}]})
    tokens = oidc.tokens_for(client, user, scope="openid email")
    assert _userinfo(oidc, tokens["access_token"]) == {
        "sub": customer_id, "email": user, "email_verified": False}
    tokens = oidc.tokens_for(client, user, scope="openid address")
    assert _userinfo(oidc, tokens["access_token"]) == {
        "sub": customer_id, "address": {"country": "RU", "formatted": "Москва, Тверская ул., 1"}}


def test_without_profile_data_the_customer_record_is_the_fallback(oidc: Oidc) -> None:
    client = oidc.add_client()
    user, customer_id = oidc.add_login(name="Max")
    tokens = oidc.tokens_for(client, user, scope=ALL_SCOPES)
    expected = {"sub": customer_id, "name": "Max", "email": user, "email_verified": False}
    assert _userinfo(oidc, tokens["access_token"]) == expected
    id_token = _id_token_claims(oidc, tokens["id_token"])
    assert {k: id_token.get(k) for k in expected} == expected
    assert not {"phone_number", "address", "given_name", "birthdate"} & set(id_token)
