"""What the customer services take and return: plain dataclasses, no protobuf."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Generic, TypeVar

from singleid.idp.normalize import IdentifierKind

T = TypeVar("T")


class CustomerState(StrEnum):
    ACTIVE = "active"
    MERGED = "merged"


class Outcome(StrEnum):
    CREATED = "created"
    EXISTING_ACCOUNT = "existing_account"
    ATTACHED_BY_VERIFIED_IDENTIFIER = "attached_by_verified_identifier"
    ATTACHED_BY_MATCHING = "attached_by_matching"


@dataclass(frozen=True)
class IdentifierInput:
    kind: IdentifierKind
    value: str
    verified: bool = False


@dataclass(frozen=True)
class NewAccount:
    """A registration that issued a new central ID, as registration listeners see it.

    ``identifiers`` are canonical (kind, value) pairs: plaintext, in process only.
    """

    product: str
    account_id: str
    customer_id: str
    display_name: str
    identifiers: tuple[tuple[IdentifierKind, str], ...]


# Called after a registration that issued a new ID committed; returns the ID the
# account resolves to when the listener merged it into an existing customer.
RegistrationListener = Callable[[NewAccount], str | None]


@dataclass(frozen=True)
class AccountInput:
    """One account of a batch registration (``CustomerService.register_many``)."""

    account_id: str
    identifiers: tuple[IdentifierInput, ...] = ()
    display_name: str = ""


@dataclass(frozen=True)
class IdentifierView:
    kind: IdentifierKind
    masked_value: str
    verified: bool
    created_at: datetime


@dataclass(frozen=True)
class ProductAccountView:
    product: str
    account_id: str
    customer_id: str
    linked_at: datetime


@dataclass(frozen=True)
class CustomerView:
    customer_id: str
    state: CustomerState
    merged_into: str | None
    display_name: str
    product_accounts: list[ProductAccountView]
    identifiers: list[IdentifierView]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Registration:
    customer_id: str
    created: bool
    outcome: Outcome
    match_candidate_recorded: bool = False


@dataclass(frozen=True)
class Resolution:
    customer_id: str
    resolved_from_alias: bool = False
    alias_customer_id: str = ""


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_page_token: str = ""


@dataclass(frozen=True)
class MergeView:
    merge_id: str
    survivor_customer_id: str
    merged_customer_id: str
    reason: str
    evidence: dict[str, str]
    actor: str
    merged_at: datetime
    unmerged_at: datetime | None = None
    unmerge_reason: str = ""


@dataclass(frozen=True)
class ProductView:
    code: str
    display_name: str
    created_at: datetime


@dataclass(frozen=True)
class Lookup:
    """One way to find a customer: exactly one of the three is set."""

    customer_id: str = ""
    product_account: tuple[str, str] | None = None
    identifier: tuple[IdentifierKind, str] | None = field(default=None)
