"""The client side of bearer tokens: a client-credentials token, and a channel that sends one.

Shared by the typed clients (``singleid.clients``) and the test harness
(``singleid.testing``), which must not depend on the clients package.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import urllib.request
from base64 import b64encode
from collections.abc import Callable
from typing import Any

import grpc

DEFAULT_EXPIRES_IN_SECONDS = 300.0
REFRESH_MARGIN_SECONDS = 60.0


def fetch_client_credentials(token_endpoint: str, client_id: str, secret: str, *,
                             scope: str = "", timeout: float = 30.0) -> tuple[str, float]:
    """A client-credentials access token and when it expires (epoch seconds).

    Raises ``urllib.error.HTTPError`` when the endpoint refuses the client.
    """
    form = {"grant_type": "client_credentials", **({"scope": scope} if scope else {})}
    basic = b64encode(f"{_quote(client_id)}:{_quote(secret)}".encode()).decode()
    request = urllib.request.Request(  # noqa: S310 - the configured issuer's endpoint
        token_endpoint, data=urllib.parse.urlencode(form).encode(),
        headers={"Authorization": f"Basic {basic}", "Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        body = json.load(response)
    expires_in = float(body.get("expires_in", DEFAULT_EXPIRES_IN_SECONDS))
    return str(body["access_token"]), time.time() + expires_in


def _quote(value: str) -> str:
    return urllib.parse.quote(value, safe="")  # RFC 6749 §2.3.1: form-encoded, then Basic


class CachedToken:
    """A token from ``fetch`` (token, expires at), fetched again a minute before it expires."""

    def __init__(self, fetch: Callable[[], tuple[str, float]]) -> None:
        self._fetch = fetch
        self._lock = threading.Lock()
        self._current: tuple[str, float] | None = None

    def token(self) -> str:
        with self._lock:
            if self._current is None or self._current[1] - REFRESH_MARGIN_SECONDS < time.time():
                self._current = self._fetch()
            return self._current[0]

    def invalidate(self) -> None:
        with self._lock:
            self._current = None


class BearerInterceptor(grpc.UnaryUnaryClientInterceptor,
                        grpc.UnaryStreamClientInterceptor,
                        grpc.StreamUnaryClientInterceptor,
                        grpc.StreamStreamClientInterceptor):
    """Adds ``authorization: Bearer <token>`` to every call of a channel."""

    def __init__(self, token: Callable[[], str]) -> None:
        self._token = token

    def _details(self, details: Any) -> Any:
        metadata = [*(details.metadata or ()), ("authorization", f"Bearer {self._token()}")]
        return details._replace(metadata=metadata)

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)
