"""MergeCustomers and UnmergeCustomer over a real socket.

A merge moves accounts, identifiers and aliases to the survivor and keeps the
merged-away ID resolvable; the un-merge returns exactly what the merge moved,
and what the survivor gained since stays with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from singleid.clients.customers import identifier
from singleid.errors import FailedPrecondition, InvalidArgument, NotFound
from singleid.v1 import customers_pb2

if TYPE_CHECKING:
    from singleid.clients import CustomersClient
    from tests.integration.conftest import Fresh

PHONE = customers_pb2.IDENTIFIER_KIND_PHONE
EMAIL = customers_pb2.IDENTIFIER_KIND_EMAIL
PASSPORT = customers_pb2.IDENTIFIER_KIND_PASSPORT
ACTIVE = customers_pb2.Customer.STATE_ACTIVE
MERGED = customers_pb2.Customer.STATE_MERGED
ATTACHED = customers_pb2.RegisterCustomerResponse.OUTCOME_ATTACHED_BY_VERIFIED_IDENTIFIER


@dataclass(frozen=True)
class Person:
    customer_id: str
    product: str
    account_id: str
    phone: str
    email: str


def person(client: CustomersClient, fresh: Fresh, product: str = "cards") -> Person:
    """A customer with an account, a verified phone and an email of their own."""
    account, phone, email = fresh.account(product), fresh.phone(), fresh.email()
    reg = client.register_customer(product, account, display_name=account, identifiers=[
        identifier(PHONE, phone, verified=True), identifier(EMAIL, email)])
    assert reg.created
    return Person(reg.customer_id, product, account, phone, email)


def merge(client: CustomersClient, survivor: Person, merged: Person) -> customers_pb2.Merge:
    return client.merge_customers(survivor.customer_id, merged.customer_id,
                                  reason="review: same person", actor="operator-7",
                                  evidence={"rule": "phone+name", "score": "0.97"})


def unmerge(client: CustomersClient, merged: Person) -> customers_pb2.Merge:
    return client.unmerge_customer(merged.customer_id, reason="complaint: not me",
                                   actor="operator-9")


def accounts_of(client: CustomersClient, customer_id: str) -> set[tuple[str, str]]:
    return {(a.product, a.account_id) for a in client.get_customer(customer_id).product_accounts}


def owner_of(client: CustomersClient, someone: Person) -> dict[str, str]:
    """Who each of a person's original references resolves to now."""
    return {
        "account": client.resolve_by_account(someone.product, someone.account_id).customer_id,
        "phone": client.resolve_by_identifier(PHONE, someone.phone).customer_id,
        "email": client.resolve_by_identifier(EMAIL, someone.email).customer_id,
        "id": client.resolve_by_id(someone.customer_id).customer_id,
    }


def all_resolve_to(customer_id: str) -> dict[str, str]:
    return dict.fromkeys(("account", "phone", "email", "id"), customer_id)


def test_a_merge_moves_accounts_identifiers_and_keeps_an_alias(client: CustomersClient,
                                                               fresh: Fresh) -> None:
    a, b = person(client, fresh, "cards"), person(client, fresh, "loans")
    passport = fresh.passport()
    client.add_identifier(b.customer_id, identifier(PASSPORT, passport))

    done = merge(client, a, b)

    assert done.name == f"merges/{done.merge_id}"
    assert (done.survivor_customer_id, done.merged_customer_id) == (a.customer_id,
                                                                     b.customer_id)
    assert (done.reason, done.actor) == ("review: same person", "operator-7")
    assert dict(done.evidence) == {"rule": "phone+name", "score": "0.97"}
    assert done.HasField("merge_time")
    assert not done.HasField("unmerge_time")

    survivor = client.get_customer(a.customer_id)
    assert survivor.state == ACTIVE
    assert accounts_of(client, a.customer_id) == {("cards", a.account_id),
                                                  ("loans", b.account_id)}
    assert sorted(i.kind for i in survivor.identifiers) == sorted(
        [PHONE, EMAIL, PHONE, EMAIL, PASSPORT])
    merged = client.get_customer(b.customer_id)
    assert merged.state == MERGED
    assert merged.merged_into == a.customer_id
    assert len(merged.product_accounts) == 0
    assert len(merged.identifiers) == 0

    alias = client.resolve_by_id(b.customer_id)
    assert alias.customer_id == a.customer_id
    assert alias.resolved_from_alias is True
    assert alias.alias_customer_id == b.customer_id
    assert owner_of(client, b) == all_resolve_to(a.customer_id)
    assert owner_of(client, a) == all_resolve_to(a.customer_id)
    assert client.resolve_by_identifier(PASSPORT, passport).customer_id == a.customer_id
    assert client.resolve_by_id(a.customer_id).resolved_from_alias is False
    # Calls that name the merged-away ID act on the survivor.
    assert {x.account_id for x in client.list_product_accounts(b.customer_id)} == {
        a.account_id, b.account_id}


