"""JWT access tokens (RFC 9068) and what a server needs to check them without the database.

A token is signed with the current ES256 OIDC key and names its client; every
gRPC call is checked against a :class:`Snapshot` held in memory (published
keys, clients, revoked token IDs), which each server process reloads every
``SINGLEID_AUTH_REFRESH_SECONDS`` (docs/decisions/0902).
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from joserfc import jwt
from joserfc.errors import BadSignatureError, JoseError
from joserfc.jwk import KeySet
from sqlalchemy import select
from sqlalchemy.orm import Session

from singleid.caller import Caller
from singleid.db import Database, utcnow
from singleid.errors import Unauthenticated
from singleid.idp.oidc import models
from singleid.idp.oidc.service.clients import API_SCOPES, digest
from singleid.idp.oidc.service.keys import SigningKeys

# ES256: signing costs a token request far less than RS256; verifying costs more, but a
# process verifies a token once and keeps the result (docs/decisions/0902).
ACCESS_TOKEN_ALG = "ES256"  # noqa: S105 - an algorithm name
ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 - a media type
API_AUDIENCE = "singleid.v1"  # the gRPC API is the resource these tokens are for
_VERIFIED_CACHE_SIZE = 10_000


def issue(keys: SigningKeys, issuer: str, client_id: str, subject: str | None, scope: str,
          lifetime_seconds: int) -> str:
    """A signed RFC 9068 access token; ``subject`` is the customer, or None for the client."""
    key = keys.signing_key(ACCESS_TOKEN_ALG)
    now = int(time.time())
    claims = {"iss": issuer, "sub": subject or client_id, "client_id": client_id,
              "scope": scope, "aud": API_AUDIENCE, "iat": now, "exp": now + lifetime_seconds,
              "jti": secrets.token_urlsafe(16)}
    return jwt.encode({"alg": ACCESS_TOKEN_ALG, "kid": key.kid, "typ": ACCESS_TOKEN_TYPE},
                      claims, key, algorithms=[ACCESS_TOKEN_ALG])


def token_id(token: str) -> str | None:
    """The ``jti`` of a token we just issued (no check: it never left this process)."""
    claims = _segment(token, 1)
    value = claims.get("jti") if claims else None
    return value if isinstance(value, str) else None


def _segment(token: str, index: int) -> dict[str, Any] | None:
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(parts[index] + "=" * (-len(parts[index]) % 4)))
    except (ValueError, binascii.Error):
        return None
    return value if isinstance(value, dict) else None


@dataclass(frozen=True)
class ClientEntry:
    client_id: str
    disabled: bool
    product: str | None
    source: str | None
    sensitivity: str
    verified_call_only: bool


@dataclass(frozen=True)
class Snapshot:
    keys: KeySet
    kids: frozenset[str]
    clients: dict[str, ClientEntry]
    revoked: frozenset[str]
    loaded_at: float  # time.time(), to compare with a token's iat


def load_snapshot(db: Database, keys: SigningKeys) -> Snapshot:
    """Everything the check needs: three short reads, every refresh interval."""
    now = utcnow()
    key_set = keys.public_key_set()
    with db.engine.connect() as connection:
        clients = {row.client_id: ClientEntry(row.client_id, row.disabled_at is not None,
                                              row.product_code, row.profile_source,
                                              row.max_sensitivity, row.verified_call_only)
                   for row in connection.execute(select(
                       models.Client.client_id, models.Client.disabled_at,
                       models.Client.product_code, models.Client.profile_source,
                       models.Client.max_sensitivity, models.Client.verified_call_only))}
        revoked = frozenset(jti for jti in connection.scalars(select(models.Token.jti).where(
            models.Token.jti.is_not(None), models.Token.revoked_at.is_not(None),
            models.Token.access_expires_at > now)) if jti)
    kids = frozenset(str(k.kid) for k in key_set.keys if k.kid)
    return Snapshot(key_set, kids, clients, revoked, time.time())


class NeedsRefresh(Exception):
    """The token names a key or client the snapshot may not know yet: reload and retry if
    the snapshot is older than the token (``issued_at``)."""

    def __init__(self, issued_at: float) -> None:
        super().__init__()
        self.issued_at = issued_at


@dataclass(frozen=True)
class _Verified:
    kid: str
    claims: dict[str, Any]
    scopes: frozenset[str]  # parsed once per token, not per call


class AccessTokenVerifier:
    """Checks a token against a snapshot; remembers good signatures until they expire."""

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer
        self._verified: dict[str, _Verified] = {}

    def check(self, snapshot: Snapshot, token: str, peer: str, final: bool) -> Caller:
        """The caller; raises Unauthenticated naming why (or NeedsRefresh unless ``final``)."""
        verified = self._verified.get(token) or self._verify(snapshot, token, final)
        if verified.kid not in snapshot.kids:
            raise _refused("the token's signing key was rotated out", "TOKEN_KEY_RETIRED")
        claims = verified.claims
        if claims["exp"] <= time.time():
            self._verified.pop(token, None)
            raise _refused("the access token expired", "TOKEN_EXPIRED")
        if claims["jti"] in snapshot.revoked:
            raise _refused("the access token was revoked", "TOKEN_REVOKED")
        client = snapshot.clients.get(claims["client_id"])
        if client is None:
            if not final:
                raise NeedsRefresh(float(claims.get("iat", 0)))
            raise _refused(f"client {claims['client_id']!r} does not exist", "CLIENT_UNKNOWN")
        if client.disabled:
            raise _refused(f"client {client.client_id!r} is disabled", "CLIENT_DISABLED")
        return Caller(client_id=client.client_id, subject=claims["sub"],
                      scopes=verified.scopes, product=client.product,
                      source=client.source, sensitivity=client.sensitivity,
                      needs_verified_call=client.verified_call_only, peer=peer)

    def _verify(self, snapshot: Snapshot, token: str, final: bool) -> _Verified:
        header = _segment(token, 0)
        if header is None:
            raise _refused("the access token is not a JWT", "TOKEN_MALFORMED")
        if header.get("typ") != ACCESS_TOKEN_TYPE or header.get("alg") != ACCESS_TOKEN_ALG:
            raise _refused(f"not an access token (typ at+jwt, {ACCESS_TOKEN_ALG})",
                           "TOKEN_MALFORMED")
        kid = header.get("kid")
        if not isinstance(kid, str) or kid not in snapshot.kids:
            if not final:
                unverified = _segment(token, 1) or {}
                issued_at = unverified.get("iat")
                raise NeedsRefresh(float(issued_at) if isinstance(issued_at, int) else 0.0)
            raise _refused("the token is signed with an unknown key", "TOKEN_UNKNOWN_KEY")
        try:
            decoded = jwt.decode(token, snapshot.keys.get_by_kid(kid),
                                 algorithms=[ACCESS_TOKEN_ALG])
        except BadSignatureError:
            raise _refused("the token's signature is not valid", "TOKEN_BAD_SIGNATURE") from None
        except (JoseError, ValueError):
            raise _refused("the access token cannot be read", "TOKEN_MALFORMED") from None
        claims = dict(decoded.claims)
        if claims.get("iss") != self.issuer:
            raise _refused("the token comes from another issuer", "TOKEN_WRONG_ISSUER")
        audience = claims.get("aud")
        if API_AUDIENCE not in (audience if isinstance(audience, list) else [audience]):
            raise _refused(f"the token is not for {API_AUDIENCE}", "TOKEN_WRONG_AUDIENCE")
        if not all(isinstance(claims.get(name), kind) for name, kind in (
                ("exp", int), ("jti", str), ("client_id", str), ("sub", str), ("scope", str))):
            raise _refused("the token lacks exp, jti, client_id, sub or scope", "TOKEN_MALFORMED")
        if len(self._verified) >= _VERIFIED_CACHE_SIZE:
            self._verified.clear()
        verified = _Verified(kid, claims, frozenset(claims["scope"].split()))
        self._verified[token] = verified
        return verified


def _refused(message: str, reason: str) -> Unauthenticated:
    return Unauthenticated(message, reason=reason, field="authorization")


def provision_admin(db: Database, client_id: str, secret: str) -> None:
    """Create, or reset to, an unbound client with every scope (SINGLEID_BOOTSTRAP_CLIENT)."""

    def apply(session: Session) -> None:
        row = session.get(models.Client, client_id)
        if row is None:
            row = models.Client(client_id=client_id, public=False, redirect_uris=[],
                                post_logout_redirect_uris=[], jwks=None,
                                id_token_signed_response_alg="RS256",  # noqa: S106
                                backchannel_logout_uri=None, created_at=utcnow())
            session.add(row)
        row.secret_digest = digest(secret)
        row.grant_types = ["client_credentials"]
        row.scopes = list(API_SCOPES)
        row.token_endpoint_auth_method = "client_secret_basic"  # noqa: S105 - a method name
        row.product_code = row.profile_source = None
        row.max_sensitivity = "special"
        row.verified_call_only = False
        row.disabled_at = None

    db.run_write(apply)

