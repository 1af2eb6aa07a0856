"""``singleid oidc …``, ``singleid login …``, ``singleid staff …``: clients, keys, logins, staff.

Other tools drive the service through these commands, so their output is JSON.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any

import click

from singleid.caller import SENSITIVITIES
from singleid.clitools import app_context, echo_json
from singleid.idp.normalize import IdentifierKind
from singleid.idp.oidc.service.clients import (
    GRANT_TYPES,
    SCOPES,
    ClientService,
    OidcClient,
)
from singleid.idp.oidc.service.keys import SigningKeys
from singleid.idp.oidc.service.logins import LoginService
from singleid.idp.oidc.service.passwords import LegacyFormat
from singleid.idp.oidc.service.staff import Role, StaffService


def commands() -> list[click.Command]:
    """The ``singleid.commands`` entry point."""
    return [oidc, login, staff]


@click.group()
def oidc() -> None:
    """The OpenID Connect provider: clients and signing keys."""


@oidc.group()
def client() -> None:
    """Relying parties (the products that sign customers in with singleid)."""


@client.command("add")
@click.option("--client-id", required=True)
@click.option("--redirect-uri", "redirect_uris", multiple=True,
              help="Exact redirect URI; repeat for several.")
@click.option("--public", is_flag=True, help="A public client (no secret; PKCE required).")
@click.option("--grant-type", "grant_types", multiple=True, type=click.Choice(GRANT_TYPES),
              help="Repeat for several; default: authorization_code and refresh_token, or "
                   "client_credentials without a redirect URI.")
@click.option("--scope", "scopes", multiple=True, type=click.Choice(SCOPES),
              help="Scopes the client may ask for; default: the OpenID Connect ones.")
@click.option("--backchannel-logout-uri", default="")
@click.option("--post-logout-redirect-uri", "post_logout", multiple=True)
@click.option("--auth-method", default="",
              type=click.Choice(["", "client_secret_basic", "client_secret_post",
                                 "private_key_jwt"]),
              help="Token endpoint authentication (confidential clients).")
@click.option("--jwks", "jwks_file", type=click.File(), default=None,
              help="A JSON file with the client's public keys (private_key_jwt).")
@click.option("--id-token-alg", default="RS256", type=click.Choice(["RS256", "ES256"]))
@click.option("--product", default="", help="The product code it acts for on the gRPC API.")
@click.option("--source", default="", help="The profile source it writes as.")
@click.option("--sensitivity", default="ordinary", type=click.Choice(SENSITIVITIES),
              help="The most sensitive profile attributes it may read.")
@click.option("--verified-call-only", is_flag=True,
              help="Personal attributes only with a verified-call proof (the contact center).")
def client_add(client_id: str, redirect_uris: tuple[str, ...], public: bool,
               grant_types: tuple[str, ...], scopes: tuple[str, ...],
               backchannel_logout_uri: str, post_logout: tuple[str, ...], auth_method: str,
               jwks_file: Any, id_token_alg: str, product: str, source: str,
               sensitivity: str, verified_call_only: bool) -> None:
    """Register a client; print JSON with client_id (and client_secret, shown only once)."""
    jwks = json.load(jwks_file) if jwks_file is not None else None
    with app_context() as context:
        created = ClientService(context.db).add(
            client_id, redirect_uris, public=public, grant_types=grant_types, scopes=scopes,
            backchannel_logout_uri=backchannel_logout_uri, post_logout_redirect_uris=post_logout,
            token_endpoint_auth_method="none" if public else auth_method, jwks=jwks,
            id_token_alg=id_token_alg, product=product, source=source, sensitivity=sensitivity,
            verified_call_only=verified_call_only)
    result = dataclasses.asdict(created)
    if result["client_secret"] is None:
        del result["client_secret"]
    echo_json(result)


@client.command("update")
@click.argument("client_id")
@click.option("--scope", "scopes", multiple=True, type=click.Choice(SCOPES),
              help="Replace the scopes (repeat); none given: keep them.")
@click.option("--product", default=None, help="Bind to a product code ('' unbinds).")
@click.option("--source", default=None, help="Bind to a profile source ('' unbinds).")
@click.option("--sensitivity", default=None, type=click.Choice(SENSITIVITIES))
@click.option("--disable/--enable", "disabled", default=None,
              help="A disabled client gets no tokens; its tokens are refused within seconds.")
def client_update(client_id: str, scopes: tuple[str, ...], product: str | None,
                  source: str | None, sensitivity: str | None, disabled: bool | None) -> None:
    """Change a client's scopes, bindings or sensitivity, or disable it; print it."""
    with app_context() as context:
        updated = ClientService(context.db).update(
            client_id, scopes=scopes or None, product=product, source=source,
            sensitivity=sensitivity, disabled=disabled)
    echo_json(_client_json(updated))