def test_after_a_merge_registrations_attach_to_the_survivor(client: CustomersClient,
                                                            fresh: Fresh) -> None:
    a, b = person(client, fresh), person(client, fresh)
    merge(client, a, b)

    reg = client.register_customer("insurance", fresh.account(),
                                   identifiers=[identifier(PHONE, b.phone, verified=True)])

    assert reg.outcome == ATTACHED
    assert reg.customer_id == a.customer_id


def test_a_merge_settles_an_ambiguous_identifier(client: CustomersClient, fresh: Fresh) -> None:
    a, b = person(client, fresh), person(client, fresh)
    shared = fresh.phone()
    client.add_identifier(a.customer_id, identifier(PHONE, shared))
    client.add_identifier(b.customer_id, identifier(PHONE, shared))
    with pytest.raises(FailedPrecondition):
        client.resolve_by_identifier(PHONE, shared)

    merge(client, a, b)
    found = client.resolve_by_identifier(PHONE, shared)
    assert found.customer_id == a.customer_id
    assert found.resolved_from_alias is False

    unmerge(client, b)
    with pytest.raises(FailedPrecondition) as caught:
        client.resolve_by_identifier(PHONE, shared)
    assert caught.value.reason == "IDENTIFIER_AMBIGUOUS"


def test_unmerge_brings_the_id_back_and_leaves_later_links(client: CustomersClient,
                                                           fresh: Fresh) -> None:
    a, b = person(client, fresh, "cards"), person(client, fresh, "loans")
    done = merge(client, a, b)
    later = fresh.account("later")
    via_alias = fresh.account("via-alias")
    later_email = fresh.email()
    client.link_product_account(a.customer_id, "loyalty", later)
    client.link_product_account(b.customer_id, "loyalty", via_alias)  # lands on the survivor
    client.add_identifier(a.customer_id, identifier(EMAIL, later_email))

    undone = unmerge(client, b)

    assert undone.merge_id == done.merge_id
    assert undone.HasField("unmerge_time")
    assert undone.unmerge_reason == "complaint: not me"
    assert client.get_customer(b.customer_id).state == ACTIVE
    assert client.get_customer(b.customer_id).merged_into == ""
    back = client.resolve_by_id(b.customer_id)
    assert (back.customer_id, back.resolved_from_alias) == (b.customer_id, False)
    assert owner_of(client, b) == all_resolve_to(b.customer_id)
    assert owner_of(client, a) == all_resolve_to(a.customer_id)
    assert accounts_of(client, b.customer_id) == {("loans", b.account_id)}
    assert accounts_of(client, a.customer_id) == {
        ("cards", a.account_id), ("loyalty", later), ("loyalty", via_alias)}
    assert client.resolve_by_identifier(EMAIL, later_email).customer_id == a.customer_id
    assert client.get_customer(b.customer_id).display_name == b.account_id
    # Unmerged once, it is not merged any more.
    with pytest.raises(FailedPrecondition) as caught:
        unmerge(client, b)
    assert caught.value.reason == "NOT_MERGED"


def test_an_account_unlinked_after_the_merge_stays_unlinked(client: CustomersClient,
                                                            fresh: Fresh) -> None:
    a, b = person(client, fresh, "cards"), person(client, fresh, "loans")
    merge(client, a, b)
    client.unlink_product_account("loans", b.account_id)

    unmerge(client, b)

    assert accounts_of(client, b.customer_id) == set()
    with pytest.raises(NotFound):
        client.resolve_by_account("loans", b.account_id)
    assert client.resolve_by_identifier(EMAIL, b.email).customer_id == b.customer_id


def test_chained_merges_and_the_order_of_unmerges(client: CustomersClient,
                                                  fresh: Fresh) -> None:
    a, b, c = (person(client, fresh, p) for p in ("cards", "loans", "loyalty"))
    merge(client, a, b)  # A <- B
    merge(client, c, a)  # C <- A, taking B's accounts and alias with it

    for someone in (a, b, c):
        assert owner_of(client, someone) == all_resolve_to(c.customer_id)
    for merged_away in (a, b):
        alias = client.resolve_by_id(merged_away.customer_id)
        assert alias.resolved_from_alias is True
        assert alias.alias_customer_id == merged_away.customer_id
    assert client.get_customer(b.customer_id).merged_into == c.customer_id  # one hop
    assert accounts_of(client, c.customer_id) == {
        ("cards", a.account_id), ("loans", b.account_id), ("loyalty", c.account_id)}

    with pytest.raises(FailedPrecondition) as caught:
        unmerge(client, b)
    assert caught.value.reason == "LATER_MERGE_FIRST"
    assert caught.value.field == "merged_customer_id"
    assert owner_of(client, b) == all_resolve_to(c.customer_id)  # the refusal changed nothing

    unmerge(client, a)
    assert owner_of(client, a) == all_resolve_to(a.customer_id)
    assert owner_of(client, b) == all_resolve_to(a.customer_id)  # B is A's alias again
    assert owner_of(client, c) == all_resolve_to(c.customer_id)
    assert client.get_customer(b.customer_id).merged_into == a.customer_id

    unmerge(client, b)
    for someone in (a, b, c):
        assert owner_of(client, someone) == all_resolve_to(someone.customer_id)
        assert accounts_of(client, someone.customer_id) == {(someone.product,
                                                             someone.account_id)}


