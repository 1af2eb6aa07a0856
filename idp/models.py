"""Customers, their product accounts and identifiers, products, merges, match candidates.

No plaintext personal data: identifiers and display names are sealed with the
key ring (key ID beside the ciphertext); identifiers also carry an HMAC blind
index of their canonical form for exact lookups.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from singleid.db import Base, EncryptedColumn

ID_LENGTH = 26
KEY_ID_LENGTH = 32
DISPLAY_NAME_PURPOSE = "customer.display_name"


def identifier_purpose(kind: str) -> str:
    return f"identifier.{kind}"


class Product(Base):
    __tablename__ = "products"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]


class Customer(Base):
    __tablename__ = "customers"
    __encrypted__ = (
        EncryptedColumn("display_name_ciphertext", "display_name_key_id",
                        lambda _row: DISPLAY_NAME_PURPOSE),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))  # "active" or "merged"
    merged_into: Mapped[str | None] = mapped_column(ForeignKey("customers.id"), index=True)
    display_name_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    display_name_key_id: Mapped[str | None] = mapped_column(String(KEY_ID_LENGTH))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class ProductAccount(Base):
    __tablename__ = "product_accounts"
    __table_args__ = (UniqueConstraint("product_code", "account_id"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    product_code: Mapped[str] = mapped_column(ForeignKey("products.code"))
    account_id: Mapped[str] = mapped_column(String(128))
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    linked_at: Mapped[datetime]


class CustomerIdentifier(Base):
    __tablename__ = "customer_identifiers"
    __table_args__ = (
        UniqueConstraint("customer_id", "kind", "blind_index"),
        Index("ix_customer_identifiers_lookup", "kind", "blind_index"),
    )
    __encrypted__ = (
        EncryptedColumn("ciphertext", "key_id", lambda row: identifier_purpose(row.kind)),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"))
    kind: Mapped[str] = mapped_column(String(16))
    blind_index: Mapped[bytes] = mapped_column(LargeBinary(32))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    key_id: Mapped[str] = mapped_column(String(KEY_ID_LENGTH))
    verified: Mapped[bool]
    created_at: Mapped[datetime]


class Merge(Base):
    """A merge and what it moved, so that it can be undone exactly: the audit trail."""

    __tablename__ = "merges"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    survivor_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    merged_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    reason: Mapped[str] = mapped_column(String(500))
    evidence: Mapped[dict[str, str]] = mapped_column(JSON)
    actor: Mapped[str] = mapped_column(String(200))
    moved: Mapped[dict[str, Any]] = mapped_column(JSON)
    merged_at: Mapped[datetime]
    unmerged_at: Mapped[datetime | None]
    unmerge_reason: Mapped[str | None] = mapped_column(String(500))
    unmerge_actor: Mapped[str | None] = mapped_column(String(200))


class MatchCandidate(Base):
    """Two customers that share an identifier but were not joined: work for matching."""

    __tablename__ = "match_candidates"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    other_customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    identifier_kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))  # "open" until matching decides
    created_at: Mapped[datetime]
