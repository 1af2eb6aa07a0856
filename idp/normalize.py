"""Normalising the identifiers products know, to one canonical form each.

The canonical form is what the blind index is computed over, so two spellings
of one phone (``+7 916 123-45-67``, ``8 (916) 1234567``) find the same customer.
Pure functions; each raises :class:`NormalizationError` with a reason code.

Phones: ``phonenumbers`` with default region RU, stored as E.164. Country code
+7 is shared by Russia and Kazakhstan (7 6xx/7 7xx); both are valid and their
E.164 forms never collide, so a Kazakh number is kept as it is, not rejected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

import phonenumbers
from email_validator import EmailNotValidError, validate_email

MAX_RAW_LENGTH = 256
DEFAULT_REGION = "RU"


class IdentifierKind(StrEnum):
    PHONE = "phone"
    EMAIL = "email"
    PASSPORT = "passport"
    TELEGRAM = "telegram"
    VIBER = "viber"
    WHATSAPP = "whatsapp"


class NormalizationError(ValueError):
    def __init__(self, reason: str, description: str) -> None:
        super().__init__(description)
        self.reason = reason
        self.description = description


@dataclass(frozen=True)
class Canonical:
    kind: IdentifierKind
    value: str

    @property
    def masked(self) -> str:
        return mask(self.kind, self.value)


def normalize(kind: IdentifierKind, raw: str) -> Canonical:
    if len(raw) > MAX_RAW_LENGTH:
        raise NormalizationError("TOO_LONG", f"at most {MAX_RAW_LENGTH} characters")
    value = raw.strip()
    if not value:
        raise NormalizationError("REQUIRED", "must not be empty")
    return Canonical(kind, _NORMALIZERS[kind](value))


def normalize_phone(raw: str) -> str:
    try:
        number = phonenumbers.parse(raw, DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        raise NormalizationError("INVALID_PHONE", "not a phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise NormalizationError("INVALID_PHONE", "not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_email(raw: str) -> str:
    try:
        result = validate_email(raw, check_deliverability=False)
    except EmailNotValidError as exc:
        raise NormalizationError("INVALID_EMAIL", f"not a valid email address: {exc}") from None
    # Case-insensitive throughout: mailbox providers ignore the local part's case in practice.
    return result.normalized.lower()


_PASSPORT_NOISE = re.compile(r"[\s\-№N]+", re.IGNORECASE)


def normalize_passport(raw: str) -> str:
    """A Russian internal passport: 4-digit series and 6-digit number, as 10 digits."""
    digits = _PASSPORT_NOISE.sub("", raw)
    if not re.fullmatch(r"\d{10}", digits):
        raise NormalizationError("INVALID_PASSPORT",
                                 "expected a 4-digit series and a 6-digit number")
    if digits[:4] == "0000" or digits[4:] == "000000":
        raise NormalizationError("INVALID_PASSPORT", "series and number must not be zero")
    return digits


def normalize_telegram(raw: str) -> str:
    if not re.fullmatch(r"\d{1,20}", raw):
        raise NormalizationError("INVALID_TELEGRAM_ID", "expected a numeric Telegram user ID")
    return str(int(raw))


def normalize_viber(raw: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9+/=_-]{1,64}", raw):
        raise NormalizationError("INVALID_VIBER_ID", "expected a Viber user ID")
    return raw


_NORMALIZERS = {
    IdentifierKind.PHONE: normalize_phone,
    IdentifierKind.EMAIL: normalize_email,
    IdentifierKind.PASSPORT: normalize_passport,
    IdentifierKind.TELEGRAM: normalize_telegram,
    IdentifierKind.VIBER: normalize_viber,
    IdentifierKind.WHATSAPP: normalize_phone,
}


def mask(kind: IdentifierKind, value: str) -> str:
    """Enough to recognise an identifier on a screen, never the whole of it."""
    if kind in (IdentifierKind.PHONE, IdentifierKind.WHATSAPP):
        return value[:5] + "*" * (len(value) - 7) + value[-2:]
    if kind is IdentifierKind.EMAIL:
        local, _, domain = value.partition("@")
        return f"{local[0]}***@{domain}"
    if kind is IdentifierKind.PASSPORT:
        return f"{value[:2]}** ****{value[-2:]}"
    return "***" + value[-3:] if len(value) > 6 else "***"
