"""CustomerService benchmark: ResolveCustomer and RegisterCustomer against the echo server.

Everything runs the way users run it, over real loopback sockets: ``singleid
serve`` (``singleid.testing.ServerProcess``) and, in the same run, the echo
server (``bench/echo_server.py``: the same shape doing no work), both driven by
one load generator, so that their ratio is fair.

The load generator is ``--clients`` processes, each one ``grpc.aio`` loop with
``--concurrency`` calls in flight over ``--channels`` connections of its own
(so that SO_REUSEPORT spreads them over the server processes). It sends
pre-built request bytes, closed-loop: a call returns, the next one starts. The
subject and its baseline are measured in alternating rounds (``--rounds``,
each ``--warmup`` seconds unmeasured then ``--duration``/rounds measured), so
that a burst of other work on a shared machine falls on both. On a 2-core
machine the clients share the CPU with the servers (and PostgreSQL); they do
the same work for both, so the ratio measured in one run is what to compare.

Figures, one JSON object a line on stdout (progress goes to stderr):

- RegisterCustomer (a new account with a verified phone and an idempotency
  key, as ``singleid.clients`` sends it) with 2 server processes on
  PostgreSQL, against the echo server with 2 processes; target: >= 1,000/s.
- ResolveCustomer by phone with 1 server process on PostgreSQL (and on SQLite,
  the embedded default, with ``--backends postgres,sqlite``), against the echo
  server with 1 process; target: >= 70% of the echo server's requests/s.

Each has throughput, p50 and p99 latency, and the server processes' CPU time
per call (from /proc: steadier than throughput when the machine is shared).

Before measuring it creates a product and registers ``--customers`` customers
with phones (``+7 916 …``), which ResolveCustomer then looks up in another
spelling (``8 (916) …``). PostgreSQL (``SINGLEID_BENCH_PG_URL``, default the
``postgres`` database at 127.0.0.1:5432) gets a fresh database, dropped at the end.

    python bench/customers.py [--duration 10] [--clients 2] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import multiprocessing
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import grpc
import psycopg
from sqlalchemy import make_url

from singleid.clients import CustomersClient
from singleid.keyring import KeyMaterial
from singleid.testing import ServerProcess
from singleid.v1 import customers_pb2

BENCHMARK = "customers"  # bench/run runs every bench/*.py that names its benchmark

SERVICE = "singleid.v1.CustomerService"
PRODUCT = "bench"
CALL_TIMEOUT_SECONDS = 30.0
SEED_TIMEOUT_SECONDS = 600.0
READY_TIMEOUT_SECONDS = 60.0
RESOLVE_TARGET_RATIO = 0.70
REGISTER_TARGET_PER_SECOND = 1000.0
MAX_CLIENTS = 10  # a client's index is one digit of the phones it registers
MAX_ROUNDS = 10  # and so is the round's
ECHO_SERVER = Path(__file__).with_name("echo_server.py")
PG_ADMIN_URL = os.environ.get("SINGLEID_BENCH_PG_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def log(message: str) -> None:
    print(f"[customers] {message}", file=sys.stderr, flush=True)


# -- requests -----------------------------------------------------------------

def seeded_phone(index: int) -> str:
    """The phone of the index-th seeded customer, as the product registered it (E.164)."""
    return f"+7916{index:07d}"


def spoken_phone(index: int) -> str:
    """The same phone as a caller types it; the service must normalise it to find the customer."""
    digits = f"{index:07d}"
    return f"8 (916) {digits[:3]}-{digits[3:5]}-{digits[5:]}"


def new_phone(round_: int, client: int, seq: int) -> str:
    """+7 92R C NNNNNN: a phone nobody else has, so every registration issues a new ID."""
    return f"+792{round_}{client}{seq % 1_000_000:06d}"


def register_request(account_id: str, phone: str, name: str) -> bytes:
    return customers_pb2.RegisterCustomerRequest(
        product=PRODUCT, account_id=account_id, display_name=name,
        identifiers=[customers_pb2.IdentifierInput(
            kind=customers_pb2.IDENTIFIER_KIND_PHONE, value=phone, verified=True)],
        idempotency_key=str(uuid.uuid4())).SerializeToString()


def resolve_request(index: int) -> bytes:
    return customers_pb2.ResolveCustomerRequest(identifier=customers_pb2.IdentifierValue(
        kind=customers_pb2.IDENTIFIER_KIND_PHONE, value=spoken_phone(index))).SerializeToString()


@dataclass(frozen=True)
class Load:
    """One phase of load, as each client process receives it."""

    target: str
    method: str  # "ResolveCustomer" or "RegisterCustomer"
    kind: str  # "seed" (each seeded customer once), "resolve" or "register" (timed)
    start_at: float  # wall-clock time all client processes start together
    warmup: float
    duration: float
    concurrency: int
    channels: int
    customers: int
    round: int = 0  # keeps the accounts and phones of "register" rounds apart
    token: str = ""  # the access token every call carries (none for the echo server)


def requests_for(load: Load, client: int, clients: int) -> Iterator[bytes]:
    if load.kind == "seed":
        for index in range(client, load.customers, clients):
            yield register_request(f"seed-{index}", seeded_phone(index), f"Customer {index}")
    elif load.kind == "resolve":
        pool = [resolve_request(i) for i in range(load.customers)]
        rng = random.Random(client)
        while True:
            yield pool[rng.randrange(len(pool))]
    elif load.kind == "register":
        for seq in itertools.count():
            yield register_request(f"new-{load.round}-{client}-{seq}",
                                   new_phone(load.round, client, seq), f"New {seq}")
    else:
        raise ValueError(f"unknown load kind {load.kind!r}")


def response_ok(method: str, body: bytes) -> bool:
    """A response names a customer (the echo's fixed one passes too)."""
    message: Any = (customers_pb2.ResolveCustomerResponse if method == "ResolveCustomer"
                    else customers_pb2.RegisterCustomerResponse).FromString(body)
    return bool(message.customer_id)


# -- the client processes -----------------------------------------------------

@dataclass
class ClientResult:
    latencies_ms: list[float] = field(default_factory=list)  # calls ended in the window
    total_ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    late_start: float = 0.0  # seconds this process started after start_at


async def run_load(load: Load, client: int, clients: int) -> ClientResult:
    result = ClientResult()
    options = [("grpc.use_local_subchannel_pool", 1)]  # one TCP connection per channel
    channels = [grpc.aio.insecure_channel(load.target, options=options)
                for _ in range(load.channels)]
    try:
        await asyncio.wait_for(asyncio.gather(*(c.channel_ready() for c in channels)),
                               READY_TIMEOUT_SECONDS)
        calls: list[grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]] = [
            c.unary_unary(f"/{SERVICE}/{load.method}") for c in channels]
        requests = requests_for(load, client, clients)
        metadata = (("authorization", f"Bearer {load.token}"),) if load.token else None
        # Wall clock to this process's monotonic clock, so every process starts together.
        start = time.monotonic() + (load.start_at - time.time())
        result.late_start = max(0.0, time.monotonic() - start)
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        timed = load.kind != "seed"
        window_start = start + load.warmup
        window_end = window_start + load.duration if timed else math.inf
        stop_at = window_end if timed else start + SEED_TIMEOUT_SECONDS

        async def worker(call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]) -> None:
            while time.monotonic() < stop_at:
                request = next(requests, None)
                if request is None:
                    return
                began = time.monotonic()
                try:
                    body = await call(request, timeout=CALL_TIMEOUT_SECONDS, metadata=metadata)
                except grpc.aio.AioRpcError as exc:
                    result.errors[exc.code().name] += 1
                    await asyncio.sleep(0.01)
                    continue
                ended = time.monotonic()
                if not response_ok(load.method, body):
                    result.errors["EMPTY_RESPONSE"] += 1
                    continue
                result.total_ok += 1
                if window_start <= ended < window_end:
                    result.latencies_ms.append((ended - began) * 1000)

        await asyncio.gather(*(worker(calls[i % len(calls)]) for i in range(load.concurrency)))
    finally:
        await asyncio.gather(*(c.close() for c in channels))
    return result


