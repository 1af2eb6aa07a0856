"""The whole journey, as users run it: real ``singleid serve --workers 2`` on PostgreSQL and NATS.

One server (and one sample app) for the module; the steps run in order and
share what earlier steps made (``Journey``):

1. cards and loans import legacy CSVs; matching merges; an operator decides a pair
   on the review page;
2. a customer registers through messenger with only a Telegram user ID and a name;
3. sign-in to the sample app on singleid's login page; a legacy cards login opts in;
4. loyalty sets the tier, loans an address: WatchChanges and NATS both deliver the
   events within a second;
5. the call center resolves a phone, verifies 8 kHz speech, rejects another speaker
   and a replay;
6. biometric consent withdrawn deletes the voiceprint; marketing data erased, and
   the event goes out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import nats
import psycopg
import pyotp
import pytest
from sqlalchemy import make_url

from singleid.clients import CustomersClient, ProfileClient
from singleid.clients.auth import ClientCredentials
from singleid.clients.customers import identifier
from singleid.clients.profile import attribute_values
from singleid.clients.voiceprint import VoiceprintClient
from singleid.demo import seed
from singleid.errors import NotFound, SingleIdError
from singleid.testing import ServerProcess
from singleid.v1 import customers_pb2, voiceprint_pb2
from singleid.voiceprint import audio
from tests.conftest import PG_URL, require
from tests.e2e.journey.conftest import (
    Cabinet,
    channel,
    free_port,
    run_demo,
    sign_in,
    start_cabinet,
)
from tests.voice_data import MISSING, VOICE_DIR, read, voice_data_present, voxforge

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

NATS_HOST, NATS_PORT = "127.0.0.1", 4222
EVENT_SECONDS = 1.0
VOICEPRINT_DELETION_SECONDS = 5.0  # the consent follower deletes within about a second
WATCH_SECONDS = 600.0  # longer than the whole journey
PHONE = customers_pb2.IDENTIFIER_KIND_PHONE
TELEGRAM = customers_pb2.IDENTIFIER_KIND_TELEGRAM
PCM16 = voiceprint_pb2.AUDIO_ENCODING_PCM16LE
ACCEPT = voiceprint_pb2.VerifyResponse.DECISION_ACCEPT
REJECT = voiceprint_pb2.VerifyResponse.DECISION_REJECT
OTHER_SPEAKER = "Blenderkitty"
LYOSHA_PHONE = "+7 926 818-18-18"
LYOSHA_PASSWORD = "telegram first, password later"
CSV_HEADER = "account_id,last_name,first_name,middle_name,birth_date,phone,passport,city\n"
CARDS_CSV = CSV_HEADER + (
    "c-1,Петрова,Анна,Сергеевна,05.03.1985,8 916 123-45-67,4509 123456,Москва\n"
    "c-2,Иванов,Сергей,Петрович,12.07.1979,8 903 111-22-33,,Казань\n")
LOANS_CSV = CSV_HEADER + (
    "l-1,Petrova,Anya,,1985-03-05,+79161234567,,\n"
    "l-2,Иванов,Сергей,Петрович,12.07.1979,,,\n")  # name and birth date only: uncertain


@dataclass(frozen=True)
class Received:
    type: str
    subject: str
    attributes: tuple[str, ...]
    at: float  # time.monotonic() on arrival


@dataclass
class Journey:
    server: ServerProcess
    cabinet: Cabinet
    env: dict[str, str]
    root: Path
    channel: grpc.Channel  # every client of the journey borrows it
    watched: list[Received] = field(default_factory=list)  # by WatchChanges
    from_nats: list[Received] = field(default_factory=list)  # by a JetStream subscriber
    nats_payloads: list[bytes] = field(default_factory=list)  # as published
    made: dict[str, str] = field(default_factory=dict)  # what a step made, for later steps

    def cli(self, *args: str, stdin: str = "") -> str:
        result = subprocess.run([sys.executable, "-m", "singleid", *args], env=self.env,
                                input=stdin, capture_output=True, text=True, timeout=180,
                                check=False)
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stdout

    def service_client(self, client_id: str, *options: str) -> ClientCredentials:
        """A confidential client added by the administrator's CLI; its credentials."""
        added = json.loads(self.cli("oidc", "client", "add", "--client-id", client_id,
                                    "--grant-type", "client_credentials", *options))
        return ClientCredentials(client_id, added["client_secret"],
                                 token_endpoint=f"http://{self.server.http_addr}/token")

    def customers(self) -> CustomersClient:
        return CustomersClient(channel=self.channel)

    def profiles(self) -> ProfileClient:
        return ProfileClient(channel=self.channel)

    def voice(self) -> VoiceprintClient:
        return VoiceprintClient(channel=self.channel)

    def wait_for(self, where: list[Received], what: str,
                 match: Callable[[Received], bool], timeout: float = 10.0) -> Received:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if found := next((r for r in list(where) if match(r)), None):
                return found
            time.sleep(0.02)
        pytest.fail(f"no {what} within {timeout:.0f} s")


