"""VoiceprintService end to end: a real ``singleid serve`` over a socket, on SQLite and PostgreSQL.

Real recordings (../shared/data/voice) drive the speaker checks; without them
the tests skip with the reason (and fail under CI=true). One server per
database for the whole module: the model loads once per server.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import psycopg
import pytest
import soundfile
from sqlalchemy import make_url

from singleid.clients.customers import CustomersClient
from singleid.clients.profile import ProfileClient
from singleid.clients.voiceprint import VoiceprintClient
from singleid.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    SingleIdError,
)
from singleid.keyring import KeyMaterial, Keyring, Sealed
from singleid.testing import ServerProcess
from singleid.v1 import voiceprint_pb2
from singleid.voiceprint import models
from singleid.voiceprint.calibration import bundled_table

from ..conftest import PG_URL, require
from ..voice_data import (
    MISSING,
    fsdd_concat,
    mulaw_encode,
    pcm16,
    read,
    voice_data_present,
    voxforge,
)

PCM = voiceprint_pb2.AUDIO_ENCODING_PCM16LE
FLAC = voiceprint_pb2.AUDIO_ENCODING_FLAC
MULAW = voiceprint_pb2.AUDIO_ENCODING_MULAW
ACCEPT = voiceprint_pb2.VerifyResponse.DECISION_ACCEPT
REJECT = voiceprint_pb2.VerifyResponse.DECISION_REJECT
# Two male speakers of the 16 kHz corpus, and a female one for the watchlist.
ALICE, BOB, MALLORY = "Ara", "Blenderkitty", "becz03"
CALL_LIMIT, CUSTOMER_LIMIT = 3, 6
DEADLINE_SECONDS = 10


@dataclass
class Voice:
    server: ServerProcess
    keyring: Keyring
    database_url: str

    def customer(self) -> str:
        with closing(CustomersClient(self.server.grpc_addr)) as client:
            with contextlib.suppress(SingleIdError):
                client.create_product("ivr", "IVR")
            return str(client.register_customer("ivr", uuid.uuid4().hex).customer_id)

    def client(self) -> VoiceprintClient:
        return VoiceprintClient(self.server.grpc_addr)

    def profile(self) -> ProfileClient:
        return ProfileClient(self.server.grpc_addr)

    def consent(self, customer_id: str, granted: bool = True) -> None:
        """Biometric consent, given or withdrawn through the profile as a product would."""
        with self.profile() as profile:
            profile.set_consent(customer_id, "biometrics", granted, text_version="bio-1",
                                channel="ivr")


def _pg_database(stack: list[str]) -> str:
    admin = make_url(PG_URL).set(drivername="postgresql", database="postgres")
    name = f"singleid_voice_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True,
                         connect_timeout=3) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    stack.append(name)
    return make_url(PG_URL).set(database=name).render_as_string(hide_password=False)


def _drop(name: str) -> None:
    admin = make_url(PG_URL).set(drivername="postgresql", database="postgres")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def voice(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Voice]:
    require(voice_data_present(), MISSING)
    created: list[str] = []
    if request.param == "sqlite":
        data_dir = tmp_path_factory.mktemp("voice")
        url = f"sqlite:///{data_dir / 'singleid.db'}"
    else:
        pg_ok = request.getfixturevalue("pg_available")
        require(pg_ok, f"PostgreSQL is not reachable at {PG_URL}")
        data_dir = tmp_path_factory.mktemp("voice-pg")
        url = _pg_database(created)
    material = KeyMaterial.generate()
    server = ServerProcess(data_dir=data_dir, database_url=url, env={
        "SINGLEID_KEYRING": "env:SINGLEID_TEST_KEYRING",
        "SINGLEID_TEST_KEYRING": material.to_json(),
        "SINGLEID_VOICE_MAX_ATTEMPTS_PER_CALL": str(CALL_LIMIT),
        "SINGLEID_VOICE_MAX_ATTEMPTS_PER_CUSTOMER": str(CUSTOMER_LIMIT),
        "SINGLEID_VOICE_DEADLINE_SECONDS": str(DEADLINE_SECONDS),
    }).start()
    yield Voice(server, Keyring(material), url)
    server.stop()
    for name in created:
        _drop(name)


@pytest.fixture(scope="module")
def enrolled(voice: Voice) -> str:
    """A customer with consent, enrolled over the stream from ALICE's first two recordings."""
    customer_id = voice.customer()
    with voice.client() as client:
        voice.consent(customer_id)
        first, second = (read(p)[0] for p in voxforge(ALICE)[:2])
        result = client.enroll_stream(customer_id, "call-enroll", [pcm16(first), pcm16(second)],
                                      PCM, 16_000)
    assert result.utterance_count == 2
    assert result.model_id == "ge2e-resemblyzer-0.1.4"
    assert result.name == f"customers/{customer_id}/voiceprint"
    return customer_id


