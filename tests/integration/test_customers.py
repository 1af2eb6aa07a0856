"""CustomerService over a real socket: registration, resolution, the attach rule, accounts.

One server per backend for the module (``client``); every test uses account IDs
and identifiers of its own (``fresh``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import grpc
import pytest
from grpc_status import rpc_status as grpc_rpc_status

from singleid import rpc_status
from singleid.clients.customers import identifier
from singleid.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    SingleIdError,
)
from singleid.v1 import customers_pb2

if TYPE_CHECKING:
    from singleid.clients import CustomersClient
    from tests.integration.conftest import Fresh

PHONE = customers_pb2.IDENTIFIER_KIND_PHONE
EMAIL = customers_pb2.IDENTIFIER_KIND_EMAIL
PASSPORT = customers_pb2.IDENTIFIER_KIND_PASSPORT
TELEGRAM = customers_pb2.IDENTIFIER_KIND_TELEGRAM
Outcome = customers_pb2.RegisterCustomerResponse
CENTRAL_ID = re.compile(r"[0-9a-hjkmnp-tv-z]{26}")


def decoded(exc: grpc.RpcError) -> SingleIdError:
    """A raw stub's error, read back the way the typed client reads it."""
    assert isinstance(exc, grpc.Call)
    return rpc_status.from_status(exc.code(), exc.details() or "",
                                  grpc_rpc_status.from_call(exc))


# -- registration -------------------------------------------------------------

def test_registration_issues_a_new_central_id(client: CustomersClient, fresh: Fresh) -> None:
    first = client.register_customer("cards", fresh.account(), display_name="Аня")
    second = client.register_customer("cards", fresh.account())

    for reg in (first, second):
        assert CENTRAL_ID.fullmatch(reg.customer_id), reg.customer_id
        assert reg.created is True
        assert reg.outcome == Outcome.OUTCOME_CREATED
        assert reg.match_candidate_recorded is False
    assert first.customer_id != second.customer_id
    assert client.resolve_by_id(first.customer_id).customer_id == first.customer_id


def test_the_same_account_again_returns_its_id(client: CustomersClient, fresh: Fresh) -> None:
    account = fresh.account()
    first = client.register_customer("cards", account,
                                     identifiers=[identifier(PHONE, fresh.phone())])
    # Even with other identifiers and another name: the account is what counts.
    again = client.register_customer("cards", account, display_name="Other",
                                     identifiers=[identifier(EMAIL, fresh.email())])

    assert again.customer_id == first.customer_id
    assert again.created is False
    assert again.outcome == Outcome.OUTCOME_EXISTING_ACCOUNT
    # The same account ID in another product is another account.
    other = client.register_customer("loans", account)
    assert other.created is True
    assert other.customer_id != first.customer_id


def test_an_idempotency_key_replays_the_first_result(client: CustomersClient,
                                                     fresh: Fresh) -> None:
    key = f"key-{fresh.account()}"
    account = fresh.account()
    phone = fresh.phone()
    first = client.register_customer("cards", account, idempotency_key=key,
                                     identifiers=[identifier(PHONE, phone)])
    replay = client.register_customer("cards", account, idempotency_key=key,
                                      identifiers=[identifier(PHONE, phone)])

    assert first.created is True
    assert replay == first  # the first call's response, created=True included


def test_reusing_an_idempotency_key_for_another_request_fails(client: CustomersClient,
                                                              fresh: Fresh) -> None:
    key = f"key-{fresh.account()}"
    client.register_customer("cards", fresh.account(), idempotency_key=key)
    other_account = fresh.account()

    with pytest.raises(FailedPrecondition) as caught:
        client.register_customer("cards", other_account, idempotency_key=key)

    assert caught.value.reason == "IDEMPOTENCY_KEY_REUSED"
    assert caught.value.field == "idempotency_key"
    with pytest.raises(NotFound):
        client.resolve_by_account("cards", other_account)


# -- resolution -----------------------------------------------------------------

def test_resolve_by_account(client: CustomersClient, fresh: Fresh) -> None:
    account = fresh.account()
    reg = client.register_customer("loyalty", account)

    found = client.resolve_by_account("loyalty", account)

    assert found.customer_id == reg.customer_id
    assert found.resolved_from_alias is False
    assert found.alias_customer_id == ""
    with pytest.raises(NotFound) as caught:
        client.resolve_by_account("loyalty", fresh.account())
    assert caught.value.reason == "ACCOUNT_NOT_FOUND"
    assert caught.value.field == "product_account.account_id"


