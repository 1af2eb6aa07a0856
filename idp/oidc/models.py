"""Tables of the OpenID Connect provider.

Nothing secret is stored in the clear: signing keys are sealed with the key
ring, client secrets, codes, tokens and session IDs are stored as SHA-256
digests (they are 256-bit random values, so a fast hash is enough), passwords
as argon2id (or, until their owner links them, the legacy hash they came with).
Identifiers are found by the same HMAC blind index as the customer records.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from singleid.db import Base, EncryptedColumn

ID_LENGTH = 26
KEY_ID_LENGTH = 32
URI_LENGTH = 2000


def signing_key_purpose(kid: str) -> str:
    return f"oidc.signing_key.{kid}"


class SigningKey(Base):
    """An ID-token signing key. A rotation adds a generation; the newest two are published."""

    __tablename__ = "oidc_signing_keys"
    # Two processes creating the first keys (or rotating) at once: one wins, one retries.
    __table_args__ = (UniqueConstraint("generation", "alg"),)
    __encrypted__ = (
        EncryptedColumn("private_ciphertext", "private_key_id",
                        lambda row: signing_key_purpose(row.kid)),
    )

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(8))
    generation: Mapped[int] = mapped_column(Integer, index=True)
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    private_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    private_key_id: Mapped[str] = mapped_column(String(KEY_ID_LENGTH))
    created_at: Mapped[datetime]


class Client(Base):
    __tablename__ = "oidc_clients"

    client_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    secret_digest: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    public: Mapped[bool]
    redirect_uris: Mapped[list[str]] = mapped_column(JSON)
    post_logout_redirect_uris: Mapped[list[str]] = mapped_column(JSON)
    grant_types: Mapped[list[str]] = mapped_column(JSON)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    token_endpoint_auth_method: Mapped[str] = mapped_column(String(32))
    jwks: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    id_token_signed_response_alg: Mapped[str] = mapped_column(String(8))
    backchannel_logout_uri: Mapped[str | None] = mapped_column(String(URI_LENGTH))
    created_at: Mapped[datetime]


class Grant(Base):
    """What one authorization (or one client-credentials issuance) gave; revoked as a whole."""

    __tablename__ = "oidc_grants"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("oidc_clients.client_id"), index=True)
    customer_id: Mapped[str | None] = mapped_column(String(ID_LENGTH), index=True)
    sid: Mapped[str | None] = mapped_column(String(32), index=True)
    scope: Mapped[str] = mapped_column(String(1000))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class AuthorizationCode(Base):
    __tablename__ = "oidc_codes"

    digest: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    grant_id: Mapped[str] = mapped_column(ForeignKey("oidc_grants.id"), index=True)
    client_id: Mapped[str] = mapped_column(String(128))
    customer_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    redirect_uri: Mapped[str] = mapped_column(String(URI_LENGTH))
    scope: Mapped[str] = mapped_column(String(1000))
    nonce: Mapped[str | None] = mapped_column(String(512))
    code_challenge: Mapped[str | None] = mapped_column(String(128))
    code_challenge_method: Mapped[str | None] = mapped_column(String(8))
    auth_time: Mapped[datetime]
    acr: Mapped[str] = mapped_column(String(64))
    amr: Mapped[list[str]] = mapped_column(JSON)
    sid: Mapped[str | None] = mapped_column(String(32))
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class Token(Base):
    __tablename__ = "oidc_tokens"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    # Client-credentials tokens belong to no grant.
    grant_id: Mapped[str | None] = mapped_column(ForeignKey("oidc_grants.id"), index=True)
    client_id: Mapped[str] = mapped_column(String(128))
    customer_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    scope: Mapped[str] = mapped_column(String(1000))
    access_digest: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    refresh_digest: Mapped[bytes | None] = mapped_column(LargeBinary(32), unique=True)
    issued_at: Mapped[datetime]
    access_expires_at: Mapped[datetime]
    refresh_expires_at: Mapped[datetime | None]
    refresh_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class Login(Base):
    """An ecosystem login: a phone or email and an argon2id password, for one customer."""

    __tablename__ = "oidc_logins"
    __table_args__ = (UniqueConstraint("kind", "blind_index"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(String(ID_LENGTH), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    blind_index: Mapped[bytes] = mapped_column(LargeBinary(32))
    password_hash: Mapped[str] = mapped_column(String(512))
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class LegacyLogin(Base):
    """A product account's login from a legacy system, with its old password hash.

    It signs nobody in to the ecosystem until its owner agrees (``consented_at``);
    then the password is rehashed into an ecosystem :class:`Login`.
    """

    __tablename__ = "oidc_legacy_logins"
    __table_args__ = (
        UniqueConstraint("product_code", "account_id", "kind"),
        Index("ix_oidc_legacy_logins_lookup", "kind", "blind_index"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    product_code: Mapped[str] = mapped_column(String(32))
    account_id: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))
    blind_index: Mapped[bytes] = mapped_column(LargeBinary(32))
    hash_format: Mapped[str] = mapped_column(String(32))
    password_hash: Mapped[str | None] = mapped_column(String(512))
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None]
    consented_at: Mapped[datetime | None]
    consent_text_version: Mapped[str | None] = mapped_column(String(32))
    login_id: Mapped[int | None] = mapped_column(ForeignKey("oidc_logins.id"))
    created_at: Mapped[datetime]


class PendingLink(Base):
    """A verified legacy sign-in waiting for its owner's answer; holds the argon2id rehash."""

    __tablename__ = "oidc_pending_links"

    digest: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    legacy_login_id: Mapped[int] = mapped_column(ForeignKey("oidc_legacy_logins.id"))
    password_hash: Mapped[str] = mapped_column(String(512))
    expires_at: Mapped[datetime]


