"""Voiceprints, replay fingerprints, attempts, watchlist; the consent feed's cursor.

Templates, fingerprints and watchlist embeddings are sealed with the key ring
(key ID beside each ciphertext; the purpose bound as associated data). No raw
audio is stored. Customer IDs are the idp's central IDs; this domain keeps no
foreign key to the idp's tables (it reaches the idp through its service only).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from singleid.db import Base, EncryptedColumn

ID_LENGTH = 26
KEY_ID_LENGTH = 32
TEMPLATE_PURPOSE = "voiceprint.template"
FINGERPRINT_PURPOSE = "voiceprint.fingerprint"
WATCHLIST_PURPOSE = "voiceprint.watchlist"


class Voiceprint(Base):
    __tablename__ = "voiceprints"
    __encrypted__ = (
        EncryptedColumn("template_ciphertext", "template_key_id", lambda _row: TEMPLATE_PURPOSE),
    )

    customer_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    model_id: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[str] = mapped_column(String(64))
    template_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    template_key_id: Mapped[str] = mapped_column(String(KEY_ID_LENGTH))
    utterance_count: Mapped[int]
    net_speech_seconds: Mapped[float]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class ConsentFeedCursor(Base):
    """How far this domain has read the profile's consent events (its resume token)."""

    __tablename__ = "voiceprint_consent_feed"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    token: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime]


class VoiceFingerprint(Base):
    """An audio fingerprint of an enrollment or verification recording, for replay checks."""

    __tablename__ = "voiceprint_fingerprints"
    __table_args__ = (Index("ix_voiceprint_fingerprints_customer", "customer_id", "id"),)
    __encrypted__ = (
        EncryptedColumn("ciphertext", "key_id", lambda _row: FINGERPRINT_PURPOSE),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    kind: Mapped[str] = mapped_column(String(16))  # "enroll" or "verify"
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    key_id: Mapped[str] = mapped_column(String(KEY_ID_LENGTH))
    created_at: Mapped[datetime]


class VoiceAttempt(Base):
    """One verification attempt, for the rate limits per customer and per call."""

    __tablename__ = "voiceprint_attempts"
    __table_args__ = (
        Index("ix_voiceprint_attempts_customer", "customer_id", "created_at"),
        Index("ix_voiceprint_attempts_call", "call_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    call_id: Mapped[str] = mapped_column(String(128))
    outcome: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]


class WatchlistEntry(Base):
    __tablename__ = "voiceprint_watchlist"
    __encrypted__ = (
        EncryptedColumn("embedding_ciphertext", "embedding_key_id",
                        lambda _row: WATCHLIST_PURPOSE),
    )

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    label: Mapped[str] = mapped_column(String(200))
    model_id: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[str] = mapped_column(String(64))
    embedding_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    embedding_key_id: Mapped[str] = mapped_column(String(KEY_ID_LENGTH))
    created_at: Mapped[datetime]