def test_a_phone_in_any_everyday_format_finds_the_customer(client: CustomersClient,
                                                            fresh: Fresh) -> None:
    # The only test in this module that uses this number.
    reg = client.register_customer("cards", fresh.account(),
                                   identifiers=[identifier(PHONE, "8 (916) 123-45-67")])

    for spelling in ("+7 916 123-45-67", "8 (916) 1234567", "89161234567", "+79161234567",
                     "7 916 123 45 67"):
        found = client.resolve_by_identifier(PHONE, spelling)
        assert found.customer_id == reg.customer_id, spelling
        assert found.resolved_from_alias is False


def test_email_is_case_insensitive(client: CustomersClient, fresh: Fresh) -> None:
    email = fresh.email()
    local, _, domain = email.partition("@")
    mixed = f"{local.title()}@{domain.upper()}"
    reg = client.register_customer("cards", fresh.account(),
                                   identifiers=[identifier(EMAIL, mixed)])

    for spelling in (email, mixed, email.upper(), f"  {email}  "):
        assert client.resolve_by_identifier(EMAIL, spelling).customer_id == reg.customer_id


def test_passport_with_or_without_spaces(client: CustomersClient, fresh: Fresh) -> None:
    passport = fresh.passport()
    spaced = f"{passport[:2]} {passport[2:4]} {passport[4:]}"
    reg = client.register_customer("cards", fresh.account(),
                                   identifiers=[identifier(PASSPORT, spaced)])

    for spelling in (passport, spaced, f"{passport[:4]} {passport[4:]}"):
        assert client.resolve_by_identifier(PASSPORT, spelling).customer_id == reg.customer_id


def test_telegram_id(client: CustomersClient, fresh: Fresh) -> None:
    telegram = fresh.telegram()
    reg = client.register_customer("messenger", fresh.account(),
                                   identifiers=[identifier(TELEGRAM, telegram)])

    assert client.resolve_by_identifier(TELEGRAM, telegram).customer_id == reg.customer_id
    # Kinds are kept apart: the same digits are no phone, and no other Telegram ID matches.
    with pytest.raises(NotFound):
        client.resolve_by_identifier(TELEGRAM, str(int(telegram) + 1))


def test_kinds_are_kept_apart(client: CustomersClient, fresh: Fresh) -> None:
    """A WhatsApp ID is a phone number, but not the customer's phone."""
    number = fresh.phone()
    reg = client.register_customer("messenger", fresh.account(), identifiers=[
        identifier(customers_pb2.IDENTIFIER_KIND_WHATSAPP, "8" + number[2:])])

    found = client.resolve_by_identifier(customers_pb2.IDENTIFIER_KIND_WHATSAPP, number)
    assert found.customer_id == reg.customer_id
    with pytest.raises(NotFound):
        client.resolve_by_identifier(PHONE, number)


def test_the_examples_in_the_brief_resolve_to_one_customer(client: CustomersClient,
                                                            fresh: Fresh) -> None:
    """Passport "45 06 123456" and "4506123456" are one (only this test uses that passport)."""
    email = fresh.email()
    reg = client.register_customer("insurance", fresh.account(), identifiers=[
        identifier(PASSPORT, "45 06 123456"), identifier(EMAIL, email)])

    assert client.resolve_by_identifier(PASSPORT, "4506123456").customer_id == reg.customer_id
    assert client.resolve_by_identifier(PASSPORT, "45 06 123456").customer_id == reg.customer_id


def test_an_unknown_identifier_is_not_found(client: CustomersClient, fresh: Fresh) -> None:
    with pytest.raises(NotFound) as caught:
        client.resolve_by_identifier(EMAIL, fresh.email())
    assert caught.value.reason == "IDENTIFIER_NOT_FOUND"
    assert caught.value.field == "identifier.value"


def test_a_lookup_must_name_something(client: CustomersClient) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        client.stub.ResolveCustomer(customers_pb2.ResolveCustomerRequest(), timeout=10)
    error = decoded(caught.value)
    assert isinstance(error, InvalidArgument)
    assert error.reason == "LOOKUP_REQUIRED"
    assert error.field == "lookup"


# -- the attach rule --------------------------------------------------------------