def test_the_same_speaker_is_accepted_and_others_rejected_at_16k(voice: Voice,
                                                                 enrolled: str) -> None:
    with voice.client() as client:
        same = client.verify_stream(enrolled, "call-1", voxforge(ALICE)[3].read_bytes(), FLAC)
        other = client.verify_audio(enrolled, "call-2", voxforge(BOB)[0].read_bytes(), FLAC)
    assert same.decision == ACCEPT, same
    assert not same.replay_detected
    assert same.net_speech_seconds > 0.8
    assert other.decision == REJECT, other
    assert same.raw_score > other.raw_score
    assert same.llr > 0 > other.llr
    assert same.model_id == "ge2e-resemblyzer-0.1.4"
    assert same.operating_point == "far_1pct"


def test_the_speakers_used_here_are_outside_the_bundled_cohort() -> None:
    # A cohort member scores low against its own voiceprint under AS-norm: the bundled
    # table's cohort must not hold the speakers these tests enroll and verify.
    table = bundled_table("ge2e-resemblyzer-0.1.4")
    assert table is not None
    assert table.cohort is not None
    assert not {ALICE, BOB, MALLORY} & set(table.notes["cohort_speakers"].split())


def test_a_replayed_enrollment_recording_is_rejected(voice: Voice, enrolled: str) -> None:
    with voice.client() as client:
        replay = client.verify_audio(enrolled, "call-3", voxforge(ALICE)[0].read_bytes(), FLAC)
    assert replay.replay_detected
    assert replay.decision == REJECT


def test_a_watchlisted_voice_is_flagged(voice: Voice, enrolled: str) -> None:
    mallory = voxforge(MALLORY)
    with voice.client() as client:
        entry = client.add_to_watchlist("case-4711", mallory[0].read_bytes(), FLAC)
        assert entry.name.startswith("watchlist/")
        flagged = client.verify_audio(enrolled, "call-4", mallory[1].read_bytes(), FLAC)
        clean = client.verify_audio(enrolled, "call-5", voxforge(ALICE)[4].read_bytes(), FLAC)
        client.delete_watchlist_entry(entry.name)
    assert flagged.watchlist_hit
    assert flagged.watchlist_matches[0].name == entry.name
    assert flagged.decision == REJECT
    assert not clean.watchlist_hit


def test_rate_limits_per_call_then_per_customer(voice: Voice) -> None:
    customer_id = voice.customer()
    files = voxforge(ALICE)
    audio = files[5].read_bytes()
    with voice.client() as client:
        voice.consent(customer_id)
        client.enroll_audio(customer_id, "enroll", [f.read_bytes() for f in files[:2]], FLAC)
        for _ in range(CALL_LIMIT):
            client.verify_audio(customer_id, "call-busy", audio, FLAC)
        with pytest.raises(ResourceExhausted) as call_limit:
            client.verify_audio(customer_id, "call-busy", audio, FLAC)
        assert call_limit.value.reason == "VOICE_RATE_LIMITED_CALL"
        assert call_limit.value.field == "call_id"
        assert call_limit.value.retry_after_seconds > 0
        for n in range(CALL_LIMIT, CUSTOMER_LIMIT):
            client.verify_audio(customer_id, f"call-{n}", audio, FLAC)
        with pytest.raises(ResourceExhausted) as customer_limit:
            client.verify_audio(customer_id, "call-last", audio, FLAC)
        assert customer_limit.value.reason == "VOICE_RATE_LIMITED_CUSTOMER"


