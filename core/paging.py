"""Page sizes and opaque page tokens for every List call (AIP-158).

A token is an integer (the last row's key, or an offset) written in base 36;
callers treat it as opaque.
"""

from __future__ import annotations

from singleid.errors import InvalidArgument


def page_size(value: int, *, default: int = 100, maximum: int = 1000) -> int:
    if value < 0:
        raise InvalidArgument("must not be negative", field="page_size")
    return min(value or default, maximum)


def page_token(value: str) -> int:
    """Page tokens are the last row's key, opaque to callers."""
    if not value:
        return 0
    try:
        return int(value, 36)
    except ValueError:
        raise InvalidArgument("not a page token from an earlier response",
                              field="page_token") from None


def next_page_token(last_key: int | None) -> str:
    return "" if last_key is None else _to_base36(last_key)


def _to_base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, digit = divmod(number, 36)
        out = digits[digit] + out
        if number == 0:
            return out
