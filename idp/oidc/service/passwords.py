"""Password hashing: argon2id for ecosystem logins, and the legacy formats products bring.

Legacy formats (the string a product exports, as it is):

``bcrypt``
    The modular-crypt string ``$2a$``/``$2b$``/``$2y$``, cost and salt inside,
    e.g. ``$2b$12$…`` (60 characters). Only the first 72 bytes of a password
    count, as in every bcrypt implementation.
``pbkdf2_sha256``, ``pbkdf2_sha512``
    Django's layout: ``pbkdf2_sha256$<iterations>$<salt>$<base64 derived key>``
    (``pbkdf2_sha512$…`` likewise); the salt is the text between the dollars,
    taken as UTF-8 bytes; the derived key is as long as the digest.
``salted_sha256``
    ``sha256$<salt, hex>$<hex of SHA-256(salt bytes + UTF-8 password)>``.

Every comparison is constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from enum import StrEnum

import bcrypt
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

# OWASP's argon2id minimum: m = 19 MiB, t = 2, p = 1.
ARGON2_MEMORY_KIB = 19 * 1024
ARGON2_TIME_COST = 2
ARGON2_PARALLELISM = 1
BCRYPT_MAX_BYTES = 72
MAX_PASSWORD_LENGTH = 1024
MIN_PASSWORD_LENGTH = 8

_hasher = PasswordHasher(time_cost=ARGON2_TIME_COST, memory_cost=ARGON2_MEMORY_KIB,
                         parallelism=ARGON2_PARALLELISM, type=Type.ID)
# A hash of nothing in particular, verified when an account is unknown, so that
# an unknown identifier costs the same time as a wrong password.
_DUMMY_HASH = _hasher.hash("singleid-no-such-account")


class LegacyFormat(StrEnum):
    BCRYPT = "bcrypt"
    PBKDF2_SHA256 = "pbkdf2_sha256"
    PBKDF2_SHA512 = "pbkdf2_sha512"
    SALTED_SHA256 = "salted_sha256"


class MalformedHash(ValueError):
    """A legacy hash that does not follow its documented format."""


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def burn_time(password: str) -> None:
    """Spend what a real verification would, for an identifier nobody has."""
    verify_password(_DUMMY_HASH, password)


def check_legacy_format(hash_format: LegacyFormat, stored: str) -> None:
    """Raise :class:`MalformedHash` unless ``stored`` follows ``hash_format``'s layout."""
    if hash_format is LegacyFormat.BCRYPT:
        if not (stored.startswith(("$2a$", "$2b$", "$2y$")) and len(stored) == 60):
            raise MalformedHash("bcrypt: expected a 60-character $2a$/$2b$/$2y$ string")
    elif hash_format in (LegacyFormat.PBKDF2_SHA256, LegacyFormat.PBKDF2_SHA512):
        parts = stored.split("$")
        if len(parts) != 4 or parts[0] != hash_format.value or not parts[1].isdigit():
            raise MalformedHash(f"{hash_format}: expected {hash_format}$<iterations>$<salt>$<b64>")
        try:
            base64.b64decode(parts[3], validate=True)
        except ValueError:
            raise MalformedHash(f"{hash_format}: the derived key is not base64") from None
    else:
        parts = stored.split("$")
        if len(parts) != 3 or parts[0] != "sha256" or len(parts[2]) != 64:
            raise MalformedHash("salted_sha256: expected sha256$<salt hex>$<64 hex digits>")
        try:
            bytes.fromhex(parts[1])
            bytes.fromhex(parts[2])
        except ValueError:
            raise MalformedHash("salted_sha256: salt and digest must be hex") from None


def detect_legacy_format(stored: str) -> LegacyFormat:
    """The format a legacy hash is written in, by its layout; :class:`MalformedHash` if none.

    bcrypt starts ``$2a$``/``$2b$``/``$2y$``; PBKDF2 ``pbkdf2_sha256$`` or
    ``pbkdf2_sha512$``; salted SHA-256 ``sha256$``.
    """
    if stored.startswith("$2"):
        hash_format = LegacyFormat.BCRYPT
    elif stored.startswith(f"{LegacyFormat.PBKDF2_SHA256}$"):
        hash_format = LegacyFormat.PBKDF2_SHA256
    elif stored.startswith(f"{LegacyFormat.PBKDF2_SHA512}$"):
        hash_format = LegacyFormat.PBKDF2_SHA512
    elif stored.startswith("sha256$"):
        hash_format = LegacyFormat.SALTED_SHA256
    else:
        raise MalformedHash("not a known legacy format: bcrypt ($2b$...), "
                            "pbkdf2_sha256$..., pbkdf2_sha512$... or sha256$<salt>$<digest>")
    check_legacy_format(hash_format, stored)
    return hash_format


def verify_legacy(hash_format: LegacyFormat, stored: str, password: str) -> bool:
    try:
        check_legacy_format(hash_format, stored)
    except MalformedHash:
        return False
    secret = password.encode()
    if hash_format is LegacyFormat.BCRYPT:
        return bcrypt.checkpw(secret[:BCRYPT_MAX_BYTES], stored.encode())
    if hash_format in (LegacyFormat.PBKDF2_SHA256, LegacyFormat.PBKDF2_SHA512):
        _, iterations, salt, encoded = stored.split("$")
        digest = "sha256" if hash_format is LegacyFormat.PBKDF2_SHA256 else "sha512"
        expected = base64.b64decode(encoded)
        derived = hashlib.pbkdf2_hmac(digest, secret, salt.encode(), int(iterations),
                                      dklen=len(expected))
        return hmac.compare_digest(derived, expected)
    _, salt_hex, digest_hex = stored.split("$")
    computed = hashlib.sha256(bytes.fromhex(salt_hex) + secret).hexdigest()
    return hmac.compare_digest(computed, digest_hex.lower())


def make_legacy_hash(hash_format: LegacyFormat, password: str, *, salt: bytes = b"",
                     iterations: int = 100_000) -> str:
    """Produce a hash in a legacy format: for tests and for tools that import accounts."""
    secret = password.encode()
    if hash_format is LegacyFormat.BCRYPT:
        return bcrypt.hashpw(secret[:BCRYPT_MAX_BYTES], bcrypt.gensalt(rounds=10)).decode()
    if hash_format in (LegacyFormat.PBKDF2_SHA256, LegacyFormat.PBKDF2_SHA512):
        digest = "sha256" if hash_format is LegacyFormat.PBKDF2_SHA256 else "sha512"
        salt_text = (salt or b"legacysalt").decode()
        derived = hashlib.pbkdf2_hmac(digest, secret, salt_text.encode(), iterations)
        return f"{hash_format}${iterations}${salt_text}${base64.b64encode(derived).decode()}"
    salt = salt or b"\x01\x02\x03\x04"
    return f"sha256${salt.hex()}${hashlib.sha256(salt + secret).hexdigest()}"
