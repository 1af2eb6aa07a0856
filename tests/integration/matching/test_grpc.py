"""MatchingService over a real server and socket, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_status import rpc_status as grpc_rpc_status

from singleid import rpc_status
from singleid.errors import InvalidArgument
from singleid.testing import ServerProcess
from singleid.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    customers_pb2,
    customers_pb2_grpc,
    matching_pb2,
    matching_pb2_grpc,
)

ANNA = dict(last_name="Петрова", first_name="Анна", middle_name="Сергеевна",
            birth_date="05.03.1985", phone="8 916 123-45-67", email="anna@mail.ru",
            city="Москва")
Decision = matching_pb2.DecideCandidateRequest


def import_stream(product: str, *batches: list[dict[str, str]]
                  ) -> Iterator[matching_pb2.ImportLegacyAccountsRequest]:
    for index, batch in enumerate(batches):
        yield matching_pb2.ImportLegacyAccountsRequest(
            product=product if index == 0 else "",
            accounts=[matching_pb2.LegacyAccount(**a) for a in batch])


def test_import_match_review_and_restart(server: ServerProcess, database_url: str,
                                         tmp_path: Path) -> None:
    with server.channel() as channel:
        admin = admin_pb2_grpc.AdminServiceStub(channel)
        matching = matching_pb2_grpc.MatchingServiceStub(channel)
        customers = customers_pb2_grpc.CustomerServiceStub(channel)
        for code in ("cards", "loans"):
            admin.CreateProduct(admin_pb2.CreateProductRequest(code=code))
        summary = matching.ImportLegacyAccounts(import_stream(
            "cards", [{"account_id": "c-1", **ANNA}],
            [{"account_id": "c-2", **ANNA, "first_name": "Мария", "email": ""},
             {"account_id": "c-3", "last_name": "Иванов", "birth_date": "31.02.1990"}]))
        assert (summary.read, summary.imported, summary.rejected) == (3, 2, 1)
        assert (summary.rejects[0].line, summary.rejects[0].field) == (3, "birth_date")
        again = matching.ImportLegacyAccounts(import_stream(
            "cards", [{"account_id": "c-1", **ANNA}]))
        assert again.unchanged == 1
        matching.ImportLegacyAccounts(import_stream(
            "loans", [{"account_id": "l-1", **ANNA, "first_name": "Аня", "email": ""}]))
        l1_before = resolve(channel, "loans", "l-1")

        batch = matching.RunBatchMatching(matching_pb2.RunBatchMatchingRequest())
        assert (batch.accounts, batch.auto_merges) == (3, 1)
        anna = customers.ResolveCustomer(customers_pb2.ResolveCustomerRequest(
            product_account=customers_pb2.ProductAccountRef(product="cards",
                                                            account_id="c-1"))).customer_id
        loans = customers.ResolveCustomer(customers_pb2.ResolveCustomerRequest(
            product_account=customers_pb2.ProductAccountRef(product="loans",
                                                            account_id="l-1")))
        assert loans.customer_id == anna

        queue = matching.ListReviewCandidates(matching_pb2.ListReviewCandidatesRequest())
        assert len(queue.candidates) >= 1
        first = queue.candidates[0]
        assert "FIRST_NAMES_DIFFER" in first.hard_rules
        shown = matching.GetCandidate(matching_pb2.GetCandidateRequest(name=first.name))
        assert {f.comparison for f in shown.fields} >= {"first_name", "phone", "birth_date"}
        assert shown.left.product == "cards"

        with pytest.raises(grpc.RpcError) as error:
            matching.DecideCandidate(Decision(name=first.name,
                                              decision=Decision.DECISION_NOT_SAME))
        call = error.value
        assert isinstance(call, grpc.Call)
        raised = rpc_status.from_status(call.code(), call.details() or "",
                                        grpc_rpc_status.from_call(call))
        assert isinstance(raised, InvalidArgument)
        assert raised.field == "operator"
        decided = matching.DecideCandidate(Decision(
            name=first.name, decision=Decision.DECISION_NOT_SAME, operator="op-ivanova"))
        assert decided.state == matching_pb2.Candidate.STATE_NOT_SAME

        explained = matching.ExplainMatch(matching_pb2.ExplainMatchRequest(
            a=matching_pb2.AccountRef(product="cards", account_id="c-1"),
            b=matching_pb2.AccountRef(product="loans", account_id="l-1")))
        assert explained.action == "auto_merge"
        assert {f.comparison: f.level for f in explained.fields}["first_name"] == \
            "diminutive_or_translit"

        # A new registration of the same person is attached by matching at once.
        registered = customers.RegisterCustomer(customers_pb2.RegisterCustomerRequest(
            product="loans", account_id="l-2", display_name="Петрова Анна Сергеевна",
            identifiers=[customers_pb2.IdentifierInput(
                kind=customers_pb2.IDENTIFIER_KIND_PHONE, value="+79161234567"),
                customers_pb2.IdentifierInput(kind=customers_pb2.IDENTIFIER_KIND_EMAIL,
                                              value="anna@mail.ru")]))
        assert registered.outcome == \
            customers_pb2.RegisterCustomerResponse.OUTCOME_ATTACHED_BY_MATCHING
        assert registered.customer_id == anna
        stranger = customers.RegisterCustomer(customers_pb2.RegisterCustomerRequest(
            product="loans", account_id="l-3", display_name="Смирнов Олег"))
        assert stranger.outcome == customers_pb2.RegisterCustomerResponse.OUTCOME_CREATED

    # Decisions persist across a restart.
    server.stop()
    restarted = ServerProcess(data_dir=tmp_path / "data", database_url=database_url).start()
    try:
        with restarted.channel() as channel:
            matching = matching_pb2_grpc.MatchingServiceStub(channel)
            kept = matching.GetCandidate(matching_pb2.GetCandidateRequest(name=first.name))
            assert kept.state == matching_pb2.Candidate.STATE_NOT_SAME
            assert kept.operator == "op-ivanova"
            queue = matching.ListReviewCandidates(matching_pb2.ListReviewCandidatesRequest())
            assert first.name not in {c.name for c in queue.candidates}
            undone = matching.UndoMerge(matching_pb2.UndoMergeRequest(
                merged_customer_id=l1_before, operator="op-sidorov", reason="two people"))
            assert undone.survivor_customer_id == anna
            assert resolve(channel, "loans", "l-1") == l1_before
            assert resolve(channel, "cards", "c-1") == anna
    finally:
        restarted.stop()


def resolve(channel: grpc.Channel, product: str, account_id: str) -> str:
    customers = customers_pb2_grpc.CustomerServiceStub(channel)
    return customers.ResolveCustomer(customers_pb2.ResolveCustomerRequest(
        product_account=customers_pb2.ProductAccountRef(product=product, account_id=account_id)
    )).customer_id


def test_an_import_stream_must_name_a_known_product(server: ServerProcess) -> None:
    with server.channel() as channel:
        matching = matching_pb2_grpc.MatchingServiceStub(channel)
        with pytest.raises(grpc.RpcError) as error:
            matching.ImportLegacyAccounts(import_stream("", [{"account_id": "x"}]))
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as error:
            matching.ImportLegacyAccounts(import_stream("nosuch", [{"account_id": "x"}]))
        assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