def test_a_verified_phone_attaches_to_the_one_customer_with_it(client: CustomersClient,
                                                                fresh: Fresh) -> None:
    phone = fresh.phone()
    first_account, second_account = fresh.account(), fresh.account()
    owner = client.register_customer("cards", first_account,
                                     identifiers=[identifier(PHONE, phone, verified=True)])
    national = "8" + phone[2:]  # the same number, spelt the Russian way

    reg = client.register_customer("loans", second_account,
                                   identifiers=[identifier(PHONE, national, verified=True)])

    assert reg.customer_id == owner.customer_id
    assert reg.created is False
    assert reg.outcome == Outcome.OUTCOME_ATTACHED_BY_VERIFIED_IDENTIFIER
    assert reg.match_candidate_recorded is False
    accounts = {(a.product, a.account_id) for a in
                client.list_product_accounts(owner.customer_id)}
    assert accounts == {("cards", first_account), ("loans", second_account)}
    assert client.resolve_by_identifier(PHONE, phone).customer_id == owner.customer_id


def test_an_unverified_match_issues_a_new_id_and_records_a_candidate(
        client: CustomersClient, fresh: Fresh) -> None:
    phone = fresh.phone()
    owner = client.register_customer("cards", fresh.account(),
                                     identifiers=[identifier(PHONE, phone, verified=True)])

    reg = client.register_customer("loans", fresh.account(),
                                   identifiers=[identifier(PHONE, phone, verified=False)])

    assert reg.created is True
    assert reg.outcome == Outcome.OUTCOME_CREATED
    assert reg.customer_id != owner.customer_id
    assert reg.match_candidate_recorded is True


def test_a_verified_phone_does_not_attach_to_an_unverified_one(client: CustomersClient,
                                                                fresh: Fresh) -> None:
    phone = fresh.phone()
    owner = client.register_customer("cards", fresh.account(),
                                     identifiers=[identifier(PHONE, phone, verified=False)])

    reg = client.register_customer("loans", fresh.account(),
                                   identifiers=[identifier(PHONE, phone, verified=True)])

    assert reg.created is True
    assert reg.customer_id != owner.customer_id
    assert reg.match_candidate_recorded is True


def test_no_attach_when_another_identifier_belongs_to_someone_else(
        client: CustomersClient, fresh: Fresh) -> None:
    phone, email = fresh.phone(), fresh.email()
    phone_owner = client.register_customer(
        "cards", fresh.account(), identifiers=[identifier(PHONE, phone, verified=True)])
    email_owner = client.register_customer(
        "loans", fresh.account(), identifiers=[identifier(EMAIL, email, verified=True)])

    reg = client.register_customer("loyalty", fresh.account(), identifiers=[
        identifier(PHONE, phone, verified=True), identifier(EMAIL, email)])

    assert reg.created is True
    assert reg.customer_id not in {phone_owner.customer_id, email_owner.customer_id}
    assert reg.match_candidate_recorded is True


def test_a_phone_two_customers_share_is_ambiguous(client: CustomersClient,
                                                  fresh: Fresh) -> None:
    phone = fresh.phone()
    first = client.register_customer("cards", fresh.account(),
                                     identifiers=[identifier(PHONE, phone, verified=True)])
    second = client.register_customer("loans", fresh.account(),
                                      identifiers=[identifier(PHONE, phone)])
    assert second.customer_id != first.customer_id

    with pytest.raises(FailedPrecondition) as caught:
        client.resolve_by_identifier(PHONE, phone)

    assert caught.value.reason == "IDENTIFIER_AMBIGUOUS"
    assert caught.value.field == "identifier.value"
    # Once both hold it verified, a third verified registration matches two: a new ID.
    client.add_identifier(second.customer_id, identifier(PHONE, phone, verified=True))
    third = client.register_customer("loyalty", fresh.account(),
                                     identifiers=[identifier(PHONE, phone, verified=True)])
    assert third.created is True
    assert third.customer_id not in {first.customer_id, second.customer_id}
    assert third.match_candidate_recorded is True


# -- reading a customer -------------------------------------------------------------

