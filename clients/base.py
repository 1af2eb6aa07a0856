"""What every typed client shares: the channel, deadlines, retries and error mapping."""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable
from typing import Any, Self, TypeVar

import grpc
from grpc_status import rpc_status as grpc_rpc_status

from singleid import errors, rpc_status
from singleid.bearer import BearerInterceptor
from singleid.clients.auth import TokenSource, from_env, source_of

log = logging.getLogger(__name__)
R = TypeVar("R")

DEFAULT_TIMEOUT_SECONDS = 5.0
DEFAULT_ATTEMPTS = 4
_BACKOFF_BASE_SECONDS = 0.05
_BACKOFF_MAX_SECONDS = 1.0


class BaseClient:
    """Owns (or borrows) a channel; maps statuses back to ``singleid.errors`` classes.

    Pass ``channel`` to share one (with your own credentials and interceptors), or
    ``target`` to have the client open a channel it closes itself: TLS with
    ``credentials`` (``grpc.ssl_channel_credentials``), else plaintext. ``auth`` is a
    fixed access token or a :class:`~singleid.clients.auth.ClientCredentials`; without
    it, ``SINGLEID_TOKEN`` or ``SINGLEID_CLIENT_ID``/``_SECRET`` are used when set.
    """

    def __init__(self, target: str = "127.0.0.1:50051", *, channel: grpc.Channel | None = None,
                 timeout: float = DEFAULT_TIMEOUT_SECONDS,
                 attempts: int = DEFAULT_ATTEMPTS, auth: TokenSource | str | None = None,
                 credentials: grpc.ChannelCredentials | None = None) -> None:
        self._owns_channel = channel is None
        self._auth: TokenSource | None = None
        if channel is None:
            channel = (grpc.secure_channel(target, credentials) if credentials is not None
                       else grpc.insecure_channel(target))
            self._auth = source_of(auth) or from_env()
            if self._auth is not None:
                channel = grpc.intercept_channel(channel, BearerInterceptor(self._auth.token))
        self.channel = channel
        self.timeout = timeout
        self.attempts = attempts

    def close(self) -> None:
        if self._owns_channel:
            self.channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _call(self, method: Callable[..., R], request: Any, *, idempotent: bool,
              timeout: float | None = None) -> R:
        """Call with a deadline; retry UNAVAILABLE with backoff when the call is idempotent."""
        attempts = self.attempts if idempotent else 1
        renewed = False
        for attempt in range(1, attempts + 1):
            try:
                return method(request, timeout=timeout or self.timeout)
            except grpc.RpcError as exc:
                code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
                if code is grpc.StatusCode.UNAUTHENTICATED and self._auth and not renewed:
                    # The token expired or its key rotated: one new token, one more try.
                    self._auth.invalidate()
                    renewed = True
                    try:
                        return method(request, timeout=timeout or self.timeout)
                    except grpc.RpcError as again:
                        raise _error(again) from None
                if code is grpc.StatusCode.UNAVAILABLE and attempt < attempts:
                    delay = min(_BACKOFF_MAX_SECONDS, _BACKOFF_BASE_SECONDS * 2 ** attempt)
                    time.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 - jitter
                    continue
                raise _error(exc) from None
        raise AssertionError("unreachable")


def new_idempotency_key() -> str:
    """A fresh key, so a retried mutation applies once."""
    return str(uuid.uuid4())


def _error(exc: grpc.RpcError) -> errors.SingleIdError:
    if not isinstance(exc, grpc.Call):
        return errors.Internal(str(exc))
    status = grpc_rpc_status.from_call(exc)
    return rpc_status.from_status(exc.code(), exc.details() or "", status)
