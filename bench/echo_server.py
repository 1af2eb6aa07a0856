"""The benchmarks' baseline: a trivial grpcio server of the same shape as ``singleid serve``.

Same shape: ``grpc.aio`` on one asyncio loop per process, ``--workers N``
processes sharing one port with SO_REUSEPORT (a supervisor holds the port, as
``singleid.server.workers`` does), and the same gRPC options
(``singleid.server.app.GRPC_OPTIONS``). It serves the same method names as
``singleid.v1.CustomerService`` through a generic handler that decodes the
request and returns a fixed response of the right type, doing no other work;
so one load generator drives both, and the difference is what singleid does.

    python bench/echo_server.py --workers 2 [--addr 127.0.0.1:0]

It prints ``echo listening: grpc=HOST:PORT workers=N`` once the port is bound
and ``echo serving pid=PID`` from each process once it serves; SIGTERM or
SIGINT stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any

import grpc

from singleid.server.app import GRPC_OPTIONS, bound_addr, reuseport_socket
from singleid.v1 import customers_pb2

SERVICE = "singleid.v1.CustomerService"
# A well-formed central ID; the echo never looks anything up.
FIXED_ID = "0d3x7k9q2m8v4n6r1t5w0y3z7a"
_PR_SET_PDEATHSIG = 1

Behavior = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]


def _fixed(response: Any) -> Behavior:
    async def behavior(_request: Any, _context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        return response

    return behavior


def echo_handler() -> grpc.GenericRpcHandler:
    """The CustomerService calls the benchmarks drive, each answering a fixed response."""
    resolve = customers_pb2.ResolveCustomerResponse(customer_id=FIXED_ID)
    register = customers_pb2.RegisterCustomerResponse(
        customer_id=FIXED_ID, created=True,
        outcome=customers_pb2.RegisterCustomerResponse.OUTCOME_CREATED)
    return grpc.method_handlers_generic_handler(SERVICE, {
        "ResolveCustomer": grpc.unary_unary_rpc_method_handler(
            _fixed(resolve),
            request_deserializer=customers_pb2.ResolveCustomerRequest.FromString,
            response_serializer=customers_pb2.ResolveCustomerResponse.SerializeToString),
        "RegisterCustomer": grpc.unary_unary_rpc_method_handler(
            _fixed(register),
            request_deserializer=customers_pb2.RegisterCustomerRequest.FromString,
            response_serializer=customers_pb2.RegisterCustomerResponse.SerializeToString),
    })


async def serve_one(addr: str, announce: bool) -> None:
    """One server process on ``addr`` until SIGTERM or SIGINT."""
    server = grpc.aio.server(options=GRPC_OPTIONS)
    server.add_generic_rpc_handlers((echo_handler(),))
    port = server.add_insecure_port(addr)
    if port == 0:
        raise OSError(f"cannot listen on {addr}")
    await server.start()
    if announce:
        print(f"echo listening: grpc={addr.rpartition(':')[0]}:{port} workers=1", flush=True)
    print(f"echo serving pid={os.getpid()}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1.0)


def _die_with_parent() -> None:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def supervise(addr: str, workers: int) -> int:
    """Hold the port and run ``workers`` child processes on it, as ``singleid serve`` does."""
    hold = reuseport_socket(addr)
    where = bound_addr(hold)
    children = [subprocess.Popen([sys.executable, __file__, "--worker", "--addr", where],
                                 preexec_fn=_die_with_parent)  # noqa: PLW1509 - no threads here
                for _ in range(workers)]
    stopping = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"echo listening: grpc={where} workers={workers}", flush=True)
    while not stopping and all(child.poll() is None for child in children):
        time.sleep(0.2)
    on_signal(signal.SIGTERM, None)
    codes = [child.wait() for child in children]
    hold.close()
    return 0 if all(code in (0, -signal.SIGTERM, -signal.SIGINT) for code in codes) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=1, help="server processes (default 1)")
    parser.add_argument("--addr", default="127.0.0.1:0", help="HOST:PORT; port 0: any free port")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker or args.workers == 1:
        asyncio.run(serve_one(args.addr, announce=not args.worker))
        return 0
    return supervise(args.addr, args.workers)


if __name__ == "__main__":
    sys.exit(main())
