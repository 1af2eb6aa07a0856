"""OIDC clients (the relying parties): registration and lookup.

A confidential client's secret is 32 random bytes shown once; only its SHA-256
digest is kept (a 256-bit random secret cannot be guessed, so a slow hash would
buy nothing and cost every token request; see docs/decisions).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete
from sqlalchemy.orm import Session

from singleid import events
from singleid.caller import SENSITIVITIES
from singleid.db import Database, utcnow
from singleid.errors import AlreadyExists, NotFound, Violations
from singleid.idp.oidc import models

GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
OIDC_SCOPES = ("openid", "profile", "email", "phone", "address")
# The gRPC API's scopes; which method needs which is the (singleid.v1.scope) option.
API_SCOPES = ("customers.read", "customers.write", "customers.merge", "profile.read",
              "profile.write", "profile.erase", "voiceprint.enroll", "voiceprint.verify",
              "matching.review", "admin")
SCOPES = OIDC_SCOPES + API_SCOPES
BINDING = re.compile(r"^[a-z][a-z0-9_.-]{0,31}$")
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt", "none")
ID_TOKEN_ALGS = ("RS256", "ES256")
CLIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{1,127}$")
CACHE_SECONDS = 2.0
EVENT_SOURCE = "/singleid/idp/oidc"


@dataclass(frozen=True)
class OidcClient:
    """A registered client, as Authlib's ``ClientMixin`` wants it."""

    client_id: str
    public: bool
    redirect_uris: tuple[str, ...]
    post_logout_redirect_uris: tuple[str, ...]
    grant_types: tuple[str, ...]
    scopes: tuple[str, ...]
    token_endpoint_auth_method: str
    id_token_signed_response_alg: str
    backchannel_logout_uri: str | None
    jwks: dict[str, Any] | None = field(default=None, hash=False, compare=False)
    secret_digest: bytes | None = field(default=None, repr=False)
    product: str | None = None
    source: str | None = None
    sensitivity: str = "ordinary"
    verified_call_only: bool = False
    disabled: bool = False

    # -- authlib.oauth2.rfc6749.ClientMixin ----------------------------------
    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.redirect_uris[0] if len(self.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str:
        if not scope:
            return ""
        return " ".join(s for s in scope.split() if s in self.scopes)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris  # exact match, nothing else

    def check_client_secret(self, client_secret: str) -> bool:
        if self.secret_digest is None:
            return False
        return hmac.compare_digest(digest(client_secret), self.secret_digest)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if method == "client_assertion_jwt":
            method = "private_key_jwt"
        if self.public:
            return method == "none"
        if self.token_endpoint_auth_method in ("client_secret_basic", "client_secret_post"):
            # A secret may travel either way (OpenID Basic tests both).
            return method in ("client_secret_basic", "client_secret_post")
        return method == self.token_endpoint_auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


@dataclass(frozen=True)
class CreatedClient:
    client_id: str
    client_secret: str | None
    public: bool
    redirect_uris: list[str]
    grant_types: list[str]
    scopes: list[str]
    token_endpoint_auth_method: str
    backchannel_logout_uri: str | None
    product: str | None = None
    source: str | None = None
    sensitivity: str = "ordinary"
    verified_call_only: bool = False


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


class ClientService:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._cache: dict[str, tuple[float, OidcClient | None]] = {}
        self._lock = threading.Lock()

    def add(self, client_id: str, redirect_uris: Sequence[str], *, public: bool = False,
            grant_types: Sequence[str] = (), scopes: Sequence[str] = (),
            backchannel_logout_uri: str = "", post_logout_redirect_uris: Sequence[str] = (),
            token_endpoint_auth_method: str = "", jwks: dict[str, Any] | None = None,
            id_token_alg: str = "RS256", product: str = "",  # noqa: S107
            source: str = "", sensitivity: str = "ordinary",
            verified_call_only: bool = False) -> CreatedClient:
        grants = list(dict.fromkeys(grant_types or (
            ("authorization_code", "refresh_token") if redirect_uris else ("client_credentials",))))
        wanted_scopes = list(dict.fromkeys(scopes or OIDC_SCOPES))
        _validate_binding(product, source, sensitivity, wanted_scopes)
        method = token_endpoint_auth_method or (
            "none" if public else "private_key_jwt" if jwks else "client_secret_basic")
        self._validate(client_id, redirect_uris, public, grants, wanted_scopes, method, jwks,
                       backchannel_logout_uri, post_logout_redirect_uris, id_token_alg)
        secret = None if public or method == "private_key_jwt" else secrets.token_urlsafe(32)

        def apply(session: Session) -> None:
            if session.get(models.Client, client_id) is not None:
                raise AlreadyExists(f"client {client_id!r} exists", reason="CLIENT_EXISTS",
                                    field="client_id")
            session.add(models.Client(
                client_id=client_id, secret_digest=digest(secret) if secret else None,
                public=public, redirect_uris=list(redirect_uris),
                post_logout_redirect_uris=list(post_logout_redirect_uris),
                grant_types=grants, scopes=wanted_scopes, token_endpoint_auth_method=method,
                jwks=jwks, id_token_signed_response_alg=id_token_alg,
                backchannel_logout_uri=backchannel_logout_uri or None, created_at=utcnow(),
                product_code=product or None, profile_source=source or None,
                max_sensitivity=sensitivity, verified_call_only=verified_call_only))
            events.emit(session, type="oidc.client_created.v1", source=EVENT_SOURCE,
                        subject=f"clients/{client_id}",
                        data={"client_id": client_id, "public": public, "grant_types": grants})

        self._db.run_write(apply, attempts=1)
        return CreatedClient(client_id, secret, public, list(redirect_uris), grants,
                             wanted_scopes, method, backchannel_logout_uri or None,
                             product or None, source or None, sensitivity, verified_call_only)

    def update(self, client_id: str, *, scopes: Sequence[str] | None = None,
               product: str | None = None, source: str | None = None,
               sensitivity: str | None = None, verified_call_only: bool | None = None,
               disabled: bool | None = None) -> OidcClient:
        """Change what a client may do; None leaves a field as it is, "" unbinds."""

        def apply(session: Session) -> OidcClient:
            row = self._row(session, client_id)
            new_scopes = list(dict.fromkeys(scopes)) if scopes is not None else list(row.scopes)
            new_product = row.product_code or "" if product is None else product
            new_source = row.profile_source or "" if source is None else source
            new_sensitivity = row.max_sensitivity if sensitivity is None else sensitivity
            _validate_binding(new_product, new_source, new_sensitivity, new_scopes,
                              check_scopes=scopes is not None)
            row.scopes = new_scopes
            row.product_code = new_product or None
            row.profile_source = new_source or None
            row.max_sensitivity = new_sensitivity
            if verified_call_only is not None:
                row.verified_call_only = verified_call_only
            if disabled is not None:
                row.disabled_at = utcnow() if disabled else None
            events.emit(session, type="oidc.client_updated.v1", source=EVENT_SOURCE,
                        subject=f"clients/{client_id}",
                        data={"client_id": client_id, "disabled": row.disabled_at is not None,
                              "scopes": new_scopes, "product": row.product_code,
                              "source": row.profile_source, "sensitivity": new_sensitivity})
            return _view(row)

        updated: OidcClient = self._db.run_write(apply)
        self._forget(client_id)
        return updated

    def delete(self, client_id: str) -> None:
        """Remove a client with its grants and tokens: they stop working within the refresh."""

        def apply(session: Session) -> None:
            self._row(session, client_id)
            for table in (models.Token, models.AuthorizationCode, models.Consent,
                          models.SessionClient):
                session.execute(delete(table).where(table.client_id == client_id))
            session.execute(delete(models.Grant).where(models.Grant.client_id == client_id))
            session.execute(delete(models.Client).where(models.Client.client_id == client_id))
            events.emit(session, type="oidc.client_deleted.v1", source=EVENT_SOURCE,
                        subject=f"clients/{client_id}", data={"client_id": client_id})

        self._db.run_write(apply)
        self._forget(client_id)

    @staticmethod
    def _row(session: Session, client_id: str) -> models.Client:
        row = session.get(models.Client, client_id, with_for_update=True)
        if row is None:
            raise NotFound(f"no client {client_id!r}", reason="CLIENT_NOT_FOUND",
                           field="client_id")
        return row

    def _forget(self, client_id: str) -> None:
        with self._lock:
            self._cache.pop(client_id, None)

    @staticmethod
    def _validate(  # noqa: PLR0912 - one branch per rule, read top to bottom
            client_id: str, redirect_uris: Sequence[str], public: bool,
                  grants: list[str], scopes: list[str], method: str,
                  jwks: dict[str, Any] | None, backchannel_logout_uri: str,
                  post_logout_redirect_uris: Sequence[str], id_token_alg: str) -> None:
        violations = Violations()
        if not CLIENT_ID.match(client_id):
            violations.add("client_id", "2 to 128 letters, digits, '.', '_', ':' or '-'")
        for index, uri in enumerate(redirect_uris):
            if not _absolute_uri(uri):
                violations.add(f"redirect_uris[{index}]",
                               "an absolute URI without a fragment")
        for index, uri in enumerate(post_logout_redirect_uris):
            if not _absolute_uri(uri):
                violations.add(f"post_logout_redirect_uris[{index}]",
                               "an absolute URI without a fragment")
        if backchannel_logout_uri and not _absolute_uri(backchannel_logout_uri):
            violations.add("backchannel_logout_uri", "an absolute URI without a fragment")
        for grant in grants:
            if grant not in GRANT_TYPES:
                violations.add("grant_types", f"{grant!r} is not offered (only "
                               f"{', '.join(GRANT_TYPES)}; no implicit or password grants)")
        if "authorization_code" in grants and not redirect_uris:
            violations.add("redirect_uris", "authorization_code needs a redirect URI")
        if public and "client_credentials" in grants:
            violations.add("grant_types", "a public client cannot use client_credentials")
        for scope in scopes:
            if scope not in SCOPES:
                violations.add("scopes", f"{scope!r} is not one of {', '.join(SCOPES)}")
        if method not in AUTH_METHODS or (method == "none") != public:
            violations.add("token_endpoint_auth_method",
                           "none for public clients; client_secret_basic, client_secret_post "
                           "or private_key_jwt for confidential ones")
        if method == "private_key_jwt" and not (jwks and jwks.get("keys")):
            violations.add("jwks", "private_key_jwt needs the client's public keys")
        if id_token_alg not in ID_TOKEN_ALGS:
            violations.add("id_token_signed_response_alg", "RS256 or ES256")
        violations.raise_if_any()

    def get(self, client_id: str) -> OidcClient:
        client = self.find(client_id)
        if client is None:
            raise NotFound(f"no client {client_id!r}", reason="CLIENT_NOT_FOUND",
                           field="client_id")
        return client

    def find(self, client_id: str, *, cached: bool = True) -> OidcClient | None:
        """The client, or None; a short per-process cache keeps token requests off the disk."""
        if not client_id or len(client_id) > 128:
            return None
        now = time.monotonic()
        hit = self._cache.get(client_id) if cached else None
        if hit is not None and now - hit[0] < CACHE_SECONDS:
            return hit[1]
        with self._db.read() as session:
            row = session.get(models.Client, client_id)
            client = _view(row) if row is not None else None
        with self._lock:
            self._cache[client_id] = (now, client)
        return client


def _validate_binding(product: str, source: str, sensitivity: str, scopes: Sequence[str],
                      check_scopes: bool = False) -> None:
    violations = Violations()
    if product and not BINDING.match(product):
        violations.add("product", "a product code: lower-case letters, digits, '_', '.', '-'")
    if source and not BINDING.match(source):
        violations.add("source", "a profile source: lower-case letters, digits, '_', '.', '-'")
    if sensitivity not in SENSITIVITIES:
        violations.add("sensitivity", f"one of {', '.join(SENSITIVITIES)}")
    if check_scopes:
        for scope in scopes:
            if scope not in SCOPES:
                violations.add("scopes", f"{scope!r} is not one of {', '.join(SCOPES)}")
    violations.raise_if_any()


def _absolute_uri(uri: str) -> bool:
    try:
        parts = urlsplit(uri)
    except ValueError:
        return False
    return bool(parts.scheme and parts.netloc) and not parts.fragment and len(uri) <= 2000


def _view(row: models.Client) -> OidcClient:
    return OidcClient(
        client_id=row.client_id, public=row.public, redirect_uris=tuple(row.redirect_uris),
        post_logout_redirect_uris=tuple(row.post_logout_redirect_uris),
        grant_types=tuple(row.grant_types), scopes=tuple(row.scopes),
        token_endpoint_auth_method=row.token_endpoint_auth_method,
        id_token_signed_response_alg=row.id_token_signed_response_alg,
        backchannel_logout_uri=row.backchannel_logout_uri, jwks=row.jwks,
        secret_digest=row.secret_digest, product=row.product_code, source=row.profile_source,
        sensitivity=row.max_sensitivity, verified_call_only=row.verified_call_only,
        disabled=row.disabled_at is not None)
