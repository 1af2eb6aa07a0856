"""Concurrency over a real socket, on SQLite and PostgreSQL.

Concurrent identical registrations create exactly one customer; the attach rule,
merges and un-merges hold when their requests arrive at the same moment. The
first test has a server and an empty database of its own (``server``); the
others share the module's (``client``), and count the rows they add.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import create_engine, text

from singleid.clients import CustomersClient
from singleid.clients.customers import identifier
from singleid.errors import FailedPrecondition
from singleid.testing import ServerProcess
from singleid.v1 import customers_pb2

if TYPE_CHECKING:
    from tests.integration.conftest import Backend, Fresh

CALLS = 50
ROUNDS = 5  # races between two calls: one round may serialise by chance, five rarely all do
TIMEOUT_SECONDS = 60.0
Outcome = customers_pb2.RegisterCustomerResponse
T = TypeVar("T")


def all_at_once(calls: Sequence[Callable[[], T]]) -> list[T]:
    """Run every call in a thread of its own, all released together; their results in order."""
    start = threading.Barrier(len(calls))

    def one(call: Callable[[], T]) -> T:
        start.wait(TIMEOUT_SECONDS)
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(one, calls))


def outcome_of(call: Callable[[], object]) -> str:
    """The call's outcome: "OK", or the reason of the FailedPrecondition it raised."""
    try:
        call()
    except FailedPrecondition as exc:
        return exc.reason
    return "OK"


TABLES = ("customers", "product_accounts", "customer_identifiers", "match_candidates",
          "idempotency_records", "outbox_events")


def row_counts(database_url: str) -> dict[str, int]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return {table: int(connection.execute(
                text(f"SELECT count(*) FROM {table}")).scalar_one()) for table in TABLES}
    finally:
        engine.dispose()


