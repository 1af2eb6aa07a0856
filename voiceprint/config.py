"""The voice domain's settings: ``SINGLEID_VOICE_*`` environment variables (a contract)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class VoiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SINGLEID_VOICE_", extra="ignore")

    backend: Literal["ge2e", "ecapa"] = Field(default="ge2e",
                                              description="The speaker-embedding model.")
    ecapa_dir: Path | None = Field(
        default=None, description="A speechbrain ECAPA-TDNN model directory (ecapa backend).")
    calibration: Path | None = Field(
        default=None, description="A threshold table from `singleid voiceprint calibrate`; "
        "empty: the table bundled for the backend's model.")
    operating_point: str = Field(default="far_1pct",
                                 description="far_10pct, far_1pct, far_0_1pct or eer.")
    grey_zone_llr: float = Field(default=1.0, ge=0,
                                 description="Step up when |LLR - LLR at threshold| is below this.")
    watchlist_operating_point: str = "far_0_1pct"
    min_enroll_speech_seconds: float = Field(default=2.0, ge=0)
    min_utterance_speech_seconds: float = Field(default=0.8, ge=0)
    min_verify_speech_seconds: float = Field(default=1.0, ge=0)
    max_attempts_per_customer: int = Field(default=10, ge=1)
    max_attempts_per_call: int = Field(default=5, ge=1)
    attempt_window_seconds: int = Field(default=600, ge=1)
    fingerprints_kept: int = Field(default=20, ge=1,
                                   description="Verification fingerprints kept per customer.")
    deadline_seconds: float = Field(default=90.0, gt=0,
                                    description="Server-side limit on one Enroll/Verify call.")
    torch_threads: int = Field(default=1, ge=1, le=64)
