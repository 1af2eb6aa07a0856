"""Central customer IDs: 128 random bits, written as 26 Crockford base32 characters.

Opaque (nothing about the person or the time is in it), not guessable (from
``secrets``), not sequential, stable, and never reused: a merged-away ID stays
as an alias. Crockford's alphabet has no I, L, O or U, so an ID read aloud or
retyped by an operator is hard to get subtly wrong. Example: ``0d3x7k9q2m8v4n6r1t5w0y3z7a``.
"""

from __future__ import annotations

import re
import secrets

ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
LENGTH = 26
_PATTERN = re.compile(rf"[0-7][{ALPHABET}]{{{LENGTH - 1}}}")


def new_id() -> str:
    number = secrets.randbits(128)
    chars = []
    for _ in range(LENGTH):
        number, digit = divmod(number, 32)
        chars.append(ALPHABET[digit])
    return "".join(reversed(chars))


def is_valid(value: str) -> bool:
    return _PATTERN.fullmatch(value) is not None
