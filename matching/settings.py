"""Matching's own settings (``SINGLEID_MATCH_*``): the two decision thresholds."""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class MatchSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SINGLEID_MATCH_", extra="ignore")

    auto_merge_probability: float = Field(
        default=0.999, gt=0, le=1,
        description="Merge automatically at or above this match probability.")
    review_probability: float = Field(
        default=0.5, gt=0, le=1,
        description="Queue for review at or above this probability (and below auto-merge).")

    @model_validator(mode="after")
    def _ordered(self) -> MatchSettings:
        if self.review_probability > self.auto_merge_probability:
            raise ValueError("SINGLEID_MATCH_REVIEW_PROBABILITY must not exceed "
                             "SINGLEID_MATCH_AUTO_MERGE_PROBABILITY")
        return self