def test_8k_telephone_audio_end_to_end(voice: Voice) -> None:
    customer_id = voice.customer()
    with voice.client() as client:
        voice.consent(customer_id)
        enroll = [mulaw_encode(fsdd_concat("jackson", range(i, i + 1))) for i in (5, 6)]
        client.enroll_stream(customer_id, "tel-enroll", enroll, MULAW, 8000)
        same = client.verify_stream(customer_id, "tel-1",
                                    mulaw_encode(fsdd_concat("jackson", range(20, 21))),
                                    MULAW, 8000)
        other = client.verify_stream(customer_id, "tel-2",
                                     mulaw_encode(fsdd_concat("nicolas", range(20, 21))),
                                     MULAW, 8000)
    assert same.decision == ACCEPT, same
    assert other.decision == REJECT, other


def test_verification_and_enrollment_need_consent(voice: Voice) -> None:
    customer_id = voice.customer()
    audio = voxforge(BOB)[1].read_bytes()
    with voice.client() as client:
        with pytest.raises(FailedPrecondition) as verify:
            client.verify_audio(customer_id, "c", audio, FLAC)
        with pytest.raises(FailedPrecondition) as enroll:
            client.enroll_audio(customer_id, "c", [audio], FLAC)
    assert verify.value.reason == enroll.value.reason == "BIOMETRIC_CONSENT_REQUIRED"
    assert verify.value.field == "customer_id"


def test_withdrawing_consent_in_the_profile_deletes_the_voiceprint(voice: Voice) -> None:
    customer_id = voice.customer()
    files = voxforge(BOB)
    voice.consent(customer_id)
    with voice.client() as client:
        client.enroll_audio(customer_id, "c", [f.read_bytes() for f in files[:2]], FLAC)
        assert client.get_voiceprint(customer_id).utterance_count == 2
        # Re-enrolling replaces the voiceprint.
        assert client.enroll_audio(customer_id, "c", [files[2].read_bytes()],
                                   FLAC).utterance_count == 1
        voice.consent(customer_id, granted=False)
        # Refused at once, before the worker has read the withdrawal...
        with pytest.raises(FailedPrecondition) as refused:
            client.verify_audio(customer_id, "c", files[3].read_bytes(), FLAC)
        assert refused.value.reason == "BIOMETRIC_CONSENT_REQUIRED"
        # ...and deleted once it has (it polls every second).
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                client.get_voiceprint(customer_id)
            except NotFound:
                break
            time.sleep(0.2)
        with pytest.raises(NotFound):
            client.get_voiceprint(customer_id)
        voice.consent(customer_id)
        client.enroll_audio(customer_id, "c", [files[2].read_bytes()], FLAC)
        client.delete_voiceprint(customer_id)
        with pytest.raises(NotFound) as gone:
            client.delete_voiceprint(customer_id)
    assert gone.value.reason == "VOICEPRINT_NOT_FOUND"


def test_a_withdrawal_of_another_purpose_keeps_the_voiceprint(voice: Voice) -> None:
    customer_id = voice.customer()
    voice.consent(customer_id)
    with voice.client() as client, voice.profile() as profile:
        client.enroll_audio(customer_id, "c", [f.read_bytes() for f in voxforge(BOB)[:2]],
                            FLAC)
        profile.set_consent(customer_id, "marketing", False, text_version="m-1", channel="app")
        time.sleep(2.5)  # more than two polls of the worker
        assert client.get_voiceprint(customer_id).utterance_count == 2


