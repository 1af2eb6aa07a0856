"""Importing legacy accounts: central IDs, rejects, idempotence, sealed password hashes."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, text

from singleid.db import Database
from singleid.errors import FailedPrecondition, InvalidArgument
from singleid.idp.normalize import IdentifierKind
from singleid.idp.oidc.service.logins import LoginService
from singleid.idp.oidc.service.passwords import LegacyFormat, make_legacy_hash
from singleid.idp.service import CustomerService, ProductService
from singleid.idp.service.types import Lookup
from singleid.keyring import Keyring
from singleid.matching import models
from singleid.matching.service import ImportService, Reject
from singleid.matching.service.importer import load_mapping, read_file, read_text_csv

OLD_HASH = make_legacy_hash(LegacyFormat.BCRYPT, "old secret 123")
HEADER = ("account_id,last_name,first_name,middle_name,birth_date,phone,email,passport,"
          "address,city,created_at,password_hash\n")
GOOD = (HEADER
        + "c-1,Петрова,Анна,Сергеевна,05.03.1985,8 916 123-45-67,anna@mail.ru,4509 123456,"
          '"г. Москва, ул. Ленина, д. 5",Москва,2015-01-01,' + OLD_HASH + "\n"
        + "c-2,Сидоров,Пётр,,1970-01-01,+7 903 765-43-21,,,,Казань,,\n")


@pytest.fixture
def cards(db: Database) -> str:
    ProductService(db).create("cards")
    return "cards"


def test_every_account_gets_its_own_central_id(db: Database, keyring: Keyring,
                                               cards: str) -> None:
    summary = ImportService(db, keyring).import_rows(cards, read_text_csv(GOOD))
    assert (summary.read, summary.imported, summary.rejected) == (2, 2, 0)
    customers = CustomerService(db, keyring)
    one = customers.resolve(Lookup(product_account=(cards, "c-1"))).customer_id
    two = customers.resolve(Lookup(product_account=(cards, "c-2"))).customer_id
    assert one != two
    assert customers.resolve(Lookup(identifier=(IdentifierKind.PHONE, "89161234567"))
                             ).customer_id == one
    assert customers.get(one).display_name == "петрова анна сергеевна"


def test_reimporting_the_same_rows_changes_nothing(db: Database, keyring: Keyring,
                                                   cards: str) -> None:
    importer = ImportService(db, keyring)
    importer.import_rows(cards, read_text_csv(GOOD))
    first = importer.accounts()
    again = importer.import_rows(cards, read_text_csv(GOOD))
    assert (again.imported, again.updated, again.unchanged) == (0, 0, 2)
    assert importer.accounts() == first
    changed = importer.import_rows(cards, read_text_csv(GOOD.replace("Казань", "Самара")))
    assert (changed.updated, changed.unchanged) == (1, 1)
    assert importer.accounts() == first


def test_bad_rows_are_rejected_with_their_line_and_never_abort(db: Database, keyring: Keyring,
                                                              cards: str) -> None:
    rows = (HEADER
            + "r-1,Иванов,Иван,,31.02.1990,,,,,,,\n"         # line 2: no such date
            + 'r-2,"Иванов,Иван,,,,,,,,,\n'                  # line 3: broken quoting
            + "r-3,Иванов,Иван,,,12345,,,,,,\n"              # line 4: bad phone
            + "r-4,Смирнов,Олег,,,,,,,,,\n"                  # line 5: fine
            + "r-4,Смирнов,Олег,,,,,,,,,\n"                  # line 6: duplicate account
            + "r-5,Кузнецов\n"                               # line 7: too few fields
            + ",Пустой,,,,,,,,,,\n")                         # line 8: no account_id
    rejected: list[Reject] = []
    summary = ImportService(db, keyring).import_rows(cards, read_text_csv(rows),
                                                     on_reject=rejected.append)
    assert summary.imported == 1
    assert summary.rejected == 6
    assert [(r.line, r.field, r.reason) for r in rejected] == [
        (2, "birth_date", "INVALID_DATE"), (3, "", "BAD_CSV"), (4, "phone", "INVALID_PHONE"),
        (6, "account_id", "DUPLICATE_ACCOUNT_ID"), (7, "", "BAD_CSV"),
        (8, "account_id", "REQUIRED")]


def test_cp1251_needs_its_encoding_and_a_wrong_one_is_rejected_per_line(
        db: Database, keyring: Keyring, cards: str, tmp_path: Path) -> None:
    path = tmp_path / "legacy.csv"
    path.write_bytes(GOOD.encode("cp1251"))
    importer = ImportService(db, keyring)
    wrong = importer.import_rows(cards, read_file(path))  # read as UTF-8
    assert wrong.imported == 0
    assert wrong.rejected >= 1
    assert {r.reason for r in wrong.rejects} == {"BAD_ENCODING"}
    right = importer.import_rows(cards, read_file(path, encoding="cp1251"))
    assert right.imported == 2
    person = importer.accounts()
    assert len(person) == 2


def test_jsonl_and_a_mapping_file(db: Database, keyring: Keyring, cards: str,
                                  tmp_path: Path) -> None:
    mapping = tmp_path / "mapping.json"
    mapping.write_text('{"id": "account_id", "surname": "last_name", "tel": "phone"}')
    path = tmp_path / "legacy.jsonl"
    path.write_text('{"id": "j-1", "surname": "Орлова", "tel": "89161112233"}\n'
                    "not json\n"
                    '["a list"]\n'
                    '{"id": "j-2", "surname": "Орлов", "first_name": "Олег"}\n',
                    encoding="utf-8")
    summary = ImportService(db, keyring).import_rows(
        cards, read_file(path, mapping=load_mapping(mapping)))
    assert (summary.imported, summary.rejected) == (2, 2)
    assert [(r.line, r.reason) for r in summary.rejects] == [(2, "BAD_JSON"), (3, "BAD_JSON")]


def test_a_mapping_to_an_unknown_column_names_it(tmp_path: Path) -> None:
    mapping = tmp_path / "mapping.json"
    mapping.write_text('{"tel": "telephone"}')
    with pytest.raises(InvalidArgument) as error:
        load_mapping(mapping)
    assert error.value.field == "mapping"
    assert "telephone" in error.value.message


def test_an_unknown_product_stops_the_import_before_it_starts(db: Database,
                                                               keyring: Keyring) -> None:
    with pytest.raises(FailedPrecondition) as error:
        ImportService(db, keyring).import_rows("nosuch", read_text_csv(GOOD))
    assert error.value.reason == "UNKNOWN_PRODUCT"


def test_password_hashes_are_sealed_and_handed_to_legacy_logins(db: Database, keyring: Keyring,
                                                                cards: str) -> None:
    importer = ImportService(db, keyring)
    importer.import_rows(cards, read_text_csv(GOOD))
    assert importer.legacy_password_hash(cards, "c-1") == OLD_HASH
    assert importer.legacy_password_hash(cards, "c-2") is None
    # A legacy login under the phone and under the email, none for c-2 (no hash).
    logins = LoginService(db, keyring)
    assert sorted(kind for kind, consented, _ in logins.legacy_state(cards, "c-1")
                  if consented is None) == ["email", "phone"]
    assert logins.legacy_state(cards, "c-2") == []
    with db.read() as session:
        stored = session.scalars(select(models.LegacyCredential.hash_ciphertext)).all()
        people = session.scalars(select(models.LegacyAccount.person_ciphertext)).all()
        assert len(stored) == 1
        assert OLD_HASH[7:].encode() not in stored[0]
        assert not any("петрова".encode() in p or b"4509123456" in p for p in people)
        # No plaintext anywhere in the matching tables.
        dump = session.execute(text("SELECT * FROM matching_accounts")).all()
        assert "петрова" not in repr(dump)


def test_an_over_long_line_is_rejected_alone(db: Database, keyring: Keyring, cards: str) -> None:
    rows = HEADER + "x-1," + "Я" * 40_000 + ",,,,,,,,,,\n" + "x-2,Орлов,Олег,,,,,,,,,\n"
    summary = ImportService(db, keyring).import_rows(cards, read_text_csv(rows))
    assert summary.imported == 1
    assert [(r.line, r.reason) for r in summary.rejects] == [(2, "LINE_TOO_LONG")]


def test_a_password_hash_in_no_known_format_rejects_its_row(db: Database, keyring: Keyring,
                                                           cards: str) -> None:
    rejects: list[Reject] = []
    broken = GOOD.replace(OLD_HASH, "$2b$10$too-short")
    summary = ImportService(db, keyring).import_rows(cards, read_text_csv(broken),
                                                     on_reject=rejects.append)
    assert (summary.imported, summary.rejected) == (1, 1)
    assert (rejects[0].line, rejects[0].field, rejects[0].reason) == (
        2, "password_hash", "MALFORMED_HASH")
    assert "too-short" not in rejects[0].description  # a secret's remains stay out
    assert LoginService(db, keyring).legacy_state(cards, "c-1") == []
