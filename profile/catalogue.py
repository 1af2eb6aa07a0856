"""The attribute catalogue: which profile attributes exist, their types, rules and owners.

The catalogue is a versioned TOML file in the repository (``catalogue.toml``
beside this module, or the file ``SINGLEID_PROFILE_CATALOGUE`` names), loaded
and checked once at start-up: a malformed catalogue stops the service with a
message naming the attribute, rather than failing a request later.

Values are JSON-shaped Python (str, int, float, bool, list, dict). ``normalize``
checks one value against its attribute and returns the canonical form that is
stored (E.164 phones, lower-case e-mail domains, ISO dates).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import tomllib
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import phonenumbers
from email_validator import EmailNotValidError, validate_email

DEFAULT_MAX_BYTES = 4096
DEFAULT_MAX_LENGTH = 1000
DEFAULT_MAX_ITEMS = 20
ADDRESS_FIELDS = ("country", "region", "city", "street", "house", "apartment", "postal_code",
                  "line")
ADDRESS_FIELD_MAX = 200
DEFAULT_PHONE_REGION = "RU"
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
SOURCE_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


class CatalogueError(ValueError):
    """The catalogue file is malformed; the message names the attribute."""


class ValueProblem(ValueError):
    """A value does not fit its attribute; the message says why (never the value)."""


class Sensitivity(StrEnum):
    ORDINARY = "ordinary"
    PERSONAL = "personal"
    SPECIAL = "special"

    @property
    def sealed(self) -> bool:
        return self is not Sensitivity.ORDINARY


class AttrType(StrEnum):
    STRING = "string"
    NUMBER = "number"
    BOOL = "bool"
    DATE = "date"
    PHONE = "phone"
    EMAIL = "email"
    ENUM = "enum"
    ADDRESS = "address"
    TAGS = "tags"
    JSON = "json"


@dataclass(frozen=True)
class Rules:
    max_length: int = DEFAULT_MAX_LENGTH
    pattern: re.Pattern[str] | None = None
    minimum: Any = None
    maximum: Any = None
    values: tuple[str, ...] = ()
    max_items: int = DEFAULT_MAX_ITEMS


@dataclass(frozen=True)
class Attribute:
    name: str
    type: AttrType
    sensitivity: Sensitivity
    owners: frozenset[str]
    description: str = ""
    is_list: bool = False
    rules: Rules = field(default_factory=Rules)
    max_bytes: int = DEFAULT_MAX_BYTES
    schema: dict[str, Any] | None = None  # for type json: {"properties": {...}, "required": [...]}

    @property
    def sealed(self) -> bool:
        return self.sensitivity.sealed

    @property
    def purpose(self) -> str:
        """The associated data its sealed values are bound to (singleid.keyring)."""
        return f"profile.{self.name}"


@dataclass(frozen=True)
class Catalogue:
    version: int
    attributes: dict[str, Attribute]
    trust: tuple[str, ...]  # sources, most trusted first

    def get(self, name: str) -> Attribute | None:
        return self.attributes.get(name)

    def trust_rank(self, source: str) -> int:
        """Lower is more trusted; unknown sources rank last."""
        try:
            return self.trust.index(source)
        except ValueError:
            return len(self.trust)

    @property
    def sources(self) -> frozenset[str]:
        return frozenset(s for a in self.attributes.values() for s in a.owners) | set(self.trust)


# -- loading ------------------------------------------------------------------

def load(path: Path | None = None) -> Catalogue:
    """Read and check a catalogue file (the packaged one when ``path`` is None)."""
    if path is None:
        text = resources.files("singleid.profile").joinpath("catalogue.toml").read_text()
        where = "catalogue.toml"
    else:
        text, where = path.read_text(), str(path)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogueError(f"{where}: {exc}") from None
    return parse(doc, where)


@lru_cache(maxsize=4)
def load_cached(path: str = "") -> Catalogue:
    return load(Path(path) if path else None)


def parse(doc: dict[str, Any], where: str = "catalogue") -> Catalogue:
    version = doc.get("version")
    if not isinstance(version, int) or version < 1:
        raise CatalogueError(f"{where}: `version` must be a positive integer")
    trust = tuple(doc.get("sources", {}).get("trust", []))
    for source in trust:
        if not isinstance(source, str) or not SOURCE_PATTERN.match(source):
            raise CatalogueError(f"{where}: sources.trust: bad source name {source!r}")
    raw = doc.get("attributes")
    if not isinstance(raw, dict) or not raw:
        raise CatalogueError(f"{where}: no [attributes]")
    attributes = {name: _attribute(name, spec, where) for name, spec in raw.items()}
    return Catalogue(version=version, attributes=attributes, trust=trust)


def _attribute(name: str, spec: Any, where: str) -> Attribute:  # noqa: PLR0912 - one check a key
    at = f"{where}: attributes.{name}"
    if not NAME_PATTERN.match(name):
        raise CatalogueError(f"{at}: names are lower_snake_case, at most 63 characters")
    if not isinstance(spec, dict):
        raise CatalogueError(f"{at}: must be a table")
    known = {"type", "sensitivity", "owners", "description", "list", "max_length", "pattern",
             "min", "max", "values", "max_items", "max_bytes", "schema"}
    if unknown := set(spec) - known:
        raise CatalogueError(f"{at}: unknown keys {sorted(unknown)}")
    try:
        attr_type = AttrType(spec.get("type", ""))
    except ValueError:
        raise CatalogueError(f"{at}: type must be one of {[t.value for t in AttrType]}") from None
    try:
        sensitivity = Sensitivity(spec.get("sensitivity", ""))
    except ValueError:
        raise CatalogueError(
            f"{at}: sensitivity must be one of {[s.value for s in Sensitivity]}") from None
    owners = spec.get("owners")
    if (not isinstance(owners, list) or not owners
            or not all(isinstance(o, str) and SOURCE_PATTERN.match(o) for o in owners)):
        raise CatalogueError(f"{at}: owners must be a non-empty list of source names")
    pattern = spec.get("pattern")
    try:
        compiled = re.compile(pattern) if pattern else None
    except re.error as exc:
        raise CatalogueError(f"{at}: pattern: {exc}") from None
    values = tuple(spec.get("values", ()))
    if attr_type is AttrType.ENUM and not values:
        raise CatalogueError(f"{at}: an enum needs `values`")
    schema = spec.get("schema")
    if attr_type is AttrType.JSON:
        if not isinstance(schema, dict) or not isinstance(schema.get("properties"), dict):
            raise CatalogueError(f"{at}: a json attribute needs schema.properties")
        for prop, prop_spec in schema["properties"].items():
            if prop_spec.get("type") not in {"string", "number", "bool", "date"}:
                raise CatalogueError(f"{at}: schema.properties.{prop}: type must be "
                                     "string, number, bool or date")
        missing = set(schema.get("required", [])) - set(schema["properties"])
        if missing:
            raise CatalogueError(f"{at}: schema.required names unknown {sorted(missing)}")
    minimum, maximum = spec.get("min"), spec.get("max")
    if attr_type is AttrType.DATE:
        try:
            minimum = _date(minimum) if minimum is not None else None
            maximum = _date(maximum) if maximum is not None else None
        except ValueProblem as exc:
            raise CatalogueError(f"{at}: min/max: {exc}") from None
    return Attribute(
        name=name, type=attr_type, sensitivity=sensitivity, owners=frozenset(owners),
        description=str(spec.get("description", "")),
        is_list=bool(spec.get("list", False)) or attr_type is AttrType.TAGS,
        rules=Rules(max_length=int(spec.get("max_length", DEFAULT_MAX_LENGTH)), pattern=compiled,
                    minimum=minimum, maximum=maximum, values=values,
                    max_items=int(spec.get("max_items", DEFAULT_MAX_ITEMS))),
        max_bytes=int(spec.get("max_bytes", DEFAULT_MAX_BYTES)), schema=schema)


# -- values ---------------------------------------------------------------------

def normalize(attribute: Attribute, value: Any) -> Any:
    """The canonical form of ``value`` for ``attribute``, or ValueProblem saying why not."""
    if value is None:
        raise ValueProblem("a value is required (erase an attribute with EraseAttributes)")
    if attribute.is_list:
        if not isinstance(value, list):
            raise ValueProblem("must be a list")
        if len(value) > attribute.rules.max_items:
            raise ValueProblem(f"at most {attribute.rules.max_items} items")
        items = []
        for index, item in enumerate(value):
            try:
                items.append(_scalar(attribute, item))
            except ValueProblem as exc:
                raise ValueProblem(f"item {index}: {exc}") from None
        if attribute.type is AttrType.TAGS:
            items = sorted(set(items))
        result: Any = items
    else:
        result = _scalar(attribute, value)
    size = len(json.dumps(result, ensure_ascii=False).encode())
    if size > attribute.max_bytes:
        raise ValueProblem(f"too large: {size} bytes, at most {attribute.max_bytes}")
    return result


def _scalar(attribute: Attribute, value: Any) -> Any:  # noqa: PLR0911, PLR0912 - one branch a type
    rules = attribute.rules
    match attribute.type:
        case AttrType.STRING | AttrType.TAGS:
            return _string(value, rules)
        case AttrType.NUMBER:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueProblem("must be a number")
            if value != value or value in (float("inf"), float("-inf")):  # noqa: PLR0124 - NaN
                raise ValueProblem("must be a finite number")
            if rules.minimum is not None and value < rules.minimum:
                raise ValueProblem(f"must be at least {rules.minimum}")
            if rules.maximum is not None and value > rules.maximum:
                raise ValueProblem(f"must be at most {rules.maximum}")
            return int(value) if float(value).is_integer() else value
        case AttrType.BOOL:
            if not isinstance(value, bool):
                raise ValueProblem("must be true or false")
            return value
        case AttrType.DATE:
            day = _date(value)
            if rules.minimum is not None and day < rules.minimum:
                raise ValueProblem(f"must be on or after {rules.minimum.isoformat()}")
            if rules.maximum is not None and day > rules.maximum:
                raise ValueProblem(f"must be on or before {rules.maximum.isoformat()}")
            if attribute.name == "birth_date" and day > dt.datetime.now(dt.UTC).date():
                raise ValueProblem("must not be in the future")
            return day.isoformat()
        case AttrType.PHONE:
            return _phone(value)
        case AttrType.EMAIL:
            return _email(value)
        case AttrType.ENUM:
            if value not in rules.values:
                raise ValueProblem(f"must be one of {list(rules.values)}")
            return value
        case AttrType.ADDRESS:
            return _address(value)
        case AttrType.JSON:
            return _object(value, attribute.schema or {})
    raise AssertionError(attribute.type)


def _string(value: Any, rules: Rules) -> str:
    if not isinstance(value, str):
        raise ValueProblem("must be a string")
    text = value.strip()
    if not text:
        raise ValueProblem("must not be empty")
    if len(text) > rules.max_length:
        raise ValueProblem(f"at most {rules.max_length} characters")
    if any(ord(c) < 32 and c not in "\n\t" for c in text):
        raise ValueProblem("must not contain control characters")
    if rules.pattern is not None and not rules.pattern.search(text):
        raise ValueProblem(f"must match {rules.pattern.pattern}")
    return text


def _date(value: Any) -> dt.date:
    if isinstance(value, dt.date):
        return value
    if not isinstance(value, str):
        raise ValueProblem("must be a date as YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(value) if len(value) == 10 else _bad_date()
    except ValueError:
        raise ValueProblem("must be a date as YYYY-MM-DD") from None


def _bad_date() -> dt.date:
    raise ValueError


def _phone(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 40:
        raise ValueProblem("must be a phone number (at most 40 characters)")
    text = value.strip()
    if text.startswith("8") and not text.startswith("+"):
        text = "+7" + text[1:]  # the Russian trunk prefix
    try:
        number = phonenumbers.parse(text, DEFAULT_PHONE_REGION)
    except phonenumbers.NumberParseException:
        raise ValueProblem("must be a phone number") from None
    if not phonenumbers.is_possible_number(number):
        raise ValueProblem("must be a possible phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _email(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 254:
        raise ValueProblem("must be an e-mail address (at most 254 characters)")
    try:
        checked = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError:
        raise ValueProblem("must be an e-mail address") from None
    return f"{checked.local_part}@{checked.domain.lower()}"


def _address(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValueProblem(f"must be an object with fields {list(ADDRESS_FIELDS)}")
    if unknown := set(value) - set(ADDRESS_FIELDS):
        raise ValueProblem(f"unknown address fields {sorted(unknown)}")
    result = {}
    for key in ADDRESS_FIELDS:
        if key in value:
            try:
                result[key] = _string(value[key], Rules(max_length=ADDRESS_FIELD_MAX))
            except ValueProblem as exc:
                raise ValueProblem(f"{key}: {exc}") from None
    if "country" not in result or not ({"city", "line"} & set(result)):
        raise ValueProblem("an address needs a country and a city (or a line)")
    return result


def _object(value: Any, schema: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueProblem("must be an object")
    properties: dict[str, Any] = schema.get("properties", {})
    if unknown := set(value) - set(properties):
        raise ValueProblem(f"unknown fields {sorted(unknown)}")
    for required in schema.get("required", []):
        if required not in value:
            raise ValueProblem(f"{required}: required")
    result = {}
    for key, spec in properties.items():
        if key not in value:
            continue
        prop = Attribute(name=key, type=AttrType(spec["type"]), sensitivity=Sensitivity.ORDINARY,
                         owners=frozenset({"schema"}),
                         rules=Rules(max_length=int(spec.get("max_length", DEFAULT_MAX_LENGTH)),
                                     pattern=re.compile(spec["pattern"])
                                     if spec.get("pattern") else None))
        try:
            result[key] = _scalar(prop, value[key])
        except ValueProblem as exc:
            raise ValueProblem(f"{key}: {exc}") from None
    return result