def _nats_up() -> bool:
    with contextlib.suppress(OSError), socket.create_connection((NATS_HOST, NATS_PORT), 2):
        return True
    return False


@contextlib.contextmanager
def _fresh_database() -> Iterator[str]:
    admin = make_url(PG_URL).set(drivername="postgresql", database="postgres") \
        .render_as_string(hide_password=False)
    try:
        psycopg.connect(admin, connect_timeout=3).close()
    except psycopg.OperationalError:
        require(False, f"PostgreSQL is not reachable at {PG_URL}")
    name = f"singleid_journey_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _watch(journey: Journey, stop: threading.Event) -> None:
    """A subscriber domain on WatchChanges, from now on, on one stream (ended by the teardown).

    On a connection of its own, as another domain's process would be.
    """
    with closing(channel(journey.server)) as own, ProfileClient(channel=own) as profiles:
        try:
            for event in profiles.watch_changes(from_now=True, timeout=WATCH_SECONDS):
                data = json.loads(event.cloudevent_json)["data"]
                journey.watched.append(Received(
                    event.type, event.subject,
                    tuple(a["name"] for a in data.get("attributes", ())), time.monotonic()))
        except SingleIdError:  # the teardown closes the channel and kills the server
            if not stop.is_set():
                raise


def _subscribe_nats(journey: Journey, stream: str, prefix: str, ready: threading.Event,
                    stop: threading.Event) -> None:
    """A subscriber domain on the JetStream stream the relay publishes to."""

    async def run() -> None:
        connection = await nats.connect(f"nats://{NATS_HOST}:{NATS_PORT}")
        try:
            js = connection.jetstream()
            while True:  # the relay creates the stream once it holds the lease
                with contextlib.suppress(Exception):
                    await js.stream_info(stream)
                    break
                await asyncio.sleep(0.1)
            subscription = await js.subscribe(f"{prefix}singleid.>", stream=stream,
                                              ordered_consumer=True)
            ready.set()
            while not stop.is_set():
                with contextlib.suppress(nats.errors.TimeoutError):
                    message = await subscription.next_msg(timeout=0.5)
                    journey.nats_payloads.append(message.data)
                    event = json.loads(message.data)
                    journey.from_nats.append(Received(
                        event["type"], event["subject"],
                        tuple(a["name"] for a in event.get("data", {}).get("attributes", ())),
                        time.monotonic()))
        finally:
            await connection.close()

    asyncio.run(run())


