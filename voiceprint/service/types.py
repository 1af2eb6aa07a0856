"""What the voiceprint services take and return: plain dataclasses, no protobuf."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from singleid.voiceprint.audio import AudioFormat


class Decision(StrEnum):
    ACCEPT = "accept"
    REJECT = "reject"


@dataclass(frozen=True)
class AudioInput:
    content: bytes
    format: AudioFormat


@dataclass(frozen=True)
class VoiceprintView:
    customer_id: str
    model_id: str
    model_version: str
    utterance_count: int
    net_speech_seconds: float
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class WatchlistMatch:
    entry_id: str
    score: float


@dataclass(frozen=True)
class VerifyResult:
    customer_id: str
    decision: Decision
    raw_score: float
    llr: float
    probability: float
    threshold: float
    operating_point: str
    step_up_recommended: bool
    net_speech_seconds: float
    model_id: str
    replay_detected: bool = False
    watchlist_matches: list[WatchlistMatch] = field(default_factory=list)

    @property
    def watchlist_hit(self) -> bool:
        return bool(self.watchlist_matches)


@dataclass(frozen=True)
class WatchlistEntryView:
    entry_id: str
    label: str
    model_id: str
    created_at: datetime
