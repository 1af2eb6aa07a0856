"""``singleid profile …`` and ``singleid relay``: the profile domain's sub-commands.

They call the same services as the gRPC API, on the database the settings name.
"""

from __future__ import annotations

import asyncio
import csv
import json
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import click

from singleid import logs
from singleid.clitools import app_context
from singleid.profile.catalogue import Catalogue, CatalogueError, Sensitivity, load_cached
from singleid.profile.config import get_profile_settings
from singleid.profile.service import ExportService, ProfileService
from singleid.profile.service.relay import Relay, publisher_from
from singleid.settings import get_settings


def commands() -> list[click.Command]:
    """The ``singleid.commands`` entry point."""
    return [profile, relay]


def _catalogue() -> Catalogue:
    try:
        return load_cached(get_profile_settings().profile_catalogue)
    except (CatalogueError, OSError) as exc:
        raise click.ClickException(f"attribute catalogue: {exc}") from None


@click.group()
def profile() -> None:
    """The consolidated customer profile: its catalogue, reads and export."""


@profile.command("catalogue")
def catalogue_show() -> None:
    """Check the attribute catalogue and print it as JSON."""
    catalogue = _catalogue()
    click.echo(json.dumps({
        "version": catalogue.version, "source_trust": list(catalogue.trust),
        "attributes": {a.name: {"type": a.type.value, "list": a.is_list,
                                "sensitivity": a.sensitivity.value, "owners": sorted(a.owners)}
                       for a in catalogue.attributes.values()}}, indent=2))


@profile.command("get")
@click.argument("customer_id")
@click.option("--attribute", "attributes", multiple=True, help="Only these (repeatable).")
def profile_get(customer_id: str, attributes: tuple[str, ...]) -> None:
    """Print one profile as JSON (special attributes only when named)."""
    catalogue = _catalogue()
    with app_context() as context:
        view = ProfileService(context.db, context.keyring, catalogue).get(
            customer_id, list(attributes) or None)
    click.echo(json.dumps({
        "customer_id": view.customer_id, "version": view.version, "etag": view.etag,
        "attributes": {a.name: {"value": a.value, "source": a.source,
                                "source_time": a.source_time.isoformat(),
                                "version": a.version} for a in view.attributes}},
        ensure_ascii=False, indent=2))


@profile.command("export")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv", "parquet"]),
              default="jsonl", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="File to write (default: standard output; parquet needs a file).")
@click.option("--include-personal", is_flag=True,
              help="Also export personal attributes (names, phones, ...).")
@click.option("--include-special", is_flag=True,
              help="Also export special attributes (passport, contact-center notes).")
def profile_export(fmt: str, output: Path | None, include_personal: bool,
                   include_special: bool) -> None:
    """Stream every profile for offline analytics, with a progress bar on standard error.

    Sensitive attributes are left out unless asked for explicitly.
    """
    if fmt == "parquet" and output is None:
        raise click.UsageError("--format parquet needs --output FILE")
    include = frozenset(
        {Sensitivity.PERSONAL} if include_personal else set()) | frozenset(
        {Sensitivity.SPECIAL} if include_special else set())
    catalogue = _catalogue()
    with app_context() as context:
        service = ExportService(context.db, context.keyring, catalogue)
        columns = ["customer_id", "version", "update_time", *sorted(service.columns(include))]
        total = service.count()
        with click.progressbar(length=total, label=f"exporting {total} profiles",
                               file=sys.stderr) as bar:
            rows = _counted(service.rows(include), bar)
            if fmt == "parquet":
                assert output is not None
                count = _parquet(rows, columns, output)
            else:
                with (output.open("w", newline="", encoding="utf-8") if output
                      else _stdout()) as out:
                    count = _jsonl(rows, out) if fmt == "jsonl" else _csv(rows, columns, out)
    click.echo(f"exported {count} profiles", err=True)


@contextmanager
def _stdout() -> Iterator[IO[str]]:
    yield sys.stdout


def _counted(rows: Iterator[dict[str, Any]], bar: Any) -> Iterator[dict[str, Any]]:
    for row in rows:
        bar.update(1)
        yield row


def _jsonl(rows: Iterator[dict[str, Any]], out: IO[str]) -> int:
    count = 0
    for row in rows:
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
        count += 1
    return count


def _cell(value: Any) -> Any:
    """Scalars as they are; lists and objects as JSON text."""
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return value


def _csv(rows: Iterator[dict[str, Any]], columns: list[str], out: IO[str]) -> int:
    writer = csv.DictWriter(out, fieldnames=columns)
    writer.writeheader()
    count = 0
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})
        count += 1
    return count


def _parquet(rows: Iterator[dict[str, Any]], columns: list[str], output: Path,
             batch: int = 1000) -> int:
    import pyarrow as pa  # noqa: PLC0415 - heavy; only for this format
    import pyarrow.parquet as pq  # noqa: PLC0415

    schema = pa.schema([(c, pa.int64() if c == "version" else pa.string()) for c in columns])
    count = 0
    with pq.ParquetWriter(str(output), schema) as writer:
        chunk: list[dict[str, Any]] = []
        for row in rows:
            chunk.append({c: (row[c] if c == "version" else
                              (None if row[c] is None else str(_cell(row[c]))))
                          for c in columns})
            if len(chunk) >= batch:
                writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
                count, chunk = count + len(chunk), []
        if chunk:
            writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
            count += len(chunk)
    return count


@click.command()
def relay() -> None:
    """Publish the outbox to the broker (SINGLEID_EVENT_BROKER) until SIGTERM or SIGINT.

    Safe to run beside `singleid serve`: one relay publishes at a time (a lease).
    """
    core = get_settings()
    logs.configure(core.log_level, core.log_format)
    settings = get_profile_settings()
    publisher = publisher_from(settings)
    if publisher is None:
        raise click.UsageError("SINGLEID_EVENT_BROKER is none: set nats or kafka")
    with app_context() as context:

        async def run() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            worker = Relay(context.db, publisher, settings, run_blocking=context.run_blocking)
            click.echo(f"singleid relay: {settings.event_broker} holder={worker.holder}",
                       err=True)
            await worker.run(stop)

        asyncio.run(run())
