"""Bad requests over a real socket: the status, its google.rpc details, and nothing half-written.

Every error names the offending field: in ErrorInfo's metadata, and for
INVALID_ARGUMENT in BadRequest's field violations, which the typed client
turns back into ``singleid.errors`` with ``.field`` and ``.violations``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status as grpc_rpc_status
from sqlalchemy import create_engine, text

from singleid.clients.customers import identifier
from singleid.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from singleid.v1 import customers_pb2

if TYPE_CHECKING:
    from singleid.clients import CustomersClient
    from singleid.clients.customers import Kind
    from tests.integration.conftest import Backend, Fresh

PHONE = customers_pb2.IDENTIFIER_KIND_PHONE
EMAIL = customers_pb2.IDENTIFIER_KIND_EMAIL
PASSPORT = customers_pb2.IDENTIFIER_KIND_PASSPORT
TELEGRAM = customers_pb2.IDENTIFIER_KIND_TELEGRAM


def details(exc: grpc.RpcError) -> tuple[grpc.StatusCode, Any, Any, Any]:
    """The status code, ErrorInfo, BadRequest and PreconditionFailure a call failed with."""
    assert isinstance(exc, grpc.Call)
    status = grpc_rpc_status.from_call(exc)
    assert status is not None, "no google.rpc.Status in the trailers"
    info = error_details_pb2.ErrorInfo()
    bad_request = error_details_pb2.BadRequest()
    precondition = error_details_pb2.PreconditionFailure()
    for detail in status.details:
        for message in (info, bad_request, precondition):
            if detail.Is(message.DESCRIPTOR):
                detail.Unpack(message)
    return exc.code(), info, bad_request, precondition


@pytest.mark.parametrize(("kind", "value"), [
    (PHONE, "12345"),
    (PHONE, "not a phone"),
    (PHONE, "+7 916 123"),
    (EMAIL, "anya.example.com"),
    (EMAIL, "anya@"),
    (PASSPORT, "45 06 12345"),
    (PASSPORT, "ABCD 123456"),
    (TELEGRAM, "@anya"),
])
def test_an_unparseable_identifier_is_invalid_argument(client: CustomersClient, fresh: Fresh,
                                                       kind: Kind, value: str) -> None:
    account = fresh.account()
    with pytest.raises(InvalidArgument) as caught:
        client.register_customer("cards", account, identifiers=[
            identifier(customers_pb2.IDENTIFIER_KIND_TELEGRAM, fresh.telegram()),
            identifier(kind, value)])

    assert caught.value.field == "identifiers[1].value"
    assert [v.field for v in caught.value.violations] == ["identifiers[1].value"]
    assert caught.value.reason == "INVALID_ARGUMENT"
    with pytest.raises(NotFound):
        client.resolve_by_account("cards", account)
    # The same value is as bad in a lookup.
    with pytest.raises(InvalidArgument) as lookup:
        client.resolve_by_identifier(kind, value)
    assert lookup.value.field == "identifier.value"


def test_the_details_on_the_wire(client: CustomersClient, fresh: Fresh) -> None:
    request = customers_pb2.RegisterCustomerRequest(
        product="cards", account_id=fresh.account(),
        identifiers=[identifier(EMAIL, "not-an-email")])

    with pytest.raises(grpc.RpcError) as caught:
        client.stub.RegisterCustomer(request, timeout=10)

    code, info, bad_request, _ = details(caught.value)
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert info.domain == "singleid"
    assert info.reason == "INVALID_ARGUMENT"
    assert info.metadata["field"] == "identifiers[0].value"
    assert [v.field for v in bad_request.field_violations] == ["identifiers[0].value"]
    assert bad_request.field_violations[0].description


def test_an_empty_account_id(client: CustomersClient) -> None:
    for account in ("", "   "):
        with pytest.raises(InvalidArgument) as caught:
            client.register_customer("cards", account)
        assert caught.value.field == "account_id"
        assert [v.field for v in caught.value.violations] == ["account_id"]


def test_an_over_long_display_name(client: CustomersClient, fresh: Fresh) -> None:
    account = fresh.account()
    with pytest.raises(InvalidArgument) as caught:
        client.register_customer("cards", account, display_name="я" * 201)
    assert caught.value.field == "display_name"
    assert [v.field for v in caught.value.violations] == ["display_name"]
    with pytest.raises(NotFound):
        client.resolve_by_account("cards", account)

    # 200 characters is the limit, not over it.
    reg = client.register_customer("cards", account, display_name="я" * 200)
    assert client.get_customer(reg.customer_id).display_name == "я" * 200


def test_an_over_long_account_id(client: CustomersClient) -> None:
    with pytest.raises(InvalidArgument) as caught:
        client.register_customer("cards", "a" * 129)
    assert caught.value.field == "account_id"


def test_every_bad_field_is_named_at_once(client: CustomersClient) -> None:
    with pytest.raises(InvalidArgument) as caught:
        client.register_customer("cards", "", display_name="x" * 201, identifiers=[
            identifier(PHONE, "123"), identifier(EMAIL, "nope")])

    assert [v.field for v in caught.value.violations] == [
        "account_id", "display_name", "identifiers[0].value", "identifiers[1].value"]
    assert caught.value.field == "account_id"


def test_an_unknown_identifier_kind(client: CustomersClient, fresh: Fresh) -> None:
    with pytest.raises(InvalidArgument) as caught:
        client.register_customer("cards", fresh.account(), identifiers=[
            customers_pb2.IdentifierInput(kind=customers_pb2.IDENTIFIER_KIND_UNSPECIFIED,
                                          value="x")])
    assert caught.value.field == "identifiers.kind"
    assert caught.value.reason == "UNKNOWN_IDENTIFIER_KIND"


def test_an_unknown_product_is_a_failed_precondition(client: CustomersClient,
                                                     fresh: Fresh) -> None:
    phone = fresh.phone()
    with pytest.raises(grpc.RpcError) as caught:
        client.stub.RegisterCustomer(customers_pb2.RegisterCustomerRequest(
            product="nosuchproduct", account_id=fresh.account(),
            identifiers=[identifier(PHONE, phone)]), timeout=10)

    code, info, _, precondition = details(caught.value)
    assert code is grpc.StatusCode.FAILED_PRECONDITION
    assert info.reason == "UNKNOWN_PRODUCT"
    assert info.metadata["field"] == "product"
    assert [(v.type, v.subject) for v in precondition.violations] == [
        ("UNKNOWN_PRODUCT", "products/nosuchproduct")]
    # Nothing was written: the phone finds nobody.
    with pytest.raises(NotFound):
        client.resolve_by_identifier(PHONE, phone)

    # The typed client raises the same class, as do the other calls naming a product.
    reg = client.register_customer("cards", fresh.account())
    for call in (lambda: client.register_customer("nosuchproduct", "a-1"),
                 lambda: client.link_product_account(reg.customer_id, "nosuchproduct", "a-1"),
                 lambda: client.unlink_product_account("nosuchproduct", "a-1"),
                 lambda: client.resolve_by_account("nosuchproduct", "a-1")):
        with pytest.raises(FailedPrecondition) as typed:
            call()
        assert typed.value.reason == "UNKNOWN_PRODUCT"


def test_a_malformed_product_code(client: CustomersClient, fresh: Fresh) -> None:
    with pytest.raises(InvalidArgument) as caught:
        client.register_customer("Cards!", fresh.account())
    assert caught.value.field == "product"


def test_an_unknown_customer_is_not_found(client: CustomersClient) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        client.stub.GetCustomer(customers_pb2.GetCustomerRequest(customer_id="7" * 26),
                                timeout=10)
    code, info, _, _ = details(caught.value)
    assert code is grpc.StatusCode.NOT_FOUND
    assert info.reason == "CUSTOMER_NOT_FOUND"
    assert info.metadata["field"] == "customer_id"


def test_a_malformed_customer_id_is_invalid_argument(client: CustomersClient) -> None:
    for bad in ("short", "I" * 26, "8" + "0" * 25):  # too short; not Crockford; over 128 bits
        with pytest.raises(InvalidArgument) as caught:
            client.get_customer(bad)
        assert caught.value.field == "customer_id"


def test_a_good_and_a_bad_identifier_write_nothing(client: CustomersClient,
                                                   fresh: Fresh) -> None:
    phone, account = fresh.phone(), fresh.account()

    with pytest.raises(InvalidArgument) as caught:
        client.register_customer("cards", account, display_name="Half", identifiers=[
            identifier(PHONE, phone, verified=True), identifier(PASSPORT, "12 34")])

    assert caught.value.field == "identifiers[1].value"
    with pytest.raises(NotFound):
        client.resolve_by_identifier(PHONE, phone)
    with pytest.raises(NotFound):
        client.resolve_by_account("cards", account)
    # The account and the phone are still free: a good retry creates the customer.
    reg = client.register_customer("cards", account,
                                   identifiers=[identifier(PHONE, phone, verified=True)])
    assert reg.created is True
    assert client.resolve_by_identifier(PHONE, phone).customer_id == reg.customer_id


def test_a_failed_add_identifier_writes_nothing(client: CustomersClient, fresh: Fresh) -> None:
    email = fresh.email()
    reg = client.register_customer("cards", fresh.account())

    with pytest.raises(NotFound):
        client.add_identifier("0" * 26, identifier(EMAIL, email))
    with pytest.raises(InvalidArgument) as caught:
        client.add_identifier(reg.customer_id, identifier(EMAIL, "no at sign"))

    assert caught.value.field == "identifier.value"
    with pytest.raises(NotFound):
        client.resolve_by_identifier(EMAIL, email)
    assert len(client.get_customer(reg.customer_id).identifiers) == 0


def test_an_over_long_idempotency_key(client: CustomersClient, fresh: Fresh) -> None:
    account = fresh.account()
    with pytest.raises(InvalidArgument) as caught:
        client.register_customer("cards", account, idempotency_key="k" * 129)
    assert caught.value.field == "idempotency_key"
    with pytest.raises(NotFound):
        client.resolve_by_account("cards", account)


TABLES = ("customers", "product_accounts", "customer_identifiers", "merges",
          "match_candidates", "outbox_events", "idempotency_records")


def row_counts(database_url: str) -> dict[str, int]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return {table: int(connection.execute(
                text(f"SELECT count(*) FROM {table}")).scalar_one()) for table in TABLES}
    finally:
        engine.dispose()


def test_failed_requests_leave_no_row_and_no_event(backend: Backend, client: CustomersClient,
                                                   fresh: Fresh) -> None:
    """Counted in the database itself: not a customer, an identifier, an event or a key."""
    phone = fresh.phone()
    owner = client.register_customer("cards", fresh.account(), idempotency_key=fresh.account(),
                                     identifiers=[identifier(PHONE, phone, verified=True)])
    merged_away = client.register_customer("cards", fresh.account())
    client.merge_customers(owner.customer_id, merged_away.customer_id, reason="r", actor="x")
    taken = fresh.account()
    client.register_customer("loans", taken)
    used_key = fresh.account()
    client.register_customer("cards", fresh.account(), idempotency_key=used_key)
    before = row_counts(backend.database_url)
    failing: list[Callable[[], object]] = [
        lambda: client.register_customer("cards", fresh.account(), idempotency_key="k1",
                                         identifiers=[identifier(PHONE, fresh.phone()),
                                                      identifier(EMAIL, "bad@")]),
        lambda: client.register_customer("nosuchproduct", fresh.account(), idempotency_key="k2",
                                         identifiers=[identifier(PHONE, phone)]),
        lambda: client.register_customer("cards", fresh.account(), idempotency_key=used_key),
        lambda: client.link_product_account(owner.customer_id, "loans", taken),
        lambda: client.add_identifier("0" * 26, identifier(EMAIL, fresh.email())),
        lambda: client.merge_customers(owner.customer_id, owner.customer_id, reason="r",
                                       actor="x"),
        lambda: client.merge_customers(owner.customer_id, merged_away.customer_id,
                                       reason="again", actor="x"),
        lambda: client.unmerge_customer(owner.customer_id, reason="r", actor="x"),
        lambda: client.unlink_product_account("cards", fresh.account()),
        lambda: client.remove_identifier(owner.customer_id, EMAIL, fresh.email()),
    ]

    for call in failing:
        with pytest.raises((InvalidArgument, FailedPrecondition, NotFound, AlreadyExists)):
            call()

    assert row_counts(backend.database_url) == before
    assert before["outbox_events"] > 0  # the counts see the data
