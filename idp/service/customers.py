"""Issuing and resolving central customer IDs; product accounts and identifiers.

Every mutation is one write transaction with its outbox event; a lost
unique-key race re-runs the transaction (``Database.run_write``), which is how
50 concurrent registrations of one account create exactly one customer.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from singleid import events, idempotency, paging
from singleid.db import Database, utcnow
from singleid.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Violations
from singleid.idp import ids, models
from singleid.idp.normalize import Canonical, IdentifierKind
from singleid.idp.service import records, validation
from singleid.idp.service.types import (
    AccountInput,
    CustomerState,
    CustomerView,
    IdentifierInput,
    IdentifierView,
    Lookup,
    NewAccount,
    Outcome,
    Page,
    ProductAccountView,
    Registration,
    RegistrationListener,
    Resolution,
)
from singleid.keyring import Keyring

EVENT_SOURCE = "/singleid/idp"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Given:
    """A validated identifier from a request."""

    canonical: Canonical
    verified: bool


class CustomerService:
    def __init__(self, db: Database, keyring: Keyring,
                 listeners: Sequence[RegistrationListener] = ()) -> None:
        self._db = db
        self._keyring = keyring
        self._known_products: set[str] = set()
        self._listeners = tuple(listeners)

    # -- registration -------------------------------------------------------

    def register(self, product: str, account_id: str, identifiers: Sequence[IdentifierInput] = (),
                 display_name: str = "", idempotency_key: str = "") -> Registration:
        """Return the account's central ID, issuing one at its first registration.

        The attach rule: a new account joins an existing customer only when a
        verified identifier it brings matches a verified identifier of exactly one
        customer, and nothing else it brings belongs to someone else. Otherwise a
        shared identifier issues a new ID and records the pair for matching.
        """
        violations = Violations()
        validation.product_code(violations, "product", product)
        validation.text(violations, "account_id", account_id,
                        limit=validation.MAX_ACCOUNT_ID, required=True)
        validation.text(violations, "display_name", display_name,
                        limit=validation.MAX_DISPLAY_NAME)
        given = self._identifiers(violations, identifiers)
        violations.raise_if_any()
        request = {"product": product, "account_id": account_id, "display_name": display_name,
                   "identifiers": [self._fingerprint(g) for g in given]}

        def work(session: Session) -> Registration:
            return idempotency.run_once(
                session, "RegisterCustomer", idempotency_key, request,
                lambda: self._register(session, product, account_id, given, display_name),
                Registration)

        registration = self._db.run_write(work)
        if registration.created and self._listeners:
            return self._notify(registration, NewAccount(
                product=product, account_id=account_id, customer_id=registration.customer_id,
                display_name=display_name,
                identifiers=tuple((g.canonical.kind, g.canonical.value) for g in given)))
        return registration

    def _notify(self, registration: Registration, account: NewAccount) -> Registration:
        """Tell the listeners (the matching service) about a new ID; it may be merged at once.

        The registration has committed: a listener that fails is logged, never fatal.
        """
        for listener in self._listeners:
            try:
                survivor = listener(account)
            except Exception:
                log.exception("a registration listener failed",
                              extra={"customer_id": account.customer_id})
                continue
            if survivor and survivor != registration.customer_id:
                return Registration(survivor, created=False,
                                    outcome=Outcome.ATTACHED_BY_MATCHING,
                                    match_candidate_recorded=registration.match_candidate_recorded)
        return registration

    def register_many(self, product: str, accounts: Sequence[AccountInput]
                      ) -> list[Registration]:
        """Register many accounts of one product in one transaction (legacy imports).

        Each account is registered exactly as :meth:`register` would (idempotent
        on product and account ID, the same attach rule); the whole batch commits
        or none of it does, so a caller validates its rows first.
        """
        violations = Violations()
        validation.product_code(violations, "product", product)
        checked: list[tuple[str, list[_Given], str]] = []
        for index, item in enumerate(accounts):
            validation.text(violations, f"accounts[{index}].account_id", item.account_id,
                            limit=validation.MAX_ACCOUNT_ID, required=True)
            validation.text(violations, f"accounts[{index}].display_name", item.display_name,
                            limit=validation.MAX_DISPLAY_NAME)
            checked.append((item.account_id, self._identifiers(violations, item.identifiers),
                            item.display_name))
        violations.raise_if_any()
        return self._db.run_write(lambda session: [
            self._register(session, product, account_id, given, display_name)
            for account_id, given, display_name in checked])

    def _register(self, session: Session, product: str, account_id: str,
                  given: list[_Given], display_name: str) -> Registration:
        self._require_product(session, product)
        records.lock_identifiers(session, self._keyring, [g.canonical for g in given])
        existing = records.account(session, product, account_id)
        if existing is not None:
            owner = records.active_customer(session, existing.customer_id)
            return Registration(owner.id, created=False, outcome=Outcome.EXISTING_ACCOUNT)

        now = utcnow()
        owners = records.holders_of(session.connection(), self._keyring,
                                    [g.canonical for g in given])
        target = self._attach_target(given, owners)
        if target is not None:
            self._add_account(session, target, product, account_id, now)
            for g in given:
                self._add_identifier_row(session, target, g, now)
            self._registered(session, target, product, account_id,
                             Outcome.ATTACHED_BY_VERIFIED_IDENTIFIER)
            return Registration(target, created=False,
                                outcome=Outcome.ATTACHED_BY_VERIFIED_IDENTIFIER)

        customer = models.Customer(id=ids.new_id(), state=CustomerState.ACTIVE.value,
                                   created_at=now, updated_at=now)
        records.seal_display_name(self._keyring, customer, display_name)
        session.add(customer)
        self._add_account(session, customer.id, product, account_id, now)
        for g in given:  # an ID issued just now holds no identifier row to look up
            session.add(records.new_identifier(self._keyring, customer.id, g.canonical,
                                               g.verified, now))
        recorded = self._record_candidates(session, customer.id, owners, now)
        self._registered(session, customer.id, product, account_id, Outcome.CREATED)
        return Registration(customer.id, created=True, outcome=Outcome.CREATED,
                            match_candidate_recorded=recorded)

    @staticmethod
    def _attach_target(given: list[_Given],
                       owners: dict[Canonical, dict[str, bool]]) -> str | None:
        verified_owners = {cid for g in given if g.verified
                           for cid, verified in owners[g.canonical].items() if verified}
        if len(verified_owners) != 1:
            return None
        (target,) = verified_owners
        everyone = {cid for by_customer in owners.values() for cid in by_customer}
        return target if everyone == {target} else None

    def _require_product(self, session: Session, code: str) -> None:
        """Products are never deleted, so one that existed once is remembered."""
        if code not in self._known_products:
            records.require_product(session, code)
            self._known_products.add(code)

    def _record_candidates(self, session: Session, customer_id: str,
                           owners: dict[Canonical, dict[str, bool]], now: datetime) -> bool:
        pairs = {(other, canonical.kind.value) for canonical, by_customer in owners.items()
                 for other in by_customer if other != customer_id}
        if not pairs:  # the common case; no need to read what was recorded before
            return False
        known = {(row.other_customer_id, row.identifier_kind) for row in session.execute(select(
            models.MatchCandidate.other_customer_id, models.MatchCandidate.identifier_kind
        ).where(models.MatchCandidate.customer_id == customer_id))}
        for other, kind in sorted(pairs - known):
            session.add(models.MatchCandidate(customer_id=customer_id, other_customer_id=other,
                                              identifier_kind=kind, status="open",
                                              created_at=now))
            events.emit(session, type="customer.match_candidate_recorded.v1",
                        source=EVENT_SOURCE, subject=customer_id,
                        data={"customer_id": customer_id, "other_customer_id": other,
                              "identifier_kind": kind})
        return bool(pairs)

    @staticmethod
    def _registered(session: Session, customer_id: str, product: str, account_id: str,
                    outcome: Outcome) -> None:
        events.emit(session, type="customer.registered.v1", source=EVENT_SOURCE,
                    subject=customer_id,
                    data={"customer_id": customer_id, "product": product,
                          "account_id": account_id, "outcome": outcome.value})

    # -- resolution ---------------------------------------------------------

    def resolve(self, lookup: Lookup) -> Resolution:
        """Validate first, then one or two indexed reads on a plain connection (the hot path)."""
        given = [bool(lookup.customer_id), lookup.product_account is not None,
                 lookup.identifier is not None]
        if sum(given) != 1:
            raise InvalidArgument("give exactly one of customer_id, product_account, identifier",
                                  field="lookup", reason="LOOKUP_REQUIRED")
        violations = Violations()
        if lookup.customer_id:
            validation.customer_id(violations, "customer_id", lookup.customer_id)
            violations.raise_if_any()
            return self._resolve_id(lookup.customer_id)
        if lookup.product_account is not None:
            product, account_id = lookup.product_account
            validation.product_code(violations, "product_account.product", product)
            validation.text(violations, "product_account.account_id", account_id,
                            limit=validation.MAX_ACCOUNT_ID, required=True)
            violations.raise_if_any()
            return self._resolve_account(product, account_id)
        assert lookup.identifier is not None
        canonical = validation.identifier(violations, "identifier", *lookup.identifier)
        violations.raise_if_any()
        assert canonical is not None
        return self._resolve_identifier(canonical)

    def _resolve_id(self, customer_id: str) -> Resolution:
        with self._db.read_connection() as connection:
            row = connection.execute(records.CUSTOMER_LINK, {"id": customer_id}).one_or_none()
            if row is None:
                raise NotFound(f"no customer {customer_id}", reason="CUSTOMER_NOT_FOUND",
                               field="customer_id")
            return _resolution(customer_id, records.survivor_id(connection, *row))

    def _resolve_account(self, product: str, account_id: str) -> Resolution:
        with self._db.read_connection() as connection:
            owner = connection.scalar(records.ACCOUNT_OWNER,
                                      {"product": product, "account_id": account_id})
            if owner is not None:
                row = connection.execute(records.CUSTOMER_LINK, {"id": owner}).one()
                return _resolution(owner, records.survivor_id(connection, *row))
        with self._db.read() as session:
            records.require_product(session, product, field="product_account.product")
        raise NotFound("no such product account", reason="ACCOUNT_NOT_FOUND",
                       field="product_account.account_id")

    def _resolve_identifier(self, canonical: Canonical) -> Resolution:
        kind = canonical.kind.value
        with self._db.read_connection() as connection:
            holders = connection.execute(records.HOLDERS_BY_INDEX, {
                "kind": kind, "index": records.blind_index(self._keyring, canonical)}).all()
            resolutions = [_resolution(row.id, records.survivor_id(connection, *row))
                           for row in holders]
        if not resolutions:
            raise NotFound(f"no customer has this {kind}", reason="IDENTIFIER_NOT_FOUND",
                           field="identifier.value")
        survivors = {r.customer_id for r in resolutions}
        if len(survivors) > 1:
            raise FailedPrecondition(
                f"this {kind} belongs to {len(survivors)} customers; resolve by another "
                "identifier, or merge them", reason="IDENTIFIER_AMBIGUOUS",
                field="identifier.value", metadata={"customers": str(len(survivors))})
        # A merged-away copy of the survivor's own identifier resolves directly.
        return min(resolutions, key=lambda r: r.resolved_from_alias)

    # -- reading ------------------------------------------------------------

    def get(self, customer_id: str) -> CustomerView:
        violations = Violations()
        validation.customer_id(violations, "customer_id", customer_id)
        violations.raise_if_any()
        with self._db.read() as session:
            row = records.customer(session, customer_id)
            accounts = session.scalars(select(models.ProductAccount).where(
                models.ProductAccount.customer_id == row.id).order_by(models.ProductAccount.id))
            identifiers = session.scalars(select(models.CustomerIdentifier).where(
                models.CustomerIdentifier.customer_id == row.id
            ).order_by(models.CustomerIdentifier.id))
            return CustomerView(
                customer_id=row.id, state=CustomerState(row.state), merged_into=row.merged_into,
                display_name=records.display_name(self._keyring, row),
                product_accounts=[records.account_view(a) for a in accounts],
                identifiers=[records.identifier_view(self._keyring, i) for i in identifiers],
                created_at=row.created_at, updated_at=row.updated_at)

    def list_accounts(self, customer_id: str, page_size: int = 0,
                      page_token: str = "") -> Page[ProductAccountView]:
        violations = Violations()
        validation.customer_id(violations, "customer_id", customer_id)
        violations.raise_if_any()
        size = paging.page_size(page_size)
        after = paging.page_token(page_token)
        with self._db.read() as session:
            owner = records.active_customer(session, customer_id)
            rows = list(session.scalars(
                select(models.ProductAccount)
                .where(models.ProductAccount.customer_id == owner.id,
                       models.ProductAccount.id > after)
                .order_by(models.ProductAccount.id).limit(size + 1)))
        more = len(rows) > size
        rows = rows[:size]
        return Page([records.account_view(r) for r in rows],
                     paging.next_page_token(rows[-1].id if more else None))

    # -- product accounts ---------------------------------------------------

    def link_account(self, customer_id: str, product: str, account_id: str,
                     idempotency_key: str = "") -> ProductAccountView:
        violations = Violations()
        validation.customer_id(violations, "customer_id", customer_id)
        validation.product_code(violations, "product", product)
        validation.text(violations, "account_id", account_id,
                        limit=validation.MAX_ACCOUNT_ID, required=True)
        violations.raise_if_any()
        request = {"customer_id": customer_id, "product": product, "account_id": account_id}

        def apply(session: Session) -> ProductAccountView:
            records.require_product(session, product)
            owner = records.active_customer(session, customer_id)
            existing = records.account(session, product, account_id)
            if existing is not None:
                if records.active_customer(session, existing.customer_id).id != owner.id:
                    raise AlreadyExists("this account is linked to another customer",
                                        reason="ACCOUNT_LINKED_ELSEWHERE", field="account_id")
                return records.account_view(existing)
            row = self._add_account(session, owner.id, product, account_id, utcnow())
            events.emit(session, type="customer.product_account_linked.v1",
                        source=EVENT_SOURCE, subject=owner.id,
                        data={"customer_id": owner.id, "product": product,
                              "account_id": account_id})
            return records.account_view(row)

        return self._db.run_write(lambda s: idempotency.run_once(
            s, "LinkProductAccount", idempotency_key, request, lambda: apply(s),
            ProductAccountView))

    def unlink_account(self, product: str, account_id: str, idempotency_key: str = "") -> None:
        violations = Violations()
        validation.product_code(violations, "product", product)
        validation.text(violations, "account_id", account_id,
                        limit=validation.MAX_ACCOUNT_ID, required=True)
        violations.raise_if_any()

        def apply(session: Session) -> None:
            records.require_product(session, product)
            row = records.account(session, product, account_id)
            if row is None:
                raise NotFound("no such product account", reason="ACCOUNT_NOT_FOUND",
                               field="account_id")
            session.delete(row)
            events.emit(session, type="customer.product_account_unlinked.v1",
                        source=EVENT_SOURCE, subject=row.customer_id,
                        data={"customer_id": row.customer_id, "product": product,
                              "account_id": account_id})

        request = {"product": product, "account_id": account_id}
        self._db.run_write(lambda s: idempotency.run_once(
            s, "UnlinkProductAccount", idempotency_key, request, lambda: apply(s), None))

    # -- identifiers --------------------------------------------------------

    def add_identifier(self, customer_id: str, identifier: IdentifierInput,
                       idempotency_key: str = "") -> IdentifierView:
        violations = Violations()
        validation.customer_id(violations, "customer_id", customer_id)
        canonical = validation.identifier(violations, "identifier", identifier.kind,
                                          identifier.value)
        violations.raise_if_any()
        assert canonical is not None
        given = _Given(canonical, identifier.verified)

        def apply(session: Session) -> IdentifierView:
            owner = records.active_customer(session, customer_id)
            records.lock_identifiers(session, self._keyring, [canonical])
            now = utcnow()
            owners = records.holders_of(session.connection(), self._keyring, [canonical])
            row = self._add_identifier_row(session, owner.id, given, now)
            self._record_candidates(session, owner.id, owners, now)
            events.emit(session, type="customer.identifier_added.v1", source=EVENT_SOURCE,
                        subject=owner.id, data={"customer_id": owner.id,
                                                "kind": canonical.kind.value,
                                                "verified": row.verified})
            return records.identifier_view(self._keyring, row)

        request = {"customer_id": customer_id, "identifier": self._fingerprint(given)}
        return self._db.run_write(lambda s: idempotency.run_once(
            s, "AddIdentifier", idempotency_key, request, lambda: apply(s), IdentifierView))

    def remove_identifier(self, customer_id: str, kind: IdentifierKind, value: str,
                          idempotency_key: str = "") -> None:
        violations = Violations()
        validation.customer_id(violations, "customer_id", customer_id)
        canonical = validation.identifier(violations, "identifier", kind, value)
        violations.raise_if_any()
        assert canonical is not None

        def apply(session: Session) -> None:
            owner = records.active_customer(session, customer_id)
            # Its merged-away aliases' copies too: they would still resolve to the owner.
            mine = [r for r in records.identifier_rows(session, self._keyring, canonical)
                    if records.active_customer(session, r.customer_id).id == owner.id]
            if not mine:
                raise NotFound(f"the customer has no such {kind.value}",
                               reason="IDENTIFIER_NOT_FOUND", field="identifier.value")
            for row in mine:
                session.delete(row)
            events.emit(session, type="customer.identifier_removed.v1", source=EVENT_SOURCE,
                        subject=owner.id, data={"customer_id": owner.id, "kind": kind.value})

        request = {"customer_id": customer_id,
                   "identifier": self._fingerprint(_Given(canonical, verified=False))}
        self._db.run_write(lambda s: idempotency.run_once(
            s, "RemoveIdentifier", idempotency_key, request, lambda: apply(s), None))

    # -- shared steps -------------------------------------------------------

    def _identifiers(self, violations: Violations,
                     identifiers: Sequence[IdentifierInput]) -> list[_Given]:
        if len(identifiers) > validation.MAX_IDENTIFIERS:
            violations.add("identifiers", f"at most {validation.MAX_IDENTIFIERS}")
            return []
        merged: dict[Canonical, bool] = {}
        for index, item in enumerate(identifiers):
            canonical = validation.identifier(violations, f"identifiers[{index}]", item.kind,
                                              item.value)
            if canonical is not None:
                merged[canonical] = merged.get(canonical, False) or item.verified
        return [_Given(c, verified) for c, verified in merged.items()]

    def _fingerprint(self, given: _Given) -> list[str | bool]:
        """An identifier as an idempotency fingerprint sees it: blind index, never value."""
        return [given.canonical.kind.value,
                records.blind_index(self._keyring, given.canonical).hex(), given.verified]

    def _add_identifier_row(self, session: Session, customer_id: str, given: _Given,
                            now: datetime) -> models.CustomerIdentifier:
        """Add an identifier to a customer, or mark the one it has verified."""
        for row in records.identifier_rows(session, self._keyring, given.canonical):
            if row.customer_id == customer_id:
                row.verified = row.verified or given.verified
                return row
        row = records.new_identifier(self._keyring, customer_id, given.canonical, given.verified,
                                     now)
        session.add(row)
        return row

    @staticmethod
    def _add_account(session: Session, customer_id: str, product: str, account_id: str,
                     now: datetime) -> models.ProductAccount:
        # Not flushed here: a unique-key race surfaces at commit, and run_write re-runs.
        row = models.ProductAccount(product_code=product, account_id=account_id,
                                    customer_id=customer_id, linked_at=now)
        session.add(row)
        return row


def _resolution(found_id: str, survivor_id: str) -> Resolution:
    if survivor_id == found_id:
        return Resolution(found_id)
    return Resolution(survivor_id, resolved_from_alias=True, alias_customer_id=found_id)
