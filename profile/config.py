"""The profile domain's settings: the catalogue file and the event broker.

Read from ``SINGLEID_*`` variables like core's settings (the names are a
contract); kept here so core stays free of any domain.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ProfileSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SINGLEID_", extra="ignore")

    profile_catalogue: str = Field(
        default="", description="A catalogue TOML file; empty means the packaged catalogue.toml.")
    event_broker: Literal["none", "nats", "kafka"] = Field(
        default="none",
        description="Where the relay publishes the outbox: none (WatchChanges only), nats, kafka.")
    nats_url: str = "nats://127.0.0.1:4222"
    nats_stream: str = Field(default="SINGLEID", description="The JetStream stream to publish to.")
    event_subject_prefix: str = Field(
        default="", description="Put before each event type to make its subject (e.g. 'prod.').")
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_topic: str = "singleid.events"
    relay_in_serve: bool = Field(
        default=True, description="Run the relay inside `singleid serve` (one per deployment).")
    relay_batch: int = Field(default=500, ge=1, le=10_000)
    relay_poll_seconds: float = Field(default=0.05, gt=0, le=10)
    relay_max_backoff_seconds: float = Field(default=10.0, gt=0, le=600)
    relay_lease_seconds: float = Field(default=5.0, gt=0.5, le=600)
    outbox_retention_hours: float = Field(
        default=168.0, gt=0,
        description="Keep outbox events this long (WatchChanges can resume within it); "
                    "with a broker, unpublished events are kept until published.")
    outbox_prune_interval_seconds: float = Field(default=600.0, gt=0, le=86_400)


@lru_cache(maxsize=1)
def get_profile_settings() -> ProfileSettings:
    return ProfileSettings()