def added_rows(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """The rows a test added, table by table (the module's tests run one at a time)."""
    return {table: after[table] - before[table] for table in TABLES
            if after[table] != before[table]}


def test_concurrent_identical_registrations_create_one_customer(
        server: ServerProcess, database_url: str) -> None:
    with CustomersClient(server.grpc_addr, timeout=TIMEOUT_SECONDS, auth=server.token) as client:
        assert isinstance(client, CustomersClient)
        client.create_product("cards")
        register = partial(
            client.register_customer, "cards", "c-1001", display_name="Аня",
            identifiers=[identifier(customers_pb2.IDENTIFIER_KIND_PHONE, "+7 916 123-45-67",
                                    verified=True)])
        results = all_at_once([register] * CALLS)

        assert len({r.customer_id for r in results}) == 1
        assert [r.created for r in results].count(True) == 1
        assert Counter(r.outcome for r in results) == {
            Outcome.OUTCOME_CREATED: 1, Outcome.OUTCOME_EXISTING_ACCOUNT: CALLS - 1}
        assert not any(r.match_candidate_recorded for r in results)
        customer_id = results[0].customer_id
        assert client.resolve_by_identifier(customers_pb2.IDENTIFIER_KIND_PHONE,
                                            "89161234567").customer_id == customer_id
    assert row_counts(database_url) == {
        "customers": 1, "product_accounts": 1, "customer_identifiers": 1,
        "match_candidates": 0, "idempotency_records": 1,  # the product's
        "outbox_events": 2}  # and the first signing keys', made at start-up for tokens


def test_concurrent_retries_with_one_key_apply_once(backend: Backend, client: CustomersClient,
                                                    fresh: Fresh) -> None:
    before = row_counts(backend.database_url)
    register = partial(client.register_customer, "cards", fresh.account(),
                       idempotency_key=fresh.account("key"))

    results = all_at_once([register] * CALLS)

    # Every retry replays the one call's result, created=True included.
    assert all(r == results[0] for r in results)
    assert results[0].created is True
    assert added_rows(before, row_counts(backend.database_url)) == {
        "customers": 1, "product_accounts": 1, "idempotency_records": 1, "outbox_events": 1}


def test_concurrent_registrations_of_many_accounts(backend: Backend, client: CustomersClient,
                                                   fresh: Fresh) -> None:
    """Distinct accounts at once: each gets its own ID, and none is lost."""
    before = row_counts(backend.database_url)
    accounts = [fresh.account() for _ in range(CALLS)]

    results = all_at_once([partial(client.register_customer, "cards", account)
                           for account in accounts])

    assert all(r.created for r in results)
    assert len({r.customer_id for r in results}) == CALLS
    for account, result in zip(accounts, results, strict=True):
        assert client.resolve_by_account("cards", account).customer_id == result.customer_id
    assert added_rows(before, row_counts(backend.database_url)) == {
        "customers": CALLS, "product_accounts": CALLS, "outbox_events": CALLS}


def test_concurrent_registrations_with_one_verified_phone_share_one_id(
        backend: Backend, client: CustomersClient, fresh: Fresh) -> None:
    """The attach rule under concurrency: the first issues the ID, the rest attach to it.

    Each registration decides from who holds the phone, so they must see one another's
    (on PostgreSQL, an advisory lock per identifier; on SQLite, the write lock).
    """
    calls = CALLS // 2
    before = row_counts(backend.database_url)
    for round_ in range(ROUNDS):
        number = fresh.phone()
        phone = identifier(customers_pb2.IDENTIFIER_KIND_PHONE, number, verified=True)

        results = all_at_once([partial(client.register_customer, "cards", fresh.account(),
                                       identifiers=[phone]) for _ in range(calls)])

        assert Counter(r.outcome for r in results) == {
            Outcome.OUTCOME_CREATED: 1,
            Outcome.OUTCOME_ATTACHED_BY_VERIFIED_IDENTIFIER: calls - 1}, round_
        assert len({r.customer_id for r in results}) == 1
        assert not any(r.match_candidate_recorded for r in results)
        found = client.resolve_by_identifier(customers_pb2.IDENTIFIER_KIND_PHONE, number)
        assert found.customer_id == results[0].customer_id
    assert added_rows(before, row_counts(backend.database_url)) == {
        "customers": ROUNDS, "product_accounts": ROUNDS * calls,
        "customer_identifiers": ROUNDS, "outbox_events": ROUNDS * calls}


def test_opposite_merges_at_once_leave_one_survivor(client: CustomersClient,
                                                    fresh: Fresh) -> None:
    """A<-B and B<-A at the same moment: one wins, the other finds its survivor merged."""
    for round_ in range(ROUNDS):
        a = client.register_customer("cards", fresh.account("a")).customer_id
        b = client.register_customer("cards", fresh.account("b")).customer_id

        outcomes = all_at_once([
            partial(outcome_of, partial(client.merge_customers, survivor, merged,
                                        reason="duplicate", actor="job"))
            for survivor, merged in ((a, b), (b, a))])

        assert sorted(outcomes) == ["ALREADY_MERGED", "OK"], round_
        survivor, merged_away = (a, b) if outcomes[0] == "OK" else (b, a)
        assert client.resolve_by_id(survivor).resolved_from_alias is False
        alias = client.resolve_by_id(merged_away)  # no cycle: it resolves
        assert (alias.customer_id, alias.alias_customer_id) == (survivor, merged_away)
        assert client.get_customer(survivor).state == customers_pb2.Customer.STATE_ACTIVE


def test_one_customer_merged_into_two_at_once(client: CustomersClient, fresh: Fresh) -> None:
    """B into A and B into C at the same moment: B ends under exactly one of them."""
    for round_ in range(ROUNDS):
        b_account = fresh.account("b")
        a, b, c = (client.register_customer("cards", account).customer_id
                   for account in (fresh.account("a"), b_account, fresh.account("c")))

        outcomes = all_at_once([
            partial(outcome_of, partial(client.merge_customers, survivor, b,
                                        reason="duplicate", actor="job"))
            for survivor in (a, c)])

        assert sorted(outcomes) == ["ALREADY_MERGED", "OK"], round_
        winner = a if outcomes[0] == "OK" else c
        assert client.resolve_by_account("cards", b_account).customer_id == winner
        assert client.get_customer(b).merged_into == winner
        # Undone, B is itself again: the loser never had it.
        client.unmerge_customer(b, reason="test", actor="job")
        assert client.resolve_by_account("cards", b_account).customer_id == b


def test_one_unmerge_at_a_time(client: CustomersClient, fresh: Fresh) -> None:
    """Two un-merges of one ID at once: one brings it back, the other finds it not merged."""
    for round_ in range(ROUNDS):
        b_account = fresh.account("b")
        a = client.register_customer("cards", fresh.account("a")).customer_id
        b = client.register_customer("cards", b_account).customer_id
        client.merge_customers(a, b, reason="duplicate", actor="job")
        unmerge = partial(outcome_of, partial(client.unmerge_customer, b,
                                              reason="mistake", actor="job"))

        assert sorted(all_at_once([unmerge, unmerge])) == ["NOT_MERGED", "OK"], round_
        assert client.resolve_by_account("cards", b_account).customer_id == b


def test_an_unmerge_racing_a_later_merge_stays_consistent(client: CustomersClient,
                                                          fresh: Fresh) -> None:
    """Un-merge B from A while A merges into C: either B comes back whole, or it must wait."""
    for round_ in range(ROUNDS):
        b_account = fresh.account("b")
        a, b, c = (client.register_customer("cards", account).customer_id
                   for account in (fresh.account("a"), b_account, fresh.account("c")))
        client.merge_customers(a, b, reason="duplicate", actor="job")

        unmerged, merged = all_at_once([
            partial(outcome_of, partial(client.unmerge_customer, b, reason="mistake",
                                        actor="job")),
            partial(outcome_of, partial(client.merge_customers, c, a, reason="duplicate",
                                        actor="job"))])

        assert merged == "OK"
        assert unmerged in {"OK", "LATER_MERGE_FIRST"}
        expected = b if unmerged == "OK" else c
        assert client.resolve_by_id(b).customer_id == expected, round_
        assert client.resolve_by_account("cards", b_account).customer_id == expected