@pytest.fixture(scope="module")
def journey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journey]:
    require(_nats_up(), f"NATS is not reachable at {NATS_HOST}:{NATS_PORT}")
    require(voice_data_present(), MISSING)
    root = tmp_path_factory.mktemp("journey")
    http_port, cabinet_port = free_port(), free_port()
    tag = uuid.uuid4().hex[:10]
    stream, prefix = f"JOURNEY_{tag}", f"j{tag}."
    settings = {"SINGLEID_HTTP_ADDR": f"127.0.0.1:{http_port}",
                "SINGLEID_ISSUER": f"http://127.0.0.1:{http_port}",
                "SINGLEID_EVENT_BROKER": "nats", "SINGLEID_NATS_URL": f"nats://{NATS_HOST}:{NATS_PORT}",
                "SINGLEID_NATS_STREAM": stream, "SINGLEID_EVENT_SUBJECT_PREFIX": prefix,
                "SINGLEID_LOG_LEVEL": "INFO"}  # two workers are seen starting by "serving"
    with _fresh_database() as database_url:
        env = {**os.environ, **settings, "SINGLEID_DATA_DIR": str(root / "data"),
               "SINGLEID_DATABASE_URL": database_url, "SINGLEID_DEMO_VOICE_DIR": str(VOICE_DIR)}
        run_demo(env, cabinet_port)  # the schema, the key ring and signing keys, before workers
        server = ServerProcess(data_dir=root / "data", database_url=database_url, workers=2,
                               env=settings)
        cabinet: Cabinet | None = None
        journey: Journey | None = None
        stop, nats_ready = threading.Event(), threading.Event()
        try:
            server.start()
            cabinet = start_cabinet(root / "data" / seed.CABINET_CLIENT_FILE, server.grpc_addr,
                                    cabinet_port)
            journey = Journey(server, cabinet, env, root, channel(server))
            threads = [threading.Thread(target=_watch, args=(journey, stop), daemon=True),
                       threading.Thread(target=_subscribe_nats, daemon=True,
                                        args=(journey, stream, prefix, nats_ready, stop))]
            for thread in threads:
                thread.start()
            assert nats_ready.wait(30), "the relay never created its NATS stream"
            yield journey
        finally:
            stop.set()
            if journey is not None:
                journey.channel.close()
            if cabinet is not None:
                cabinet.stop()
            server.kill()
            asyncio.run(_delete_stream(stream))


async def _delete_stream(stream: str) -> None:
    connection = await nats.connect(f"nats://{NATS_HOST}:{NATS_PORT}")
    with contextlib.suppress(Exception):
        await connection.jetstream().delete_stream(stream)
    await connection.close()


def _event(kind: str, customer_id: str, attribute: str) -> Callable[[Received], bool]:
    return lambda r: (r.type == "singleid." + kind and r.subject == customer_id
                      and attribute in r.attributes)


def _owner(journey: Journey, product: str, account_id: str) -> str:
    with journey.customers() as customers:
        return customers.resolve_by_account(product, account_id).customer_id


# -- 1. the legacy catalogue -----------------------------------------------------------

def test_1_legacy_accounts_are_imported_matched_and_reviewed(journey: Journey,
                                                             chromium: Any) -> None:
    for product, rows in (("cards", CARDS_CSV), ("loans", LOANS_CSV)):
        path = journey.root / f"{product}.csv"
        path.write_text(rows, encoding="utf-8")
        summary = json.loads(journey.cli("legacy", "import", "--product", product,
                                         "--no-progress", str(path)).splitlines()[-1])
        assert (summary["imported"], summary["rejected"]) == (2, 0), summary
    matched = json.loads(journey.cli("legacy", "match").splitlines()[-1])
    assert matched["review"] >= 1, matched
    assert _owner(journey, "cards", "c-1") == _owner(journey, "loans", "l-1")  # merged
    assert _owner(journey, "cards", "c-2") != _owner(journey, "loans", "l-2")  # uncertain

    review = f"http://{journey.server.http_addr}/review"
    page = chromium.new_page()
    _operator_signs_in(journey, page, review)
    pairs = [link.get_attribute("href") for link in page.locator("#queue a").all()]
    for href in pairs:  # the operator opens the pairs until the one of c-2 and l-2
        page.goto(f"http://{journey.server.http_addr}{href}")
        if "cards/c-2" in page.content() and "loans/l-2" in page.content():
            break
    else:
        pytest.fail(f"cards/c-2 and loans/l-2 are not in the review queue ({len(pairs)} pairs)")
    page.click("#merge")
    page.wait_for_url(review)
    page.close()
    assert _owner(journey, "cards", "c-2") == _owner(journey, "loans", "l-2")
    journey.made["petrova"] = _owner(journey, "cards", "c-1")


