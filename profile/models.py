"""The profile's tables: profiles, their attributes, history, consents, merges, the relay lease.

No plaintext personal value is stored: personal and special attributes keep a
ciphertext (``singleid.keyring``, key ID beside it, the attribute's purpose as
associated data) and an HMAC blind index of the canonical value.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from singleid.db import Base, EncryptedColumn

ID_LENGTH = 26
KEY_ID_LENGTH = 32
NAME_LENGTH = 63
SOURCE_LENGTH = 32


def attribute_purpose(name: str) -> str:
    return f"profile.{name}"


class Profile(Base):
    """One row per customer that has a profile; ``version`` is the profile's ETag."""

    __tablename__ = "profiles"

    customer_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class ProfileAttribute(Base):
    __tablename__ = "profile_attributes"
    __encrypted__ = (EncryptedColumn("ciphertext", "key_id",
                                     lambda row: attribute_purpose(row.name)),)
    __table_args__ = (Index("ix_profile_attributes_name_blind_index", "name", "blind_index"),)

    customer_id: Mapped[str] = mapped_column(ForeignKey("profiles.customer_id"),
                                             primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    value: Mapped[Any | None] = mapped_column(JSON)  # ordinary attributes only
    ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)  # personal and special
    key_id: Mapped[str | None] = mapped_column(String(KEY_ID_LENGTH))
    blind_index: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    source: Mapped[str] = mapped_column(String(SOURCE_LENGTH))
    source_time: Mapped[datetime]
    version: Mapped[int] = mapped_column(BigInteger)  # the profile version that wrote it
    updated_at: Mapped[datetime]


class AttributeChange(Base):
    """Who changed what and when. Sensitive values are never kept here: only that they changed."""

    __tablename__ = "profile_attribute_history"
    __table_args__ = (Index("ix_profile_attribute_history_customer", "customer_id", "name", "id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"),
                                    primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    kind: Mapped[str] = mapped_column(String(16))  # set, erased, merged, unmerged
    source: Mapped[str] = mapped_column(String(SOURCE_LENGTH))
    source_time: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(BigInteger)
    changed_at: Mapped[datetime]
    old_value: Mapped[Any | None] = mapped_column(JSON)  # ordinary attributes only
    new_value: Mapped[Any | None] = mapped_column(JSON)
    sensitive: Mapped[bool]
    redacted: Mapped[bool] = mapped_column(default=False)
    reason: Mapped[str | None] = mapped_column(Text)


class Consent(Base):
    """The current state of one consent purpose for one customer."""

    __tablename__ = "profile_consents"

    customer_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(100), primary_key=True)
    granted: Mapped[bool]
    text_version: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(64))
    changed_at: Mapped[datetime]
    version: Mapped[int] = mapped_column(BigInteger)


class ProfileMerge(Base):
    """What a customer merge changed in the survivor's profile, so the un-merge can restore it."""

    __tablename__ = "profile_merges"

    merge_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    survivor_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    merged_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    version: Mapped[int] = mapped_column(BigInteger)  # the survivor's version the merge wrote
    replaced: Mapped[dict[str, Any]] = mapped_column(JSON)  # name -> the survivor's old row
    merged_at: Mapped[datetime]
    unmerged_at: Mapped[datetime | None]


class RelayLease(Base):
    """One active relay across every worker: whoever holds an unexpired lease publishes."""

    __tablename__ = "profile_relay_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime]
