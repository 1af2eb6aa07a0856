"""Importing legacy accounts: read, normalise, register with the idp, keep for matching.

Streaming: rows arrive as an iterator and are handled in batches of
``BATCH_SIZE`` (one idp transaction and one matching transaction each), so a
file of any size is never in memory whole. A row that cannot be read is
rejected with its line number and reason and never stops the import. Importing
the same rows again changes nothing: the idp registration is idempotent on
(product, account ID), and an account whose normalised content is unchanged is
skipped. A password hash becomes the idp's legacy login under the account's
phone and email (``LoginService.add_legacy_logins``), in the same transaction
as the account, so its owner can make it their ecosystem login on first
sign-in; a hash in no known format rejects its row. The account's names, birth
date, phone, email and address go to the customer's profile with the product as
their source (``ProfileService.write_owned``), so a merge's survivorship rules
build the golden record from them.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from singleid.db import Database, utcnow
from singleid.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    SingleIdError,
)
from singleid.idp.normalize import IdentifierKind
from singleid.idp.oidc.service.logins import LegacyLoginInput, LoginService
from singleid.idp.oidc.service.passwords import MalformedHash, detect_legacy_format
from singleid.idp.service import CustomerService, ProductService
from singleid.idp.service.types import AccountInput, IdentifierInput
from singleid.keyring import Keyring, Sealed
from singleid.matching import models
from singleid.matching.normalize import FieldError
from singleid.matching.record import CONTRACT_COLUMNS, Features, LegacyRow, Person, person_from_row
from singleid.matching.service import store
from singleid.profile.service.profiles import ProfileService

log = logging.getLogger(__name__)
BATCH_SIZE = 500
# Accounts per idp transaction: small enough that the ORM session stays cheap to flush.
REGISTER_CHUNK = 50
MAX_LINE_BYTES = 64 * 1024


@dataclass(frozen=True)
class Reject:
    line: int
    field: str
    reason: str
    description: str

    def to_json(self) -> str:
        return json.dumps({"line": self.line, "field": self.field, "reason": self.reason,
                           "description": self.description}, ensure_ascii=False)


@dataclass
class ImportSummary:
    read: int = 0
    imported: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    rejects: list[Reject] = field(default_factory=list)  # the first few, for a response
    MAX_KEPT = 100

    def add_reject(self, reject: Reject) -> None:
        self.rejected += 1
        if len(self.rejects) < self.MAX_KEPT:
            self.rejects.append(reject)


# A parsed line: its number, and either the row or why it could not be read.
Parsed = tuple[int, LegacyRow | Reject]


# -- reading files ------------------------------------------------------------------

def load_mapping(path: Path) -> dict[str, str]:
    """A mapping file: JSON ``{"source column": "contract column", ...}``.

    Columns not named in it keep their names; a target that is not a contract
    column is an error naming it.
    """
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidArgument(f"cannot read the mapping file: {exc}", field="mapping") from None
    if not isinstance(doc, dict) or not all(isinstance(v, str) for v in doc.values()):
        raise InvalidArgument('expected {"source column": "contract column"}', field="mapping")
    for source, target in doc.items():
        if target not in CONTRACT_COLUMNS:
            raise InvalidArgument(f"{source!r} maps to {target!r}, not a contract column "
                                  f"({', '.join(CONTRACT_COLUMNS)})", field="mapping")
    return dict(doc)


def _renamed(record: dict[str, Any], mapping: dict[str, str]) -> dict[str, Any]:
    return {mapping.get(k.strip(), k.strip()): v for k, v in record.items() if k is not None}


def read_csv(stream: IO[bytes], *, encoding: str = "utf-8", mapping: dict[str, str] | None = None
             ) -> Iterator[Parsed]:
    """CSV rows, streamed line by line; a line that does not decode or parse is a Reject.

    One record a physical line (a field may not hold a line break), so one broken
    line — an unclosed quote, a byte of another encoding — costs that line only.
    """
    mapping = mapping or {}
    lines = _numbered_lines(stream, encoding)
    header_line = next(lines, None)
    if header_line is None:
        return
    number, header_text = header_line
    if header_text is None:
        raise InvalidArgument(f"the header is not {encoding} (see --encoding)",
                              field="encoding", reason="BAD_ENCODING")
    header = [mapping.get(h.strip(), h.strip())
              for h in next(csv.reader([header_text.lstrip("\ufeff")]))]
    if "account_id" not in header:
        raise InvalidArgument("the header has no account_id column (a mapping file can "
                              "rename one)", field="account_id")
    for number, line in lines:
        if line is None:
            yield number, Reject(number, "", "BAD_ENCODING", f"not {encoding} (see --encoding)")
            continue
        if line is _TOO_LONG:
            yield number, Reject(number, "", "LINE_TOO_LONG",
                                 f"longer than {MAX_LINE_BYTES} bytes")
            continue
        if not line.strip():
            continue
        try:
            values = next(csv.reader([line], strict=True))
        except csv.Error as exc:
            yield number, Reject(number, "", "BAD_CSV", str(exc))
            continue
        if len(values) != len(header):
            yield number, Reject(number, "", "BAD_CSV",
                                 f"{len(values)} fields, the header has {len(header)}")
            continue
        yield number, LegacyRow.from_mapping(dict(zip(header, values, strict=True)))


_TOO_LONG = "\x00too long"


def _numbered_lines(stream: IO[bytes], encoding: str) -> Iterator[tuple[int, str | None]]:
    """Physical lines with their numbers; None for a line that does not decode."""
    for number, raw in enumerate(stream, start=1):
        if len(raw) > MAX_LINE_BYTES:
            yield number, _TOO_LONG
            continue
        try:
            yield number, raw.decode(encoding).rstrip("\r\n")
        except UnicodeDecodeError:
            yield number, None


def read_jsonl(stream: IO[bytes], *, encoding: str = "utf-8",
               mapping: dict[str, str] | None = None) -> Iterator[Parsed]:
    mapping = mapping or {}
    for number, raw in enumerate(stream, start=1):
        if not raw.strip():
            continue
        try:
            doc = json.loads(raw.decode(encoding))
        except UnicodeDecodeError:
            yield number, Reject(number, "", "BAD_ENCODING", f"not {encoding}")
            continue
        except ValueError as exc:
            yield number, Reject(number, "", "BAD_JSON", str(exc))
            continue
        if not isinstance(doc, dict):
            yield number, Reject(number, "", "BAD_JSON", "each line must be a JSON object")
            continue
        yield number, LegacyRow.from_mapping(_renamed(doc, mapping))


def read_file(path: Path, *, encoding: str = "utf-8", mapping: dict[str, str] | None = None,
              file_format: str = "") -> Iterator[Parsed]:
    file_format = file_format or ("jsonl" if path.suffix in (".jsonl", ".ndjson") else "csv")
    reader = read_jsonl if file_format == "jsonl" else read_csv
    with path.open("rb") as stream:
        yield from reader(stream, encoding=encoding, mapping=mapping)


def read_text_csv(text: str, **kwargs: Any) -> Iterator[Parsed]:
    """CSV from a string (tests, small inputs)."""
    return read_csv(io.BytesIO(text.encode("utf-8")), **kwargs)


# -- the import ------------------------------------------------------------------------

@dataclass(frozen=True)
class _Ready:
    line: int
    row: LegacyRow
    person: Person
    account_id: str


class ImportService:
    def __init__(self, db: Database, keyring: Keyring) -> None:
        self._db = db
        self._keyring = keyring
        self._customers = CustomerService(db, keyring)
        self._logins = LoginService(db, keyring)
        self._profiles = ProfileService.configured(db, keyring)

    def start(self, product: str, *, on_reject: Callable[[Reject], None] = lambda _r: None,
              create_product: bool = False) -> ImportRun:
        """An import fed in pieces (the streaming RPC); :meth:`import_rows` for one stream."""
        if create_product:
            ensure_product(self._db, product)
        self.require_product(product)
        return ImportRun(self, product, on_reject)

    def import_rows(self, product: str, rows: Iterable[Parsed], *,
                    on_reject: Callable[[Reject], None] = lambda _r: None,
                    on_progress: Callable[[int], None] = lambda _n: None,
                    create_product: bool = False) -> ImportSummary:
        """Import a stream of parsed rows into ``product``; see the module docstring."""
        run = self.start(product, on_reject=on_reject, create_product=create_product)
        for line, parsed in rows:
            if run.add(line, parsed):
                on_progress(run.summary.read)
        summary = run.finish()
        on_progress(summary.read)
        return summary

    @staticmethod
    def _prepare(line: int, row: LegacyRow, seen: dict[bytes, int],
                 reject: Callable[[Reject], None]) -> _Ready | None:
        try:
            person = person_from_row(row)
        except FieldError as exc:
            reject(Reject(line, exc.field, exc.reason, exc.description))
            return None
        if row.password_hash.strip():
            try:
                detect_legacy_format(row.password_hash.strip())
            except MalformedHash as exc:
                reject(Reject(line, "password_hash", "MALFORMED_HASH", str(exc)))
                return None
        account_id = row.account_id.strip()
        key = hashlib.blake2b(account_id.encode(), digest_size=12).digest()
        if key in seen:
            reject(Reject(line, "account_id", "DUPLICATE_ACCOUNT_ID",
                          f"this account_id was already on line {seen[key]}"))
            return None
        seen[key] = line
        return _Ready(line, row, person, account_id)

    def _flush(self, product: str, batch: list[_Ready], summary: ImportSummary,
               reject: Callable[[Reject], None]) -> None:
        try:
            registrations = []
            for start in range(0, len(batch), REGISTER_CHUNK):
                registrations.extend(self._customers.register_many(product, [
                    AccountInput(r.account_id, _identifiers(r.person),
                                 r.person.display_name[:200])
                    for r in batch[start:start + REGISTER_CHUNK]]))
        except SingleIdError as exc:
            if exc.field in (None, "product"):
                raise
            # A row the idp refused: register one by one so only that row is rejected.
            registrations = []
            kept = []
            for ready in batch:
                try:
                    registrations.extend(self._customers.register_many(
                        product, [AccountInput(ready.account_id, _identifiers(ready.person),
                                               ready.person.display_name[:200])]))
                    kept.append(ready)
                except SingleIdError as row_error:
                    reject(Reject(ready.line, row_error.field or "", row_error.reason,
                                  row_error.message))
            batch = kept
        self._db.run_write(lambda session: self._store(session, product, batch,
                                                       [r.customer_id for r in registrations],
                                                       summary))

    def _store(self, session: Session, product: str, batch: list[_Ready],
               customer_ids: list[str], summary: ImportSummary) -> None:
        """One matching transaction per batch: new rows in one flush, keys in bulk."""
        now = utcnow()
        names = [r.account_id for r in batch]
        existing = {row.account_id: row for row in session.scalars(select(
            models.LegacyAccount).where(models.LegacyAccount.product_code == product,
                                        models.LegacyAccount.account_id.in_(names)))}
        credentials = {row.account_id: row for row in session.scalars(select(
            models.LegacyCredential).where(models.LegacyCredential.product_code == product,
                                           models.LegacyCredential.account_id.in_(names)))}
        changed: list[tuple[models.LegacyAccount, _Ready, str]] = []
        with session.no_autoflush:
            for ready, customer_id in zip(batch, customer_ids, strict=True):
                digest = store.content_hash(self._keyring, ready.person, ready.row.password_hash)
                row = existing.get(ready.account_id)
                if row is not None and row.content_hash == digest:
                    summary.unchanged += 1
                    continue
                sealed = store.seal_person(self._keyring, ready.person)
                if row is None:
                    row = models.LegacyAccount(
                        product_code=product, account_id=ready.account_id,
                        customer_id=customer_id, source="import",
                        person_ciphertext=sealed.ciphertext, person_key_id=sealed.key_id,
                        content_hash=digest, created_at=now, updated_at=now)
                    session.add(row)
                    summary.imported += 1
                else:
                    row.person_ciphertext, row.person_key_id = sealed.ciphertext, sealed.key_id
                    row.content_hash, row.updated_at, row.matched_at = digest, now, None
                    summary.updated += 1
                changed.append((row, ready, customer_id))
                self._store_credential(session, credentials.get(ready.account_id), product,
                                       ready, customer_id, now)
        session.flush()
        updated = [row.id for row, _, _ in changed if row.id is not None]
        if updated:
            session.execute(delete(models.BlockKey).where(
                models.BlockKey.account_pk.in_(updated)))
        keys = [{"account_pk": row.id, "block_key": key} for row, ready, _ in changed
                for key in set(store.block_indexes(self._keyring, Features.of(ready.person)))]
        if keys:
            session.execute(insert(models.BlockKey), keys)
        self._logins.add_legacy_logins(session, [
            login for _, ready, _ in changed for login in _legacy_logins(product, ready)])
        for _, ready, customer_id in changed:
            self._profiles.write_owned(session, customer_id, product, _profile_values(ready),
                                       source_time=_source_time(ready.row.created_at, now))

    def _store_credential(self, session: Session, row: models.LegacyCredential | None,
                          product: str, ready: _Ready, customer_id: str, now: Any) -> None:
        password_hash = ready.row.password_hash.strip()
        if not password_hash:
            if row is not None:
                session.delete(row)
            return
        sealed = self._keyring.seal_text(password_hash, models.PASSWORD_PURPOSE)
        if row is None:
            session.add(models.LegacyCredential(
                product_code=product, account_id=ready.account_id, customer_id=customer_id,
                hash_ciphertext=sealed.ciphertext, hash_key_id=sealed.key_id, created_at=now))
        else:
            row.hash_ciphertext, row.hash_key_id = sealed.ciphertext, sealed.key_id

    def require_product(self, product: str) -> None:
        """FAILED_PRECONDITION UNKNOWN_PRODUCT unless the product is registered."""
        try:
            ProductService(self._db).get(product)
        except NotFound:
            raise FailedPrecondition(f"product {product!r} is not registered (singleid "
                                     "products add)", reason="UNKNOWN_PRODUCT",
                                     field="product") from None

    def accounts(self) -> list[tuple[str, str, str]]:
        """Every kept account as (product, account ID, the central ID it was given), in order."""
        with self._db.read() as session:
            return [(p, a, c) for p, a, c in session.execute(select(
                models.LegacyAccount.product_code, models.LegacyAccount.account_id,
                models.LegacyAccount.customer_id).order_by(models.LegacyAccount.id))]

    def legacy_password_hash(self, product: str, account_id: str) -> str | None:
        """The legacy password hash stored for an account, for the idp's legacy logins."""
        with self._db.read() as session:
            row = session.scalars(select(models.LegacyCredential).where(
                models.LegacyCredential.product_code == product,
                models.LegacyCredential.account_id == account_id)).one_or_none()
            if row is None:
                return None
            return self._keyring.open_text(Sealed(row.hash_key_id, row.hash_ciphertext),
                                           models.PASSWORD_PURPOSE)


