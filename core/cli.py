"""The ``singleid`` command. Each domain adds its own sub-commands (``singleid.commands``)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from datetime import UTC, datetime

import click
from pydantic import ValidationError

from singleid import audit as audit_trail
from singleid import logs
from singleid.db import Database
from singleid.keyring import KeyringError, load_keyring, rotate_keyring
from singleid.plugins import load_models, load_plugins
from singleid.settings import WORKER_ENV, Settings, get_settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """singleid: one central customer ID, one login and one profile for the whole ecosystem.

    Configured by SINGLEID_* environment variables (see the README).
    """


def _settings() -> Settings:
    try:
        settings = get_settings()
    except ValidationError as exc:
        problems = "; ".join(f"SINGLEID_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}"
                             for e in exc.errors())
        raise click.UsageError(problems) from None
    logs.configure(settings.log_level, settings.log_format)
    return settings


def _prepare_metrics_dir(settings: Settings) -> None:
    """Per-process metrics files shared by every worker; stale ones are wiped at start."""
    if WORKER_ENV in os.environ:
        return
    metrics_dir = settings.data_dir.resolve() / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)


@main.command()
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Server processes sharing the ports (SO_REUSEPORT).")
@click.option("--no-migrate", is_flag=True, hidden=True)
@click.option("--quiet", is_flag=True, hidden=True)
def serve(workers: int, no_migrate: bool, quiet: bool) -> None:
    """Serve gRPC on SINGLEID_GRPC_ADDR and HTTP on SINGLEID_HTTP_ADDR."""
    settings = _settings()
    _prepare_metrics_dir(settings)
    if not no_migrate:
        _migrate(settings)
    try:
        if workers > 1:
            from singleid.server.workers import supervise  # noqa: PLC0415 - after metrics dir

            sys.exit(supervise(settings, workers))
        from singleid.server.app import serve as serve_one  # noqa: PLC0415 - after metrics dir

        asyncio.run(serve_one(settings, announce=not quiet))
    except (OSError, KeyringError) as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
def migrate() -> None:
    """Apply the database migrations (serve also does this at start-up)."""
    settings = _settings()
    _migrate(settings)
    click.echo(f"migrated {Database(settings.effective_database_url).url.render_as_string()}")


def _migrate(settings: Settings) -> None:
    db = Database(settings.effective_database_url)
    try:
        db.migrate()
    finally:
        db.dispose()


@main.group()
def keys() -> None:
    """Encryption keys for personal data at rest."""


@keys.command("rotate")
@click.option("--no-reencrypt", is_flag=True,
              help="Only add the new key; run `singleid keys reencrypt` later.")
def keys_rotate(no_reencrypt: bool) -> None:
    """Add a new primary key; new writes use it, old data stays readable, then re-encrypt."""
    settings = _settings()
    try:
        old, new = rotate_keyring(settings.keyring, settings.data_dir)
    except KeyringError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"primary key: {old} -> {new}")
    if not no_reencrypt:
        _reencrypt(settings)


@keys.command("reencrypt")
def keys_reencrypt() -> None:
    """Re-encrypt, batch by batch and online, every value sealed with an older key."""
    _reencrypt(_settings())


def _reencrypt(settings: Settings) -> None:
    from singleid.rotation import reencrypt_all  # noqa: PLC0415

    load_models()
    db = Database(settings.effective_database_url)
    keyring = load_keyring(settings.keyring, settings.data_dir)
    total = reencrypt_all(db, keyring, progress=lambda table, n: click.echo(
        f"  {table}: {n} re-encrypted", err=True))
    click.echo(f"re-encrypted {total} values with key {keyring.primary_key_id}")
    db.dispose()


@main.group()
def audit() -> None:
    """The hash-chained audit trail: check it, export it."""


@audit.command("verify")
def audit_verify() -> None:
    """Check the whole chain; name the first altered or missing record (exit 1 if any)."""
    settings = _settings()
    db = Database(settings.effective_database_url)
    try:
        db.migrate()
        result = audit_trail.verify(db)
    finally:
        db.dispose()
    if result.broken is not None:
        broken = result.broken
        click.echo(f"audit chain broken at record {broken.seq}: {broken.problem}, "
                   f"{broken.detail}", err=True)
        sys.exit(1)
    click.echo(f"audit chain intact: {result.records} records, head {result.head_seq} "
               f"{result.head_hash}")


@audit.command("export")
@click.option("--since", default=None, metavar="ISO8601",
              help="Only records at or after this time (UTC unless it names a zone).")
def audit_export(since: str | None) -> None:
    """Stream the records as JSON Lines on stdout, in chain order."""
    start = _parse_since(since) if since else None
    settings = _settings()
    db = Database(settings.effective_database_url)
    try:
        db.migrate()
        for record in audit_trail.export(db, start):
            click.echo(json.dumps(record, ensure_ascii=False, separators=(",", ":")))
    finally:
        db.dispose()


def _parse_since(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter("an ISO 8601 time, e.g. 2026-11-23T10:00:00Z",
                                 param_hint="--since") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


for _add_commands in load_plugins("singleid.commands"):
    for _command in _add_commands():
        main.add_command(_command)
