"""Row-level helpers the customer services share: lookups, sealing, views."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import bindparam, select, text, tuple_
from sqlalchemy.engine import Connection
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
# PostgreSQL advisory locks on identifiers: (this space, 32 bits of the blind index).
# Two identifiers sharing 32 bits only wait for each other; nothing else uses this space.
IDENTIFIER_LOCK_SPACE = 726_195_002


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


def lock_customers(session: Session, customer_ids: Iterable[str]) -> None:
    """Row-lock customers for the rest of the transaction, and reload them.

    Merges and un-merges read two customers' states and then change them; on
    PostgreSQL two such transactions would otherwise both read "active" and, say,
    merge A into B and B into A. Locked in ID order, so two callers cannot deadlock;
    FOR NO KEY UPDATE, so inserts that only reference them (an account's foreign
    key) do not wait. On SQLite the write transaction already holds the database's
    write lock.
    """
    session.scalars(select(models.Customer)
                    .where(models.Customer.id.in_(sorted(set(customer_ids))))
                    .order_by(models.Customer.id).with_for_update(key_share=True)
                    .execution_options(populate_existing=True)).all()


def lock_identifiers(session: Session, keyring: Keyring, canonicals: Iterable[Canonical]
                     ) -> None:
    """Serialise transactions that bring the same identifier, until they end.

    Registration decides from who holds an identifier; on PostgreSQL (READ
    COMMITTED) two registrations bringing one new verified phone would each see
    no holder and issue two IDs, with no match candidate. Taken before reading
    the holders, in a fixed order. SQLite's write lock already serialises them.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    keys = sorted({int.from_bytes(blind_index(keyring, c)[:4], "big", signed=True)
                   for c in canonicals})
    if keys:  # one round trip for all, taken in the (sorted) order of the array
        session.execute(text("SELECT pg_advisory_xact_lock(CAST(:space AS integer), k) "
                             "FROM unnest(CAST(:keys AS integer[])) AS k"),
                        {"space": IDENTIFIER_LOCK_SPACE, "keys": keys})


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


# The resolve hot path: Core statements built once, run on a plain connection.
# Building a statement per call and loading ORM objects cost more than the query.
_C, _I, _A = models.Customer, models.CustomerIdentifier, models.ProductAccount
HOLDERS_BY_INDEX = (select(_C.id, _C.merged_into).join(_I, _I.customer_id == _C.id)
                    .where(_I.kind == bindparam("kind"), _I.blind_index == bindparam("index")))
CUSTOMER_LINK = select(_C.id, _C.merged_into).where(_C.id == bindparam("id"))
ACCOUNT_OWNER = select(_A.customer_id).where(_A.product_code == bindparam("product"),
                                             _A.account_id == bindparam("account_id"))


def holders_of(connection: Connection, keyring: Keyring, canonicals: Iterable[Canonical]
               ) -> dict[Canonical, dict[str, bool]]:
    """For each identifier, the surviving customers holding it and whether theirs is verified.

    One query for all of them; merged-away holders count as their survivor.
    """
    wanted = {(c.kind.value, blind_index(keyring, c)): c for c in canonicals}
    result: dict[Canonical, dict[str, bool]] = {c: {} for c in wanted.values()}
    if not wanted:
        return result
    rows = connection.execute(
        select(_I.kind, _I.blind_index, _I.verified, _C.id, _C.merged_into)
        .join(_C, _I.customer_id == _C.id)
        .where(tuple_(_I.kind, _I.blind_index).in_(list(wanted)))).all()
    for row in rows:
        holders = result[wanted[(row.kind, row.blind_index)]]
        owner = survivor_id(connection, row.id, row.merged_into)
        holders[owner] = holders.get(owner, False) or row.verified
    return result


def survivor_id(connection: Connection, customer_id: str, merged_into: str | None) -> str:
    """The active customer an ID resolves to, following aliases on a Core connection."""
    for _ in range(MAX_ALIAS_HOPS):
        if merged_into is None:
            return customer_id
        row = connection.execute(CUSTOMER_LINK, {"id": merged_into}).one()
        customer_id, merged_into = row.id, row.merged_into
    raise RuntimeError(f"alias chain longer than {MAX_ALIAS_HOPS} from {customer_id}")


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