def test_an_unknown_customer_is_not_found(voice: Voice) -> None:
    with voice.client() as client:
        with pytest.raises(NotFound):
            client.get_voiceprint("0" * 26)
        with pytest.raises(InvalidArgument) as bad:
            client.get_voiceprint("not-an-id")
    assert bad.value.field == "customer_id"


@pytest.mark.parametrize(("make", "reason", "field"), [
    (lambda: (b"", PCM, 16_000), "AUDIO_EMPTY", "audio.content"),
    (lambda: (bytes(3), PCM, 16_000), "AUDIO_TRUNCATED", "audio.content"),
    (lambda: (bytes(640), PCM, 11_025), "UNSUPPORTED_SAMPLE_RATE",
     "audio.config.sample_rate_hertz"),
    (lambda: (bytes(640), voiceprint_pb2.AUDIO_ENCODING_UNSPECIFIED, 16_000),
     "UNKNOWN_AUDIO_ENCODING", "audio.config.encoding"),
    (lambda: (voxforge(ALICE)[0].read_bytes()[:5000], FLAC, 0), "AUDIO_UNREADABLE",
     "audio.content"),
])
def test_bad_audio_gets_a_clear_status(voice: Voice, enrolled: str, make: object, reason: str,
                                       field: str) -> None:
    content, encoding, rate = make()  # type: ignore[operator]
    with voice.client() as client, pytest.raises(InvalidArgument) as exc:
        client.verify_audio(enrolled, "bad", content, encoding, rate)
    assert (exc.value.reason, exc.value.field) == (reason, field)


@pytest.mark.parametrize(("samples", "reason"), [
    (np.zeros(16_000 * 3, dtype=np.float32), "AUDIO_SILENT"),
    (np.random.default_rng(0).normal(0, 0.1, 16_000 * 3).astype(np.float32),
     "NOT_ENOUGH_SPEECH"),
])
def test_silence_and_noise_fail_the_speech_checks(voice: Voice, enrolled: str,
                                                  samples: np.ndarray, reason: str) -> None:
    with voice.client() as client, pytest.raises(FailedPrecondition) as exc:
        client.verify_stream(enrolled, "checks", pcm16(samples), PCM, 16_000)
    assert exc.value.reason == reason
    assert "net_speech_seconds" in exc.value.metadata


def test_clipped_and_quiet_speech_fail_the_speech_checks(voice: Voice, enrolled: str) -> None:
    speech, _ = read(voxforge(ALICE)[6])
    clipped = np.clip(speech * 50, -1, 1)
    # Peak at -52 dBFS (not silence), so the speech's RMS is about 70 dB below full scale.
    quiet = speech * (10 ** (-52 / 20) / np.max(np.abs(speech)))
    with voice.client() as client:
        with pytest.raises(FailedPrecondition) as loud:
            client.verify_stream(enrolled, "checks", pcm16(clipped), PCM, 16_000)
        with pytest.raises(FailedPrecondition) as low:
            client.verify_stream(enrolled, "checks", pcm16(quiet), PCM, 16_000)
    assert loud.value.reason == "AUDIO_CLIPPED"
    assert float(loud.value.metadata["clipped_fraction"]) > 0.01
    assert low.value.reason == "AUDIO_LEVEL_TOO_LOW"
    assert float(low.value.metadata["speech_rms_dbfs"]) < -65


def test_a_stream_over_the_limits_is_stopped(voice: Voice, enrolled: str) -> None:
    with voice.client() as client:
        with pytest.raises(InvalidArgument) as big_chunk:
            client.verify_stream(enrolled, "limits", bytes(70_000), PCM, 16_000,
                                 chunk_size=70_000)
        # Ten minutes of audio in the largest chunks: stopped at the limit (60 s).
        with pytest.raises(InvalidArgument) as too_long:
            client.verify_stream(enrolled, "limits", bytes(2 * 16_000 * 600), PCM, 16_000,
                                 chunk_size=65_536)
    assert (big_chunk.value.reason, big_chunk.value.field) == ("CHUNK_TOO_LARGE", "audio_chunk")
    assert (too_long.value.reason, too_long.value.field) == ("AUDIO_TOO_LONG", "audio_chunk")
    assert too_long.value.metadata["limit_seconds"] == "60"


