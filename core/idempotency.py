"""Idempotency keys: a retried mutation with the same key applies once.

The record is written in the mutation's own transaction, so either both the
change and its record commit or neither does. A concurrent duplicate loses the
race on the primary key and replays the winner's stored result.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime
from functools import lru_cache
from typing import Any, TypeVar, cast

from pydantic import TypeAdapter
from sqlalchemy import LargeBinary, String
from sqlalchemy.orm import Mapped, Session, mapped_column

from singleid.db import Base, utcnow
from singleid.errors import FailedPrecondition, InvalidArgument

MAX_KEY_LENGTH = 128
T = TypeVar("T")


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_records"

    scope: Mapped[str] = mapped_column(String(100), primary_key=True)
    key: Mapped[str] = mapped_column(String(MAX_KEY_LENGTH), primary_key=True)
    request_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    result: Mapped[str]
    created_at: Mapped[datetime]


def fingerprint(request: Any) -> bytes:
    return hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode()).digest()


def check_key(key: str) -> None:
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidArgument(f"at most {MAX_KEY_LENGTH} characters", field="idempotency_key",
                              reason="TOO_LONG")


def replay(session: Session, scope: str, key: str, request_hash: bytes) -> str | None:
    """The stored result of an earlier call with this key, or None."""
    record = session.get(IdempotencyRecord, (scope, key))
    if record is None:
        return None
    if record.request_hash != request_hash:
        raise FailedPrecondition(
            "this idempotency key was used for a different request",
            reason="IDEMPOTENCY_KEY_REUSED", field="idempotency_key")
    return record.result


def remember(session: Session, scope: str, key: str, request_hash: bytes, result: str) -> None:
    session.add(IdempotencyRecord(scope=scope, key=key, request_hash=request_hash, result=result,
                                  created_at=utcnow()))


def run_once(session: Session, scope: str, key: str, request: Any,
             apply: Callable[[], T], result_type: Any) -> T:
    """Apply a mutation once per key, within the caller's transaction.

    ``result_type`` (a dataclass, or None) says how the stored result is read back.
    """
    if not key:
        return apply()
    check_key(key)
    request_hash = fingerprint(request)
    adapter = _adapter(result_type)
    stored = replay(session, scope, key, request_hash)
    if stored is not None:
        return cast(T, adapter.validate_json(stored))
    result = apply()
    remember(session, scope, key, request_hash, adapter.dump_json(result).decode())
    return result


@lru_cache(maxsize=64)
def _adapter(result_type: Any) -> TypeAdapter[Any]:
    return TypeAdapter(result_type)
