"""A legacy account as it comes in (the contract columns), and as it is compared.

:class:`LegacyRow` holds the raw strings; :func:`person_from_row` normalises
them into a :class:`Person` (or raises :class:`FieldError` naming the field);
:class:`Features` precomputes what the comparisons read, once per record.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import date
from typing import Any

from singleid.matching import names, normalize, translit
from singleid.matching.normalize import FieldError

CONTRACT_COLUMNS = ("account_id", "last_name", "first_name", "middle_name", "birth_date",
                    "phone", "email", "passport", "address", "city", "created_at",
                    "password_hash")
MAX_FIELD_LENGTH = 256
MAX_ACCOUNT_ID = 128


@dataclass(frozen=True)
class LegacyRow:
    account_id: str = ""
    last_name: str = ""
    first_name: str = ""
    middle_name: str = ""
    birth_date: str = ""
    phone: str = ""
    email: str = ""
    passport: str = ""
    address: str = ""
    city: str = ""
    created_at: str = ""
    password_hash: str = ""

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> LegacyRow:
        known = {f.name for f in fields(cls)}
        return cls(**{k: "" if v is None else str(v) for k, v in values.items() if k in known})


@dataclass(frozen=True)
class Person:
    """The normalised values that matching compares (no account ID, no password)."""

    last_name: str = ""
    first_name: str = ""
    middle_name: str = ""
    birth_date: str = ""  # ISO 8601
    phone: str = ""       # E.164
    email: str = ""
    passport: str = ""    # 10 digits
    address: str = ""
    city: str = ""

    def to_dict(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if v}

    @classmethod
    def from_dict(cls, values: dict[str, str]) -> Person:
        return cls(**values)

    @property
    def display_name(self) -> str:
        return " ".join(p for p in (self.last_name, self.first_name, self.middle_name) if p)


def person_from_row(row: LegacyRow, *, today: date | None = None) -> Person:
    """Normalise a row; the first unreadable field raises :class:`FieldError`."""
    for column in CONTRACT_COLUMNS:
        if len(getattr(row, column)) > MAX_FIELD_LENGTH:
            raise FieldError(column, "TOO_LONG", f"at most {MAX_FIELD_LENGTH} characters")
    if not row.account_id.strip():
        raise FieldError("account_id", "REQUIRED", "must not be empty")
    if len(row.account_id.strip()) > MAX_ACCOUNT_ID:
        raise FieldError("account_id", "TOO_LONG", f"at most {MAX_ACCOUNT_ID} characters")
    last, first, middle = (names.normalize_name(row.last_name), names.normalize_name(
        row.first_name), names.normalize_name(row.middle_name))
    if first and not last and not middle and " " in first:  # a whole "ФИО" in one column
        full = names.split_full_name(first)
        last, first, middle = full.last, full.first, full.middle
    born = normalize.birth_date(row.birth_date, today=today)
    person = Person(
        last_name=last, first_name=first, middle_name=middle,
        birth_date=born.isoformat() if born else "",
        phone=normalize.phone(row.phone) or "", email=normalize.email(row.email) or "",
        passport=normalize.passport(row.passport) or "",
        address=normalize.address(row.address) or "", city=normalize.city(row.city) or "")
    if not any((person.last_name, person.first_name, person.phone, person.email,
                person.passport)):
        raise FieldError("last_name", "NOTHING_TO_MATCH",
                         "a row needs a name, a phone, an email or a passport")
    return person


@dataclass(frozen=True, slots=True)
class Features:
    """What the comparisons read, computed once per record."""

    person: Person
    first: str
    first_full: str        # the full form of the first name (Саша -> александр), skeleton
    first_forms: frozenset[str]  # every full form it may stand for (Тима: Тимофей, Тимур)
    first_skel: str
    first_cyr: str               # in Cyrillic, read back from Latin
    first_spellings: frozenset[str]  # its full forms and their diminutives, in Cyrillic
    first_known: bool            # a name the diminutives table knows (not a typo)
    last: str
    last_skel: str
    last_phon: str
    middle_skel: str
    birth: date | None
    gender: names.Gender

    @classmethod
    def of(cls, person: Person) -> Features:
        full = names.canonical_first_name(person.first_name)
        return cls(
            person=person, first=person.first_name,
            first_full=translit.skeleton(full) if full else "",
            first_forms=frozenset(translit.skeleton(f) for f in names.full_forms(
                person.first_name)),
            first_skel=translit.skeleton(person.first_name),
            first_cyr=names.cyrillic_form(person.first_name),
            first_spellings=names.spellings(person.first_name),
            first_known=names.is_known(person.first_name),
            last=person.last_name, last_skel=translit.skeleton(person.last_name),
            last_phon=translit.phonetic(person.last_name),
            middle_skel=translit.skeleton(person.middle_name),
            birth=date.fromisoformat(person.birth_date) if person.birth_date else None,
            gender=names.gender_of(person.first_name, person.middle_name, person.last_name))
