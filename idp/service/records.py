"""Row-level helpers the customer services share: lookups, sealing, views."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from singleid.errors import FailedPrecondition, NotFound
from singleid.idp import models
from singleid.idp.normalize import Canonical, IdentifierKind
from singleid.idp.service.types import (
    CustomerState,
    IdentifierView,
    ProductAccountView,
)
from singleid.keyring import Keyring, Sealed

# Merges flatten alias chains, so one hop is the norm; the bound guards a cycle.
MAX_ALIAS_HOPS = 16


def customer(session: Session, customer_id: str, field: str = "customer_id") -> models.Customer:
    row = session.get(models.Customer, customer_id)
    if row is None:
        raise NotFound(f"no customer {customer_id}", reason="CUSTOMER_NOT_FOUND", field=field)
    return row


def survivor(session: Session, row: models.Customer) -> models.Customer:
    """The active customer a (possibly merged-away) customer resolves to."""
    for _ in range(MAX_ALIAS_HOPS):
        if row.merged_into is None:
            return row
        row = customer(session, row.merged_into)
    raise RuntimeError(f"alias chain longer than {MAX_ALIAS_HOPS} from {row.id}")


def active_customer(session: Session, customer_id: str, field: str = "customer_id"
                    ) -> models.Customer:
    return survivor(session, customer(session, customer_id, field))


def require_product(session: Session, code: str, field: str = "product") -> None:
    if session.get(models.Product, code) is None:
        raise FailedPrecondition(f"product {code!r} is not registered", reason="UNKNOWN_PRODUCT",
                                 field=field, subject=f"products/{code}")


def account(session: Session, product: str, account_id: str) -> models.ProductAccount | None:
    return session.scalars(select(models.ProductAccount).where(
        models.ProductAccount.product_code == product,
        models.ProductAccount.account_id == account_id)).one_or_none()


def identifier_rows(session: Session, keyring: Keyring, canonical: Canonical
                    ) -> list[models.CustomerIdentifier]:
    return list(session.scalars(select(models.CustomerIdentifier).where(
        models.CustomerIdentifier.kind == canonical.kind.value,
        models.CustomerIdentifier.blind_index == blind_index(keyring, canonical))))


def blind_index(keyring: Keyring, canonical: Canonical) -> bytes:
    return keyring.blind_index(canonical.value, models.identifier_purpose(canonical.kind.value))


def new_identifier(keyring: Keyring, customer_id: str, canonical: Canonical, verified: bool,
                   now: object) -> models.CustomerIdentifier:
    purpose = models.identifier_purpose(canonical.kind.value)
    sealed = keyring.seal_text(canonical.value, purpose)
    return models.CustomerIdentifier(
        customer_id=customer_id, kind=canonical.kind.value,
        blind_index=keyring.blind_index(canonical.value, purpose),
        ciphertext=sealed.ciphertext, key_id=sealed.key_id, verified=verified, created_at=now)


def identifier_view(keyring: Keyring, row: models.CustomerIdentifier) -> IdentifierView:
    kind = IdentifierKind(row.kind)
    value = keyring.open_text(Sealed(row.key_id, row.ciphertext),
                              models.identifier_purpose(row.kind))
    return IdentifierView(kind=kind, masked_value=Canonical(kind, value).masked,
                          verified=row.verified, created_at=row.created_at)


def account_view(row: models.ProductAccount) -> ProductAccountView:
    return ProductAccountView(product=row.product_code, account_id=row.account_id,
                              customer_id=row.customer_id, linked_at=row.linked_at)


def display_name(keyring: Keyring, row: models.Customer) -> str:
    if row.display_name_ciphertext is None or row.display_name_key_id is None:
        return ""
    return keyring.open_text(Sealed(row.display_name_key_id, row.display_name_ciphertext),
                             models.DISPLAY_NAME_PURPOSE)


def seal_display_name(keyring: Keyring, row: models.Customer, name: str) -> None:
    if not name:
        row.display_name_ciphertext = row.display_name_key_id = None
        return
    sealed = keyring.seal_text(name, models.DISPLAY_NAME_PURPOSE)
    row.display_name_ciphertext, row.display_name_key_id = sealed.ciphertext, sealed.key_id


def is_active(row: models.Customer) -> bool:
    return row.state == CustomerState.ACTIVE.value
