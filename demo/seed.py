"""What ``singleid demo`` writes: products, the sample app's OIDC client, demo customers.

Every step is idempotent: an existing product, client, login or account is
kept, profile writes carry fixed idempotency keys, and a voiceprint is enrolled
only once. Running it twice gives the same ecosystem.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from singleid.errors import AlreadyExists, NotFound
from singleid.idp.normalize import IdentifierKind
from singleid.idp.oidc.service.clients import ClientService
from singleid.idp.oidc.service.logins import LoginService
from singleid.idp.oidc.service.passwords import LegacyFormat, make_legacy_hash
from singleid.idp.service import CustomerService, ProductService
from singleid.idp.service.types import IdentifierInput, Lookup
from singleid.keyring import write_secret_file
from singleid.profile.catalogue import Catalogue
from singleid.profile.service import ConsentService, ProfileService
from singleid.server.context import AppContext

PRODUCTS = {"cards": "Cards", "loans": "Loans", "loyalty": "Loyalty programme",
            "messenger": "Messenger bot"}
CABINET_CLIENT_ID = "loyalty-cabinet"
CABINET_CALLBACK_PATH = "/auth/callback"
CABINET_CLIENT_FILE = "demo-cabinet-client.json"
VOICE_SPEAKER = "Ara"  # a VoxForge speaker of ../shared/data/voice (8 recordings)
VOICE_ENROLL_RECORDINGS = 2
KEY_PREFIX = "demo-v1"  # idempotency keys of the demo's writes

# Demo credentials, printed by the command: these people are made up.
ANNA_PHONE = "+7 916 555-01-01"
ANNA_PASSWORD = "anna demo password"  # noqa: S105
BORIS_EMAIL = "boris.petrov@example.com"
BORIS_LEGACY_PASSWORD = "boris cards password"  # noqa: S105
VERA_TELEGRAM = "700100200"


@dataclass
class Seeded:
    """What the demo holds after a run; ``created`` lists what this run added."""

    customers: dict[str, str] = field(default_factory=dict)  # name -> central ID
    client_file: Path | None = None
    client_secret_known: bool = False
    voiceprint: str = ""  # why there is, or is not, a voiceprint
    created: list[str] = field(default_factory=list)


class Seeder:
    def __init__(self, context: AppContext, catalogue: Catalogue, cabinet_url: str,
                 progress: Callable[[str], None] = lambda _: None) -> None:
        self._context = context
        self._customers = CustomerService(context.db, context.keyring)
        self._logins = LoginService(context.db, context.keyring)
        self._profiles = ProfileService(context.db, context.keyring, catalogue)
        self._cabinet_url = cabinet_url.rstrip("/")
        self._progress = progress
        self.seeded = Seeded()

    def run(self, voice_dir: Path | None) -> Seeded:
        self._products()
        self._cabinet_client()
        self._anna()
        self._boris()
        self._vera()
        self.seeded.voiceprint = self._voiceprint(voice_dir)
        return self.seeded

    def _created(self, what: str) -> None:
        self.seeded.created.append(what)
        self._progress(f"created {what}")

    # -- the ecosystem --------------------------------------------------------

    def _products(self) -> None:
        products = ProductService(self._context.db)
        for code, name in PRODUCTS.items():
            try:
                products.create(code, name)
            except AlreadyExists:
                continue
            self._created(f"product {code}")

    def _cabinet_client(self) -> None:
        """A confidential client; its secret, shown once, is kept for the cabinet in the data dir.

        On a second run the client exists and its secret is only in that file.
        """
        path = self._context.settings.data_dir / CABINET_CLIENT_FILE
        self.seeded.client_file = path
        redirect_uri = self._cabinet_url + CABINET_CALLBACK_PATH
        try:
            # Sign-in for customers; client credentials and profile.read to show the profile
            # over gRPC, as the loyalty product, personal attributes included (the names).
            created = ClientService(self._context.db).add(
                CABINET_CLIENT_ID, [redirect_uri],
                grant_types=("authorization_code", "refresh_token", "client_credentials"),
                scopes=("openid", "profile", "phone", "profile.read"),
                post_logout_redirect_uris=[self._cabinet_url + "/"], product="loyalty",
                source="loyalty", sensitivity="personal")
        except AlreadyExists:
            self.seeded.client_secret_known = path.exists()
            return
        assert created.client_secret is not None
        write_secret_file(path, json.dumps({
            "client_id": created.client_id, "client_secret": created.client_secret,
            "redirect_uri": redirect_uri, "issuer": self._context.settings.effective_issuer},
            indent=2))
        self.seeded.client_secret_known = True
        self._created(f"OIDC client {CABINET_CLIENT_ID}")

    # -- the customers ----------------------------------------------------------

    def _anna(self) -> None:
        """An ecosystem login, cards and loyalty accounts, a profile from four sources."""
        try:
            customer_id = self._logins.register(ANNA_PHONE, ANNA_PASSWORD, "Аня")
            self._created("customer Anna with a login")
        except AlreadyExists:
            customer_id = self._customers.resolve(
                Lookup(identifier=(IdentifierKind.PHONE, ANNA_PHONE))).customer_id
        for product, account in (("cards", "demo-c-1001"), ("loyalty", "demo-l-1001")):
            self._customers.link_account(customer_id, product, account)
        self._profile(customer_id, "anna", {
            "customer": {"preferred_name": "Аня", "language": "ru"},
            "cards": {"full_name": {"last": "Смирнова", "first": "Анна",
                                    "patronymic": "Сергеевна"},
                      "birth_date": "1990-04-12", "phones": [ANNA_PHONE]},
            "loyalty": {"loyalty_tier": "gold"},
            "loans": {"postal_addresses": [{"country": "RU", "city": "Москва",
                                            "line": "ул. Демонстрационная, 1"}]},
        })
        self.seeded.customers["Anna"] = customer_id

    def _boris(self) -> None:
        """A cards account with a legacy login (a bcrypt hash), not yet an ecosystem login."""
        registration = self._customers.register(
            "cards", "demo-c-2002", [IdentifierInput(IdentifierKind.EMAIL, BORIS_EMAIL, True)],
            display_name="Борис Петров")
        if registration.created:
            self._created("customer Boris (cards)")
        if not self._logins.legacy_state("cards", "demo-c-2002"):
            self._logins.add_legacy_login(
                "cards", "demo-c-2002", IdentifierKind.EMAIL, BORIS_EMAIL, LegacyFormat.BCRYPT,
                make_legacy_hash(LegacyFormat.BCRYPT, BORIS_LEGACY_PASSWORD))
            self._created("Boris's legacy cards login")
        self._profile(registration.customer_id, "boris", {
            "cards": {"full_name": {"last": "Петров", "first": "Борис"},
                      "emails": [BORIS_EMAIL]}})
        self.seeded.customers["Boris"] = registration.customer_id

    def _vera(self) -> None:
        """A messenger registration: only a Telegram user ID and how to be addressed."""
        registration = self._customers.register(
            "messenger", "demo-m-3003",
            [IdentifierInput(IdentifierKind.TELEGRAM, VERA_TELEGRAM, True)],
            display_name="Вера")
        if registration.created:
            self._created("customer Vera (messenger)")
        self._profile(registration.customer_id, "vera", {
            "messenger": {"preferred_name": "Вера", "messenger_ids": {"telegram": VERA_TELEGRAM}}})
        self.seeded.customers["Vera"] = registration.customer_id

    def _profile(self, customer_id: str, who: str,
                 by_source: Mapping[str, Mapping[str, Any]]) -> None:
        for source, values in by_source.items():
            self._profiles.update(customer_id, source, values,
                                  idempotency_key=f"{KEY_PREFIX}-{who}-{source}")

    def _voiceprint(self, voice_dir: Path | None) -> str:
        """Anna's voiceprint from two VoxForge recordings, when they are there."""
        recordings = sorted((voice_dir / "voxforge" / VOICE_SPEAKER).glob("*.flac")) \
            if voice_dir else []
        if len(recordings) < VOICE_ENROLL_RECORDINGS:
            return f"no voiceprint enrolled: no recordings of {VOICE_SPEAKER} under --voice-dir"
        # The voice stack (torch) loads only when it is needed.
        from singleid.voiceprint import audio  # noqa: PLC0415
        from singleid.voiceprint.config import VoiceSettings  # noqa: PLC0415
        from singleid.voiceprint.service import VoiceEngine, VoiceprintService  # noqa: PLC0415
        from singleid.voiceprint.service.types import AudioInput  # noqa: PLC0415

        customer_id = self.seeded.customers["Anna"]
        service = VoiceprintService(self._context.db, self._context.keyring,
                                    VoiceEngine(VoiceSettings()))
        with contextlib.suppress(NotFound):
            service.get(customer_id)
            return f"Anna's voiceprint exists ({VOICE_SPEAKER})"
        ConsentService(self._context.db).set(
            customer_id, "biometrics", True, text_version="bio-2026", channel="demo",
            idempotency_key=f"{KEY_PREFIX}-anna-biometrics")
        flac = audio.AudioFormat(audio.Encoding.FLAC)
        service.enroll(customer_id, "demo-enrollment",
                       [AudioInput(p.read_bytes(), flac)
                        for p in recordings[:VOICE_ENROLL_RECORDINGS]],
                       idempotency_key=f"{KEY_PREFIX}-anna-voice")
        self._created(f"Anna's voiceprint ({VOICE_SPEAKER})")
        return f"Anna's voiceprint enrolled ({VOICE_SPEAKER})"
