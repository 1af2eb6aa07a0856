"""Access tokens for the typed clients: a fixed token, or client credentials refreshed as needed.

Every singleid.v1 call carries ``authorization: Bearer <token>``. With a client
ID and secret the client finds the token endpoint from the issuer's discovery
document, asks for a client-credentials token, and asks again a minute before
it expires (or after the server said UNAUTHENTICATED).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Protocol

from singleid import errors
from singleid.bearer import CachedToken, fetch_client_credentials


class TokenSource(Protocol):
    def token(self) -> str: ...

    def invalidate(self) -> None: ...


class FixedToken:
    def __init__(self, token: str) -> None:
        self._token = token

    def token(self) -> str:
        return self._token

    def invalidate(self) -> None:
        """Nothing to do: the caller owns a fixed token's lifetime."""


class ClientCredentials:
    """Tokens for a confidential client (client_secret_basic), fetched and refreshed by itself."""

    def __init__(self, client_id: str, client_secret: str, *, issuer: str = "",
                 token_endpoint: str = "", scope: str = "", timeout: float = 10.0) -> None:
        if not (issuer or token_endpoint):
            raise ValueError("give the issuer (its discovery names the token endpoint) "
                             "or the token endpoint")
        self._client_id = client_id
        self._secret = client_secret
        self._issuer = issuer.rstrip("/")
        self._endpoint = token_endpoint
        self._scope = scope
        self._timeout = timeout
        self._cached = CachedToken(self._fetch)

    def token(self) -> str:
        return self._cached.token()

    def invalidate(self) -> None:
        self._cached.invalidate()

    def _fetch(self) -> tuple[str, float]:
        if not self._endpoint:
            discovery = _get_json(f"{self._issuer}/.well-known/openid-configuration",
                                  self._timeout)
            self._endpoint = str(discovery["token_endpoint"])
        try:
            return fetch_client_credentials(self._endpoint, self._client_id, self._secret,
                                            scope=self._scope, timeout=self._timeout)
        except urllib.error.HTTPError as exc:  # a wrong secret, a disabled or deleted client
            raise errors.Unauthenticated(
                f"the token endpoint refused client {self._client_id!r}: HTTP {exc.code}",
                reason="CLIENT_CREDENTIALS_REFUSED", field="client_id") from None


def _get_json(url: str, timeout: float) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
        body: dict[str, Any] = json.load(response)
    return body


def from_env() -> TokenSource | None:
    """``SINGLEID_TOKEN``, or ``SINGLEID_CLIENT_ID`` and ``SINGLEID_CLIENT_SECRET`` (with
    ``SINGLEID_ISSUER`` or ``SINGLEID_TOKEN_ENDPOINT``), or None: for the CLI and scripts."""
    if token := os.environ.get("SINGLEID_TOKEN"):
        return FixedToken(token)
    client_id = os.environ.get("SINGLEID_CLIENT_ID")
    secret = os.environ.get("SINGLEID_CLIENT_SECRET")
    if not (client_id and secret):
        return None
    issuer = os.environ.get("SINGLEID_ISSUER") or (
        f"http://{os.environ.get('SINGLEID_HTTP_ADDR', '127.0.0.1:8080')}")
    return ClientCredentials(client_id, secret, issuer=issuer,
                             token_endpoint=os.environ.get("SINGLEID_TOKEN_ENDPOINT", ""))


def source_of(auth: TokenSource | str | None) -> TokenSource | None:
    return FixedToken(auth) if isinstance(auth, str) else auth
