"""What the profile services take and return: plain dataclasses, no protobuf."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# Event types (CloudEvents ``type`` is "singleid." + these); the names are a contract.
PROFILE_UPDATED = "profile.updated.v1"
PROFILE_ERASED = "profile.erased.v1"
PROFILE_MERGED = "profile.merged.v1"
PROFILE_UNMERGED = "profile.unmerged.v1"
CONSENT_GRANTED = "consent.granted.v1"
CONSENT_WITHDRAWN = "consent.withdrawn.v1"
EVENT_SOURCE = "/singleid/profile"


@dataclass(frozen=True)
class AttributeView:
    name: str
    value: Any
    source: str
    source_time: datetime
    version: int
    update_time: datetime
    sensitivity: str


@dataclass(frozen=True)
class ProfileView:
    customer_id: str  # the survivor's ID
    requested_customer_id: str
    resolved_from_alias: bool
    version: int
    etag: str
    attributes: list[AttributeView]
    update_time: datetime | None


@dataclass(frozen=True)
class UpdateResult:
    customer_id: str
    version: int
    etag: str
    updated: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # older source timestamp than stored
    unchanged: list[str] = field(default_factory=list)  # same value as stored


@dataclass(frozen=True)
class HistoryEntry:
    name: str
    kind: str  # set, erased, merged, unmerged, granted, withdrawn
    source: str
    source_time: datetime | None
    version: int
    change_time: datetime
    old_value: Any
    new_value: Any
    sensitive: bool  # only "changed" is shown
    redacted: bool  # erased since: the values are gone
    reason: str


@dataclass(frozen=True)
class HistoryPage:
    entries: list[HistoryEntry]
    next_page_token: str = ""


@dataclass(frozen=True)
class EraseResult:
    customer_id: str
    version: int
    etag: str
    erased: list[str]


@dataclass(frozen=True)
class ConsentView:
    customer_id: str
    purpose: str
    granted: bool
    text_version: str
    channel: str
    change_time: datetime
    version: int


@dataclass(frozen=True)
class ChangeEvent:
    """One outbox event as WatchChanges delivers it, with the token to resume after it."""

    id: str
    type: str
    source: str
    subject: str
    time: datetime
    data: dict[str, Any]
    resume_token: str
    envelope_json: bytes


def etag(customer_id: str, version: int) -> str:
    return f'"{customer_id}.{version}"'
