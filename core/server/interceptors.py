"""One interceptor for every gRPC method: the caller check, error mapping, metrics and logs.

Services raise the ``singleid.errors`` tree; this maps it once to statuses with
``google.rpc`` details. Anything else becomes INTERNAL with a generic message,
and its traceback goes to the log, never to the caller.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.rpc import status_pb2
from grpc_status import rpc_status as grpc_rpc_status
from sqlalchemy.exc import DBAPIError

from singleid import caller as callers
from singleid import rpc_status
from singleid.caller import Caller
from singleid.errors import SingleIdError, Unavailable
from singleid.server import metrics
from singleid.server.auth import CallerGuard

log = logging.getLogger(__name__)

Behavior = Callable[..., Any]


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):
    """Maps errors; with a ``guard``, admits each call first and makes its caller current."""

    def __init__(self, guard: CallerGuard | None = None) -> None:
        self._guard = guard

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails],
                               Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(_OPEN_PREFIXES):
            return handler
        method = handler_call_details.method
        common = {"request_deserializer": handler.request_deserializer,
                  "response_serializer": handler.response_serializer}
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(method, handler.unary_unary, self._guard), **common)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _wrap_unary(method, handler.stream_unary, self._guard), **common)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream(method, handler.unary_stream, self._guard), **common)
        assert handler.stream_stream is not None
        return grpc.stream_stream_rpc_method_handler(
            _wrap_stream(method, handler.stream_stream, self._guard), **common)


# Health checks and reflection are plumbing, not business calls.
_OPEN_PREFIXES = ("/grpc.health.", "/grpc.reflection.")


def _wrap_unary(method: str, behavior: Behavior, guard: CallerGuard | None) -> Behavior:
    async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        started = time.perf_counter()
        caller = bound = None
        try:
            if guard is not None:
                caller = await guard.authenticate(context)
                bound = callers.bind(caller)
                guard.authorize(method, caller)
            response = await behavior(request, context)
        except BaseException as exc:
            await _fail(exc, method, context, started, guard, caller)
            raise
        finally:
            if bound is not None:
                callers.unbind(bound)
        await _succeed(method, started, guard, caller)
        return response

    return call


def _wrap_stream(method: str, behavior: Behavior, guard: CallerGuard | None) -> Behavior:
    async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]
                   ) -> AsyncIterator[Any]:
        started = time.perf_counter()
        caller = bound = None
        try:
            if guard is not None:
                caller = await guard.authenticate(context)
                bound = callers.bind(caller)
                guard.authorize(method, caller)
            async for response in behavior(request, context):
                yield response
        except BaseException as exc:
            await _fail(exc, method, context, started, guard, caller)
            raise
        finally:
            if bound is not None:
                callers.unbind(bound)
        await _succeed(method, started, guard, caller)

    return call


async def _succeed(method: str, started: float, guard: CallerGuard | None,
                   caller: Caller | None) -> None:
    metrics.observe(method, "OK", time.perf_counter() - started)
    if guard is not None and caller is not None:
        await guard.finished(method, caller, "OK")


async def _fail(exc: BaseException, method: str, context: grpc.aio.ServicerContext[Any, Any],
                started: float, guard: CallerGuard | None, caller: Caller | None) -> None:
    """Count (and audit) the failed call, then abort it with its status (which raises), if it
    has one."""
    code, status = _classify(exc, method, context)
    metrics.observe(method, code, time.perf_counter() - started)
    if guard is not None and caller is not None and code != "CANCELLED":
        await guard.finished(method, caller, code)
    if status is not None:
        await context.abort_with_status(grpc_rpc_status.to_status(status))


def _classify(exc: BaseException, method: str, context: grpc.aio.ServicerContext[Any, Any]
              ) -> tuple[str, status_pb2.Status | None]:
    """The status code's name for metrics, and the status to abort with (None: re-raise as is).

    Cancellation and an abort already under way propagate untouched.
    """
    if isinstance(exc, asyncio.CancelledError):
        return "CANCELLED", None
    if isinstance(exc, grpc.aio.AbortError):
        code = context.code()
        return (code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"), None
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        # The database dropped the connection (a restart, a fail-over): transient.
        log.warning("database connection lost in %s", method, extra={"method": method})
        exc = Unavailable("the database connection was lost; retry", reason="DATABASE_UNAVAILABLE")
    if isinstance(exc, SingleIdError):
        metrics.error(method, exc.reason)
        return rpc_status.status_code_of(exc).name, rpc_status.to_status(exc)
    log.error("unhandled error in %s", method, exc_info=exc, extra={"method": method})
    metrics.error(method, "INTERNAL")
    return "INTERNAL", rpc_status.internal_status()