def _client_main(conn: Connection, client: int, clients: int) -> None:
    """A client process: run each load it is sent, send back its result; None ends it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us
    while (load := conn.recv()) is not None:
        try:
            conn.send(asyncio.run(run_load(load, client, clients)))
        except Exception as exc:  # reported by the parent, which stops the run
            conn.send(f"{type(exc).__name__}: {exc}")


class ClientPool:
    """The load generator: ``clients`` processes, started once and reused by every phase."""

    def __init__(self, clients: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._conns: list[Connection] = []
        self._processes = []
        for index in range(clients):
            parent, child = context.Pipe()
            process = context.Process(target=_client_main, args=(child, index, clients),
                                      daemon=True, name=f"bench-client-{index}")
            process.start()
            self._conns.append(parent)
            self._processes.append(process)
        self.pids = [process.pid for process in self._processes if process.pid is not None]

    def run(self, load: Load) -> list[ClientResult]:
        for conn in self._conns:
            conn.send(load)
        results = [conn.recv() for conn in self._conns]
        failures = [r for r in results if isinstance(r, str)]
        if failures:
            raise RuntimeError(f"load generator failed: {failures[0]}")
        return results

    def close(self) -> None:
        for conn, process in zip(self._conns, self._processes, strict=True):
            with suppress(OSError):
                conn.send(None)
            process.join(10)
            if process.is_alive():
                process.kill()


# -- CPU accounting -----------------------------------------------------------

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process, all its threads (0 once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def postgres_backends(database: str) -> list[int]:
    """The PostgreSQL backend processes serving one database (their title names it)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if title.startswith(b"postgres: ") and f" {database} ".encode() in title:
                pids.append(int(entry.name))
    return pids


