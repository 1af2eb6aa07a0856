"""Password hashing: argon2id parameters and every documented legacy format."""

from __future__ import annotations

import pytest

from singleid.idp.oidc.service import passwords
from singleid.idp.oidc.service.passwords import LegacyFormat, MalformedHash


def test_argon2id_at_owasp_parameters_or_stronger() -> None:
    stored = passwords.hash_password("s3cret password")
    kind, _version, params, *_ = stored.split("$")[1:]
    assert kind == "argon2id"
    settings = dict(p.split("=") for p in params.split(","))
    assert int(settings["m"]) >= 19 * 1024
    assert int(settings["t"]) >= 2
    assert passwords.verify_password(stored, "s3cret password")
    assert not passwords.verify_password(stored, "s3cret passworD")
    assert not passwords.verify_password("not a hash", "s3cret password")


@pytest.mark.parametrize("hash_format", list(LegacyFormat))
def test_each_legacy_format_verifies_the_right_password_only(hash_format: LegacyFormat) -> None:
    stored = passwords.make_legacy_hash(hash_format, "пароль-123")
    passwords.check_legacy_format(hash_format, stored)
    assert passwords.verify_legacy(hash_format, stored, "пароль-123")
    assert not passwords.verify_legacy(hash_format, stored, "пароль-124")


def test_known_vectors_from_other_systems() -> None:
    # Fixed strings in each documented layout (password "password"), so that a change of
    # parsing cannot go unnoticed: Django's PBKDF2 layout, salt "seasalt", 10000 rounds.
    django = "pbkdf2_sha256$10000$seasalt$p2Nf8SH5q1HFJUvFvVd4Nj71pVA5fI7cpL2WDbb86bc="
    assert passwords.verify_legacy(LegacyFormat.PBKDF2_SHA256, django, "password")
    assert not passwords.verify_legacy(LegacyFormat.PBKDF2_SHA512,
                                       django.replace("sha256", "sha512"), "password")
    # SHA-256 over salt bytes 0x73616c74 ("salt") followed by "password".
    salted = "sha256$73616c74$13601bda4ea78e55a07b98866d2be6be0744e3866f13c00c811cab608a28f322"
    assert passwords.verify_legacy(LegacyFormat.SALTED_SHA256, salted, "password")
    bcrypt_hash = "$2b$04$Kn399zBpmpfNb9GBzC3UsOGm220tyMz8X/hsmCVdAn3MVpzb7bBVS"
    assert passwords.verify_legacy(LegacyFormat.BCRYPT, bcrypt_hash, "password")
    assert passwords.verify_legacy(LegacyFormat.BCRYPT, bcrypt_hash.replace("$2b$", "$2y$"),
                                   "password")


@pytest.mark.parametrize(("hash_format", "stored"), [
    (LegacyFormat.BCRYPT, "$1$not-bcrypt"),
    (LegacyFormat.PBKDF2_SHA256, "pbkdf2_sha512$1000$salt$AAAA"),
    (LegacyFormat.PBKDF2_SHA512, "pbkdf2_sha512$many$salt$AAAA"),
    (LegacyFormat.SALTED_SHA256, "sha256$zz$" + "0" * 64),
    (LegacyFormat.SALTED_SHA256, "md5$00$" + "0" * 32),
])
def test_malformed_legacy_hashes_are_refused(hash_format: LegacyFormat, stored: str) -> None:
    with pytest.raises(MalformedHash):
        passwords.check_legacy_format(hash_format, stored)
    assert not passwords.verify_legacy(hash_format, stored, "password")


@pytest.mark.parametrize("hash_format", list(LegacyFormat))
def test_a_legacy_hash_tells_its_format(hash_format: LegacyFormat) -> None:
    stored = passwords.make_legacy_hash(hash_format, "old secret 123")
    assert passwords.detect_legacy_format(stored) is hash_format


@pytest.mark.parametrize("stored", ["", "plain-text-password", "$2b$10$short", "md5$ab$cd",
                                    "sha256$zz$" + "0" * 64])
def test_a_hash_in_no_known_layout_is_refused(stored: str) -> None:
    with pytest.raises(MalformedHash):
        passwords.detect_legacy_format(stored)
