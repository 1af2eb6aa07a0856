"""Matching's tables: legacy accounts, their blocking keys, credentials, pairs, the model.

No plaintext personal data: a legacy account's normalised values are one sealed
JSON document (key ID beside it); blocking keys are HMAC blind indexes; the
fitted model (which holds term frequencies of names) is sealed too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from singleid.db import Base, EncryptedColumn

ID_LENGTH = 26
KEY_ID_LENGTH = 32
PERSON_PURPOSE = "matching.person"
PASSWORD_PURPOSE = "matching.legacy_password_hash"  # noqa: S105 - a label, not a secret
MODEL_PURPOSE = "matching.model"
BLOCK_PURPOSE = "matching.block"
CONTENT_PURPOSE = "matching.content"


class LegacyAccount(Base):
    """One imported (or registered) account and the central ID it was given."""

    __tablename__ = "matching_accounts"
    __table_args__ = (UniqueConstraint("product_code", "account_id"),)
    __encrypted__ = (
        EncryptedColumn("person_ciphertext", "person_key_id", lambda _row: PERSON_PURPOSE),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    product_code: Mapped[str] = mapped_column(String(32))
    account_id: Mapped[str] = mapped_column(String(128))
    customer_id: Mapped[str] = mapped_column(String(ID_LENGTH), index=True)
    source: Mapped[str] = mapped_column(String(16))  # "import" or "registration"
    person_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    person_key_id: Mapped[str] = mapped_column(String(KEY_ID_LENGTH))
    content_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    matched_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class BlockKey(Base):
    __tablename__ = "matching_block_keys"
    __table_args__ = (Index("ix_matching_block_keys_key", "block_key"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    account_pk: Mapped[int] = mapped_column(ForeignKey("matching_accounts.id"), index=True)
    block_key: Mapped[bytes] = mapped_column(LargeBinary(32))


class LegacyCredential(Base):
    """A legacy password hash, kept sealed for the idp's legacy logins."""

    __tablename__ = "matching_legacy_credentials"
    __table_args__ = (UniqueConstraint("product_code", "account_id"),)
    __encrypted__ = (
        EncryptedColumn("hash_ciphertext", "hash_key_id", lambda _row: PASSWORD_PURPOSE),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    product_code: Mapped[str] = mapped_column(String(32))
    account_id: Mapped[str] = mapped_column(String(128))
    customer_id: Mapped[str] = mapped_column(String(ID_LENGTH), index=True)
    hash_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    hash_key_id: Mapped[str] = mapped_column(String(KEY_ID_LENGTH))
    created_at: Mapped[datetime]


class MatchPair(Base):
    """A scored pair of accounts and what became of it: the review queue and its memory.

    ``status``: "review" (waiting), "skipped" (an operator passed; back of the
    queue), "auto_merged", "merged" (by an operator), "not_same" (remembered:
    never proposed or merged again), "unmerged".
    """

    __tablename__ = "matching_pairs"
    __table_args__ = (
        UniqueConstraint("account_a", "account_b"),
        Index("ix_matching_pairs_queue", "status", "probability"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    account_a: Mapped[int] = mapped_column(ForeignKey("matching_accounts.id"))
    account_b: Mapped[int] = mapped_column(ForeignKey("matching_accounts.id"), index=True)
    probability: Mapped[float] = mapped_column(Float)
    match_weight: Mapped[float] = mapped_column(Float)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    operator: Mapped[str | None] = mapped_column(String(200))
    merge_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    created_at: Mapped[datetime]
    decided_at: Mapped[datetime | None]


class FittedModel(Base):
    """The Fellegi-Sunter parameters in use (the newest row wins)."""

    __tablename__ = "matching_models"
    __encrypted__ = (
        EncryptedColumn("ciphertext", "key_id", lambda _row: MODEL_PURPOSE),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    key_id: Mapped[str] = mapped_column(String(KEY_ID_LENGTH))
    records: Mapped[int]
    created_at: Mapped[datetime]
