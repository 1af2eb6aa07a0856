from __future__ import annotations

import pytest

from singleid.idp.normalize import IdentifierKind, NormalizationError, mask, normalize

K = IdentifierKind


@pytest.mark.parametrize(("raw", "expected"), [
    ("+7 916 123-45-67", "+79161234567"),
    ("8 (916) 1234567", "+79161234567"),
    ("89161234567", "+79161234567"),
    ("9161234567", "+79161234567"),
    ("+7(495)123-45-67", "+74951234567"),
    ("  +7 916 123 45 67  ", "+79161234567"),
    # +7 is shared with Kazakhstan: a Kazakh mobile stays a Kazakh number.
    ("+7 701 123 4567", "+77011234567"),
    ("87011234567", "+77011234567"),
    ("+375 29 123-45-67", "+375291234567"),
])
def test_phones_normalise_to_e164(raw: str, expected: str) -> None:
    assert normalize(K.PHONE, raw).value == expected


@pytest.mark.parametrize("raw", ["12345", "+7 916 123", "phone", "+7 000 000-00-00", "8800"])
def test_bad_phones_are_rejected(raw: str) -> None:
    with pytest.raises(NormalizationError) as error:
        normalize(K.PHONE, raw)
    assert error.value.reason == "INVALID_PHONE"


@pytest.mark.parametrize(("raw", "expected"), [
    ("Anna.Ivanova@Example.RU", "anna.ivanova@example.ru"),
    (" anna@example.ru ", "anna@example.ru"),
    ("ANNA@EXAMPLE.RU", "anna@example.ru"),
])
def test_emails_are_case_insensitive(raw: str, expected: str) -> None:
    assert normalize(K.EMAIL, raw).value == expected


@pytest.mark.parametrize("raw", ["anna", "anna@", "@example.ru", "an na@example.ru", "a@b"])
def test_bad_emails_are_rejected(raw: str) -> None:
    with pytest.raises(NormalizationError, match="email"):
        normalize(K.EMAIL, raw)


@pytest.mark.parametrize("raw", ["45 06 123456", "4506 123456", "4506123456", "45 06 №123456",
                                 "4506-123456"])
def test_passports_normalise_to_ten_digits(raw: str) -> None:
    assert normalize(K.PASSPORT, raw).value == "4506123456"


@pytest.mark.parametrize("raw", ["4506 12345", "45061234567", "AB06123456", "0000 123456",
                                 "4506 000000"])
def test_bad_passports_are_rejected(raw: str) -> None:
    with pytest.raises(NormalizationError) as error:
        normalize(K.PASSPORT, raw)
    assert error.value.reason == "INVALID_PASSPORT"


def test_messenger_ids() -> None:
    assert normalize(K.TELEGRAM, "00123456789").value == "123456789"
    assert normalize(K.VIBER, "01234abcd+/=").value == "01234abcd+/="
    assert normalize(K.WHATSAPP, "8 916 123 45 67").value == "+79161234567"
    with pytest.raises(NormalizationError):
        normalize(K.TELEGRAM, "@durov")


@pytest.mark.parametrize("raw", ["", "   "])
def test_empty_values_are_required(raw: str) -> None:
    with pytest.raises(NormalizationError) as error:
        normalize(K.PHONE, raw)
    assert error.value.reason == "REQUIRED"


def test_overlong_values_are_rejected_before_parsing() -> None:
    with pytest.raises(NormalizationError) as error:
        normalize(K.EMAIL, "a" * 300 + "@example.ru")
    assert error.value.reason == "TOO_LONG"


@pytest.mark.parametrize(("kind", "value", "masked"), [
    (K.PHONE, "+79161234567", "+7916*****67"),
    (K.EMAIL, "anna@example.ru", "a***@example.ru"),
    (K.PASSPORT, "4506123456", "45** ****56"),
    (K.TELEGRAM, "123456789", "***789"),
    (K.TELEGRAM, "12345", "***"),
])
def test_masks_never_show_the_whole_value(kind: IdentifierKind, value: str, masked: str) -> None:
    assert mask(kind, value) == masked
    assert value not in mask(kind, value)
