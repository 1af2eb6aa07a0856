"""The voiceprint service in-process, on SQLite and PostgreSQL: model versions, consent, events."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from sqlalchemy import select

from singleid.db import Database
from singleid.errors import FailedPrecondition, NotFound
from singleid.events import OutboxEvent
from singleid.idp.service import CustomerService, ProductService
from singleid.keyring import Keyring
from singleid.profile.service import ConsentService
from singleid.voiceprint import audio
from singleid.voiceprint.backends import GE2E_ID, Ge2eEncoder, SpeakerEncoder, load_backend
from singleid.voiceprint.calibration import bundled_table
from singleid.voiceprint.config import VoiceSettings
from singleid.voiceprint.service import (
    BiometricConsent,
    ConsentWithdrawals,
    VoiceEngine,
    VoiceprintService,
)
from singleid.voiceprint.service.types import AudioInput

from ..conftest import require
from ..voice_data import MISSING, voice_data_present, voxforge

FLAC = audio.AudioFormat(audio.Encoding.FLAC)


@pytest.fixture(scope="module")
def ge2e() -> Ge2eEncoder:
    encoder = load_backend("ge2e")
    assert isinstance(encoder, Ge2eEncoder)
    return encoder


@dataclass
class Renamed:
    """The same network under another version: what an upgraded model looks like."""

    inner: SpeakerEncoder
    model_version: str
    model_id: str = GE2E_ID
    dim: int = 256

    def embed(self, samples: audio.Samples) -> audio.Samples:
        return self.inner.embed(samples)


def _engine(encoder: SpeakerEncoder) -> VoiceEngine:
    table = bundled_table(GE2E_ID)
    assert table is not None
    return VoiceEngine(VoiceSettings(), encoder=encoder, table=table)


def _customer(db: Database, keyring: Keyring) -> str:
    ProductService(db).create("ivr", "IVR", idempotency_key="ivr")
    return CustomerService(db, keyring).register("ivr", "a-1").customer_id


def _consent(db: Database, customer_id: str, granted: bool = True) -> None:
    ConsentService(db).set(customer_id, "biometrics", granted, text_version="bio-1",
                           channel="ivr")


def _recordings(n: int) -> list[AudioInput]:
    require(voice_data_present(), MISSING)
    return [AudioInput(p.read_bytes(), FLAC) for p in voxforge("Ara")[:n]]


def test_a_voiceprint_from_another_model_asks_for_reenrollment(
        db: Database, keyring: Keyring, ge2e: Ge2eEncoder) -> None:
    recordings = _recordings(3)
    customer_id = _customer(db, keyring)
    old = VoiceprintService(db, keyring, _engine(ge2e))
    _consent(db, customer_id)
    old.enroll(customer_id, "call", recordings[:2])
    upgraded = VoiceprintService(db, keyring, _engine(Renamed(ge2e, "v2")))
    with pytest.raises(FailedPrecondition) as exc:
        upgraded.verify(customer_id, "call", recordings[2])
    assert exc.value.reason == "VOICEPRINT_MODEL_MISMATCH"
    assert exc.value.metadata["template_model_version"] == ge2e.model_version
    # Re-enrolling with the new model makes it verifiable again.
    upgraded.enroll(customer_id, "call", recordings[:2])
    assert upgraded.verify(customer_id, "call", recordings[2]).model_id == GE2E_ID


class NoConsent:
    """Another implementation of the interface."""

    def has_biometric_consent(self, customer_id: str) -> bool:
        return False


def test_consent_comes_through_the_interface(db: Database, keyring: Keyring,
                                            ge2e: Ge2eEncoder) -> None:
    recordings = _recordings(2)
    customer_id = _customer(db, keyring)
    consent: BiometricConsent = NoConsent()
    service = VoiceprintService(db, keyring, _engine(ge2e), consent=consent)
    _consent(db, customer_id)  # the profile says yes; the implementation given rules
    with pytest.raises(FailedPrecondition) as exc:
        service.enroll(customer_id, "call", recordings)
    assert exc.value.reason == "BIOMETRIC_CONSENT_REQUIRED"


def test_the_profiles_biometric_withdrawal_deletes_the_voiceprint_once(
        db: Database, keyring: Keyring, ge2e: Ge2eEncoder) -> None:
    recordings = _recordings(2)
    customer_id, other = _customer(db, keyring), CustomerService(db, keyring).register(
        "ivr", "a-2").customer_id
    service = VoiceprintService(db, keyring, _engine(ge2e))
    for who in (customer_id, other):
        _consent(db, who)
    first = service.enroll(customer_id, "call", recordings, idempotency_key="enroll-1")
    # A retried enrollment with the same key applies once.
    assert service.enroll(customer_id, "call", recordings, idempotency_key="enroll-1") == first
    service.enroll(other, "call", recordings)
    withdrawals = ConsentWithdrawals(db)
    while withdrawals.poll():  # read the feed up to now: nothing withdrawn yet
        pass
    assert service.get(customer_id).utterance_count == 2
    _consent(db, customer_id, granted=False)
    assert withdrawals.poll()
    with pytest.raises(NotFound):
        service.get(customer_id)
    assert service.get(other).utterance_count == 2  # another customer's stays
    # A new reader resumes from the stored token: it deletes nothing twice.
    resumed = ConsentWithdrawals(db)
    while resumed.poll():
        pass
    with db.read() as session:
        types = list(session.scalars(select(OutboxEvent.type).order_by(OutboxEvent.seq)))
    assert types.count("singleid.voiceprint.enrolled") == 2
    assert types.count("singleid.voiceprint.deleted") == 1
    assert types[-1] == "singleid.voiceprint.deleted"


def test_no_consent_in_the_profile_is_refused(db: Database, keyring: Keyring,
                                              ge2e: Ge2eEncoder) -> None:
    recordings = _recordings(2)
    customer_id = _customer(db, keyring)
    service = VoiceprintService(db, keyring, _engine(ge2e))
    with pytest.raises(FailedPrecondition) as exc:
        service.enroll(customer_id, "call", recordings)
    assert exc.value.reason == "BIOMETRIC_CONSENT_REQUIRED"
    assert exc.value.field == "customer_id"