def test_get_customer_returns_everything(client: CustomersClient, fresh: Fresh) -> None:
    account, phone, email = fresh.account(), fresh.phone(), fresh.email()
    reg = client.register_customer("cards", account, display_name="Анна Петровна",
                                   identifiers=[identifier(PHONE, phone, verified=True),
                                                identifier(EMAIL, email)])

    customer = client.get_customer(reg.customer_id)

    assert customer.name == f"customers/{reg.customer_id}"
    assert customer.customer_id == reg.customer_id
    assert customer.state == customers_pb2.Customer.STATE_ACTIVE
    assert customer.merged_into == ""
    assert customer.display_name == "Анна Петровна"
    assert [(a.name, a.product, a.account_id, a.customer_id)
            for a in customer.product_accounts] == [
        (f"products/cards/accounts/{account}", "cards", account, reg.customer_id)]
    assert customer.product_accounts[0].HasField("link_time")
    by_kind = {i.kind: i for i in customer.identifiers}
    assert set(by_kind) == {PHONE, EMAIL}
    assert by_kind[PHONE].verified is True
    assert by_kind[EMAIL].verified is False
    assert by_kind[PHONE].masked_value == phone[:5] + "*****" + phone[-2:]
    assert by_kind[EMAIL].masked_value == f"{email[0]}***@example.com"
    for item in customer.identifiers:  # never the whole value
        assert item.masked_value not in (phone, email)
        assert item.HasField("create_time")
    assert customer.HasField("create_time")
    assert customer.HasField("update_time")


def test_get_customer_with_a_read_mask(client: CustomersClient, fresh: Fresh) -> None:
    reg = client.register_customer("cards", fresh.account(), display_name="Only me",
                                   identifiers=[identifier(PHONE, fresh.phone())])

    customer = client.get_customer(reg.customer_id, read_mask=["customer_id", "display_name"])

    assert customer.customer_id == reg.customer_id
    assert customer.display_name == "Only me"
    assert customer.name == ""
    assert customer.state == customers_pb2.Customer.STATE_UNSPECIFIED
    assert len(customer.product_accounts) == 0
    assert len(customer.identifiers) == 0
    assert not customer.HasField("create_time")

    with pytest.raises(InvalidArgument) as caught:
        client.get_customer(reg.customer_id, read_mask=["no_such_field"])
    assert caught.value.field == "read_mask"


def test_an_unknown_customer_is_not_found(client: CustomersClient) -> None:
    unknown = "0" * 26
    for call in (lambda: client.get_customer(unknown), lambda: client.resolve_by_id(unknown),
                 lambda: list(client.list_product_accounts(unknown)),
                 lambda: client.add_identifier(unknown, identifier(TELEGRAM, "12345")),
                 lambda: client.link_product_account(unknown, "cards", "nobody-1")):
        with pytest.raises(NotFound) as caught:
            call()
        assert caught.value.reason == "CUSTOMER_NOT_FOUND"
        assert caught.value.field == "customer_id"


# -- product accounts ----------------------------------------------------------------

def test_link_product_account(client: CustomersClient, fresh: Fresh) -> None:
    reg = client.register_customer("cards", fresh.account())
    account = fresh.account()

    linked = client.link_product_account(reg.customer_id, "loans", account)

    assert linked.name == f"products/loans/accounts/{account}"
    assert (linked.product, linked.account_id, linked.customer_id) == (
        "loans", account, reg.customer_id)
    assert linked.HasField("link_time")
    assert client.resolve_by_account("loans", account).customer_id == reg.customer_id
    # Linking it again to the same customer is a no-op that returns the link.
    again = client.link_product_account(reg.customer_id, "loans", account)
    assert again.customer_id == reg.customer_id


def test_linking_an_account_of_another_customer_already_exists(client: CustomersClient,
                                                               fresh: Fresh) -> None:
    account = fresh.account()
    owner = client.register_customer("cards", account)
    other = client.register_customer("cards", fresh.account())

    with pytest.raises(AlreadyExists) as caught:
        client.link_product_account(other.customer_id, "cards", account)

    assert caught.value.field == "account_id"
    assert caught.value.reason == "ACCOUNT_LINKED_ELSEWHERE"
    assert client.resolve_by_account("cards", account).customer_id == owner.customer_id