class CpuMeter:
    """CPU seconds that groups of processes use during a window, from /proc."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]], start: float,
                 end: float) -> None:
        self.groups = groups
        self.used: dict[str, float] = {}
        self.by_pid: dict[str, dict[int, float]] = {}
        self._thread = threading.Thread(target=self._run, args=(start, end), daemon=True)
        self._thread.start()

    def _snapshot(self) -> dict[str, dict[int, float]]:
        return {name: {pid: cpu_seconds(pid) for pid in pids()}
                for name, pids in self.groups.items()}

    def _run(self, start: float, end: float) -> None:
        time.sleep(max(0.0, start - time.time()))
        before = self._snapshot()
        time.sleep(max(0.0, end - time.time()))
        after = self._snapshot()
        for name, pids in after.items():
            self.by_pid[name] = {pid: cpu - before[name].get(pid, 0.0)
                                 for pid, cpu in pids.items()}
            self.used[name] = sum(self.by_pid[name].values())

    def result(self) -> dict[str, float]:
        self._thread.join()
        return self.used


# -- measuring ---------------------------------------------------------------

@dataclass
class Subject:
    """What is measured: a gRPC address, the processes that serve it, their database."""

    name: str
    grpc_addr: str
    pids: list[int]
    database: str = ""  # the PostgreSQL database whose backends' CPU to count
    token: str = ""  # an access token of the server's bootstrap client


@dataclass
class Tally:
    """One subject's calls, latencies and CPU seconds, summed over its rounds."""

    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    cpu_seconds: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class Measurement:
    label: str
    per_second: float
    p50_ms: float
    p99_ms: float
    calls: int
    cpu_us: dict[str, float]  # CPU microseconds per call: "server", "clients", "postgres"


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return math.nan
    return sorted_values[min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))]


@dataclass(frozen=True)
class Options:
    duration: float
    warmup: float
    rounds: int
    clients: int
    concurrency: int
    channels: int
    customers: int


