"""Normalising personal names: case, ё, whitespace, hyphens, patronymics, diminutives.

Pure functions. The comparison keys (skeleton, phonetic) live in
:mod:`singleid.matching.translit`; this module decides what the name *is*.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from singleid.matching import translit
from singleid.matching.diminutives import FULL_FORM, FULL_FORMS

_SPACES = re.compile(r"\s+")
_HYPHEN_SPACES = re.compile(r"\s*[-\u2010-\u2015\u2212]+\s*")
_NOT_NAME = re.compile(r"[^a-zа-я\u00c0-\u024f' -]")
_PATRONYMIC = re.compile(r"(?:ович|евич|ич|овна|евна|ична|инична)$"
                         r"|(?:ovich|evich|ovna|evna|ichna|yevich|yevna)$")
_TURKIC_PATRONYMIC = ("оглы", "кызы", "улы", "ogly", "kyzy", "uly")
_FEMALE_PATRONYMIC = re.compile(r"(?:вна|чна|кызы|vna|chna|kyzy)$")
_FEMALE_SURNAME = re.compile(r"(?:ова|ева|ёва|ина|ына|ская|цкая|ая|ova|eva|ina|yna|skaya|"
                             r"skaia|aya|aia)$")


class Gender(StrEnum):
    FEMALE = "f"
    MALE = "m"
    UNKNOWN = ""


def normalize_name(raw: str) -> str:
    """Lower case, ё→е, one space between words, no spaces around hyphens, no noise.

    ``"  ПЕТРОВА -  водкина "`` → ``"петрова-водкина"``; ``"Семён"`` → ``"семен"``.
    """
    text = unicodedata.normalize("NFC", raw).lower().replace("ё", "е")
    text = _HYPHEN_SPACES.sub("-", text)
    text = _NOT_NAME.sub(" ", text)
    text = _SPACES.sub(" ", text).strip(" -'")
    return text


def is_cyrillic(text: str) -> bool:
    return any("а" <= c <= "я" for c in text.lower())


def is_patronymic(word: str) -> bool:
    """Иванович, Петровна, Ильинична, Ivanovich; Turkic forms with оглы/кызы."""
    word = normalize_name(word)
    if not word:
        return False
    last = word.split(" ")[-1]
    if last in _TURKIC_PATRONYMIC:
        return True
    # Short words ending in "ич" are surnames (Бабич is one); a patronymic has a stem.
    return len(word) >= 6 and bool(_PATRONYMIC.search(word))


def gender_of(first_name: str = "", middle_name: str = "", last_name: str = "") -> Gender:
    """From the patronymic (reliable), else from the surname's ending (a hint)."""
    middle = normalize_name(middle_name)
    if middle and is_patronymic(middle):
        return Gender.FEMALE if _FEMALE_PATRONYMIC.search(middle) else Gender.MALE
    last = normalize_name(last_name)
    if last and _FEMALE_SURNAME.search(last):
        return Gender.FEMALE
    if last and re.search(r"(?:ов|ев|ин|ын|ский|цкий|ov|ev|in|yn|sky|skiy|skii)$", last):
        return Gender.MALE
    return Gender.UNKNOWN


@dataclass(frozen=True)
class FullName:
    last: str
    first: str
    middle: str


def split_full_name(raw: str) -> FullName:  # noqa: PLR0911 - one return per shape
    """One "ФИО" string into its parts, by where the patronymic stands.

    "Иванов Иван Иванович" (official order), "Иван Иванович Иванов" (spoken
    order), "Иван Иванов" and "Иванов Иван" (no patronymic: the first word is
    taken as the given name only when it is a known first name).
    """
    words = normalize_name(raw).split(" ")
    words = [w for w in words if w]
    if not words:
        return FullName("", "", "")
    if len(words) >= 3 and words[-1] in _TURKIC_PATRONYMIC:  # "Мамедов Эльдар Гейдар оглы"
        words = [*words[:-2], f"{words[-2]} {words[-1]}"]
    if len(words) == 1:
        return FullName("", words[0], "")
    if len(words) >= 3 and is_patronymic(words[2]):
        return FullName(" ".join(words[:1]), words[1], " ".join(words[2:]))
    if len(words) >= 3 and is_patronymic(words[1]):
        return FullName(" ".join(words[2:]), words[0], words[1])
    if len(words) == 2:
        second_is_name = canonical_first_name(words[1]) in FULL_FORM
        if second_is_name and canonical_first_name(words[0]) not in FULL_FORM:
            return FullName(words[0], words[1], "")
        return FullName(words[1], words[0], "")
    return FullName(words[0], words[1], " ".join(words[2:]))


@lru_cache(maxsize=65_536)
def canonical_first_name(name: str) -> str:
    """The full form of a first name: Саша → александр, Sasha → александр, Ёлка → ёлка.

    Latin spellings are read in Cyrillic first (``Natasha`` → наташа → наталья).
    """
    normal = normalize_name(name)
    if not normal:
        return ""
    if normal in FULL_FORM:
        return FULL_FORM[normal]
    if not is_cyrillic(normal):
        guess = translit.to_cyrillic(normal)
        if guess in FULL_FORM:
            return FULL_FORM[guess]
        by_skeleton = _BY_SKELETON.get(translit.skeleton(normal))
        if by_skeleton:
            return by_skeleton
    return normal


@lru_cache(maxsize=65_536)
def full_forms(name: str) -> tuple[str, ...]:
    """Every full form a first name may stand for: Тима → (тимофей, тимур); Иван → (иван,)."""
    canonical = canonical_first_name(name)
    if not canonical:
        return ()
    normal = normalize_name(name)
    for key in (normal, translit.to_cyrillic(normal), canonical):
        if key in FULL_FORMS:
            return FULL_FORMS[key]
    return (canonical,)


@lru_cache(maxsize=65_536)
def spellings(name: str) -> frozenset[str]:
    """Every way a first name is written, in Cyrillic: its full forms and their diminutives.

    Иогрь (a typo) is one edit from игорь; Зиа is one edit from зина, a
    diminutive of Зинаида. Comparing a name with the other's spellings lets a
    typo in a diminutive still agree with the full name.
    """
    out = {cyrillic_form(name)}
    for full in full_forms(name):
        out.update(_SPELLINGS.get(full, (full,)))
    out.discard("")
    return frozenset(out)


def is_known(name: str) -> bool:
    """Whether the diminutives table knows this name (full or short), in any spelling."""
    return cyrillic_form(name) in FULL_FORMS or canonical_first_name(name) in FULL_FORMS


def cyrillic_form(name: str) -> str:
    """The name in Cyrillic, read back from Latin when written so (Boris -> борис)."""
    normal = normalize_name(name)
    return normal if is_cyrillic(normal) or not normal else translit.to_cyrillic(normal)


_SPELLINGS: dict[str, set[str]] = {}
for _short, _forms in FULL_FORMS.items():
    for _full in _forms:
        _SPELLINGS.setdefault(_full, {_full}).add(_short)

_BY_SKELETON: dict[str, str] = {}
for _short, _full in FULL_FORM.items():
    _BY_SKELETON.setdefault(translit.skeleton(_short), _full)
