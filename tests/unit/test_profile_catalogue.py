"""The attribute catalogue: the packaged file, malformed files, and value validation."""

from __future__ import annotations

from typing import Any

import pytest

from singleid.profile import catalogue
from singleid.profile.catalogue import CatalogueError, Sensitivity, ValueProblem, normalize

STARTER = {"preferred_name", "full_name", "birth_date", "phones", "emails", "postal_addresses",
           "passport", "language", "segment", "loyalty_tier", "tags_manual", "tags_auto",
           "contact_center_notes", "messenger_ids"}


@pytest.fixture(scope="module")
def cat() -> catalogue.Catalogue:
    return catalogue.load()


def test_the_packaged_catalogue_has_the_starter_attributes(cat: catalogue.Catalogue) -> None:
    assert cat.version >= 1
    assert set(cat.attributes) >= STARTER
    assert cat.attributes["passport"].sensitivity is Sensitivity.SPECIAL
    assert cat.attributes["phones"].sealed
    assert not cat.attributes["loyalty_tier"].sealed
    assert cat.attributes["loyalty_tier"].owners == {"loyalty"}
    assert cat.trust_rank("kyc") < cat.trust_rank("marketing") < cat.trust_rank("nobody")


def _doc(**attribute: Any) -> dict[str, Any]:
    spec = {"type": "string", "sensitivity": "ordinary", "owners": ["cards"], **attribute}
    return {"version": 1, "attributes": {"nickname": spec}}


@pytest.mark.parametrize(("change", "message"), [
    ({"type": "colour"}, "type must be one of"),
    ({"sensitivity": "secret"}, "sensitivity must be one of"),
    ({"owners": []}, "owners must be"),
    ({"type": "enum"}, "an enum needs `values`"),
    ({"type": "json"}, "schema.properties"),
    ({"pattern": "("}, "pattern"),
    ({"colour": "red"}, "unknown keys"),
])
def test_a_malformed_catalogue_names_the_attribute(change: dict[str, Any], message: str) -> None:
    with pytest.raises(CatalogueError, match=message) as info:
        catalogue.parse(_doc(**change))
    assert "attributes.nickname" in str(info.value)


def test_a_catalogue_needs_a_version() -> None:
    with pytest.raises(CatalogueError, match="version"):
        catalogue.parse({"attributes": _doc()["attributes"]})


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("preferred_name", "  Аня ", "Аня"),
    ("phones", ["8 (916) 123-45-67", "+7 916 000 11 22"], ["+79161234567", "+79160001122"]),
    ("emails", ["Anna@Example.COM"], ["Anna@example.com"]),
    ("birth_date", "1990-05-17", "1990-05-17"),
    ("language", "ru", "ru"),
    ("tags_manual", ["vip", "calls-often", "vip"], ["calls-often", "vip"]),
    ("full_name", {"last": "Иванова", "first": "Анна"}, {"last": "Иванова", "first": "Анна"}),
    ("passport", {"series": "4509", "number": "123456"}, {"series": "4509", "number": "123456"}),
    ("postal_addresses", [{"country": "RU", "city": "Москва", "street": "Тверская"}],
     [{"country": "RU", "city": "Москва", "street": "Тверская"}]),
    ("messenger_ids", {"telegram": "12345"}, {"telegram": "12345"}),
])
def test_good_values_are_normalised(cat: catalogue.Catalogue, name: str, value: Any,
                                    expected: Any) -> None:
    assert normalize(cat.attributes[name], value) == expected


@pytest.mark.parametrize(("name", "value", "reason"), [
    ("preferred_name", 42, "must be a string"),
    ("preferred_name", "x" * 101, "at most 100 characters"),
    ("preferred_name", "", "must not be empty"),
    ("phones", "+79161234567", "must be a list"),
    ("phones", ["not a phone"], "item 0: must be a phone number"),
    ("emails", ["anna@"], "must be an e-mail address"),
    ("birth_date", "17.05.1990", "YYYY-MM-DD"),
    ("birth_date", "2999-01-01", "future"),
    ("birth_date", "1800-01-01", "on or after"),
    ("language", "klingon", "must be one of"),
    ("tags_manual", ["Has Spaces"], "must match"),
    ("full_name", {"first": "Анна"}, "last: required"),
    ("full_name", {"last": "I", "first": "A", "middle": "x"}, "unknown fields"),
    ("passport", {"series": "45", "number": "123456"}, "series: must match"),
    ("postal_addresses", [{"city": "Москва"}], "needs a country"),
    ("contact_center_notes", "ы" * 4001, "at most 4000 characters"),
    ("tags_auto", ["t"] * 101, "at most 100 items"),
    ("loyalty_tier", None, "a value is required"),
])
def test_bad_values_say_why(cat: catalogue.Catalogue, name: str, value: Any, reason: str) -> None:
    with pytest.raises(ValueProblem, match=reason):
        normalize(cat.attributes[name], value)


def test_oversize_values_are_refused_by_bytes() -> None:
    small = catalogue.parse(_doc(max_bytes=20, max_length=1000)).attributes["nickname"]
    with pytest.raises(ValueProblem, match="too large"):
        normalize(small, "a" * 30)


def test_a_problem_never_quotes_the_value(cat: catalogue.Catalogue) -> None:
    with pytest.raises(ValueProblem) as info:
        normalize(cat.attributes["phones"], ["secret-999"])
    assert "secret" not in str(info.value)