def _operator_signs_in(journey: Journey, page: Any, review: str) -> None:
    """Staff member op-journey: password, then the code from her authenticator."""
    password = "operator password 1"
    created = json.loads(journey.cli("staff", "add", "--login", "op-journey", "--role",
                                     "operator", stdin=password + "\n"))
    totp = pyotp.parse_uri(created["provisioning_uri"])
    assert isinstance(totp, pyotp.TOTP)  # a time-based code (and what mypy needs for now())
    page.goto(review)
    page.fill("#login", "op-journey")
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.fill("#code", totp.now())
    page.click("button[type=submit]")
    page.wait_for_url(review)


# -- 2. a new registration --------------------------------------------------------------

def test_2_a_messenger_registration_gets_its_central_id_at_once(journey: Journey) -> None:
    bot = journey.service_client("messenger-bot", "--scope", "customers.read", "--scope",
                                 "customers.write", "--product", "messenger")
    with CustomersClient(journey.server.grpc_addr, auth=bot) as customers:
        started = time.monotonic()
        registration = customers.register_customer(
            "messenger", "tg-chat-81", display_name="Лёша",
            identifiers=[identifier(TELEGRAM, "81818181", verified=True)])
        assert time.monotonic() - started < 1.0
        assert len(registration.customer_id) == 26
        assert customers.resolve_by_identifier(
            TELEGRAM, "81818181").customer_id == registration.customer_id
    journey.made["lyosha"] = registration.customer_id


# -- 3. sign-in --------------------------------------------------------------------------

def test_3_sign_in_to_the_sample_app_and_a_legacy_login_opts_in(journey: Journey,
                                                                chromium: Any) -> None:
    # The messenger's customer sets a password in the bot, which gives them a login.
    journey.cli("login", "add", "--customer-id", journey.made["lyosha"], "--phone",
                LYOSHA_PHONE, stdin=LYOSHA_PASSWORD + "\n")
    page = sign_in(chromium, journey.cabinet.url, LYOSHA_PHONE, LYOSHA_PASSWORD)
    page.wait_for_url(journey.cabinet.url + "/")
    assert page.locator("#name").inner_text() == "Лёша"
    page.context.close()

    page = sign_in(chromium, journey.cabinet.url, seed.ANNA_PHONE, seed.ANNA_PASSWORD)
    page.wait_for_url(journey.cabinet.url + "/")
    assert page.locator("#name").inner_text() == "Аня"
    page.context.close()

    legacy = sign_in(chromium, journey.cabinet.url, seed.BORIS_EMAIL, seed.BORIS_LEGACY_PASSWORD)
    legacy.get_by_role("button", name="Yes, make it my ecosystem login").click()
    if legacy.get_by_role("button", name="Allow").count():
        legacy.get_by_role("button", name="Allow").click()
    legacy.wait_for_url(journey.cabinet.url + "/")
    assert legacy.locator("#name").inner_text() == "Борис Петров"
    legacy.context.close()


# -- 4. the profile and its events -----------------------------------------------------------

def test_4_loyalty_and_loans_write_and_subscribers_hear_within_a_second(
        journey: Journey) -> None:
    customer_id = journey.made["petrova"]
    writes: dict[str, dict[str, Any]] = {"loyalty": {"loyalty_tier": "platinum"},
        "loans": {"postal_addresses": [{"country": "RU", "city": "Москва",
                                        "line": "ул. Тверская, 7"}]}}
    for source, values in writes.items():
        (attribute,) = values
        started = time.monotonic()
        with journey.profiles() as profiles:
            profiles.update_profile(customer_id, source, values)
        for where, name in ((journey.watched, "WatchChanges"), (journey.from_nats, "NATS")):
            event = journey.wait_for(where, f"{attribute} event over {name}",
                                     _event("profile.updated.v1", customer_id, attribute))
            assert event.at - started < EVENT_SECONDS, f"{name}: {event.at - started:.3f} s"
    with journey.profiles() as profiles:
        profile = attribute_values(profiles.get_profile(customer_id))
    assert profile["loyalty_tier"] == "platinum"
    assert profile["postal_addresses"][0]["city"] == "Москва"
    published = "".join(json.dumps(json.loads(p), ensure_ascii=False)
                        for p in journey.nats_payloads)
    assert "Тверская" not in published  # events name attributes, never their values
    assert "platinum" not in published


