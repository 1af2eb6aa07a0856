"""Request checks shared by the customer services; each names the offending field."""

from __future__ import annotations

import re

from singleid.errors import Violations
from singleid.idp import ids
from singleid.idp.normalize import Canonical, IdentifierKind, NormalizationError, normalize

MAX_ACCOUNT_ID = 128
MAX_DISPLAY_NAME = 200
MAX_REASON = 500
MAX_ACTOR = 200
MAX_IDENTIFIERS = 20
MAX_EVIDENCE_ENTRIES = 32
MAX_EVIDENCE_KEY = 64
MAX_EVIDENCE_VALUE = 256
PRODUCT_CODE = re.compile(r"[a-z][a-z0-9_-]{1,31}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def text(violations: Violations, field: str, value: str, *, limit: int,
         required: bool = False) -> None:
    if required and not value.strip():
        violations.add(field, "must not be empty")
    elif len(value) > limit:
        violations.add(field, f"at most {limit} characters, got {len(value)}")
    elif _CONTROL.search(value):
        violations.add(field, "must not contain control characters")


def product_code(violations: Violations, field: str, value: str) -> None:
    if not value:
        violations.add(field, "must not be empty")
    elif not PRODUCT_CODE.fullmatch(value):
        violations.add(field, "2 to 32 lower-case letters, digits, '-' or '_', a letter first")


def customer_id(violations: Violations, field: str, value: str) -> None:
    if not value:
        violations.add(field, "must not be empty")
    elif not ids.is_valid(value):
        violations.add(field, "not a customer ID (26 Crockford base32 characters)")


def identifier(violations: Violations, field: str, kind: IdentifierKind | None,
               value: str) -> Canonical | None:
    if kind is None:
        violations.add(f"{field}.kind", "must be set")
        return None
    try:
        return normalize(kind, value)
    except NormalizationError as exc:
        violations.add(f"{field}.value", exc.description)
        return None


def evidence(violations: Violations, field: str, values: dict[str, str]) -> None:
    if len(values) > MAX_EVIDENCE_ENTRIES:
        violations.add(field, f"at most {MAX_EVIDENCE_ENTRIES} entries")
    for key, value in values.items():
        text(violations, f"{field}[{key[:MAX_EVIDENCE_KEY]}]", key, limit=MAX_EVIDENCE_KEY,
             required=True)
        text(violations, f"{field}[{key[:MAX_EVIDENCE_KEY]}]", value, limit=MAX_EVIDENCE_VALUE)