def test_a_stream_slower_than_the_server_deadline_is_stopped(voice: Voice,
                                                             enrolled: str) -> None:
    config = voiceprint_pb2.VerifyConfig(customer_id=enrolled, call_id="slow", audio=(
        voiceprint_pb2.AudioConfig(encoding=PCM, sample_rate_hertz=16_000)))

    def trickle() -> Iterator[voiceprint_pb2.VerifyStreamRequest]:
        yield voiceprint_pb2.VerifyStreamRequest(config=config)
        for _ in range(DEADLINE_SECONDS * 2 + 4):
            time.sleep(0.5)
            yield voiceprint_pb2.VerifyStreamRequest(audio_chunk=bytes(640))

    started = time.monotonic()
    with voice.client() as client, pytest.raises(grpc.RpcError) as exc:
        client.stub.Verify(trickle(), timeout=60)
    error = exc.value
    assert isinstance(error, grpc.Call)
    assert error.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert "limit" in (error.details() or "")
    assert time.monotonic() - started < DEADLINE_SECONDS + 5


def test_the_first_message_must_be_the_config(voice: Voice) -> None:
    with voice.client() as client, pytest.raises(grpc.RpcError) as exc:
        client.stub.Verify(iter([voiceprint_pb2.VerifyStreamRequest(audio_chunk=b"\x00\x00")]),
                           timeout=10)
    error = exc.value
    assert isinstance(error, grpc.Call)
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "config" in (error.details() or "")


def test_the_database_holds_no_template_in_plaintext(voice: Voice, enrolled: str) -> None:
    url = voice.database_url
    if url.startswith("sqlite"):
        with sqlite3.connect(make_url(url).database or "") as conn:
            key_id, ciphertext = conn.execute(
                "SELECT template_key_id, template_ciphertext FROM voiceprints "
                "WHERE customer_id = ?", (enrolled,)).fetchone()
    else:
        pg = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(pg) as conn:
            row = conn.execute("SELECT template_key_id, template_ciphertext FROM voiceprints "
                               "WHERE customer_id = %s", (enrolled,)).fetchone()
            assert row is not None
            key_id, ciphertext = row[0], bytes(row[1])
    template = voice.keyring.open(Sealed(key_id, bytes(ciphertext)), models.TEMPLATE_PURPOSE)
    vector = np.frombuffer(template, dtype="<f4")
    assert vector.shape == (256,)
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-4)
    assert template not in bytes(ciphertext)
    if url.startswith("sqlite"):
        database_file = Path(make_url(url).database or "")
        everything = b"".join(p.read_bytes() for p in database_file.parent.glob("singleid.db*"))
        assert template[:64] not in everything


def test_the_ivr_simulator_streams_wav_files(voice: Voice, tmp_path: Path) -> None:
    customer_id = voice.customer()
    voice.consent(customer_id)
    wavs = []
    for i, path in enumerate(voxforge(BOB)[:3]):
        samples, rate = read(path)
        wavs.append(tmp_path / f"{i}.wav")
        soundfile.write(str(wavs[-1]), samples, rate, subtype="PCM_16")

    def ivr(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "singleid", "ivr", *args, "--customer",
                               customer_id, "--target", voice.server.grpc_addr],
                              capture_output=True, text=True, timeout=120, check=False)

    enrolled = ivr("enroll", str(wavs[0]), str(wavs[1]))
    assert enrolled.returncode == 0, enrolled.stderr
    assert json.loads(enrolled.stdout)["utterance_count"] == 2
    verified = ivr("verify", str(wavs[2]))
    assert verified.returncode == 0, verified.stderr
    result = json.loads(verified.stdout)
    assert result["decision"] == "ACCEPT"
    assert result["model_id"] == "ge2e-resemblyzer-0.1.4"
    refused = ivr("verify", str(tmp_path / "missing.wav"))
    assert refused.returncode != 0
