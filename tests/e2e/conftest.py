"""What the end-to-end tests share: real ``singleid serve`` processes, load, logs and metrics.

Helpers reach the tests through the ``e2e`` fixture (an :class:`E2E`), since test
modules cannot import a conftest; test modules import the types for mypy only.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from singleid.clients import CustomersClient
from singleid.clients.customers import identifier
from singleid.errors import AlreadyExists, SingleIdError
from singleid.testing import ServerProcess
from singleid.v1 import customers_pb2, customers_pb2_grpc

PRODUCT = "cards"
CALL_TIMEOUT_SECONDS = 10.0
POLL_SECONDS = 0.05


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` until it holds; fail the test with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(POLL_SECONDS)


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def parent_pid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    raise AssertionError(f"no PPid in /proc/{pid}/status")


def phone(n: int) -> str:
    """A valid Russian mobile number, unique per ``n`` (below ten million)."""
    digits = f"{n:07d}"
    return f"+7 916 {digits[:3]}-{digits[3:5]}-{digits[5:]}"


def open_channel(server: ServerProcess) -> grpc.Channel:
    """An authenticated channel with its own TCP connection (so SO_REUSEPORT may pick another
    worker)."""
    return server.channel(**{"grpc.use_local_subchannel_pool": 1})


def port_of(addr: str) -> int:
    return int(addr.rpartition(":")[2])


def port_is_free(addr: str) -> bool:
    """Whether nothing listens on the address any more (a plain bind, no SO_REUSEPORT)."""
    host, _, port = addr.rpartition(":")
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, int(port)))
        except OSError:
            return False
        return True


# -- server output ------------------------------------------------------------

def log_records(server: ServerProcess) -> list[dict[str, Any]]:
    """The server's JSON log lines, parsed (other lines are skipped)."""
    records = []
    for line in list(server.output):
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict):
                records.append(record)
    return records


def records_with(server: ServerProcess, message: str) -> list[dict[str, Any]]:
    return [r for r in log_records(server) if r.get("message") == message]


def serving_pids(server: ServerProcess) -> list[int]:
    """The pids that logged "serving", in order."""
    return [int(r["pid"]) for r in records_with(server, "serving")]


# -- metrics ------------------------------------------------------------------

@dataclass(frozen=True)
class Sample:
    name: str
    labels: Mapping[str, str]
    value: float


def scrape(http_addr: str) -> list[Sample]:
    """GET /metrics over a fresh connection and parse the text exposition."""
    with urllib.request.urlopen(f"http://{http_addr}/metrics", timeout=10) as response:
        body = response.read().decode()
    return [Sample(s.name, dict(s.labels), s.value)
            for family in text_string_to_metric_families(body) for s in family.samples]


def scrape_until(http_addr: str, check: Callable[[list[Sample]], None],
                 timeout: float = 10.0) -> list[Sample]:
    """Scrape until ``check`` passes (its last AssertionError fails the test after ``timeout``).

    A failed call is counted just after its status is sent, so a scrape right
    after the reply may not show it yet.
    """
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(http_addr)
        try:
            check(samples)
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(POLL_SECONDS)
        else:
            return samples


