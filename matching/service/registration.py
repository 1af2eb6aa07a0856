"""Incremental matching of every new registration (``singleid.registration_listeners``).

The idp tells this listener of each registration that issued a new central ID.
The account is kept for matching (its display name split into name parts, its
phone, email and passport) and matched against every existing account at once:
above the automatic-merge threshold the new ID is merged into the existing
customer, whose ID the registration then returns; between the thresholds the
pair waits for review; otherwise the new ID stands.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from singleid.db import Database
from singleid.idp.normalize import IdentifierKind
from singleid.idp.service.types import NewAccount
from singleid.keyring import Keyring
from singleid.matching.names import split_full_name
from singleid.matching.normalize import FieldError
from singleid.matching.record import Person
from singleid.matching.service.matcher import MatchingService

log = logging.getLogger(__name__)


def person_of(account: NewAccount) -> Person | None:
    """What a registration tells matching; None when it brings nothing to match on."""
    name = split_full_name(account.display_name)
    values = {kind: value for kind, value in account.identifiers}
    person = Person(last_name=name.last, first_name=name.first, middle_name=name.middle,
                    phone=values.get(IdentifierKind.PHONE, ""),
                    email=values.get(IdentifierKind.EMAIL, ""),
                    passport=values.get(IdentifierKind.PASSPORT, ""))
    if not any((person.phone, person.email, person.passport, person.last_name)):
        return None
    return person


def listener(db: Database, keyring: Keyring) -> Callable[[NewAccount], str | None]:
    """The entry point: a listener bound to the server's database and key ring."""
    matcher = MatchingService(db, keyring)

    def on_new_account(account: NewAccount) -> str | None:
        try:
            person = person_of(account)
        except FieldError:
            return None
        if person is None:
            return None
        matcher.add_account(account.product, account.account_id, account.customer_id, person)
        result = matcher.match_account(account.product, account.account_id)
        log.info("registration matched", extra={"customer_id": account.customer_id,
                                                "action": result.action})
        return result.customer_id if result.action == "auto_merge" else None

    return on_new_account
