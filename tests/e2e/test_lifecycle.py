"""Start and stop: ready when announced; SIGTERM and SIGINT finish in-flight calls, lose nothing."""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import make_url

from singleid.clients.customers import identifier
from singleid.errors import NotFound
from singleid.v1 import customers_pb2, customers_pb2_grpc

if TYPE_CHECKING:
    from tests.e2e.conftest import E2E

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

GRACE_SECONDS = 8.0
IN_FLIGHT = 4


@pytest.mark.parametrize("workers", [1, 2])
def test_both_ports_answer_as_soon_as_announced(e2e: E2E, workers: int) -> None:
    """The listening line is a promise: no retry is needed on either port."""
    server = e2e.start(workers=workers)
    with urllib.request.urlopen(f"http://{server.http_addr}/healthz", timeout=5) as response:
        assert response.read() == b"ok"
    with grpc.insecure_channel(server.grpc_addr) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                          timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert server.stop() == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_right_after_the_announcement_is_a_clean_stop(e2e: E2E, sig: signal.Signals
                                                               ) -> None:
    """Once announced, the server owns its signals: no death by the default action."""
    for _ in range(2):  # the gap, when there was one, was hit about every other start
        server = e2e.start()
        assert server.process is not None
        server.process.send_signal(sig)
        assert server.process.wait(GRACE_SECONDS + 5) == 0
        assert e2e.records_with(server, "stopped")


class WriteLock:
    """Holds the database's write lock from outside, so registrations wait in the server."""

    def __init__(self, database_url: str) -> None:
        self.url = make_url(database_url)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        if self.url.get_backend_name() == "sqlite":
            assert self.url.database is not None
            lite = sqlite3.connect(self.url.database, isolation_level=None, timeout=10)
            try:
                lite.execute("BEGIN IMMEDIATE")
                yield
                lite.execute("ROLLBACK")
            finally:
                lite.close()
            return
        with psycopg.connect(self._conninfo()) as pg:
            # Reads go on; an insert into product_accounts waits for this transaction.
            pg.execute("LOCK TABLE product_accounts IN EXCLUSIVE MODE")
            yield
            pg.rollback()

    def wait_for_waiters(self, e2e: E2E, count: int) -> None:
        """Until ``count`` server transactions wait on the lock (on SQLite: a while)."""
        if self.url.get_backend_name() == "sqlite":
            time.sleep(1.0)  # SQLite shows no waiters; the calls reach the server in ms
            return
        with psycopg.connect(self._conninfo(), autocommit=True) as pg:
            def waiting() -> bool:
                row = pg.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                 "current_database() AND wait_event_type = 'Lock'").fetchone()
                return row is not None and row[0] >= count

            e2e.wait_until(waiting, 10, f"{count} registrations waiting on the lock")

    def _conninfo(self) -> str:
        return self.url.set(drivername="postgresql").render_as_string(hide_password=False)


def _health_status(target: str) -> str:
    """A health check on a new connection: the status, or the error code of the call."""
    with grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]
                               ) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                              timeout=1)
        except grpc.RpcError as exc:
            return exc.code().name if isinstance(exc, grpc.Call) else "UNKNOWN"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def test_sigterm_lets_in_flight_calls_finish(e2e: E2E, database_url: str) -> None:
    """Calls running at SIGTERM complete; new ones are refused; the exit is 0, inside the grace."""
    server = e2e.start(database_url,
                       env={"SINGLEID_SHUTDOWN_GRACE_SECONDS": str(GRACE_SECONDS)})
    e2e.create_product(server)
    assert server.process is not None
    lock = WriteLock(database_url)
    with e2e.open_channel(server) as channel:
        stub = customers_pb2_grpc.CustomerServiceStub(channel)
        requests = [customers_pb2.RegisterCustomerRequest(
            product="cards", account_id=f"in-flight-{i}", identifiers=[identifier(
                customers_pb2.IDENTIFIER_KIND_PHONE, e2e.phone(i), verified=True)])
            for i in range(IN_FLIGHT)]
        stub.RegisterCustomer(customers_pb2.RegisterCustomerRequest(
            product="cards", account_id="before"), timeout=10)
        with lock.held():
            calls = [stub.RegisterCustomer.future(r, timeout=3 * GRACE_SECONDS)
                     for r in requests]
            lock.wait_for_waiters(e2e, IN_FLIGHT)
            assert not any(call.done() for call in calls)

            signalled = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            e2e.wait_until(lambda: bool(e2e.records_with(
                server, "stopping: finishing in-flight calls")), 10, "the stop to begin")
            # New calls are refused while the old ones still run.
            e2e.wait_until(lambda: _health_status(server.grpc_addr) == "UNAVAILABLE", 5,
                           "new calls to be refused")
            assert not any(call.done() for call in calls)
            assert server.process.poll() is None, "exited with calls in flight"
        replies = [call.result() for call in calls]  # raises if any call failed
        assert server.process.wait(GRACE_SECONDS + 5) == 0
        assert time.monotonic() - signalled < GRACE_SECONDS, "in-flight calls were cut off"
    assert e2e.records_with(server, "stopped")

    restarted = e2e.start(database_url, data_dir=server.data_dir)
    with e2e.client(restarted) as client:
        for request, reply in zip(requests, replies, strict=True):
            assert reply.outcome == customers_pb2.RegisterCustomerResponse.OUTCOME_CREATED
            assert client.resolve_by_account("cards", request.account_id).customer_id == (
                reply.customer_id)
    assert restarted.stop() == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_under_load_fails_no_call_and_loses_nothing(e2e: E2E, sig: signal.Signals
                                                           ) -> None:
    """Every call either succeeds (and is stored) or is refused before the server accepts it."""
    server = e2e.start(env={"SINGLEID_SHUTDOWN_GRACE_SECONDS": str(GRACE_SECONDS)})
    e2e.create_product(server)
    assert server.process is not None
    load = e2e.load(server, threads=4)
    load.wait_for_acks(20)

    signalled = time.monotonic()
    server.process.send_signal(sig)
    returncode = server.process.wait(GRACE_SECONDS + 5)
    stopped_after = time.monotonic() - signalled
    load.stop()

    assert returncode == 0
    assert stopped_after < GRACE_SECONDS
    assert e2e.records_with(server, "stopped")
    codes = Counter(a.code for a in load.attempts)
    assert set(codes) <= {"OK", "UNAVAILABLE", "CANCELLED"}, codes
    assert codes["UNAVAILABLE"] + codes["CANCELLED"] > 0, "the stop came after the load"

    acked = load.acked()
    refused = [a.account for a in load.attempts if a.code == "UNAVAILABLE"]
    restarted = e2e.start(data_dir=server.data_dir)
    with e2e.client(restarted) as client:
        for account, customer_id in acked.items():
            assert client.resolve_by_account("cards", account).customer_id == customer_id
        for account in refused:  # refused means never accepted, so never written
            with pytest.raises(NotFound):
                client.resolve_by_account("cards", account)
    assert restarted.stop() == 0
