"""The caller check in front of every ``singleid.v1`` method: token, scope, rate limit, audit.

Core knows no token format and no scope table: a domain provides them through
the ``singleid.authenticators`` entry point (:class:`AuthenticatorPlugin`). The
guard asks it who is calling and which scope the method needs, then checks the
per-client rate limit; when the call ends, :class:`CallAudit` records it if it
changed something or showed personal data. Health and reflection never reach
the guard.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any, Protocol

import grpc

from singleid import audit
from singleid.caller import Caller
from singleid.errors import PermissionDenied, ResourceExhausted, Unauthenticated
from singleid.plugins import load_plugins
from singleid.server.context import AppContext

log = logging.getLogger(__name__)

BEARER = "bearer "


class Authenticator(Protocol):
    async def start(self) -> None:
        """Load what validation needs (keys, clients, revocations) before serving."""

    async def run(self, stop: asyncio.Event) -> None:
        """Refresh it in the background until ``stop`` is set."""

    async def authenticate(self, token: str, peer: str, peer_client: str | None) -> Caller:
        """The caller behind ``token``; raises Unauthenticated naming why."""

    def required_scope(self, method: str) -> str | None:
        """The scope ``/package.Service/Method`` needs; None: the method is unknown."""

    def mutates(self, method: str) -> bool:
        """Whether the method changes something (its call is always audited)."""


class AuthenticatorPlugin(Protocol):
    def __call__(self, context: AppContext) -> Authenticator: ...


def load_authenticator(context: AppContext) -> Authenticator:
    plugins: list[AuthenticatorPlugin] = load_plugins("singleid.authenticators")
    if len(plugins) != 1:
        raise RuntimeError(f"expected one singleid.authenticators entry point, got {len(plugins)}")
    return plugins[0](context)


class RateLimiter:
    """A token bucket per client, in this process: ``rate`` calls a second, ``burst`` at once.

    With ``--workers N`` each process has its own buckets, so a client gets up to
    N times the rate when its connections spread over the workers.
    """

    def __init__(self, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = float(max(burst, 1))
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, client_id: str) -> None:
        if self._rate <= 0:
            return
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(client_id, (self._burst, now))
            tokens = min(self._burst, tokens + (now - last) * self._rate)
            if tokens < 1.0:
                self._buckets[client_id] = (tokens, now)
                wait = (1.0 - tokens) / self._rate
                raise ResourceExhausted(
                    f"client {client_id!r} is over its rate limit of {self._rate:g} calls/s",
                    retry_after_seconds=wait, reason="CLIENT_RATE_LIMITED")
            self._buckets[client_id] = (tokens - 1.0, now)


class CallAudit:
    """One audit record per mutation, and per read that showed personal or special data.

    The api layers note the customer and attribute names a call touched
    (``singleid.caller.note``). Refused calls of an authenticated caller are
    recorded with their status; a call without a valid token has no actor and is
    only counted in the metrics. Concurrent records share one transaction
    (``audit.GroupAppender``); a record that cannot be written is logged, and the
    call's own outcome stands.
    """

    def __init__(self, appender: audit.GroupAppender, authenticator: Authenticator) -> None:
        self._appender = appender
        self._authenticator = authenticator

    async def record(self, method: str, caller: Caller, outcome: str) -> None:
        names = caller.touched.get("attributes", ())
        attributes = tuple(name for name in names if isinstance(name, str)
                           and audit.ATTRIBUTE.fullmatch(name)) if isinstance(names, tuple) else ()
        if not (attributes or self._authenticator.mutates(method)):
            return
        customer_id = caller.touched.get("customer_id")
        entry = audit.AuditEntry(
            actor=f"client:{caller.client_id}", action=method, outcome=outcome,
            peer=caller.peer or "unknown",
            customer_id=customer_id if isinstance(customer_id, str)
            and audit.CUSTOMER_ID.fullmatch(customer_id) else None,
            attributes=attributes)
        try:
            await self._appender.append(entry)
        except Exception:
            log.exception("could not append the audit record of %s", method,
                          extra={"method": method})


class CallerGuard:
    """Admits a call or raises the error that refuses it; has it audited when it ends."""

    def __init__(self, authenticator: Authenticator, limiter: RateLimiter,
                 client_certificates: bool = False, call_audit: CallAudit | None = None) -> None:
        self.authenticator = authenticator
        self._limiter = limiter
        self._client_certificates = client_certificates  # mTLS: read the peer's certificate
        self._audit = call_audit

    async def finished(self, method: str, caller: Caller, outcome: str) -> None:
        """The call of an admitted ``caller`` ended with ``outcome`` (a status code name)."""
        if self._audit is not None:
            await self._audit.record(method, caller, outcome)

    async def authenticate(self, context: grpc.aio.ServicerContext[Any, Any]) -> Caller:
        """The caller behind the call's bearer token, or Unauthenticated naming why."""
        token = ""
        for key, value in context.invocation_metadata() or ():
            if key == "authorization" and isinstance(value, str):
                token = value
                break
        if not token:
            raise Unauthenticated("no access token: send 'authorization: Bearer <token>'",
                                  reason="TOKEN_MISSING", field="authorization")
        if token[:len(BEARER)].lower() != BEARER:
            raise Unauthenticated("the authorization header is not 'Bearer <token>'",
                                  reason="TOKEN_MALFORMED", field="authorization")
        certificate = _certificate_subject(context) if self._client_certificates else None
        return await self.authenticator.authenticate(
            token[len(BEARER):].strip(), context.peer(), certificate)

    def authorize(self, method: str, caller: Caller) -> None:
        """PERMISSION_DENIED without the method's scope; RESOURCE_EXHAUSTED over the limit."""
        scope = self.authenticator.required_scope(method)
        if scope is None:
            raise PermissionDenied(f"{method} has no scope: nobody may call it",
                                   reason="METHOD_HAS_NO_SCOPE")
        if scope not in caller.scopes:
            raise PermissionDenied(f"the token lacks the scope {scope!r} that {method} needs",
                                   reason="SCOPE_MISSING", field="scope",
                                   metadata={"scope": scope})
        self._limiter.take(caller.client_id)


def _certificate_subject(context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    """The common name of a verified TLS client certificate (mTLS), if the peer sent one."""
    names = list((context.auth_context() or {}).get("x509_common_name", ()))
    return names[0].decode() if names else None
