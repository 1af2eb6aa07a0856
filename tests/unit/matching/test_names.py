"""Name normalisation, transliteration, patronymics and diminutives, with Russian examples."""

from __future__ import annotations

import pytest

from singleid.matching import names, translit
from singleid.matching.names import FullName, Gender


@pytest.mark.parametrize(("raw", "expected"), [
    ("Иванов", "иванов"),
    ("  СЕМЁНОВ ", "семенов"),
    ("Петрова -  Водкина", "петрова-водкина"),
    ("Римский – Корсаков", "римский-корсаков"),
    ("Анна   Мария", "анна мария"),
    ("O'Brien", "o'brien"),
    ("Иванов1", "иванов"),
    ("Фёдор", "федор"),
    ("", ""),
])
def test_names_normalise_case_yo_whitespace_and_hyphens(raw: str, expected: str) -> None:
    assert names.normalize_name(raw) == expected


@pytest.mark.parametrize(("cyrillic", "scheme", "latin"), [
    ("Юлия", "icao", "Iuliia"),
    ("Юлия", "mvd782", "Yuliya"),
    ("Юлия", "gost52535", "Iuliia"),
    ("Юлия", "bgnpcgn", "Yuliya"),
    ("Цой", "icao", "Tsoi"),
    ("Цой", "gost52535", "Tcoi"),
    ("Цой", "mvd782", "Tsoy"),
    ("Щербаков", "icao", "Shcherbakov"),
    ("Хабибуллин", "mvd782", "Khabibullin"),
    ("Объедков", "icao", "Obieedkov"),  # ICAO: ъ = IE
    ("Объедков", "mvd782", "Obedkov"),
    ("Объедков", "bgnpcgn", 'Ob"yedkov'),
    ("Елена", "bgnpcgn", "Yelena"),
    ("Елена", "icao", "Elena"),
    ("Соловьёв", "bgnpcgn", "Solov'yëv"),
    ("Наталья", "icao", "Natalia"),
    ("Наталья", "mvd782", "Natalya"),
])
def test_transliteration_schemes(cyrillic: str, scheme: translit.Scheme, latin: str) -> None:
    assert translit.to_latin(cyrillic, scheme) == latin


@pytest.mark.parametrize("spellings", [
    ["Юлия", "Iuliia", "Yuliya", "Julia", "ЮЛИЯ"],
    ["Наталья", "Natalia", "Natalya", "Natal'ya"],
    ["Щербаков", "Shcherbakov", "Scherbakov"],
    ["Дмитрий", "Dmitrii", "Dmitriy", "Dmitry"],
    ["Семёнов", "Семенов", "Semenov", "Semyonov", "Semënov"],
    ["Евгений", "Evgenii", "Yevgeniy", "Evgeniy"],
    ["Цой", "Tsoi", "Tsoy", "Tcoi"],
    ["Ксения", "Kseniya", "Xenia", "Kseniia"],
    ["Хабибуллин", "Khabibullin", "Habibullin"],
])
def test_every_scheme_shares_one_skeleton(spellings: list[str]) -> None:
    assert len({translit.skeleton(s) for s in spellings}) == 1, [
        translit.skeleton(s) for s in spellings]


@pytest.mark.parametrize(("a", "b"), [("Юлия", "Мария"), ("Иванов", "Иванова"),
                                      ("Петров", "Петраков"), ("Цой", "Ким")])
def test_different_names_keep_different_skeletons(a: str, b: str) -> None:
    assert translit.skeleton(a) != translit.skeleton(b)


@pytest.mark.parametrize(("a", "b"), [("Иванов", "Ivanoff"), ("Кузнецов", "Kuznetsoff"),
                                      ("Алексеев", "Alekseyev"), ("Фёдоров", "Fyodorov")])
def test_phonetic_keys_agree_across_spellings(a: str, b: str) -> None:
    assert translit.phonetic(a) == translit.phonetic(b)


@pytest.mark.parametrize(("latin", "cyrillic"), [
    ("Shcherbakov", "щербаков"), ("Yuliya", "юлия"), ("Khabibullin", "хабибуллин"),
    ("Zhukov", "жуков"), ("Tsoy", "цой"),
])
def test_latin_reads_back_into_cyrillic(latin: str, cyrillic: str) -> None:
    assert translit.to_cyrillic(latin) == cyrillic


@pytest.mark.parametrize(("word", "expected"), [
    ("Иванович", True), ("Петровна", True), ("Ильинична", True), ("Кузьмич", True),
    ("Сергеевич", True), ("Ivanovich", True), ("Petrovna", True), ("Гейдар оглы", True),
    ("Бабич", False), ("Иванов", False), ("Мария", False), ("", False),
])
def test_patronymic_recognition(word: str, expected: bool) -> None:
    assert names.is_patronymic(word) is expected


@pytest.mark.parametrize(("raw", "expected"), [
    ("Иванов Иван Иванович", FullName("иванов", "иван", "иванович")),
    ("Иван Иванович Иванов", FullName("иванов", "иван", "иванович")),
    ("ПЕТРОВА анна сергеевна", FullName("петрова", "анна", "сергеевна")),
    ("Мамедов Эльдар Гейдар оглы", FullName("мамедов", "эльдар", "гейдар оглы")),
    ("Сидоров Пётр", FullName("сидоров", "петр", "")),
    ("Пётр Сидоров", FullName("сидоров", "петр", "")),
    ("Аня", FullName("", "аня", "")),
])
def test_full_names_split_by_where_the_patronymic_stands(raw: str, expected: FullName) -> None:
    assert names.split_full_name(raw) == expected


@pytest.mark.parametrize(("given", "full"), [
    ("Саша", "александр"), ("Шура", "александр"), ("Женя", "евгений"), ("Наташа", "наталья"),
    ("Ваня", "иван"), ("Лёша", "алексей"), ("Катя", "екатерина"), ("Sasha", "александр"),
    ("Natasha", "наталья"), ("Иван", "иван"), ("Эльдар", "эльдар"),
])
def test_diminutives_resolve_to_the_full_form(given: str, full: str) -> None:
    assert names.canonical_first_name(given) == full


def test_an_ambiguous_diminutive_keeps_every_full_form() -> None:
    assert set(names.full_forms("Тима")) == {"тимофей", "тимур"}
    assert names.full_forms("Иван") == ("иван",)


@pytest.mark.parametrize(("first", "middle", "last", "gender"), [
    ("Саша", "Сергеевна", "Иванова", Gender.FEMALE),
    ("Саша", "Сергеевич", "", Gender.MALE),
    ("Саша", "", "Иванова", Gender.FEMALE),
    ("", "", "Иванов", Gender.MALE),
    ("", "", "Ким", Gender.UNKNOWN),
    ("Aysel", "Gejdar kyzy", "", Gender.FEMALE),
])
def test_gender_from_patronymic_then_surname(first: str, middle: str, last: str,
                                             gender: Gender) -> None:
    assert names.gender_of(first, middle, last) is gender
