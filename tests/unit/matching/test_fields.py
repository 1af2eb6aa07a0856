"""Dates, phones, emails, passports and addresses of legacy accounts, with Russian examples."""

from __future__ import annotations

from datetime import date

import pytest

from singleid.matching import normalize
from singleid.matching.normalize import FieldError
from singleid.matching.record import LegacyRow, person_from_row

TODAY = date(2026, 11, 23)


@pytest.mark.parametrize(("raw", "expected"), [
    ("1985-03-05", date(1985, 3, 5)),
    ("05.03.1985", date(1985, 3, 5)),
    ("5.3.1985", date(1985, 3, 5)),
    ("05/03/1985", date(1985, 3, 5)),
    ("05-03-1985", date(1985, 3, 5)),
    ("19850305", date(1985, 3, 5)),
    ("05.03.85", date(1985, 3, 5)),
    ("05.03.07", date(2007, 3, 5)),
    ("5 марта 1985 г.", date(1985, 3, 5)),
    ("5 мая 1985", date(1985, 5, 5)),
    ("12 Dec 1990", date(1990, 12, 12)),
    ("1985-03-05T00:00:00", date(1985, 3, 5)),
    ("", None),
])
def test_birth_dates_in_the_formats_legacy_systems_wrote(raw: str,
                                                          expected: date | None) -> None:
    assert normalize.birth_date(raw, today=TODAY) == expected


@pytest.mark.parametrize(("raw", "reason"), [
    ("31.02.1985", "INVALID_DATE"), ("вчера", "INVALID_DATE"), ("1985", "INVALID_DATE"),
    ("01.01.1850", "IMPLAUSIBLE_DATE"), ("01.01.2030", "IMPLAUSIBLE_DATE"),
])
def test_bad_dates_name_the_field(raw: str, reason: str) -> None:
    with pytest.raises(FieldError) as error:
        normalize.birth_date(raw, today=TODAY)
    assert error.value.field == "birth_date"
    assert error.value.reason == reason


def test_day_month_swaps_are_offered_as_candidates() -> None:
    assert normalize.date_candidates(date(1985, 3, 5)) == [date(1985, 3, 5), date(1985, 5, 3)]
    assert normalize.date_candidates(date(1985, 3, 25)) == [date(1985, 3, 25)]
    assert normalize.date_candidates(date(1985, 3, 3)) == [date(1985, 3, 3)]


@pytest.mark.parametrize(("raw", "e164", "region"), [
    ("8 (916) 123-45-67", "+79161234567", "RU"),
    ("+7 916 1234567", "+79161234567", "RU"),
    ("9161234567", "+79161234567", "RU"),
    ("8-701-123-45-67", "+77011234567", "KZ"),  # +7 shared with Kazakhstan
    ("+7 7172 55 00 00", "+77172550000", "KZ"),
])
def test_phones_reuse_the_idp_normaliser_and_tell_kazakhstan_apart(raw: str, e164: str,
                                                                   region: str) -> None:
    value = normalize.phone(raw)
    assert value == e164
    assert normalize.phone_region(value) == region


def test_a_bad_phone_names_the_field() -> None:
    with pytest.raises(FieldError) as error:
        normalize.phone("12345")
    assert (error.value.field, error.value.reason) == ("phone", "INVALID_PHONE")


@pytest.mark.parametrize(("raw", "expected"), [
    ("Ivan.Petrov@Mail.RU", "ivan.petrov@mail.ru"),
    ("i.v.a.n+shop@gmail.com", "ivan@gmail.com"),
    ("ivan@googlemail.com", "ivan@gmail.com"),
    (" anna@yandex.ru ", "anna@yandex.ru"),
    ("", None),
])
def test_emails(raw: str, expected: str | None) -> None:
    assert normalize.email(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    ("4509 123456", "4509123456"), ("45 09 123456", "4509123456"),
    ("4509 № 123456", "4509123456"), ("4509-123456", "4509123456"), ("", None),
])
def test_passports(raw: str, expected: str | None) -> None:
    assert normalize.passport(raw) == expected


def test_a_bad_passport_names_the_field() -> None:
    with pytest.raises(FieldError) as error:
        normalize.passport("45 09")
    assert (error.value.field, error.value.reason) == ("passport", "INVALID_PASSPORT")


@pytest.mark.parametrize(("raw", "expected"), [
    ("г. Москва, ул. Ленина, д. 5, кв. 12", "г москва ул ленина д 5 кв 12"),
    ("Москва город, улица Ленина, дом 5, квартира 12", "москва г ул ленина д 5 кв 12"),
    ("123456, г Москва, Ленинский проспект, д.5к2", "г москва ленинский пр д 5 к2"),
    ("Санкт-Петербург, Невский пр-т, 28", "санкт петербург невский пр 28"),
    ("п. Рощино, ул. Лесная, 1", "п рощино ул лесная 1"),
])
def test_light_address_cleanup(raw: str, expected: str) -> None:
    assert normalize.address(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    ("г. Москва", "москва"), ("СПб", "санкт-петербург"), ("Санкт-Петербург", "санкт-петербург"),
    ("Екатеринбург", "екатеринбург"),
])
def test_cities(raw: str, expected: str) -> None:
    assert normalize.city(raw) == expected


def test_a_row_normalises_every_field() -> None:
    person = person_from_row(LegacyRow(
        account_id="c-1", last_name=" ПЕТРОВА ", first_name="Анна", middle_name="Сергеевна",
        birth_date="05.03.1985", phone="8 (916) 123-45-67", email="Anna@Mail.ru",
        passport="45 09 123456", address="г. Москва, ул. Ленина, д. 5", city="Москва"))
    assert person.last_name == "петрова"
    assert person.birth_date == "1985-03-05"
    assert person.phone == "+79161234567"
    assert person.passport == "4509123456"
    assert person.city == "москва"


def test_a_whole_name_in_one_column_is_split() -> None:
    person = person_from_row(LegacyRow(account_id="1", first_name="Иванов Иван Иванович"))
    assert (person.last_name, person.first_name, person.middle_name) == (
        "иванов", "иван", "иванович")


@pytest.mark.parametrize(("row", "field", "reason"), [
    (LegacyRow(account_id="", last_name="Иванов"), "account_id", "REQUIRED"),
    (LegacyRow(account_id="1"), "last_name", "NOTHING_TO_MATCH"),
    (LegacyRow(account_id="1", last_name="Иванов", birth_date="32.13.1990"), "birth_date",
     "INVALID_DATE"),
    (LegacyRow(account_id="1", last_name="Иванов", email="нет"), "email", "INVALID_EMAIL"),
    (LegacyRow(account_id="1", last_name="x" * 300), "last_name", "TOO_LONG"),
])
def test_bad_rows_name_the_field(row: LegacyRow, field: str, reason: str) -> None:
    with pytest.raises(FieldError) as error:
        person_from_row(row)
    assert (error.value.field, error.value.reason) == (field, reason)