class ImportRun:
    """One import in progress: rows in, batches flushed as they fill."""

    def __init__(self, service: ImportService, product: str,
                 on_reject: Callable[[Reject], None]) -> None:
        self._service = service
        self.product = product
        self._on_reject = on_reject
        self.summary = ImportSummary()
        self._seen: dict[bytes, int] = {}
        self._batch: list[_Ready] = []

    def _reject(self, item: Reject) -> None:
        self.summary.add_reject(item)
        self._on_reject(item)

    def add(self, line: int, parsed: LegacyRow | Reject) -> bool:
        """Take one row; returns True when that flushed a batch."""
        self.summary.read += 1
        if isinstance(parsed, Reject):
            self._reject(parsed)
            return False
        ready = self._service._prepare(line, parsed, self._seen, self._reject)
        if ready is not None:
            self._batch.append(ready)
        if len(self._batch) >= BATCH_SIZE:
            self._flush()
            return True
        return False

    def add_many(self, rows: Iterable[Parsed]) -> None:
        for line, parsed in rows:
            self.add(line, parsed)

    def _flush(self) -> None:
        batch, self._batch = self._batch, []
        if batch:
            self._service._flush(self.product, batch, self.summary, self._reject)

    def finish(self) -> ImportSummary:
        self._flush()
        log.info("legacy import finished", extra={
            "product": self.product, "read": self.summary.read,
            "imported": self.summary.imported, "updated": self.summary.updated,
            "unchanged": self.summary.unchanged, "rejected": self.summary.rejected})
        return self.summary