class Profiler:
    """With ``--profile DIR``: py-spy records each server process while it is measured.

    py-spy takes CPU from the same cores, so the figures of a profiled run are not figures.
    """

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, pids: list[int], seconds: float) -> None:
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        for pid in pids:
            out = self.directory / f"{name}-{pid}-{time.time():.0f}.txt"
            self.running.append(subprocess.Popen(
                ["py-spy", "record", "--nonblocking", "--format", "raw", "--rate", "200",
                 "--duration", str(math.ceil(seconds)), "--pid", str(pid), "--output", str(out)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def wait(self) -> None:
        for process in self.running:
            process.wait(60)
        self.running.clear()


@dataclass
class Bench:
    """What every phase shares: the load generator, the options, the profiler."""

    pool: ClientPool
    options: Options
    profiler: Profiler

    def compare(self, subjects: list[Subject], method: str, kind: str) -> list[Measurement]:
        """Measure the subjects in alternating rounds; their figures, pooled over the rounds."""
        options = self.options
        log(f"{method}: {', '.join(s.name for s in subjects)}: {options.rounds} rounds each, "
            f"{options.clients} clients x {options.concurrency} calls in flight")
        tallies = {subject.name: Tally() for subject in subjects}
        for round_ in range(options.rounds):
            for subject in subjects:
                self._round(subject, method, kind, round_, tallies[subject.name])
        return [self._summary(f"{subject.name}: {method}", tallies[subject.name])
                for subject in subjects]

    def _round(self, subject: Subject, method: str, kind: str, round_: int,
               tally: Tally) -> None:
        options = self.options
        seconds = options.duration / options.rounds
        start_at = time.time() + 1.0
        load = Load(target=subject.grpc_addr, method=method, kind=kind, start_at=start_at,
                    warmup=options.warmup, duration=seconds, concurrency=options.concurrency,
                    channels=options.channels, customers=options.customers, round=round_,
                    token=subject.token)
        window = start_at + options.warmup
        groups: dict[str, Callable[[], list[int]]] = {
            "server": lambda: subject.pids, "clients": lambda: self.pool.pids}
        if subject.database:
            groups["postgres"] = lambda: postgres_backends(subject.database)
        meter = CpuMeter(groups, window, window + seconds)
        self.profiler.start(f"{subject.name}-{method}".replace(" ", "-").replace(",", ""),
                            subject.pids, 1.0 + options.warmup + seconds)
        try:
            results = self.pool.run(load)
        finally:
            self.profiler.wait()
        late = max(r.late_start for r in results)
        if late > options.warmup:
            log(f"  warning: a client process started {late:.1f}s late (after the warm-up)")
        errors = sum((r.errors for r in results), Counter[str]())
        calls = sum(r.total_ok for r in results) + errors.total()
        if errors:
            log(f"  {subject.name}: errors {dict(errors)} of {calls} calls")
            if errors.total() > 0.01 * calls:
                raise RuntimeError(f"{subject.name}: more than 1% of calls failed")
        measured = list(itertools.chain.from_iterable(r.latencies_ms for r in results))
        used = meter.result()
        # How SO_REUSEPORT spread the connections: each server process's share of the CPU.
        shares = "/".join(f"{cpu / used['server']:.0%}" for cpu in meter.by_pid["server"].values()
                          ) if len(subject.pids) > 1 and used["server"] else ""
        log(f"  round {round_ + 1}, {subject.name}: {len(measured) / seconds:,.0f}/s"
            + (f" (server processes' CPU split {shares})" if shares else ""))
        tally.seconds += seconds
        tally.latencies_ms += measured
        tally.cpu_seconds.update(used)

    def _summary(self, label: str, tally: Tally) -> Measurement:
        latencies = sorted(tally.latencies_ms)
        calls = len(latencies)
        cpu = {name: seconds * 1e6 / calls if calls else math.nan
               for name, seconds in tally.cpu_seconds.items()}
        result = Measurement(label, calls / tally.seconds, percentile(latencies, 0.50),
                             percentile(latencies, 0.99), calls, cpu)
        log(f"  {label}: {result.per_second:,.0f}/s, p50 {result.p50_ms:.2f} ms, "
            f"p99 {result.p99_ms:.2f} ms; CPU per call: "
            + ", ".join(f"{name} {us:,.0f} us" for name, us in cpu.items()))
        return result

    def seed(self, subject: Subject) -> None:
        options = self.options
        with CustomersClient(subject.grpc_addr, auth=subject.token or None) as client:
            client.create_product(PRODUCT, "Benchmark product")
        log(f"{subject.name}: seeding {options.customers:,} customers with phones")
        started = time.monotonic()
        load = Load(target=subject.grpc_addr, method="RegisterCustomer", kind="seed",
                    start_at=time.time(), warmup=0, duration=0,
                    concurrency=options.concurrency, channels=options.channels,
                    customers=options.customers, token=subject.token)
        results = self.pool.run(load)
        errors = sum((r.errors for r in results), Counter[str]())
        seeded = sum(r.total_ok for r in results)
        if errors or seeded != options.customers:
            raise RuntimeError(f"seeding failed: {seeded} registered, errors {dict(errors)}")
        elapsed = time.monotonic() - started
        log(f"  seeded in {elapsed:.1f}s ({seeded / elapsed:,.0f}/s)")
        with CustomersClient(subject.grpc_addr, auth=subject.token or None) as client:
            # the benchmark's lookup finds them
            found = client.resolve_by_identifier(customers_pb2.IDENTIFIER_KIND_PHONE,
                                                 spoken_phone(options.customers - 1))
            assert found.customer_id, "a seeded customer did not resolve"


# -- the servers -------------------------------------------------------------

_ECHO_LISTENING = re.compile(r"echo listening: grpc=(\S+)")


class EchoProcess:
    """``bench/echo_server.py --workers N`` on a free port."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.grpc_addr = ""
        self.output: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, str(ECHO_SERVER), "--workers", str(workers)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while not (self.grpc_addr and len(self.pids()) >= workers):
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError("echo server did not start:\n" + "".join(self.output[-20:]))
            time.sleep(0.05)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            if match := _ECHO_LISTENING.search(line):
                self.grpc_addr = match.group(1)

    def pids(self) -> list[int]:
        return [int(line.split("pid=")[1]) for line in list(self.output)
                if line.startswith("echo serving")]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)


def _processes(workers: int) -> str:
    return f"{workers} process{'es' if workers > 1 else ''}"


def start_echo(stack: ExitStack, workers: int) -> Subject:
    echo = EchoProcess(workers)
    stack.callback(echo.stop)
    return Subject(f"echo, {_processes(workers)}", echo.grpc_addr, echo.pids())


def worker_pids(server: ServerProcess) -> list[int]:
    """The processes that serve calls: the one process, or each worker of a supervisor."""
    assert server.process is not None
    if server.workers == 1:
        return [server.process.pid]
    return [int(json.loads(line)["pid"]) for line in list(server.output)
            if line.startswith("{") and '"message": "serving"' in line]


def start_singleid(stack: ExitStack, data_dir: Path, database_url: str, workers: int,
                   keyring: str, *, auth: bool = True, name: str = "") -> Subject:
    """``singleid serve``; with ``auth=False``, SINGLEID_AUTH=off (calls carry no token)."""
    server = ServerProcess(data_dir=data_dir, database_url=database_url, workers=workers,
                           env={"SINGLEID_KEYRING": "env:SINGLEID_BENCH_KEYRING",
                                "SINGLEID_BENCH_KEYRING": keyring,
                                "SINGLEID_AUTH": "on" if auth else "off"}).start()

    def stop() -> None:
        try:
            server.stop(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()

    stack.callback(stop)
    backend = "PostgreSQL" if database_url else "SQLite"
    database = (make_url(database_url).database or "") if database_url else ""
    return Subject(name or f"singleid on {backend}, {_processes(workers)}", server.grpc_addr,
                   worker_pids(server), database, server.token if auth else "")


# -- PostgreSQL --------------------------------------------------------------

def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def create_database(stack: ExitStack) -> str:
    """A fresh database, dropped when the stack closes; its SQLAlchemy URL."""
    name = f"singleid_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_libpq(PG_ADMIN_URL), autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(_libpq(PG_ADMIN_URL), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    stack.callback(drop)
    return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


# -- figures -----------------------------------------------------------------

def figure(name: str, value: float, unit: str, baseline: float, **extra: Any) -> None:
    record = {"benchmark": BENCHMARK, "figure": name, "value": round(value, 3), "unit": unit,
              "baseline": round(baseline, 3),
              "ratio": round(value / baseline, 3) if baseline else None, **extra}
    print(json.dumps(record, ensure_ascii=False), flush=True)


def report(name: str, subject: Measurement, echo: Measurement, *,
           target_ratio: float | None = None, target_rate: float | None = None) -> None:
    extra: dict[str, Any] = {}
    if target_ratio is not None:
        extra = {"target": f">= {target_ratio:.0%} of baseline",
                 "meets_target": subject.per_second >= target_ratio * echo.per_second}
    elif target_rate is not None:
        extra = {"target": f">= {target_rate:,.0f}/s",
                 "meets_target": subject.per_second >= target_rate}
    figure(f"{name}: throughput", subject.per_second, "requests/s", echo.per_second, **extra)
    figure(f"{name}: p50 latency", subject.p50_ms, "ms", echo.p50_ms)
    figure(f"{name}: p99 latency", subject.p99_ms, "ms", echo.p99_ms)
    figure(f"{name}: server CPU per call", subject.cpu_us["server"], "us",
           echo.cpu_us["server"])


# -- the run -----------------------------------------------------------------

def run(options: Options, backends: list[str], profiler: Profiler) -> None:
    keyring = KeyMaterial.generate().to_json()
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="singleid-bench-")))
        pool = ClientPool(options.clients)
        stack.callback(pool.close)
        bench = Bench(pool, options, profiler)

        pg_url = ""
        if "postgres" in backends:
            pg_url = create_database(stack)
            # RegisterCustomer: 2 server processes on PostgreSQL against 2 echo processes.
            with ExitStack() as phase:
                singleid = start_singleid(phase, tmp / "pg", pg_url, 2, keyring)
                bench.seed(singleid)
                echo = start_echo(phase, 2)
                echo_register, register = bench.compare([echo, singleid], "RegisterCustomer",
                                                        "register")
            report("RegisterCustomer, 2 server processes, PostgreSQL", register, echo_register,
                   target_rate=REGISTER_TARGET_PER_SECOND)

        # ResolveCustomer by phone: 1 server process per backend against 1 echo process.
        with ExitStack() as phase:
            subjects: dict[str, Subject] = {}
            if "postgres" in backends:
                subjects["PostgreSQL"] = start_singleid(phase, tmp / "pg", pg_url, 1, keyring)
            if "sqlite" in backends:
                subjects["SQLite"] = start_singleid(phase, tmp / "sqlite", "", 1, keyring)
                bench.seed(subjects["SQLite"])
            echo = start_echo(phase, 1)
            echo_resolve, *resolved = bench.compare([echo, *subjects.values()],
                                                    "ResolveCustomer", "resolve")
        for backend, measured in zip(subjects, resolved, strict=True):
            report(f"ResolveCustomer by phone, 1 server process, {backend}", measured,
                   echo_resolve, target_ratio=RESOLVE_TARGET_RATIO)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0,
                        help="measured seconds per subject, over all rounds (default 10)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="alternating rounds of subject and baseline (default 2)")
    parser.add_argument("--warmup", type=float, default=1.5,
                        help="unmeasured seconds before each round (default 1.5)")
    parser.add_argument("--clients", type=int, default=2,
                        help="load generator processes (default 2)")
    parser.add_argument("--concurrency", type=int, default=32,
                        help="calls in flight per client process (default 32)")
    parser.add_argument("--channels", type=int, default=8,
                        help="connections per client process (default 8)")
    parser.add_argument("--customers", type=int, default=10_000,
                        help="customers seeded before measuring (default 10000)")
    parser.add_argument("--backends", default="postgres",
                        help="comma-separated: postgres (RegisterCustomer and ResolveCustomer), "
                             "sqlite (ResolveCustomer; seeds its own database, ~1 min more); "
                             "default postgres")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="record each measured server process with py-spy into DIR "
                             "(diagnostic: the profiler's CPU skews the figures)")
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if unknown := set(backends) - {"postgres", "sqlite"}:
        parser.error(f"unknown backends: {', '.join(sorted(unknown))}")
    if not 1 <= args.clients <= MAX_CLIENTS or not 1 <= args.rounds <= MAX_ROUNDS:
        parser.error(f"--clients and --rounds: 1 to {MAX_CLIENTS}")
    if not 1 <= args.customers <= 10_000_000:
        parser.error("--customers: 1 to 10,000,000")
    options = Options(duration=args.duration, warmup=args.warmup, rounds=args.rounds,
                      clients=args.clients, concurrency=args.concurrency,
                      channels=args.channels, customers=args.customers)
    run(options, backends, Profiler(args.profile))
    return 0


if __name__ == "__main__":
    sys.exit(main())
