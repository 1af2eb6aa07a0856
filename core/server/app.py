"""One server process: gRPC (with health and reflection) and the HTTP app on one asyncio loop.

Synchronous work (database calls) runs in the context's bounded thread pool,
so the loop never blocks. SIGTERM and SIGINT stop it cleanly: health turns
NOT_SERVING, new calls are refused, and in-flight calls get the grace period
to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import uvicorn
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from singleid import audit
from singleid.plugins import load_plugins
from singleid.server.auth import (
    Authenticator,
    CallAudit,
    CallerGuard,
    RateLimiter,
    load_authenticator,
)
from singleid.server.context import AppContext, ServicePlugin, WorkerPlugin
from singleid.server.http import build_app
from singleid.server.interceptors import ErrorMappingInterceptor
from singleid.settings import Settings

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
HTTP_BACKLOG = 2048  # uvicorn's default
GRPC_OPTIONS = [
    ("grpc.so_reuseport", 1),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]


@dataclass(frozen=True)
class Listening:
    grpc_addr: str
    http_addr: str


class _HttpServer(uvicorn.Server):
    """uvicorn without its own signal handling: the worker owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def build_grpc_server(context: AppContext, authenticator: Authenticator | None
                            ) -> tuple[grpc.aio.Server, health.aio.HealthServicer]:
    """The gRPC server; without an authenticator (``SINGLEID_AUTH=off``) nobody is checked."""
    settings = context.settings
    guard = None if authenticator is None else CallerGuard(
        authenticator, RateLimiter(settings.rate_limit_per_client, settings.rate_limit_burst),
        client_certificates=settings.tls and settings.tls_client_ca is not None,
        call_audit=CallAudit(audit.GroupAppender(context.db, context.executor), authenticator))
    server = grpc.aio.server(interceptors=[ErrorMappingInterceptor(guard)], options=GRPC_OPTIONS)
    names: list[str] = []
    plugin: ServicePlugin
    for plugin in load_plugins("singleid.services"):
        names.extend(plugin(context, server))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ["", *names]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        [*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    return server, health_servicer


def start_workers(context: AppContext, stop: asyncio.Event) -> list[asyncio.Task[None]]:
    """Start each domain's ``singleid.workers`` background task on this loop."""
    plugins: list[WorkerPlugin] = load_plugins("singleid.workers")
    return [asyncio.create_task(plugin(context, stop), name=f"worker:{plugin!r}")
            for plugin in plugins]


async def stop_background(tasks: list[asyncio.Task[None]], grace: float) -> None:
    """Wait for stopped workers; cancel what outlives the grace period; log any failure."""
    if not tasks:
        return
    _done, pending = await asyncio.wait(tasks, timeout=max(grace, 0.1))
    for task in pending:
        task.cancel()
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.error("background worker failed", exc_info=task.exception())


def reuseport_socket(addr: str, variable: str = "") -> socket.socket:
    """A bound TCP socket that several processes can share (SO_REUSEPORT).

    A failure names the setting the address came from (``variable``), not only the errno.
    """
    host, _, port = addr.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, int(port)))
    except OSError as exc:
        sock.close()
        where = f"{variable}: " if variable else ""
        raise OSError(f"{where}cannot listen on {addr}: {exc.strerror or exc}") from None
    return sock


def bound_addr(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_loopback(addr: str) -> bool:
    host = addr.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_exposure(settings: Settings) -> None:
    """Refuse to serve plaintext, or without authentication, beyond this machine."""
    exposed = [name for name, addr in (("SINGLEID_GRPC_ADDR", settings.grpc_addr),
                                       ("SINGLEID_HTTP_ADDR", settings.http_addr))
               if not is_loopback(addr)]
    if exposed and settings.auth == "off":
        raise OSError(f"{exposed[0]}: SINGLEID_AUTH=off is allowed on loopback addresses only")
    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise OSError("SINGLEID_TLS_CERT and SINGLEID_TLS_KEY go together")
    if exposed and not settings.tls and not settings.allow_plaintext:
        raise OSError(f"{exposed[0]}: refusing to listen beyond loopback without TLS; set "
                      "SINGLEID_TLS_CERT and SINGLEID_TLS_KEY (or SINGLEID_ALLOW_PLAINTEXT=1)")


def _add_port(server: grpc.aio.Server, settings: Settings) -> int:
    if not settings.tls:
        return server.add_insecure_port(settings.grpc_addr)
    assert settings.tls_cert is not None
    assert settings.tls_key is not None
    ca = settings.tls_client_ca.read_bytes() if settings.tls_client_ca else None
    credentials = grpc.ssl_server_credentials(
        [(settings.tls_key.read_bytes(), settings.tls_cert.read_bytes())],
        root_certificates=ca, require_client_auth=ca is not None)
    return server.add_secure_port(settings.grpc_addr, credentials)


async def serve(settings: Settings, announce: bool = True) -> None:
    """Run one server process until SIGTERM or SIGINT."""
    check_exposure(settings)
    context = AppContext.from_settings(settings)
    authenticator = load_authenticator(context) if settings.auth == "on" else None
    if authenticator is not None:
        await authenticator.start()
    server, health_servicer = await build_grpc_server(context, authenticator)
    try:
        grpc_port = _add_port(server, settings)
    except RuntimeError:
        grpc_port = 0
    if grpc_port == 0:
        # gRPC says only that binding failed; a socket of our own says why.
        reuseport_socket(settings.grpc_addr, "SINGLEID_GRPC_ADDR").close()
        raise OSError(f"SINGLEID_GRPC_ADDR: cannot listen on {settings.grpc_addr}")
    http_socket = reuseport_socket(settings.http_addr, "SINGLEID_HTTP_ADDR")
    # Listen now, before announcing: connections queue until uvicorn accepts them.
    http_socket.listen(HTTP_BACKLOG)
    http = _HttpServer(uvicorn.Config(
        build_app(context), log_config=None, access_log=False, lifespan="off",
        ssl_certfile=settings.tls_cert, ssl_keyfile=settings.tls_key))
    # Own the signals before announcing: a SIGTERM right after start is a clean stop too.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    http_task = asyncio.create_task(http.serve(sockets=[http_socket]))
    stop_workers = asyncio.Event()
    workers = start_workers(context, stop_workers)
    if authenticator is not None:
        workers.append(asyncio.create_task(authenticator.run(stop_workers), name="auth-refresh"))
    grpc_host = settings.grpc_addr.rpartition(":")[0]
    where = Listening(f"{grpc_host}:{grpc_port}", bound_addr(http_socket))
    scheme = "https" if settings.tls else "http"
    if announce:
        print(f"singleid listening: grpc={where.grpc_addr} http={scheme}://{where.http_addr}",
              flush=True)
    log.info("serving", extra={"grpc_addr": where.grpc_addr, "http_addr": where.http_addr})
    await stop.wait()

    log.info("stopping: finishing in-flight calls",
             extra={"grace_seconds": settings.shutdown_grace_seconds})
    await health_servicer.enter_graceful_shutdown()
    http.should_exit = True
    stop_workers.set()
    await server.stop(settings.shutdown_grace_seconds)
    await stop_background(workers, settings.shutdown_grace_seconds)
    await http_task
    http_socket.close()
    await asyncio.get_running_loop().run_in_executor(None, context.close)
    log.info("stopped")
