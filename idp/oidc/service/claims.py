"""The standard claims (OpenID Connect Core §5.1) a token's scopes allow.

The consolidated profile is the source, read through the profile domain's
service; the customer record (the name given at registration, the login's
email and phone) fills what the profile does not have yet. ``*_verified`` is
true only when the address or number is one of the customer's verified login
identifiers: a product writing an e-mail into the profile proves nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import and_, bindparam, select

from singleid.db import Database
from singleid.errors import NotFound
from singleid.idp import models as idp_models
from singleid.keyring import Keyring, Sealed
from singleid.profile.service import ProfileService

# The profile attributes each scope reads (the catalogue's names).
SCOPE_ATTRIBUTES: Mapping[str, tuple[str, ...]] = {
    "profile": ("preferred_name", "full_name", "birth_date", "language"),
    "email": ("emails",),
    "phone": ("phones",),
    "address": ("postal_addresses",),
}
CLAIMS_SUPPORTED = ("name", "given_name", "family_name", "middle_name", "birthdate", "locale",
                    "email", "email_verified", "phone_number", "phone_number_verified",
                    "address")

_KINDS = {"email": "email", "phone": "phone_number"}
# The record's name and its e-mail and phone identifiers in one prebuilt statement:
# it runs for every ID token and userinfo call.
_C, _I = idp_models.Customer, idp_models.CustomerIdentifier
_RECORD = (select(_C.display_name_ciphertext, _C.display_name_key_id, _I.kind, _I.ciphertext,
                  _I.key_id, _I.verified)
           .outerjoin(_I, and_(_I.customer_id == _C.id, _I.kind.in_(list(_KINDS))))
           .where(_C.id == bindparam("id")).order_by(_I.id))


class ClaimSource:
    def __init__(self, db: Database, keyring: Keyring, profiles: ProfileService) -> None:
        self._db = db
        self._keyring = keyring
        self._profiles = profiles

    def claims(self, customer_id: str, scope: str) -> dict[str, Any]:
        """``sub`` and the claims of the scopes in ``scope`` that have a value."""
        scopes = set(scope.split()) & set(SCOPE_ATTRIBUTES)
        result: dict[str, Any] = {"sub": customer_id}
        if not scopes:
            return result
        # A deployment's own catalogue may lack some of these attributes.
        known = self._profiles.catalogue.attributes
        wanted = [name for s in sorted(scopes) for name in SCOPE_ATTRIBUTES[s] if name in known]
        try:
            view = self._profiles.get(customer_id, wanted)
            profile = {a.name: a.value for a in view.attributes}
        except NotFound:  # a customer removed since the token was issued: sub only
            return result
        record = self._record(customer_id)
        if "profile" in scopes:
            result |= _profile_claims(profile, record.get("name", ""))
        if "email" in scopes:
            result |= _contact(profile.get("emails"), record, "email", str.lower)
        if "phone" in scopes:
            result |= _contact(profile.get("phones"), record, "phone_number", str)
        if "address" in scopes and (addresses := profile.get("postal_addresses")):
            result["address"] = _address(addresses[0])
        return result

    def _record(self, customer_id: str) -> dict[str, Any]:
        """The customer record's name and login identifiers ({kind: [(value, verified)]})."""
        found: dict[str, Any] = {"name": "", "email": [], "phone_number": []}
        with self._db.read_connection() as connection:
            rows = connection.execute(_RECORD, {"id": customer_id}).all()
        open_text = self._keyring.open_text
        if rows and rows[0].display_name_key_id is not None:
            found["name"] = open_text(Sealed(rows[0].display_name_key_id,
                                             rows[0].display_name_ciphertext),
                                      idp_models.DISPLAY_NAME_PURPOSE)
        for row in rows:
            if row.kind is not None:
                value = open_text(Sealed(row.key_id, row.ciphertext),
                                  idp_models.identifier_purpose(row.kind))
                found[_KINDS[row.kind]].append((value, row.verified))
        return found


def _profile_claims(profile: Mapping[str, Any], record_name: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    if name := profile.get("preferred_name") or record_name:
        result["name"] = name
    full_name = profile.get("full_name") or {}
    for claim, part in (("given_name", "first"), ("family_name", "last"),
                        ("middle_name", "patronymic")):
        if full_name.get(part):
            result[claim] = full_name[part]
    if birth_date := profile.get("birth_date"):
        result["birthdate"] = str(birth_date)
    if language := profile.get("language"):
        result["locale"] = language
    return result


def _contact(values: list[str] | None, record: Mapping[str, Any], claim: str,
             fold: Callable[[str], str]) -> dict[str, Any]:
    """The profile's first address or number, else the login's; verified as the login says."""
    logins: list[tuple[str, bool]] = record[claim]
    value = values[0] if values else (logins[0][0] if logins else None)
    if value is None:
        return {}
    verified = any(verified and fold(login) == fold(value) for login, verified in logins)
    return {claim: value, f"{claim}_verified": verified}


def _address(address: Mapping[str, str]) -> dict[str, str]:
    """The profile's address fields as the OIDC address claim (§5.1.1)."""
    street = ", ".join(address[k] for k in ("street", "house", "apartment") if address.get(k))
    result = {"country": address["country"]}
    for claim, value in (("street_address", street), ("locality", address.get("city", "")),
                         ("region", address.get("region", "")),
                         ("postal_code", address.get("postal_code", ""))):
        if value:
            result[claim] = value
    result["formatted"] = address.get("line") or ", ".join(
        part for part in (street, address.get("city"), address.get("region"),
                          address.get("postal_code"), address["country"]) if part)
    return result
