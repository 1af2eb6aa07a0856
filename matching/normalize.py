"""Normalising the other fields of a legacy account: dates, phones, emails, passports, addresses.

Pure functions. Phones, emails and passports reuse the idp's normalisers
(:mod:`singleid.idp.normalize`), so a matched value is the same canonical
value the idp indexes. Each returns None for an empty value and raises
:class:`FieldError` (naming the field) for one it cannot read.

Phones and +7: Russia and Kazakhstan share the country code. phonenumbers
tells them apart by the national prefix (Kazakh mobiles are 7 6xx and 7 7xx);
both are valid and their E.164 forms never collide, so a Kazakh number is
matched as it is. :func:`phone_region` says which country a number is in.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Final

import phonenumbers

from singleid.idp.normalize import (
    NormalizationError,
    normalize_email,
    normalize_passport,
    normalize_phone,
)


class FieldError(ValueError):
    """A value that cannot be read; ``field`` names it, ``reason`` is UPPER_SNAKE."""

    def __init__(self, field: str, reason: str, description: str) -> None:
        super().__init__(f"{field}: {description}")
        self.field = field
        self.reason = reason
        self.description = description


def phone(raw: str, field: str = "phone") -> str | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        return normalize_phone(raw)
    except NormalizationError as exc:
        raise FieldError(field, exc.reason, exc.description) from None


def phone_region(e164: str) -> str:
    """ISO region of a normalised number: "RU", "KZ", ... (+7 is both)."""
    return phonenumbers.region_code_for_number(phonenumbers.parse(e164)) or ""


def email(raw: str, field: str = "email") -> str | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        value = normalize_email(raw)
    except NormalizationError as exc:
        raise FieldError(field, exc.reason, "not a valid email address") from None
    local, _, domain = value.partition("@")
    if domain in ("googlemail.com", "gmail.com"):  # Gmail ignores dots and +tags
        local, domain = local.split("+", 1)[0].replace(".", ""), "gmail.com"
    return f"{local}@{domain}"


def passport(raw: str, field: str = "passport") -> str | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        return normalize_passport(raw)
    except NormalizationError as exc:
        raise FieldError(field, exc.reason, exc.description) from None


# -- dates ------------------------------------------------------------------

_MONTHS: Final = {
    "январ": 1, "феврал": 2, "март": 3, "апрел": 4, "ма": 5, "июн": 6, "июл": 7,
    "август": 8, "сентябр": 9, "октябр": 10, "ноябр": 11, "декабр": 12,
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6, "jul": 7, "aug": 8,
    "sep": 9, "oct": 10, "nov": 11, "dec": 12,
}
# Longest stem first, so that "ма" (May) does not take "март".
_MONTH_STEMS: Final = sorted(_MONTHS.items(), key=lambda kv: -len(kv[0]))
_ISO = re.compile(r"(\d{4})[-./](\d{1,2})[-./](\d{1,2})(?:[t ].*)?")
_DMY = re.compile(r"(\d{1,2})[-./ ](\d{1,2})[-./ ](\d{4}|\d{2})")
_COMPACT = re.compile(r"(\d{4})(\d{2})(\d{2})")
_WORDS = re.compile(r"(\d{1,2})\s+([a-zа-яё]+)\.?\s+(\d{4})(?:\s*г\.?)?")
EARLIEST_BIRTH_YEAR = 1900


def birth_date(raw: str, *, today: date | None = None, field: str = "birth_date") -> date | None:
    """A birth date in any of the formats legacy systems wrote.

    2024-03-05, 05.03.1985, 5/3/1985, 05-03-85 (two-digit years pivot on today),
    19850305, "5 марта 1985 г.", "5 Mar 1985". Day first wherever it is ambiguous
    (the Russian convention); :func:`date_candidates` offers the swap.
    """
    text = raw.strip().lower()
    if not text:
        return None
    today = today or date.today()
    year = month = day = 0
    if (m := _ISO.fullmatch(text)) or (m := _COMPACT.fullmatch(text)):
        year, month, day = int(m[1]), int(m[2]), int(m[3])
    elif m := _DMY.fullmatch(text):
        day, month, year = int(m[1]), int(m[2]), int(m[3])
        if len(m[3]) == 2:
            year += 2000 if 2000 + year <= today.year else 1900
    elif m := _WORDS.fullmatch(text):
        day, year = int(m[1]), int(m[3])
        word = m[2].replace("ё", "е")
        month = next((n for stem, n in _MONTH_STEMS
                      if word.startswith(stem)), 0)
    else:
        raise FieldError(field, "INVALID_DATE", "not a date (try YYYY-MM-DD or DD.MM.YYYY)")
    try:
        value = date(year, month, day)
    except ValueError:
        raise FieldError(field, "INVALID_DATE", "no such calendar date") from None
    if not value.year >= EARLIEST_BIRTH_YEAR or value > today:
        raise FieldError(field, "IMPLAUSIBLE_DATE", "outside 1900 to today")
    return value


def date_candidates(value: date) -> list[date]:
    """The date, and the day/month swap when that is a date too (05.03 vs 03.05)."""
    out = [value]
    if value.day <= 12 and value.day != value.month:
        out.append(value.replace(month=value.day, day=value.month))
    return out


# -- addresses ----------------------------------------------------------------

_ABBREVIATIONS: Final = [
    (r"\bгород\b|\bг\b", "г"), (r"\bулица\b|\bул\b", "ул"), (r"\bпроспект\b|\bпр-?т\b", "пр"),
    (r"\bпереулок\b|\bпер\b", "пер"), (r"\bбульвар\b|\bб-р\b", "бул"),
    (r"\bшоссе\b|\bш\b", "ш"), (r"\bплощадь\b|\bпл\b", "пл"), (r"\bнабережная\b|\bнаб\b", "наб"),
    (r"\bдом\b|\bд\b", "д"), (r"\bкорпус\b|\bкорп\b|\bк\b", "к"), (r"\bстроение\b|\bстр\b", "с"),
    (r"\bквартира\b|\bкв\b", "кв"), (r"\bобласть\b|\bобл\b", "обл"),
    (r"\bпоселок\b|\bпос\b|\bп\b", "п"), (r"\bдеревня\b|\bдер\b", "дер"),
]
_ABBREVIATION_RULES = [(re.compile(p), r) for p, r in _ABBREVIATIONS]


def address(raw: str) -> str | None:
    """Light cleanup: case, ё, punctuation, the usual abbreviations, no postcode.

    ``"г. Москва, ул. Ленина, д. 5, кв. 12"`` → ``"г москва ул ленина д 5 кв 12"``.
    """
    text = raw.strip().lower().replace("ё", "е")
    if not text:
        return None
    text = re.sub(r"\b\d{6}\b", " ", text)            # the postcode
    text = re.sub(r"(\d)(к|корп|с|стр)(?=\d)", r"\1 \2", text)  # "5к2" -> "5 к2"; 5а stays
    text = re.sub(r"\bпр-к?т\b", "пр", text)
    text = re.sub(r"\bб-р\b", "бул", text)
    text = re.sub(r"[^\w/]+", " ", text)
    text = re.sub(r"\b(д|дом|кв|квартира|корп|корпус)(?=\d)", r"\1 ", text)  # "кв12" -> "кв 12"
    for pattern, replacement in _ABBREVIATION_RULES:
        text = pattern.sub(replacement, text)
    text = re.sub(r"\s+", " ", text).strip()
    return text or None


def city(raw: str) -> str | None:
    text = address(raw)
    if text is None:
        return None
    text = re.sub(r"^(?:г|п|дер) ", "", text)
    return {"спб": "санкт-петербург", "санкт петербург": "санкт-петербург",
            "питер": "санкт-петербург", "мск": "москва"}.get(text, text)