def test_a_customer_cannot_be_merged_into_itself(client: CustomersClient,
                                                 fresh: Fresh) -> None:
    a = person(client, fresh)
    with pytest.raises(InvalidArgument) as caught:
        merge(client, a, a)
    assert caught.value.field == "merged_customer_id"
    assert caught.value.reason == "SELF_MERGE"
    assert client.get_customer(a.customer_id).state == ACTIVE


def test_merged_customers_cannot_be_merged_again(client: CustomersClient, fresh: Fresh) -> None:
    a, b, c = person(client, fresh), person(client, fresh), person(client, fresh)
    merge(client, a, b)

    for survivor, merged, field in ((c, b, "merged_customer_id"),
                                    (b, c, "survivor_customer_id")):
        with pytest.raises(FailedPrecondition) as caught:
            merge(client, survivor, merged)
        assert caught.value.reason == "ALREADY_MERGED"
        assert caught.value.field == field
    assert owner_of(client, c) == all_resolve_to(c.customer_id)


def test_merge_and_unmerge_errors(client: CustomersClient, fresh: Fresh) -> None:
    a = person(client, fresh)
    unknown = "1" * 26
    with pytest.raises(NotFound) as missing:
        client.merge_customers(a.customer_id, unknown, reason="r", actor="x")
    assert missing.value.field == "merged_customer_id"
    with pytest.raises(InvalidArgument) as no_reason:
        client.merge_customers(a.customer_id, unknown, reason="", actor="")
    assert [v.field for v in no_reason.value.violations] == ["reason", "actor"]
    with pytest.raises(InvalidArgument) as long_reason:
        client.merge_customers(a.customer_id, unknown, reason="r" * 501, actor="x")
    assert long_reason.value.field == "reason"
    with pytest.raises(FailedPrecondition) as active:
        unmerge(client, a)
    assert active.value.reason == "NOT_MERGED"
    with pytest.raises(NotFound):
        client.unmerge_customer(unknown, reason="r", actor="x")


def test_a_merge_retried_with_its_key_applies_once(client: CustomersClient,
                                                   fresh: Fresh) -> None:
    a, b = person(client, fresh), person(client, fresh)
    key = f"merge-{fresh.account()}"

    first = client.merge_customers(a.customer_id, b.customer_id, reason="r", actor="x",
                                   idempotency_key=key)
    again = client.merge_customers(a.customer_id, b.customer_id, reason="r", actor="x",
                                   idempotency_key=key)

    assert again == first
    with pytest.raises(FailedPrecondition) as caught:
        client.merge_customers(a.customer_id, b.customer_id, reason="other", actor="x",
                               idempotency_key=key)
    assert caught.value.reason == "IDEMPOTENCY_KEY_REUSED"


def test_removing_an_identifier_after_a_merge_removes_the_aliases_copy(
        client: CustomersClient, fresh: Fresh) -> None:
    """Both held the phone, so the merged-away copy stayed with the alias; a removal
    from the survivor leaves nothing that still resolves to it, nor comes back later."""
    a, b = person(client, fresh), person(client, fresh)
    shared = fresh.phone()
    client.add_identifier(a.customer_id, identifier(PHONE, shared))
    client.add_identifier(b.customer_id, identifier(PHONE, shared))
    merge(client, a, b)

    client.remove_identifier(b.customer_id, PHONE, shared)  # the alias names the survivor

    with pytest.raises(NotFound):
        client.resolve_by_identifier(PHONE, shared)
    with pytest.raises(NotFound):
        client.remove_identifier(a.customer_id, PHONE, shared)
    assert len(client.get_customer(a.customer_id).identifiers) == 4  # both phones and emails
    unmerge(client, b)
    with pytest.raises(NotFound):
        client.resolve_by_identifier(PHONE, shared)
    assert owner_of(client, b) == all_resolve_to(b.customer_id)
