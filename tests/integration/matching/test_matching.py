"""Batch and incremental matching, review decisions, explanations and un-merge, on a real store."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from singleid.db import Database
from singleid.errors import FailedPrecondition, InvalidArgument
from singleid.events import OutboxEvent
from singleid.idp.service import CustomerService, ProductService
from singleid.idp.service.types import Lookup
from singleid.keyring import Keyring
from singleid.matching.record import LegacyRow, person_from_row
from singleid.matching.service import ImportService, MatchingService
from singleid.matching.service.importer import Parsed
from singleid.matching.service.types import AccountRef, Decision
from singleid.matching.synthetic import Generator
from singleid.profile.service.profiles import ProfileService

ANNA = dict(last_name="Петрова", first_name="Анна", middle_name="Сергеевна",
            birth_date="05.03.1985", phone="8 916 123-45-67", email="anna@mail.ru",
            city="Москва")


def rows(*accounts: dict[str, str]) -> Iterator[Parsed]:
    for line, values in enumerate(accounts, start=2):
        yield line, LegacyRow.from_mapping(values)


Store = tuple[ImportService, MatchingService, CustomerService]


@pytest.fixture
def store(db: Database, keyring: Keyring) -> Store:
    products = ProductService(db)
    for code in ("cards", "loans", "loyalty"):
        products.create(code)
    return (ImportService(db, keyring), MatchingService(db, keyring),
            CustomerService(db, keyring))


def resolve(customers: CustomerService, product: str, account_id: str) -> str:
    return customers.resolve(Lookup(product_account=(product, account_id))).customer_id


def test_batch_merges_a_person_and_keeps_look_alikes_apart(store: Store) -> None:
    importer, matcher, customers = store
    importer.import_rows("cards", rows(
        {"account_id": "c-1", **ANNA},
        # Anna's twin sister: same surname, birth date, patronymic, phone.
        {"account_id": "c-2", **ANNA, "first_name": "Мария", "email": ""}))
    importer.import_rows("loans", rows(
        {"account_id": "l-1", **ANNA, "last_name": "PETROVA", "first_name": "Anya",
         "middle_name": "", "email": "", "birth_date": "1985-03-05"}))
    anna = resolve(customers, "cards", "c-1")
    summary = matcher.run_batch()
    assert summary.auto_merges == 1
    assert resolve(customers, "loans", "l-1") == anna
    assert resolve(customers, "cards", "c-2") != anna
    queue = matcher.list_review().items
    assert len(queue) >= 1
    assert all("FIRST_NAMES_DIFFER" in c.hard_rules for c in queue)


def test_review_decisions_merge_or_are_remembered(store: Store, db: Database) -> None:
    importer, matcher, customers = store
    importer.import_rows("cards", rows({"account_id": "c-1", **ANNA}))
    # Same name and date, nothing else to go on: review, never automatic.
    importer.import_rows("loans", rows({"account_id": "l-1", **ANNA, "phone": "",
                                        "email": "", "city": ""}))
    importer.import_rows("loyalty", rows({"account_id": "y-1", **ANNA, "phone": "",
                                          "email": "", "city": "Казань"}))
    matcher.run_batch()
    queue = matcher.list_review().items
    assert len(queue) == 3
    assert queue[0].probability >= queue[-1].probability
    by_pair = {}
    for c in queue:
        view = matcher.get_candidate(c.candidate_id)
        assert view.left is not None
        assert view.right is not None
        by_pair[(view.left.account_id, view.right.account_id)] = view
    merge = by_pair[("c-1", "l-1")]
    assert {f.comparison: f.level for f in merge.fields}["birth_date"] == "exact"
    assert {f.comparison: f.left for f in merge.fields}["phone"].startswith("+7916")
    assert "*" in {f.comparison: f.left for f in merge.fields}["phone"]
    with pytest.raises(InvalidArgument) as error:
        matcher.decide(merge.candidate_id, Decision.MERGE, operator=" ")
    assert error.value.field == "operator"
    decided = matcher.decide(merge.candidate_id, Decision.MERGE, operator="op-ivanova")
    assert (decided.status, decided.operator) == ("merged", "op-ivanova")
    assert resolve(customers, "loans", "l-1") == resolve(customers, "cards", "c-1")
    with pytest.raises(FailedPrecondition):
        matcher.decide(merge.candidate_id, Decision.SKIP, operator="op-ivanova")
    for pair in (("c-1", "y-1"), ("l-1", "y-1")):
        matcher.decide(by_pair[pair].candidate_id, Decision.NOT_SAME, operator="op-petrov")
    assert matcher.list_review().items == []
    with db.read() as session:
        emitted = [e.data for e in session.scalars(select(OutboxEvent).where(
            OutboxEvent.type == "singleid.matching.candidate_decided.v1"))]
    assert sorted(d["decision"] for d in emitted) == ["merged", "not_same", "not_same"]
    assert "петрова" not in repr(emitted)
    matcher.run_batch()  # "not the same" is never proposed again
    assert matcher.list_review().items == []
    assert resolve(customers, "loyalty", "y-1") != resolve(customers, "cards", "c-1")


def test_skipped_candidates_go_to_the_back_of_the_queue(store: Store) -> None:
    importer, matcher, _ = store
    importer.import_rows("cards", rows({"account_id": "c-1", **ANNA},
                                       {"account_id": "c-2", **ANNA, "first_name": "Мария"},
                                       {"account_id": "c-3", **ANNA, "phone": "", "email": "",
                                        "passport": ""}))
    matcher.run_batch()
    first = matcher.list_review().items
    assert len(first) >= 2
    matcher.decide(first[0].candidate_id, Decision.SKIP, operator="op")
    again = matcher.list_review().items
    assert again[-1].candidate_id == first[0].candidate_id
    assert again[-1].status == "skipped"
    page = matcher.list_review(page_size=1)
    assert len(page.items) == 1
    assert page.next_page_token
    assert matcher.list_review(page_size=1, page_token=page.next_page_token).items


def test_unmerge_restores_both_customers_and_is_remembered(store: Store) -> None:
    importer, matcher, customers = store
    importer.import_rows("cards", rows({"account_id": "c-1", **ANNA}))
    importer.import_rows("loans", rows({"account_id": "l-1", **ANNA}))
    before = (resolve(customers, "cards", "c-1"), resolve(customers, "loans", "l-1"))
    assert matcher.run_batch().auto_merges == 1
    assert resolve(customers, "loans", "l-1") == before[0]
    view = matcher.unmerge(before[1], operator="op-sidorov", reason="two people")
    assert view.merged_customer_id == before[1]
    assert (resolve(customers, "cards", "c-1"), resolve(customers, "loans", "l-1")) == before
    assert matcher.run_batch().auto_merges == 0  # the un-merged pair is remembered
    assert resolve(customers, "loans", "l-1") == before[1]


def test_explain_gives_every_comparison_and_the_probability(store: Store) -> None:
    importer, matcher, _ = store
    importer.import_rows("cards", rows({"account_id": "c-1", **ANNA}))
    importer.import_rows("loans", rows({"account_id": "l-1", **ANNA, "passport": "4509123456",
                                        "first_name": "Аня"}))
    result = matcher.explain(AccountRef("cards", "c-1"), AccountRef("loans", "l-1"))
    levels = {f.comparison: f.level for f in result.fields}
    assert levels["first_name"] == "diminutive_or_translit"
    assert levels["passport"] == "null"
    assert result.match_weight == pytest.approx(
        result.prior_weight + sum(f.weight for f in result.fields))
    assert 0.99 < result.probability <= 1
    assert result.action == "auto_merge"


def test_a_new_registration_is_matched_at_once(store: Store) -> None:
    importer, matcher, customers = store
    importer.import_rows("cards", rows({"account_id": "c-1", **ANNA}))
    matcher.run_batch()
    existing = resolve(customers, "cards", "c-1")
    new = customers.register("loans", "l-9").customer_id
    person = person_from_row(LegacyRow(account_id="l-9", **{**ANNA, "first_name": "Аня"}))
    matcher.add_account("loans", "l-9", new, person)
    result = matcher.match_account("loans", "l-9")
    assert (result.action, result.customer_id) == ("auto_merge", existing)
    assert resolve(customers, "loans", "l-9") == existing
    stranger = customers.register("loans", "l-10").customer_id
    matcher.add_account("loans", "l-10", stranger, person_from_row(LegacyRow(
        account_id="l-10", last_name="Смирнов", first_name="Олег", birth_date="01.01.1970")))
    assert matcher.match_account("loans", "l-10").action == "none"


def test_generated_accounts_merge_without_a_wrong_merge(store: Store, db: Database) -> None:
    importer, matcher, customers = store
    data = list(Generator(seed=21).rows(60, hard_negative_share=0.3))
    for product in {r["product"] for r in data}:
        if product not in ("cards", "loans", "loyalty"):
            ProductService(db).create(product)
        importer.import_rows(product, rows(*[r for r in data if r["product"] == product]))
    summary = matcher.run_batch()
    assert summary.auto_merges > 10
    person_of = {(r["product"], r["account_id"]): r["person_id"] for r in data}
    owners: dict[str, set[str]] = {}
    for product, account_id, _ in importer.accounts():
        survivor = resolve(customers, product, account_id)
        owners.setdefault(survivor, set()).add(person_of[(product, account_id)])
    assert all(len(persons) == 1 for persons in owners.values()), "a wrong merge"


def test_golden_record_from_the_products_accounts(store: Store, db: Database,
                                                  keyring: Keyring) -> None:
    importer, matcher, customers = store
    profiles = ProfileService.configured(db, keyring)
    importer.import_rows("loyalty", rows({"account_id": "y-1", **ANNA,
                                          "created_at": "2020-01-01"}))
    importer.import_rows("cards", rows({"account_id": "c-1", **ANNA, "email": "",
                                        "address": "г. Москва, ул. Ленина, д. 5",
                                        "created_at": "2015-01-01"}))
    importer.import_rows("loans", rows({"account_id": "l-1", **ANNA, "first_name": "Аня",
                                        "phone": "", "created_at": "2021-06-01"}))
    cards = resolve(customers, "cards", "c-1")
    before = {a.name: a for a in profiles.get(cards).attributes}
    assert before["full_name"].value == {"last": "Петрова", "first": "Анна",
                                         "patronymic": "Сергеевна"}
    assert (before["birth_date"].value, before["birth_date"].source) == ("1985-03-05", "cards")
    assert before["postal_addresses"].value[0]["line"] == "г. Москва, ул. Ленина, д. 5"
    # loyalty owns none of these attributes: its account gave the profile nothing.
    assert profiles.get(resolve(customers, "loyalty", "y-1")).attributes == []
    matcher.run_batch()
    survivor = resolve(customers, "loans", "l-1")
    assert survivor == resolve(customers, "cards", "c-1") == resolve(customers, "loyalty", "y-1")
    golden = {a.name: a for a in profiles.get(survivor).attributes}
    # Survivorship: cards is trusted above loans, whatever is newer.
    assert (golden["full_name"].source, golden["full_name"].value["first"]) == ("cards", "Анна")
    assert golden["phones"].value == ["+79161234567"]
    assert (golden["emails"].source, golden["emails"].value) == ("loans", ["anna@mail.ru"])
    assert golden["postal_addresses"].source == "cards"
    # Un-merge: the cards customer gets its own values back, and the survivor loses them.
    matcher.unmerge(cards, operator="op-ivanova", reason="two people after all")
    assert resolve(customers, "cards", "c-1") == cards != survivor
    restored = {a.name: a for a in profiles.get(cards).attributes}
    assert restored["full_name"].source == "cards"
    assert "postal_addresses" not in {a.name for a in profiles.get(survivor).attributes}
