"""What every domain's ``singleid`` sub-commands share: a context, errors, JSON output."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import click

from singleid.errors import SingleIdError
from singleid.server.context import AppContext
from singleid.settings import get_settings


@contextmanager
def app_context() -> Iterator[AppContext]:
    """The settings' database (migrated) and key ring; domain errors become CLI errors."""
    context = AppContext.from_settings(get_settings())
    try:
        context.db.migrate()
        yield context
    except SingleIdError as exc:
        raise click.ClickException(f"{exc.reason}: {exc.message}") from None
    finally:
        context.close()


def echo_json(value: Any) -> None:
    """One JSON object a line; dataclasses as objects, timestamps in ISO 8601."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    click.echo(json.dumps(value, default=_json_default, ensure_ascii=False))


def _json_default(value: object) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)