def test_unlink_product_account(client: CustomersClient, fresh: Fresh) -> None:
    account, kept = fresh.account(), fresh.account()
    reg = client.register_customer("cards", kept)
    client.link_product_account(reg.customer_id, "loans", account)

    client.unlink_product_account("loans", account)

    with pytest.raises(NotFound):
        client.resolve_by_account("loans", account)
    assert [a.account_id for a in client.list_product_accounts(reg.customer_id)] == [kept]
    assert client.resolve_by_id(reg.customer_id).customer_id == reg.customer_id
    with pytest.raises(NotFound) as caught:
        client.unlink_product_account("loans", account)
    assert caught.value.reason == "ACCOUNT_NOT_FOUND"
    # Unlinked, the account can be registered anew: to a new customer.
    anew = client.register_customer("loans", account)
    assert anew.created is True
    assert anew.customer_id != reg.customer_id


def test_list_product_accounts_page_by_page(client: CustomersClient, fresh: Fresh) -> None:
    accounts = [fresh.account() for _ in range(5)]
    reg = client.register_customer("cards", accounts[0])
    for account in accounts[1:]:
        client.link_product_account(reg.customer_id, "loans", account)

    pages: list[list[str]] = []
    token = ""
    while True:
        page = client.stub.ListProductAccounts(customers_pb2.ListProductAccountsRequest(
            customer_id=reg.customer_id, page_size=2, page_token=token), timeout=10)
        pages.append([a.account_id for a in page.product_accounts])
        token = page.next_page_token
        if not token:
            break
        assert len(pages) < 10, "paging does not end"

    assert pages == [accounts[0:2], accounts[2:4], accounts[4:5]]
    assert [a.account_id for a in client.list_product_accounts(reg.customer_id,
                                                               page_size=2)] == accounts
    assert [a.account_id for a in client.list_product_accounts(reg.customer_id)] == accounts


def test_list_product_accounts_rejects_a_bad_page(client: CustomersClient,
                                                  fresh: Fresh) -> None:
    reg = client.register_customer("cards", fresh.account())
    for request, field in (
            (customers_pb2.ListProductAccountsRequest(customer_id=reg.customer_id,
                                                      page_token="not a token!"), "page_token"),
            (customers_pb2.ListProductAccountsRequest(customer_id=reg.customer_id,
                                                      page_size=-1), "page_size")):
        with pytest.raises(grpc.RpcError) as caught:
            client.stub.ListProductAccounts(request, timeout=10)
        error = decoded(caught.value)
        assert isinstance(error, InvalidArgument), field
        assert error.field == field
        assert [v.field for v in error.violations] == [field]


# -- identifiers ------------------------------------------------------------------------

def test_add_identifier(client: CustomersClient, fresh: Fresh) -> None:
    reg = client.register_customer("cards", fresh.account())
    email = fresh.email()

    added = client.add_identifier(reg.customer_id, identifier(EMAIL, email.upper(),
                                                              verified=True))

    assert added.kind == EMAIL
    assert added.verified is True
    assert added.masked_value == f"{email[0]}***@example.com"
    assert added.HasField("create_time")
    assert client.resolve_by_identifier(EMAIL, email).customer_id == reg.customer_id
    # Adding it again does not add a second one.
    client.add_identifier(reg.customer_id, identifier(EMAIL, email))
    kinds = [i.kind for i in client.get_customer(reg.customer_id).identifiers]
    assert kinds == [EMAIL]


def test_remove_identifier(client: CustomersClient, fresh: Fresh) -> None:
    phone, email = fresh.phone(), fresh.email()
    reg = client.register_customer("cards", fresh.account(), identifiers=[
        identifier(PHONE, phone), identifier(EMAIL, email)])

    client.remove_identifier(reg.customer_id, PHONE, "8" + phone[2:])  # any spelling

    with pytest.raises(NotFound):
        client.resolve_by_identifier(PHONE, phone)
    assert client.resolve_by_identifier(EMAIL, email).customer_id == reg.customer_id
    assert [i.kind for i in client.get_customer(reg.customer_id).identifiers] == [EMAIL]
    with pytest.raises(NotFound) as caught:
        client.remove_identifier(reg.customer_id, PHONE, phone)
    assert caught.value.reason == "IDENTIFIER_NOT_FOUND"


def test_removing_another_customers_identifier_is_not_found(client: CustomersClient,
                                                            fresh: Fresh) -> None:
    email = fresh.email()
    owner = client.register_customer("cards", fresh.account(),
                                     identifiers=[identifier(EMAIL, email)])
    other = client.register_customer("cards", fresh.account())

    with pytest.raises(NotFound):
        client.remove_identifier(other.customer_id, EMAIL, email)

    assert client.resolve_by_identifier(EMAIL, email).customer_id == owner.customer_id