# -- 5. the call center --------------------------------------------------------------------

def _telephone(path: Path) -> bytes:
    """A recording as the IVR streams it: 8 kHz PCM16."""
    samples, rate = read(path)
    return audio.encode_pcm16(audio.resample(samples, rate, 8000))


def test_5_the_call_center_resolves_verifies_and_rejects(journey: Journey) -> None:
    ivr = journey.service_client("ivr", "--scope", "voiceprint.verify")
    desk = journey.service_client(  # the operator's card: personal data only for a verified call
        "contact-center", "--scope", "customers.read", "--scope", "profile.read",
        "--sensitivity", "personal", "--verified-call-only")
    target = journey.server.grpc_addr
    with CustomersClient(target, auth=desk) as customers, \
            ProfileClient(target, auth=desk) as card, VoiceprintClient(target, auth=ivr) as voice:
        customer_id = customers.resolve_by_identifier(PHONE, seed.ANNA_PHONE).customer_id
        before = card.get_profile(customer_id)
        assert "preferred_name" not in attribute_values(before)  # no name before the voice
        assert "preferred_name" in before.withheld_attributes
        speaker = voxforge(seed.VOICE_SPEAKER)
        caller = voice.verify_stream(customer_id, "call-1", _telephone(speaker[3]), PCM16, 8000)
        assert caller.decision == ACCEPT, caller
        verified = card.get_profile(customer_id, verified_call_proof=caller.verified_call_proof,
                                    call_id="call-1")
        assert attribute_values(verified)["preferred_name"] == "Аня"  # only now
        other_call = card.get_profile(customer_id, call_id="call-9",
                                      verified_call_proof=caller.verified_call_proof)
        assert "preferred_name" not in attribute_values(other_call)
        other = voice.verify_stream(customer_id, "call-2",
                                    _telephone(voxforge(OTHER_SPEAKER)[0]), PCM16, 8000)
        assert other.decision == REJECT, other
        assert not other.verified_call_proof
        replay = voice.verify_stream(customer_id, "call-3", _telephone(speaker[0]), PCM16, 8000)
        assert replay.replay_detected, replay
        assert replay.decision == REJECT
    journey.made["anna"] = customer_id


def _has_voiceprint(voice: VoiceprintClient, customer_id: str) -> bool:
    try:
        voice.get_voiceprint(customer_id)
    except NotFound:
        return False
    return True


# -- 6. consent and erasure ---------------------------------------------------------------------

def test_6_withdrawn_consent_deletes_the_voiceprint_and_marketing_data_is_erased(
        journey: Journey) -> None:
    customer_id = journey.made["anna"]
    with journey.profiles() as profiles:
        profiles.set_consent(customer_id, "biometrics", False, text_version="bio-2026",
                             channel="contact-center")
    with journey.voice() as voice:
        deadline = time.monotonic() + VOICEPRINT_DELETION_SECONDS
        while _has_voiceprint(voice, customer_id):
            assert time.monotonic() < deadline, "the voiceprint outlived the withdrawal"
            time.sleep(0.05)
    with journey.profiles() as profiles:
        profiles.set_consent(customer_id, "marketing", True, text_version="mkt-2026",
                             channel="web")
        profiles.update_profile(customer_id, "marketing", {"tags_auto": ["autumn.promo"]})
        # The customer asks to stop and to erase: the consent goes, then the data.
        profiles.set_consent(customer_id, "marketing", False, text_version="mkt-2026",
                             channel="web")
        profiles.erase_attributes(customer_id, ["tags_auto"],
                                  reason="the customer asked to erase marketing data",
                                  actor="op-journey")
        assert "tags_auto" not in attribute_values(profiles.get_profile(customer_id))
        assert not profiles.has_consent(customer_id, "marketing")
    for where, name in ((journey.watched, "WatchChanges"), (journey.from_nats, "NATS")):
        journey.wait_for(where, f"erasure event over {name}",
                         _event("profile.erased.v1", customer_id, "tags_auto"))
        journey.wait_for(where, f"marketing consent withdrawal over {name}",
                         lambda r: r.type == "singleid.consent.withdrawn.v1"
                         and r.subject == customer_id)
