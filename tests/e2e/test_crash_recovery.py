"""A server killed with SIGKILL mid-batch loses no acknowledged registration and duplicates none."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest

from singleid.clients.customers import identifier
from singleid.v1 import customers_pb2

if TYPE_CHECKING:
    from tests.e2e.conftest import E2E

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

RegisterResponse = customers_pb2.RegisterCustomerResponse


def test_acknowledged_registrations_survive_sigkill(e2e: E2E, database_url: str) -> None:
    _kill_mid_batch_and_recover(e2e, database_url, workers=1)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_acknowledged_registrations_survive_sigkill_of_two_workers(e2e: E2E,
                                                                   database_url: str) -> None:
    _kill_mid_batch_and_recover(e2e, database_url, workers=2)


def _kill_mid_batch_and_recover(e2e: E2E, database_url: str, workers: int) -> None:
    """Several clients register unique accounts back to back; SIGKILL the process group."""
    server = e2e.start(database_url, workers=workers)
    e2e.create_product(server)

    load = e2e.load(server, threads=4)
    load.wait_for_acks(20)
    time.sleep(1.0)  # keep registering for a while, then pull the plug mid-batch
    assert load.running(), f"the load stopped before the kill: {load.failed()[:3]}"
    server.kill()
    load.stop()

    acked = load.acked()
    attempted = {a.account: a for a in load.attempts}
    unacked = [a for a in load.attempts if a.code != "OK"]
    assert unacked, "no call was cut off by the kill"
    assert len(acked) >= 20

    restarted = e2e.start(database_url, data_dir=server.data_dir, workers=workers)
    with e2e.client(restarted) as client:
        for account, customer_id in acked.items():
            assert client.resolve_by_account("cards", account).customer_id == customer_id
            # The phone, sealed and blind-indexed before the crash, still finds its owner.
            assert client.resolve_by_identifier(
                customers_pb2.IDENTIFIER_KIND_PHONE, attempted[account].phone
            ).customer_id == customer_id
            again = client.register_customer("cards", account, identifiers=[identifier(
                customers_pb2.IDENTIFIER_KIND_PHONE, attempted[account].phone, verified=True)])
            assert again.outcome == RegisterResponse.OUTCOME_EXISTING_ACCOUNT
            assert again.customer_id == customer_id
        # A call cut off by the kill either committed whole or not at all; either way
        # registering it again gives exactly one customer.
        for attempt in unacked:
            again = client.register_customer("cards", attempt.account, identifiers=[identifier(
                customers_pb2.IDENTIFIER_KIND_PHONE, attempt.phone, verified=True)])
            assert again.outcome in (RegisterResponse.OUTCOME_EXISTING_ACCOUNT,
                                     RegisterResponse.OUTCOME_CREATED)
            assert client.resolve_by_identifier(customers_pb2.IDENTIFIER_KIND_PHONE,
                                                attempt.phone).customer_id == again.customer_id

    counts = e2e.count_rows(database_url)
    assert counts.accounts == len(attempted)
    assert counts.customers == counts.accounts == counts.customers_with_accounts
    # Nothing half-written: each registration's phone and outbox event came with it.
    assert counts.identifiers == counts.registered_events == counts.accounts
    assert restarted.stop() == 0
