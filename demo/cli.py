"""``singleid demo``: seed the demo ecosystem and print what to try."""

from __future__ import annotations

from pathlib import Path

import click

from singleid.clitools import app_context
from singleid.demo import seed
from singleid.profile.catalogue import load_cached
from singleid.profile.config import get_profile_settings
from singleid.settings import Settings


def commands() -> list[click.Command]:
    """The ``singleid.commands`` entry point."""
    return [demo]


@click.command()
@click.option("--cabinet-url", default="http://127.0.0.1:8000", show_default=True,
              help="Where the sample app (python -m singleid.clients.cabinet) will listen.")
@click.option("--voice-dir", type=click.Path(file_okay=False, path_type=Path),
              envvar="SINGLEID_DEMO_VOICE_DIR", default=None,
              help="Voice recordings (voxforge/<speaker>/*.flac): enroll a demo voiceprint.")
def demo(cabinet_url: str, voice_dir: Path | None) -> None:
    """Seed a small ecosystem (products, the sample app's client, customers); print what to try.

    Idempotent: a second run keeps what exists and adds what is missing.
    """
    with app_context() as context:
        seeder = seed.Seeder(context, load_cached(get_profile_settings().profile_catalogue),
                             cabinet_url, progress=lambda line: click.echo(line, err=True))
        seeded = seeder.run(voice_dir)
        click.echo(what_to_try(context.settings, seeded, cabinet_url))


def what_to_try(settings: Settings, seeded: seed.Seeded, cabinet_url: str) -> str:
    anna = seeded.customers["Anna"]
    secret = (f"its secret is in {seeded.client_file}" if seeded.client_secret_known else
              f"its secret was shown at its creation and {seeded.client_file} is gone: "
              "add another client with `singleid oidc client add`")
    return "\n".join([
        f"singleid demo: {len(seeded.created)} things created, the rest already there.",
        "",
        "Customers:",
        *(f"  {name}: {customer_id}" for name, customer_id in seeded.customers.items()),
        f"  {seeded.voiceprint}",
        "",
        "Try:",
        "  singleid serve                                   # in another terminal",
        f"  python -m singleid.clients.cabinet --client-file {seeded.client_file}"
        f" --listen {cabinet_url} --grpc {settings.grpc_addr}",
        f"  open {cabinet_url}/ and sign in as {seed.ANNA_PHONE} / {seed.ANNA_PASSWORD!r}",
        f"  sign in as {seed.BORIS_EMAIL} / {seed.BORIS_LEGACY_PASSWORD!r}"
        " (his old cards password: singleid asks to make it the ecosystem login)",
        f"  grpcurl -plaintext -d '{{\"identifier\": {{\"kind\": \"IDENTIFIER_KIND_PHONE\","
        f" \"value\": \"{seed.ANNA_PHONE}\"}}}}' {settings.grpc_addr}"
        " singleid.v1.CustomerService/ResolveCustomer",
        f"  grpcurl -plaintext -d '{{\"customer_id\": \"{anna}\"}}' {settings.grpc_addr}"
        " singleid.v1.ProfileService/GetProfile",
        f"  open http://{settings.http_addr}/review          # the merge review queue",
        f"  OIDC client {seed.CABINET_CLIENT_ID}: {secret}",
    ])
