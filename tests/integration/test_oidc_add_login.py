"""An existing customer (registered by a product) gets an ecosystem login of their own."""

from __future__ import annotations

import pytest

from singleid.db import Database
from singleid.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from singleid.idp.oidc.service.logins import LoginService, Outcome
from singleid.idp.service import CustomerService, MergeService, ProductService
from singleid.keyring import Keyring

PASSWORD = "a long enough password"


@pytest.fixture
def customers(db: Database, keyring: Keyring) -> CustomerService:
    ProductService(db).create("messenger", "Messenger")
    return CustomerService(db, keyring)


def test_the_login_signs_in_as_the_existing_customer(
        db: Database, keyring: Keyring, customers: CustomerService) -> None:
    customer_id = customers.register("messenger", "tg-1").customer_id
    logins = LoginService(db, keyring)
    assert logins.add_login(customer_id, "+7 916 555-01-02", PASSWORD) == customer_id
    signed_in = logins.sign_in("8 916 555 01 02", PASSWORD, "127.0.0.1")
    assert (signed_in.outcome, signed_in.customer_id) == (Outcome.OK, customer_id)
    with pytest.raises(AlreadyExists):
        logins.add_login(customer_id, "+79165550102", PASSWORD)


def test_an_unknown_merged_or_badly_typed_customer_gets_no_login(
        db: Database, keyring: Keyring, customers: CustomerService) -> None:
    logins = LoginService(db, keyring)
    with pytest.raises(NotFound):
        logins.add_login("0" * 26, "a@example.com", PASSWORD)
    with pytest.raises(InvalidArgument) as bad:
        logins.add_login("not-an-id", "a@example.com", PASSWORD)
    assert bad.value.field == "customer_id"
    survivor = customers.register("messenger", "tg-2").customer_id
    merged = customers.register("messenger", "tg-3").customer_id
    MergeService(db).merge(survivor, merged, "same person", actor="test")
    with pytest.raises(FailedPrecondition) as gone:
        logins.add_login(merged, "b@example.com", PASSWORD)
    assert (gone.value.field, gone.value.reason) == ("customer_id", "CUSTOMER_MERGED")
