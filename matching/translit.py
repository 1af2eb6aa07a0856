"""Cyrillic <-> Latin transliteration under the schemes people really meet.

- ``icao`` — ICAO Doc 9303 (2013), used in Russian passports since 2014
  (MVD order 889): Ц=TS, Й=I, Ю=IU, Я=IA, Ъ=IE.
- ``mvd782`` — the 2000s passport scheme (MVD order 782/310 family): Й=Y, Ю=YU, Я=YA.
- ``gost52535`` — GOST R 52535.1-2006 (machine-readable documents, 2006–2010): Ц=TC, Ю=IU.
- ``bgnpcgn`` — BGN/PCGN 1947, the English-language press: Е=YE at word start and after
  vowels, Ё=Ë, Ъ=", Ь='.

Because every scheme is lossy in its own way, comparisons never compare two
transliterations; they compare *skeletons*: :func:`skeleton` maps Cyrillic or
Latin in any of the schemes (and informal spellings such as "Julia", "Alexander")
to one lossy Latin key in which the schemes' differences collapse.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Literal

Scheme = Literal["icao", "mvd782", "gost52535", "bgnpcgn"]
SCHEMES: tuple[Scheme, ...] = ("icao", "mvd782", "gost52535", "bgnpcgn")

_COMMON = {
    "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "e", "ж": "zh",
    "з": "z", "и": "i", "й": "i", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o",
    "п": "p", "р": "r", "с": "s", "т": "t", "у": "u", "ф": "f", "х": "kh", "ц": "ts",
    "ч": "ch", "ш": "sh", "щ": "shch", "ъ": "", "ы": "y", "ь": "", "э": "e", "ю": "iu",
    "я": "ia",
}
_TABLES: dict[Scheme, dict[str, str]] = {
    "icao": {**_COMMON, "ъ": "ie"},
    "mvd782": {**_COMMON, "й": "y", "ю": "yu", "я": "ya"},
    "gost52535": {**_COMMON, "ц": "tc"},
    "bgnpcgn": {**_COMMON, "й": "y", "ю": "yu", "я": "ya", "ё": "ë", "ъ": '"', "ь": "'"},
}
_VOWELS = set("аеёиоуыэюя")
_BGN_Y_AFTER = _VOWELS | {"й", "ъ", "ь"}


def to_latin(text: str, scheme: Scheme = "icao") -> str:
    """Transliterate Cyrillic to Latin; other characters pass through. Keeps case."""
    table = _TABLES[scheme]
    out: list[str] = []
    previous = ""
    for char in text:
        lower = char.lower()
        if lower not in table:
            out.append(char)
            previous = ""
            continue
        latin = table[lower]
        if scheme == "bgnpcgn" and lower in ("е", "ё") and (not previous
                                                            or previous in _BGN_Y_AFTER):
            latin = "y" + latin
        if char != lower and latin:
            latin = latin[0].upper() + latin[1:]
        out.append(latin)
        previous = lower
    return "".join(out)


# Latin -> Cyrillic, greedy longest match; the best guess for a Latin spelling.
_TO_CYRILLIC = sorted({
    "iya": "ия", "iia": "ия", "iyu": "ию", "iiu": "ию",
    "shch": "щ", "sch": "щ", "zh": "ж", "kh": "х", "ts": "ц", "tc": "ц", "tz": "ц",
    "ch": "ч", "sh": "ш", "yu": "ю", "iu": "ю", "ju": "ю", "ya": "я", "ia": "я", "ja": "я",
    "yo": "ё", "ye": "е", "ie": "ие", "ey": "ей", "iy": "ий", "ij": "ий", "yi": "ый",
    "ay": "ай", "oy": "ой", "uy": "уй", "a": "а", "b": "б", "v": "в", "w": "в", "g": "г",
    "d": "д", "e": "е", "z": "з", "i": "и", "y": "ы", "j": "й", "k": "к", "l": "л",
    "m": "м", "n": "н", "o": "о", "p": "п", "r": "р", "s": "с", "t": "т", "u": "у",
    "f": "ф", "h": "х", "c": "к", "x": "кс", "q": "к", "ë": "ё", "'": "ь", '"': "ъ",
}.items(), key=lambda kv: -len(kv[0]))


_CYRILLIC_OF = dict(_TO_CYRILLIC)
# Alternatives longest first: the regex takes the first that matches, so greedy longest.
_LATIN_UNITS = re.compile("|".join(re.escape(latin) for latin, _ in _TO_CYRILLIC))


@lru_cache(maxsize=65_536)
def to_cyrillic(text: str) -> str:
    """A best-effort reading of a Latin spelling in Cyrillic (lower case)."""
    return _LATIN_UNITS.sub(lambda m: _CYRILLIC_OF[m.group()], text.lower())


_SKELETON_RULES = [(re.compile(p), r) for p, r in [
    (r"shch|sch|sc", "w"),
    (r"zh", "z"),
    (r"kh", "h"),
    (r"x", "ks"),
    (r"ck", "k"),
    (r"tch|ch|tsh|ts|tc|tz", "c"),
    (r"sh", "s"),
    (r"ph", "f"),
    (r"^w|w(?=[aeiou])", "v"),
    (r"[iyj]+", "i"),   # й, ы, и and the iotation of я/ю/е/ё: every scheme's y/i/j
    (r"io", "e"),       # ё written "yo"/"io" is е
    (r"ie", "e"),       # е written "ye"/"ie" (BGN/PCGN, ICAO's ъ)
    (r"(.)\1+", r"\1"),
]]


@lru_cache(maxsize=262_144)
def skeleton(text: str) -> str:
    """A lossy Latin key in which spellings of one name under any scheme coincide.

    ``skeleton("Юлия") == skeleton("Iuliia") == skeleton("Yuliya") == skeleton("Julia")``.
    """
    latin = to_latin(text.lower().replace("ё", "е"), "icao")
    latin = unicodedata.normalize("NFKD", latin)
    latin = "".join(c for c in latin if "a" <= c <= "z" or c == " ")
    words = []
    for word in latin.split():
        key = word
        for pattern, replacement in _SKELETON_RULES:
            key = pattern.sub(replacement, key)
        words.append(key)
    return " ".join(words)


_DEVOICE = str.maketrans({"b": "p", "v": "f", "g": "k", "d": "t", "z": "s", "w": "s",
                          "h": "k", "c": "s", "q": "k"})


@lru_cache(maxsize=262_144)
def phonetic(text: str) -> str:
    """A phonetic key over the skeleton: first letter, then devoiced consonants.

    ``phonetic("Иванов") == phonetic("Ivanoff")``; vowels (which Russian reduces
    when unstressed) do not count after the first letter.
    """
    key = skeleton(text).replace(" ", "")
    if not key:
        return ""
    rest = re.sub(r"[aeiouy]", "", key[1:]).translate(_DEVOICE)
    rest = re.sub(r"(.)\1+", r"\1", rest)
    # A final "f" in Russian surnames is often spelled "ff" or "v": one sound.
    return key[0] + rest
