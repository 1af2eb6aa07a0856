"""ProfileService benchmark: GetProfile and UpdateProfile against an echo server; event latency.

Everything runs the way users run it, over real loopback sockets, on PostgreSQL:
``singleid serve`` (``singleid.testing.ServerProcess``) and, in the same run, an
echo server of the same shape (``grpc.aio``, one loop per process, SO_REUSEPORT,
the same options) that answers ProfileService calls with a fixed response.
One load generator (``--clients`` processes, each a ``grpc.aio`` loop with
``--concurrency`` calls in flight, closed loop) drives both, so the ratio is fair.

Figures, one JSON object a line on stdout (progress on stderr):

- GetProfile (5 attributes, 3 of them sealed), 1 server process, against the echo
  server with 1 process: throughput, p50, p99. Target: >= 70% of the echo's rate.
- UpdateProfile (one attribute, a new value each call, so each call commits a
  change and its outbox event), 2 server processes, against a 2-process echo.
  Target: >= 1,000/s.
- Event latency from the event's time (stamped in the writing transaction) to
  receipt, p50 and p99, by a WatchChanges subscriber and by a NATS core
  subscriber on the relay's subjects, at ``--event-rate`` updates/s.
  Target: p99 < 1 s.

    python bench/profile.py [--duration 10] [--clients 2] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import grpc
import psycopg
from sqlalchemy import make_url

from singleid.clients import CustomersClient, ProfileClient
from singleid.keyring import KeyMaterial
from singleid.server.app import GRPC_OPTIONS, bound_addr, reuseport_socket
from singleid.testing import ServerProcess
from singleid.v1 import profile_pb2

BENCHMARK = "profile"
SERVICE = "singleid.v1.ProfileService"
PG_ADMIN_URL = os.environ.get("SINGLEID_BENCH_PG_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
NATS_URL = os.environ.get("SINGLEID_BENCH_NATS_URL", "nats://127.0.0.1:4222")
GET_TARGET_RATIO = 0.70
UPDATE_TARGET_PER_SECOND = 1000.0
LATENCY_TARGET_MS = 1000.0
READY_TIMEOUT = 60.0
CALL_TIMEOUT = 30.0


def log(message: str) -> None:
    print(f"[profile] {message}", file=sys.stderr, flush=True)


# -- the echo server ------------------------------------------------------------------

def _echo_handler() -> grpc.GenericRpcHandler:
    attrs = [profile_pb2.ProfileAttribute(name=n, source="customer", version=1)
             for n in ("preferred_name", "language", "phones", "emails", "loyalty_tier")]
    for a in attrs:
        a.value.string_value = "x"
    fixed: dict[str, Any] = {
        "GetProfile": (profile_pb2.GetProfileRequest, profile_pb2.Profile(
            customer_id="0" * 26, version=1, etag='"1"', attributes=attrs)),
        "UpdateProfile": (profile_pb2.UpdateProfileRequest, profile_pb2.UpdateProfileResponse(
            customer_id="0" * 26, version=2, etag='"2"', updated_attributes=["tags_auto"])),
    }

    def behavior(response: Any) -> Callable[..., Any]:
        async def call(_request: Any, _context: Any) -> Any:
            return response
        return call

    return grpc.method_handlers_generic_handler(SERVICE, {
        name: grpc.unary_unary_rpc_method_handler(
            behavior(response), request_deserializer=request_type.FromString,
            response_serializer=type(response).SerializeToString)
        for name, (request_type, response) in fixed.items()})


async def _echo_serve(addr: str) -> None:
    server = grpc.aio.server(options=GRPC_OPTIONS)
    server.add_generic_rpc_handlers((_echo_handler(),))
    server.add_insecure_port(addr)
    await server.start()
    print("echo serving", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(0.5)


class Echo:
    """``workers`` echo processes sharing one port (SO_REUSEPORT), as ``singleid serve`` does."""

    def __init__(self, workers: int) -> None:
        self.hold = reuseport_socket("127.0.0.1:0")
        self.addr = bound_addr(self.hold)
        self.processes = [subprocess.Popen(
            [sys.executable, __file__, "--echo", self.addr], stdout=subprocess.PIPE, text=True)
            for _ in range(workers)]
        for process in self.processes:
            assert process.stdout is not None
            if "echo serving" not in process.stdout.readline():
                raise RuntimeError("echo server did not start")

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def stop(self) -> None:
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        for process in self.processes:
            process.wait(15)
        self.hold.close()


# -- the load generator ----------------------------------------------------------------

@dataclass(frozen=True)
class Load:
    target: str
    method: str
    customers: list[str]
    start_at: float
    warmup: float
    duration: float
    concurrency: int
    channels: int
    token: str = ""  # the access token every call carries (none for the echo server)


def _metadata(token: str) -> tuple[tuple[str, str], ...] | None:
    return (("authorization", f"Bearer {token}"),) if token else None


@dataclass
class Result:
    latencies_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)


def _requests(load: Load, client: int) -> Callable[[], bytes]:
    rng = random.Random(client)
    counter = iter(range(10**9))
    if load.method == "GetProfile":
        pool = [profile_pb2.GetProfileRequest(customer_id=c).SerializeToString()
                for c in load.customers]
        return lambda: pool[rng.randrange(len(pool))]

    def update() -> bytes:
        request = profile_pb2.UpdateProfileRequest(
            customer_id=load.customers[rng.randrange(len(load.customers))], source="analytics",
            idempotency_key=str(uuid.uuid4()))
        request.update_mask.paths.append("tags_auto")
        request.values.update({"tags_auto": [f"c{client}-{next(counter)}"]})
        return request.SerializeToString()

    return update


async def _run_load(load: Load, client: int) -> Result:
    result = Result()
    channels = [grpc.aio.insecure_channel(load.target,
                                          options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(load.channels)]
    await asyncio.gather(*(c.channel_ready() for c in channels))
    calls: list[Any] = [c.unary_unary(f"/{SERVICE}/{load.method}") for c in channels]
    make = _requests(load, client)
    start = time.monotonic() + (load.start_at - time.time())
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    window = (start + load.warmup, start + load.warmup + load.duration)

    async def worker(call: Any) -> None:
        while time.monotonic() < window[1]:
            began = time.monotonic()
            try:
                await call(make(), timeout=CALL_TIMEOUT, metadata=_metadata(load.token))
            except grpc.aio.AioRpcError as exc:
                result.errors[exc.code().name] = result.errors.get(exc.code().name, 0) + 1
                continue
            ended = time.monotonic()
            if window[0] <= ended < window[1]:
                result.latencies_ms.append((ended - began) * 1000)

    await asyncio.gather(*(worker(calls[i % len(calls)]) for i in range(load.concurrency)))
    await asyncio.gather(*(c.close() for c in channels))
    return result


def _client_main(conn: Connection, client: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while (load := conn.recv()) is not None:
        conn.send(asyncio.run(_run_load(load, client)))


class Clients:
    def __init__(self, count: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.conns: list[Connection] = []
        self.processes = []
        for index in range(count):
            parent, child = context.Pipe()
            process = context.Process(target=_client_main, args=(child, index), daemon=True)
            process.start()
            self.conns.append(parent)
            self.processes.append(process)

    def run(self, load: Load) -> list[Result]:
        for conn in self.conns:
            conn.send(load)
        return [conn.recv() for conn in self.conns]

    def close(self) -> None:
        for conn, process in zip(self.conns, self.processes, strict=True):
            with contextlib.suppress(OSError):
                conn.send(None)
            process.join(10)


@dataclass(frozen=True)
class Measured:
    per_second: float
    p50: float
    p99: float
    cpu_ms: float  # server CPU per call (approximate: the whole phase over its calls)


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds of these processes and their children (Linux /proc)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        family = [pid]
        with contextlib.suppress(OSError):
            family += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        for member in family:
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / tick
    return total


def measure(clients: Clients, args: argparse.Namespace, label: str, target: str, method: str,
            customers: list[str], pids: Sequence[int] = (), token: str = "") -> Measured:
    load = Load(target, method, customers, time.time() + 1.0, args.warmup, args.duration,
                args.concurrency, args.channels, token)
    cpu_before = cpu_seconds(pids)
    results = clients.run(load)
    cpu = cpu_seconds(pids) - cpu_before
    latencies = [x for r in results for x in r.latencies_ms]
    errors: dict[str, int] = {}
    for r in results:
        for k, v in r.errors.items():
            errors[k] = errors.get(k, 0) + v
    if sum(errors.values()) > 0.01 * max(1, len(latencies)):
        raise RuntimeError(f"{label}: too many errors: {errors}")
    calls = len(latencies) * (args.duration + args.warmup + 1.0) / args.duration
    m = Measured(len(latencies) / args.duration, percentile(latencies, 0.5),
                 percentile(latencies, 0.99), 1000 * cpu / calls if pids and calls else math.nan)
    log(f"{label}: {m.per_second:,.0f}/s p50 {m.p50:.2f} ms p99 {m.p99:.2f} ms "
        f"server CPU {m.cpu_ms:.2f} ms/call"
        + (f" errors {errors}" if errors else ""))
    return m


# -- figures -----------------------------------------------------------------------------

def figure(name: str, value: float, unit: str, baseline: float | None, **extra: Any) -> None:
    record = {"benchmark": BENCHMARK, "figure": name, "value": round(value, 3), "unit": unit,
              "baseline": round(baseline, 3) if baseline is not None else None,
              "ratio": round(value / baseline, 3) if baseline else None, **extra}
    print(json.dumps(record, ensure_ascii=False), flush=True)


def report(name: str, subject: Measured, echo: Measured, **target: Any) -> None:
    figure(f"{name}: throughput", subject.per_second, "requests/s", echo.per_second, **target)
    figure(f"{name}: server CPU per call", subject.cpu_ms, "ms", echo.cpu_ms)
    figure(f"{name}: p50 latency", subject.p50, "ms", echo.p50)
    figure(f"{name}: p99 latency", subject.p99, "ms", echo.p99)


# -- event latency -----------------------------------------------------------------------

def _event_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def _latency(target: str, token: str, customers: list[str], rate: float, seconds: float,
                   stream: str, prefix: str) -> tuple[list[float], list[float], int]:
    import nats  # noqa: PLC0415

    watch_ms: list[float] = []
    nats_ms: list[float] = []
    nc = await nats.connect(NATS_URL)

    async def on_message(msg: Any) -> None:
        envelope = json.loads(msg.data)
        if envelope["type"] == "singleid.profile.updated.v1":
            nats_ms.append((time.time() - _event_time(envelope["time"])) * 1000)

    sub = await nc.subscribe(f"{prefix}singleid.>", cb=on_message)
    channel = grpc.aio.insecure_channel(target)
    stub_watch = channel.unary_stream(
        f"/{SERVICE}/WatchChanges",
        request_serializer=profile_pb2.WatchChangesRequest.SerializeToString,
        response_deserializer=profile_pb2.ChangeEvent.FromString)
    update = channel.unary_unary(
        f"/{SERVICE}/UpdateProfile",
        request_serializer=profile_pb2.UpdateProfileRequest.SerializeToString,
        response_deserializer=profile_pb2.UpdateProfileResponse.FromString)

    async def watcher() -> None:
        call = stub_watch(profile_pb2.WatchChangesRequest(from_now=True,
                                                          types=["profile.updated.v1"]),
                          metadata=_metadata(token))
        async for event in call:
            stamp = event.time.seconds + event.time.nanos / 1e9
            watch_ms.append((time.time() - stamp) * 1000)

    watch_task = asyncio.create_task(watcher())
    await asyncio.sleep(1.0)
    sent = 0
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        request = profile_pb2.UpdateProfileRequest(customer_id=random.choice(customers),
                                                   source="analytics")
        request.update_mask.paths.append("tags_auto")
        request.values.update({"tags_auto": [f"lat-{sent}"]})
        await update(request, timeout=CALL_TIMEOUT, metadata=_metadata(token))
        sent += 1
        await asyncio.sleep(max(0.0, began + sent / rate - time.monotonic()))
    await asyncio.sleep(3.0)
    watch_task.cancel()
    await sub.unsubscribe()
    await nc.close()
    await channel.close()
    return watch_ms, nats_ms, sent


# -- the run ------------------------------------------------------------------------------

def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def create_database(stack: ExitStack) -> str:
    name = f"singleid_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_libpq(PG_ADMIN_URL), autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(_libpq(PG_ADMIN_URL), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    stack.callback(drop)
    return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def seed(target: str, token: str, count: int) -> list[str]:
    log(f"seeding {count} customers with profiles")
    with CustomersClient(target, timeout=30, auth=token) as customers:
        customers.create_product("bench", "Benchmark")

    def one(index: int) -> str:
        with CustomersClient(target, timeout=30, auth=token) as customers, \
                ProfileClient(target, timeout=30, auth=token) as profiles:
            cid = customers.register_customer("bench", f"b-{index}").customer_id
            profiles.update_profile(cid, "customer", {
                "preferred_name": f"Customer {index}", "language": "ru",
                "phones": [f"+7916{index:07d}"], "emails": [f"c{index}@example.com"]})
            profiles.update_profile(cid, "loyalty", {"loyalty_tier": "gold"})
            return cid

    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(one, range(count)))


def server_pids(server: ServerProcess) -> list[int]:
    assert server.process is not None
    return [server.process.pid]  # cpu_seconds adds its workers


def start(stack: ExitStack, data_dir: Path, url: str, workers: int,
          env: dict[str, str]) -> ServerProcess:
    server = ServerProcess(data_dir=data_dir, database_url=url, workers=workers, env=env).start()
    stack.callback(server.stop)
    return server


def run(args: argparse.Namespace) -> None:
    keyring = KeyMaterial.generate().to_json()
    tag = uuid.uuid4().hex[:8]
    stream, prefix = f"BENCH_{tag}", f"bench{tag}."
    env = {"SINGLEID_KEYRING": "env:SINGLEID_BENCH_KEYRING", "SINGLEID_BENCH_KEYRING": keyring,
           "SINGLEID_EVENT_BROKER": "nats",
           "SINGLEID_NATS_URL": NATS_URL, "SINGLEID_NATS_STREAM": stream,
           "SINGLEID_EVENT_SUBJECT_PREFIX": prefix}
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="singleid-bench-")))
        url = create_database(stack)
        clients = Clients(args.clients)
        stack.callback(clients.close)
        stack.callback(_delete_stream, stream)

        with ExitStack() as phase:
            server = start(phase, tmp / "one", url, 1, env)
            customers = seed(server.grpc_addr, server.token, args.customers)
            echo = Echo(1)
            phase.callback(echo.stop)
            echo_get = measure(clients, args, "echo, 1 process: GetProfile", echo.addr,
                               "GetProfile", customers, echo.pids())
            get = measure(clients, args, "singleid, 1 process: GetProfile", server.grpc_addr,
                          "GetProfile", customers, server_pids(server), server.token)
        report("GetProfile, 1 server process, PostgreSQL", get, echo_get,
               target=f">= {GET_TARGET_RATIO:.0%} of baseline",
               meets_target=get.per_second >= GET_TARGET_RATIO * echo_get.per_second)

        with ExitStack() as phase:
            server = start(phase, tmp / "two", url, 2, env)
            echo = Echo(2)
            phase.callback(echo.stop)
            echo_update = measure(clients, args, "echo, 2 processes: UpdateProfile", echo.addr,
                                  "UpdateProfile", customers, echo.pids())
            updated = measure(clients, args, "singleid, 2 processes: UpdateProfile",
                              server.grpc_addr, "UpdateProfile", customers, server_pids(server),
                              server.token)
            report("UpdateProfile with its outbox event, 2 server processes, PostgreSQL",
                   updated, echo_update, target=f">= {UPDATE_TARGET_PER_SECOND:,.0f}/s",
                   meets_target=updated.per_second >= UPDATE_TARGET_PER_SECOND)
            time.sleep(3)  # let the relay drain the backlog of the load phase
            log(f"event latency: {args.event_rate:g} updates/s for {args.duration:g}s")
            watch_ms, nats_ms, sent = asyncio.run(_latency(
                server.grpc_addr, server.token, customers, args.event_rate, args.duration, stream,
                prefix))
        for name, values in (("WatchChanges", watch_ms), ("NATS consumer", nats_ms)):
            if len(values) < sent:
                log(f"  warning: {name} received {len(values)} of {sent} events")
            for q, label in ((0.5, "p50"), (0.99, "p99")):
                extra: dict[str, Any] = {"events": len(values), "sent": sent}
                if q == 0.99:
                    extra |= {"target": f"< {LATENCY_TARGET_MS:.0f} ms",
                              "meets_target": percentile(values, q) < LATENCY_TARGET_MS}
                figure(f"event latency, commit to receipt, by {name}: {label}",
                       percentile(values, q), "ms", None, **extra)


def _delete_stream(stream: str) -> None:
    async def delete() -> None:
        import nats  # noqa: PLC0415

        nc = await nats.connect(NATS_URL)
        with contextlib.suppress(Exception):
            await nc.jetstream().delete_stream(stream)
        await nc.close()

    asyncio.run(delete())


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--echo":
        asyncio.run(_echo_serve(sys.argv[2]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--event-rate", type=float, default=100.0)
    run(parser.parse_args())
    return 0


if __name__ == "__main__":
    sys.exit(main())