def metric(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum of the samples with this name whose labels include ``labels``."""
    return sum(s.value for s in samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


# -- the database, seen from outside the server ----------------------------------

@dataclass(frozen=True)
class Counts:
    customers: int
    accounts: int
    customers_with_accounts: int
    identifiers: int
    registered_events: int


def count_rows(database_url: str) -> Counts:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            def one(sql: str) -> int:
                return int(connection.execute(text(sql)).scalar_one())

            return Counts(
                customers=one("SELECT count(*) FROM customers"),
                accounts=one("SELECT count(*) FROM product_accounts"),
                customers_with_accounts=one(
                    "SELECT count(DISTINCT customer_id) FROM product_accounts"),
                identifiers=one("SELECT count(*) FROM customer_identifiers"),
                registered_events=one("SELECT count(*) FROM outbox_events "
                                      "WHERE type = 'singleid.customer.registered.v1'"))
    finally:
        engine.dispose()


# -- load -----------------------------------------------------------------------

@dataclass
class Attempt:
    """One registration: its account and phone, and how the call ended (None: still running)."""

    account: str
    phone: str
    code: str | None = None
    customer_id: str = ""


@dataclass
class RegistrationLoad:
    """Threads registering unique accounts back to back, each on its own connection.

    With ``retrying`` they call through ``CustomersClient`` (retries on UNAVAILABLE);
    otherwise through the bare stub, once, so the status code of every call is kept.
    A thread stops at its first failure, or when :meth:`stop` is called.
    """

    server: ServerProcess
    threads: int = 4
    prefix: str = "acct"
    retrying: bool = False
    attempts: list[Attempt] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> RegistrationLoad:
        for index in range(self.threads):
            thread = threading.Thread(target=self._run, args=(index,), daemon=True)
            thread.start()
            self._workers.append(thread)
        return self

    def _run(self, index: int) -> None:
        channel = open_channel(self.server)
        client = CustomersClient(channel=channel, timeout=CALL_TIMEOUT_SECONDS)
        stub = customers_pb2_grpc.CustomerServiceStub(channel)
        n = 0
        try:
            while not self._stop.is_set():
                number = index * 1_000_000 + n
                attempt = Attempt(f"{self.prefix}-{index}-{n}", phone(number))
                with self._lock:
                    self.attempts.append(attempt)
                n += 1
                ids = [identifier(customers_pb2.IDENTIFIER_KIND_PHONE, attempt.phone,
                                  verified=True)]
                if self.retrying:
                    try:
                        reply = client.register_customer(PRODUCT, attempt.account,
                                                         identifiers=ids)
                    except SingleIdError as exc:
                        attempt.code = exc.reason
                        return
                else:
                    request = customers_pb2.RegisterCustomerRequest(
                        product=PRODUCT, account_id=attempt.account, identifiers=ids)
                    try:
                        reply = stub.RegisterCustomer(request, timeout=CALL_TIMEOUT_SECONDS)
                    except grpc.RpcError as exc:
                        code = exc.code() if isinstance(exc, grpc.Call) else None
                        attempt.code = code.name if code is not None else "UNKNOWN"
                        return
                attempt.customer_id = reply.customer_id
                attempt.code = "OK"
        finally:
            channel.close()

    def acked(self) -> dict[str, str]:
        """account -> customer ID, for every call that returned successfully."""
        with self._lock:
            return {a.account: a.customer_id for a in self.attempts if a.code == "OK"}

    def failed(self) -> list[Attempt]:
        with self._lock:
            return [a for a in self.attempts if a.code not in (None, "OK")]

    def wait_for_acks(self, count: int, timeout: float = 30.0) -> None:
        wait_until(lambda: len(self.acked()) >= count or not self.running(), timeout,
                   f"{count} acknowledged registrations")
        assert len(self.acked()) >= count, f"load stopped early: {self.failed()[:5]}"

    def running(self) -> bool:
        return any(t.is_alive() for t in self._workers)

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        for thread in self._workers:
            thread.join(timeout)
        assert not self.running(), "load threads did not stop"


# -- the fixture ------------------------------------------------------------------

class E2E:
    """Starts servers (killed at the end of the test, whatever happened) and holds the helpers."""

    wait_until = staticmethod(wait_until)
    alive = staticmethod(alive)
    parent_pid = staticmethod(parent_pid)
    phone = staticmethod(phone)
    open_channel = staticmethod(open_channel)
    port_is_free = staticmethod(port_is_free)
    port_of = staticmethod(port_of)
    log_records = staticmethod(log_records)
    records_with = staticmethod(records_with)
    serving_pids = staticmethod(serving_pids)
    scrape = staticmethod(scrape)
    scrape_until = staticmethod(scrape_until)
    metric = staticmethod(metric)
    count_rows = staticmethod(count_rows)

    def __init__(self, root: Path) -> None:
        self.root = root
        self.servers: list[ServerProcess] = []

    def start(self, database_url: str = "", *, data_dir: Path | None = None, workers: int = 1,
              env: Mapping[str, str] | None = None) -> ServerProcess:
        """A ``singleid serve`` on free ports; the same ``data_dir`` means the same data."""
        server = ServerProcess(data_dir=data_dir or self.root / "data", database_url=database_url,
                               workers=workers, env=dict(env or {}))
        self.servers.append(server)
        return server.start()

    def load(self, server: ServerProcess, *, threads: int = 4, prefix: str = "acct",
             retrying: bool = False) -> RegistrationLoad:
        return RegistrationLoad(server, threads=threads, prefix=prefix,
                                retrying=retrying).start()

    @staticmethod
    def client(server: ServerProcess, *, timeout: float = CALL_TIMEOUT_SECONDS
               ) -> CustomersClient:
        return CustomersClient(server.grpc_addr, timeout=timeout, auth=server.token)

    @staticmethod
    def create_product(server: ServerProcess, code: str = PRODUCT) -> None:
        with (CustomersClient(server.grpc_addr, timeout=CALL_TIMEOUT_SECONDS,
                              auth=server.token) as client,
              contextlib.suppress(AlreadyExists)):
            client.create_product(code, code.title())

    def close(self) -> None:
        for server in self.servers:
            process = server.process
            if process is None:
                continue
            # The whole group: a worker outlives a supervisor killed alone.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                process.wait(10)


@pytest.fixture
def e2e(tmp_path: Path) -> Iterator[E2E]:
    harness = E2E(tmp_path)
    yield harness
    harness.close()