def _profile_values(ready: _Ready) -> dict[str, Any]:
    """The account as profile attributes; the profile keeps those the product owns.

    Names as the product wrote them (the golden record shows them so); phone,
    email and birth date normalised. Addresses are taken as Russian, like phones.
    """
    row, person = ready.row, ready.person
    values: dict[str, Any] = {}
    last, first, middle = (row.last_name.strip(), row.first_name.strip(),
                           row.middle_name.strip())
    if last and first:
        values["full_name"] = {"last": last, "first": first} | (
            {"patronymic": middle} if middle else {})
    if person.birth_date:
        values["birth_date"] = person.birth_date
    if person.phone:
        values["phones"] = [person.phone]
    if person.email:
        values["emails"] = [person.email]
    if row.address.strip():
        values["postal_addresses"] = [{"country": "RU", "line": row.address.strip()} | (
            {"city": row.city.strip()} if row.city.strip() else {})]
    return values


def _source_time(created_at: str, now: datetime) -> datetime:
    """When the product recorded the account (``created_at``), else the import's time."""
    try:
        when = datetime.fromisoformat(created_at.strip())
    except ValueError:
        return now
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return min(when, now)


def _legacy_logins(product: str, ready: _Ready) -> list[LegacyLoginInput]:
    """The account's password hash under its phone and its email: how its owner signs in."""
    password_hash = ready.row.password_hash.strip()
    if not password_hash:
        return []
    return [LegacyLoginInput(product, ready.account_id, kind, value, password_hash)
            for kind, value in ((IdentifierKind.PHONE, ready.person.phone),
                                (IdentifierKind.EMAIL, ready.person.email)) if value]


def _identifiers(person: Person) -> tuple[IdentifierInput, ...]:
    """What the idp indexes: legacy values are never ``verified`` (ADR 0004)."""
    out = []
    if person.phone:
        out.append(IdentifierInput(IdentifierKind.PHONE, person.phone))
    if person.email:
        out.append(IdentifierInput(IdentifierKind.EMAIL, person.email))
    if person.passport:
        out.append(IdentifierInput(IdentifierKind.PASSPORT, person.passport))
    return tuple(out)


def ensure_product(db: Database, code: str) -> None:
    """Register a product code unless it exists (evaluation's temporary stores)."""
    with contextlib.suppress(AlreadyExists):
        ProductService(db).create(code)
