"""Verified-call proofs: an accepting voice verification, as a short-lived signed token.

The voiceprint service issues one when it accepts a caller in a call; the
profile service takes it back from the contact center's GetProfile and shows
personal attributes only for that customer, in that call, until it expires.
It is a MAC (HMAC-SHA256 under the key ring's index key, with a purpose of its
own), not a JWT: only singleid issues and checks it, and every server process
holds the key already.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import time

from singleid.keyring import Keyring

PURPOSE = "verified_call_proof.v1"
LIFETIME_SECONDS = 600


def issue(keyring: Keyring, customer_id: str, call_id: str,
          lifetime_seconds: int = LIFETIME_SECONDS) -> str:
    now = int(time.time())
    payload = _b64(json.dumps({"customer_id": customer_id, "call_id": call_id, "iat": now,
                               "exp": now + lifetime_seconds}, separators=(",", ":")).encode())
    return f"{payload}.{_b64(keyring.blind_index(payload, PURPOSE))}"


def valid(keyring: Keyring, proof: str, customer_id: str, call_id: str) -> bool:
    """Whether ``proof`` is ours, unexpired, and names this customer and this call."""
    payload, _, mac = proof.partition(".")
    if not payload or not mac or len(proof) > 1024:
        return False
    if not hmac.compare_digest(_b64(keyring.blind_index(payload, PURPOSE)), mac):
        return False
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, binascii.Error):
        return False
    return (isinstance(claims, dict) and claims.get("customer_id") == customer_id
            and bool(call_id) and claims.get("call_id") == call_id
            and isinstance(claims.get("exp"), int) and claims["exp"] > time.time())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")