class IpThrottle(Base):
    """Failed sign-ins from one client address in the current window."""

    __tablename__ = "oidc_ip_throttle"

    address: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_start: Mapped[datetime]
    failures: Mapped[int] = mapped_column(Integer)
    locked_until: Mapped[datetime | None]


class BrowserSession(Base):
    __tablename__ = "oidc_sessions"

    digest: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    sid: Mapped[str] = mapped_column(String(32), unique=True)
    customer_id: Mapped[str] = mapped_column(String(ID_LENGTH), index=True)
    auth_time: Mapped[datetime]
    acr: Mapped[str] = mapped_column(String(64))
    amr: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]


class SessionClient(Base):
    """A client that was given tokens in a session: told by back-channel when it ends."""

    __tablename__ = "oidc_session_clients"

    sid: Mapped[str] = mapped_column(String(32), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(128), primary_key=True)


class Consent(Base):
    __tablename__ = "oidc_consents"

    customer_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    granted_at: Mapped[datetime]


def staff_totp_purpose(login: str) -> str:
    return f"oidc.staff_totp.{login}"


class Staff(Base):
    """An operator or administrator: a person who works on singleid, never a customer.

    The login name is the staff member's identity (in sessions, review decisions and
    the audit trail); a login is disabled, never deleted, so it is never reused.
    """

    __tablename__ = "oidc_staff"
    __encrypted__ = (
        EncryptedColumn("totp_ciphertext", "totp_key_id",
                        lambda row: staff_totp_purpose(row.login)),
    )

    login: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(512))
    totp_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    totp_key_id: Mapped[str] = mapped_column(String(KEY_ID_LENGTH))
    # The last TOTP time step accepted: a code is good once (RFC 6238, section 5.2).
    totp_last_step: Mapped[int] = mapped_column(Integer, default=0)
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None]
    disabled_at: Mapped[datetime | None]
    created_at: Mapped[datetime]


class StaffSession(Base):
    """A staff member's browser session, apart from customers' so neither passes as the other.

    ``amr`` is ["pwd"] between the password and the second factor, ["pwd", "otp"] after.
    """

    __tablename__ = "oidc_staff_sessions"

    digest: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    sid: Mapped[str] = mapped_column(String(32), unique=True)
    login: Mapped[str] = mapped_column(ForeignKey("oidc_staff.login"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    amr: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]


class ClientAssertion(Base):
    """A private_key_jwt assertion already accepted, kept until it expires (replay check).

    The primary key is the unique constraint: of two processes accepting the same
    assertion at once, the second insert fails. The ``jti`` is the client's choice of
    any length, so its SHA-256 digest is the key.
    """

    __tablename__ = "oidc_client_assertions"

    client_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    jti_digest: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)
