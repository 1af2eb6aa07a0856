"""``singleid serve --workers 2``: one port, two processes, restarted when killed, no orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import TYPE_CHECKING

import pytest

from singleid.clients import CustomersClient
from singleid.clients.customers import identifier
from singleid.testing import ServerProcess
from singleid.v1 import customers_pb2

if TYPE_CHECKING:
    from tests.e2e.conftest import E2E

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

GRACE_SECONDS = 5.0
CONNECTIONS = 16  # P(all on one worker) = 2 ** -15
ENV = {"SINGLEID_SHUTDOWN_GRACE_SECONDS": str(GRACE_SECONDS)}


def _start_two(e2e: E2E) -> tuple[ServerProcess, list[int]]:
    server = e2e.start(workers=2, env=ENV)
    assert server.process is not None
    pids = e2e.serving_pids(server)
    assert len(set(pids)) == 2, pids
    assert server.process.pid not in pids
    for pid in pids:
        assert e2e.parent_pid(pid) == server.process.pid
    return server, pids


def _register_on_many_connections(e2e: E2E, server: ServerProcess, prefix: str) -> dict[str, str]:
    """One registration on each of several connections; account -> customer ID."""
    registered = {}
    for n in range(CONNECTIONS):
        with e2e.open_channel(server) as channel:
            client = CustomersClient(channel=channel)
            account = f"{prefix}-{n}"
            registered[account] = client.register_customer(
                "cards", account, display_name=f"Name {n}", identifiers=[identifier(
                    customers_pb2.IDENTIFIER_KIND_PHONE, e2e.phone(n), verified=True)]
            ).customer_id
    return registered


def _served_by(server: ServerProcess) -> set[int]:
    """The pids that counted a business call (multiprocess metrics write one file per pid)."""
    metrics_dir = server.data_dir / "metrics"
    return {int(p.stem.rpartition("_")[2]) for p in metrics_dir.glob("counter_*.db")}


def test_two_workers_share_one_port(e2e: E2E) -> None:
    server, pids = _start_two(e2e)
    assert sum("singleid listening:" in line for line in server.output) == 1
    for record in e2e.records_with(server, "serving"):
        assert record["grpc_addr"] == server.grpc_addr
        assert record["http_addr"] == server.http_addr
    e2e.create_product(server)

    registered = _register_on_many_connections(e2e, server, "shared")
    assert _served_by(server) == set(pids), "the connections all went to one worker"

    # What one worker wrote (sealed with the key ring, blind-indexed) the other reads.
    for n, (account, customer_id) in enumerate(registered.items()):
        with e2e.open_channel(server) as channel:
            client = CustomersClient(channel=channel)
            assert client.resolve_by_account("cards", account).customer_id == customer_id
            assert client.resolve_by_identifier(customers_pb2.IDENTIFIER_KIND_PHONE,
                                                e2e.phone(n)).customer_id == customer_id
            assert client.get_customer(customer_id).display_name == f"Name {n}"
    assert server.stop() == 0


def test_a_killed_worker_is_restarted_and_calls_keep_succeeding(e2e: E2E) -> None:
    server, pids = _start_two(e2e)
    e2e.create_product(server)
    load = e2e.load(server, threads=4, retrying=True)
    load.wait_for_acks(20)

    victim, survivor = pids
    os.kill(victim, signal.SIGKILL)
    e2e.wait_until(lambda: bool(e2e.records_with(server, "worker exited; restarting")), 10,
                   "the supervisor to notice")
    (exited,) = e2e.records_with(server, "worker exited; restarting")
    assert exited["returncode"] == -signal.SIGKILL
    e2e.wait_until(lambda: len(set(e2e.serving_pids(server))) == 3, 30,
                   "the replacement worker to serve")
    replacement = e2e.serving_pids(server)[-1]
    assert replacement not in pids
    assert e2e.parent_pid(replacement) == e2e.parent_pid(survivor)
    assert not e2e.alive(victim)

    before = len(load.acked())
    load.wait_for_acks(before + 20)
    load.stop()
    assert load.failed() == [], [(a.account, a.code) for a in load.failed()[:5]]

    # The replacement serves too: new connections reach both live workers.
    _register_on_many_connections(e2e, server, "after-restart")
    assert {survivor, replacement} <= _served_by(server)
    with e2e.client(server) as client:
        for account, customer_id in load.acked().items():
            assert client.resolve_by_account("cards", account).customer_id == customer_id
    assert server.stop() == 0


def test_sigterm_stops_every_worker(e2e: E2E) -> None:
    server, pids = _start_two(e2e)
    e2e.create_product(server)
    load = e2e.load(server, threads=2)
    load.wait_for_acks(10)
    assert server.stop(signal.SIGTERM, timeout=GRACE_SECONDS + 10) == 0
    load.stop()
    assert {a.code for a in load.attempts} <= {"OK", "UNAVAILABLE", "CANCELLED"}
    assert not any(e2e.alive(pid) for pid in pids)
    assert sorted(int(r["pid"]) for r in e2e.records_with(server, "stopped")) == sorted(pids)
    assert e2e.port_is_free(server.grpc_addr)
    assert e2e.port_is_free(server.http_addr)


def test_sigterm_while_a_worker_is_being_restarted(e2e: E2E) -> None:
    """The supervisor starts no worker once it is stopping, and waits for none it did not stop."""
    server, pids = _start_two(e2e)
    assert server.process is not None
    os.kill(pids[0], signal.SIGKILL)
    e2e.wait_until(lambda: bool(e2e.records_with(server, "worker exited; restarting")), 10,
                   "the supervisor to notice")
    server.process.send_signal(signal.SIGTERM)  # during the restart delay
    started = time.monotonic()
    try:
        returncode = server.process.wait(GRACE_SECONDS + 10)
    except subprocess.TimeoutExpired:
        pytest.fail("the supervisor hangs after SIGTERM during a restart")
    assert time.monotonic() - started < GRACE_SECONDS + 10
    assert returncode == 0
    e2e.wait_until(lambda: not any(e2e.alive(pid) for pid in e2e.serving_pids(server)), 10,
                   "every worker to exit")


def test_sigkill_of_the_supervisor_leaves_no_orphan_on_the_port(e2e: E2E) -> None:
    server, pids = _start_two(e2e)
    assert server.process is not None
    e2e.create_product(server)
    _register_on_many_connections(e2e, server, "orphans")

    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait(10)
    # PR_SET_PDEATHSIG: each worker gets SIGTERM and stops within its grace period.
    e2e.wait_until(lambda: not any(e2e.alive(pid) for pid in pids), GRACE_SECONDS + 10,
                   f"workers {pids} to exit after their supervisor")
    assert e2e.port_is_free(server.grpc_addr)
    assert e2e.port_is_free(server.http_addr)