@client.command("disable")
@click.argument("client_id")
def client_disable(client_id: str) -> None:
    """Disable a client (same as ``update --disable``)."""
    with app_context() as context:
        updated = ClientService(context.db).update(client_id, disabled=True)
    echo_json(_client_json(updated))


@client.command("delete")
@click.argument("client_id")
def client_delete(client_id: str) -> None:
    """Remove a client with its grants and tokens."""
    with app_context() as context:
        ClientService(context.db).delete(client_id)
    echo_json({"deleted": client_id})


def _client_json(client: OidcClient) -> dict[str, Any]:
    return {"client_id": client.client_id, "scopes": list(client.scopes),
            "grant_types": list(client.grant_types), "product": client.product,
            "source": client.source, "sensitivity": client.sensitivity,
            "verified_call_only": client.verified_call_only,
            "disabled": client.disabled}


@oidc.group()
def keys() -> None:
    """ID-token signing keys (RS256 and ES256), sealed with the key ring."""


@keys.command("rotate")
def keys_rotate() -> None:
    """Add new signing keys; JWKS keeps publishing the previous ones (the overlap)."""
    with app_context() as context:
        signing = SigningKeys(context.db, context.keyring)
        signing.ensure()
        created = signing.rotate()
        echo_json({"created": [dataclasses.asdict(k) for k in created],
               "published": [dataclasses.asdict(k) for k in signing.published()]})


@keys.command("list")
def keys_list() -> None:
    """Print the published signing keys."""
    with app_context() as context:
        signing = SigningKeys(context.db, context.keyring)
        signing.ensure()
        echo_json([dataclasses.asdict(k) for k in signing.published()])


@click.group()
def login() -> None:
    """Ecosystem logins (phone or email and password)."""


@login.command("add")
@click.option("--phone", default="")
@click.option("--email", default="")
@click.option("--name", default="", help="How to address the person (a new customer).")
@click.option("--customer-id", default="",
              help="Give this existing customer the login instead of creating one.")
def login_add(phone: str, email: str, name: str, customer_id: str) -> None:
    """Create a customer with a login, or give an existing one a login; the password is read
    from stdin. Prints the central ID."""
    if bool(phone) == bool(email):
        raise click.UsageError("give exactly one of --phone and --email")
    if bool(name) == bool(customer_id):
        raise click.UsageError("give --name for a new customer, or --customer-id")
    password = sys.stdin.readline().rstrip("\r\n")
    with app_context() as context:
        logins = LoginService(context.db, context.keyring)
        customer_id = (logins.add_login(customer_id, phone or email, password) if customer_id
                       else logins.register(phone or email, password, name))
    echo_json({"customer_id": customer_id})


@login.command("add-legacy")
@click.option("--product", required=True)
@click.option("--account-id", required=True)
@click.option("--phone", default="")
@click.option("--email", default="")
@click.option("--format", "hash_format", required=True,
              type=click.Choice([f.value for f in LegacyFormat]))
def login_add_legacy(product: str, account_id: str, phone: str, email: str,
                     hash_format: str) -> None:
    """Attach a legacy password hash (read from stdin) to an imported product account."""
    if bool(phone) == bool(email):
        raise click.UsageError("give exactly one of --phone and --email")
    password_hash = sys.stdin.readline().strip()
    kind = IdentifierKind.PHONE if phone else IdentifierKind.EMAIL
    with app_context() as context:
        legacy_id = LoginService(context.db, context.keyring).add_legacy_login(
            product, account_id, kind, phone or email, hash_format, password_hash)
    echo_json({"legacy_login_id": legacy_id})


@click.group()
def staff() -> None:
    """Staff accounts: operators and administrators (people, never customers)."""


@staff.command("add")
@click.option("--login", "login_name", required=True, help="The staff member's login name.")
@click.option("--role", required=True, type=click.Choice([r.value for r in Role]))
def staff_add(login_name: str, role: str) -> None:
    """Create a staff account; the password is read from stdin.

    Prints JSON with the otpauth:// provisioning URI for the authenticator app,
    shown this once: it holds the TOTP secret.
    """
    password = sys.stdin.readline().rstrip("\r\n")
    with app_context() as context:
        created = StaffService(context.db, context.keyring).add(login_name, role, password)
    echo_json(created)


@staff.command("disable")
@click.option("--login", "login_name", required=True)
def staff_disable(login_name: str) -> None:
    """Disable a staff account for good and end its sessions (logins are never reused)."""
    with app_context() as context:
        StaffService(context.db, context.keyring).disable(login_name)
    echo_json({"login": login_name, "disabled": True})
