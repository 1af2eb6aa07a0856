"""Enroll, verify, delete; biometric consent; the fraudster watchlist.

Customer IDs are the idp's central IDs, checked (and a merged-away ID followed
to its survivor) through ``singleid.idp.service`` only. The CPU-heavy signal
path (:class:`VoiceEngine`) runs before the database transaction; each
mutation is then one transaction, with its outbox event and idempotency record.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from collections.abc import Sequence
from datetime import timedelta

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from singleid import events, idempotency
from singleid.db import Database, utcnow
from singleid.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Violations,
)
from singleid.idp.service import CustomerService
from singleid.idp.service.types import Lookup
from singleid.keyring import Keyring, Sealed
from singleid.voiceprint import audio, fingerprint, models
from singleid.voiceprint.service.consent import BiometricConsent, ProfileBiometricConsent
from singleid.voiceprint.service.engine import Processed, VoiceEngine, decode, embed
from singleid.voiceprint.service.types import (
    AudioInput,
    Decision,
    VerifyResult,
    VoiceprintView,
    WatchlistEntryView,
)
from singleid.voiceprint.service.watchlist import WatchlistIndex

SOURCE = "singleid/voiceprint"
MAX_CALL_ID = 128
MAX_LABEL = 200


class VoiceprintService:
    def __init__(self, db: Database, keyring: Keyring, engine: VoiceEngine,
                 customers: CustomerService | None = None,
                 consent: BiometricConsent | None = None) -> None:

        self._db = db
        self._keyring = keyring
        self.engine = engine
        self._customers = customers or CustomerService(db, keyring)
        self.consent = consent or ProfileBiometricConsent(db)
        self.watchlist = WatchlistIndex(db, keyring, engine.model_id, engine.model_version,
                                        engine.encoder.dim)
        self._settings = engine.settings

    # -- checks shared by the calls ---------------------------------------------

    def _customer(self, customer_id: str) -> str:
        """The survivor's central ID (NOT_FOUND / INVALID_ARGUMENT name ``customer_id``)."""
        return self._customers.resolve(Lookup(customer_id=customer_id)).customer_id

    def _require_consent(self, customer_id: str) -> None:
        if not self.consent.has_biometric_consent(customer_id):
            raise FailedPrecondition(
                "the customer has not given biometric consent", reason="BIOMETRIC_CONSENT_REQUIRED",
                field="customer_id", subject=f"customers/{customer_id}")

    @staticmethod
    def _check_call_id(violations: Violations, call_id: str) -> None:
        if not call_id:
            violations.add("call_id", "required")
        elif len(call_id) > MAX_CALL_ID:
            violations.add("call_id", f"at most {MAX_CALL_ID} characters")

    # -- enrollment ----------------------------------------------------------------

    def enroll(self, customer_id: str, call_id: str, utterances: Sequence[AudioInput],
               idempotency_key: str = "") -> VoiceprintView:
        violations = Violations()
        self._check_call_id(violations, call_id)
        if not utterances:
            violations.add("utterances", "at least one utterance")
        elif len(utterances) > audio.MAX_UTTERANCES:
            violations.add("utterances", f"at most {audio.MAX_UTTERANCES} utterances")
        violations.raise_if_any()
        idempotency.check_key(idempotency_key)
        customer_id = self._customer(customer_id)
        self._require_consent(customer_id)
        processed = [self.engine.process(u, field=f"utterances[{i}]",
                                         min_speech=self._settings.min_utterance_speech_seconds)
                     for i, u in enumerate(utterances)]
        net = sum(p.net_speech_seconds for p in processed)
        minimum = self._settings.min_enroll_speech_seconds
        if net < minimum:
            raise FailedPrecondition(
                f"{net:.2f} s of speech over {len(processed)} utterance(s); enrollment needs "
                f"{minimum:g} s", reason="NOT_ENOUGH_SPEECH", field="utterances",
                metadata={"net_speech_seconds": f"{net:.2f}",
                          "min_net_speech_seconds": f"{minimum:g}"})
        template = template_of([p.embedding for p in processed])
        request = {"customer_id": customer_id, "call_id": call_id,
                   "audio": [_digest(u) for u in utterances]}

        def work(session: Session) -> VoiceprintView:
            return idempotency.run_once(
                session, "voiceprint.enroll", idempotency_key, request,
                lambda: self._store(session, customer_id, template, processed, net),
                VoiceprintView)

        return self._db.run_write(work)

    def _store(self, session: Session, customer_id: str, template: audio.Samples,
               processed: list[Processed], net: float) -> VoiceprintView:
        now = utcnow()
        sealed = self._keyring.seal(template.astype("<f4").tobytes(), models.TEMPLATE_PURPOSE)
        row = session.get(models.Voiceprint, customer_id)
        if row is None:
            row = models.Voiceprint(customer_id=customer_id, created_at=now)
            session.add(row)
        row.model_id = self.engine.model_id
        row.model_version = self.engine.model_version
        row.template_ciphertext = sealed.ciphertext
        row.template_key_id = sealed.key_id
        row.utterance_count = len(processed)
        row.net_speech_seconds = round(net, 3)
        row.updated_at = now
        session.execute(delete(models.VoiceFingerprint)
                        .where(models.VoiceFingerprint.customer_id == customer_id))
        for p in processed:
            self._add_fingerprint(session, customer_id, "enroll", p.fingerprint)
        events.emit(session, type="voiceprint.enrolled", source=SOURCE,
                    subject=f"customers/{customer_id}/voiceprint",
                    data={"customer_id": customer_id, "model_id": row.model_id,
                          "model_version": row.model_version})
        session.flush()
        return _view(row)

    def _add_fingerprint(self, session: Session, customer_id: str, kind: str,
                         fp: fingerprint.Fingerprint) -> None:
        if len(fp) == 0:
            return
        sealed = self._keyring.seal(fingerprint.to_bytes(fp), models.FINGERPRINT_PURPOSE)
        session.add(models.VoiceFingerprint(customer_id=customer_id, kind=kind,
                                            ciphertext=sealed.ciphertext, key_id=sealed.key_id,
                                            created_at=utcnow()))

    def get(self, customer_id: str) -> VoiceprintView:
        customer_id = self._customer(customer_id)
        with self._db.read() as session:
            row = session.get(models.Voiceprint, customer_id)
            if row is None:
                raise NotFound("the customer has no voiceprint", reason="VOICEPRINT_NOT_FOUND",
                               field="customer_id")
            return _view(row)

    def delete(self, customer_id: str, idempotency_key: str = "") -> None:
        idempotency.check_key(idempotency_key)
        customer_id = self._customer(customer_id)

        def apply(session: Session) -> None:
            if not remove_voiceprint(session, customer_id, reason="requested"):
                raise NotFound("the customer has no voiceprint", reason="VOICEPRINT_NOT_FOUND",
                               field="customer_id")

        self._db.run_write(lambda session: idempotency.run_once(
            session, "voiceprint.delete", idempotency_key, {"customer_id": customer_id},
            lambda: apply(session), None))

    # -- verification --------------------------------------------------------------

    def verify(self, customer_id: str, call_id: str, item: AudioInput) -> VerifyResult:
        violations = Violations()
        self._check_call_id(violations, call_id)
        violations.raise_if_any()
        customer_id = self._customer(customer_id)
        self._require_consent(customer_id)
        wave = decode(item, "audio")  # malformed audio is INVALID_ARGUMENT before anything else
        with self._db.read() as session:
            self._check_rate(session, customer_id, call_id)
            row = session.get(models.Voiceprint, customer_id)
            if row is None:
                raise FailedPrecondition("the customer has no voiceprint; enroll first",
                                         reason="VOICEPRINT_NOT_FOUND", field="customer_id")
            if (row.model_id, row.model_version) != (self.engine.model_id,
                                                     self.engine.model_version):
                raise FailedPrecondition(
                    f"the voiceprint was made by {row.model_id}/{row.model_version}, the service "
                    f"runs {self.engine.model_id}/{self.engine.model_version}: re-enroll",
                    reason="VOICEPRINT_MODEL_MISMATCH", field="customer_id",
                    metadata={"template_model_id": row.model_id,
                              "template_model_version": row.model_version,
                              "model_id": self.engine.model_id,
                              "model_version": self.engine.model_version})
            template = np.frombuffer(self._keyring.open(
                Sealed(row.template_key_id, row.template_ciphertext), models.TEMPLATE_PURPOSE),
                dtype="<f4")
            stored = [fingerprint.from_bytes(self._keyring.open(
                Sealed(f.key_id, f.ciphertext), models.FINGERPRINT_PURPOSE))
                for f in session.scalars(select(models.VoiceFingerprint).where(
                    models.VoiceFingerprint.customer_id == customer_id))]
        processed = embed(self.engine.encoder, wave, field="audio",
                          min_speech=self._settings.min_verify_speech_seconds)
        replay = any(fingerprint.is_replay(processed.fingerprint, old) for old in stored)
        result = self._score(customer_id, template, processed, replay)

        def record(session: Session) -> None:
            self._check_rate(session, customer_id, call_id)
            outcome = "replay" if replay else result.decision.value
            session.add(models.VoiceAttempt(customer_id=customer_id, call_id=call_id,
                                            outcome=outcome, created_at=utcnow()))
            self._add_fingerprint(session, customer_id, "verify", processed.fingerprint)
            self._prune_fingerprints(session, customer_id)
            if replay or result.watchlist_hit:
                events.emit(session, type="voiceprint.fraud_suspected", source=SOURCE,
                            subject=f"customers/{customer_id}/voiceprint",
                            data={"customer_id": customer_id, "replay": replay,
                                  "watchlist_entries": [m.entry_id
                                                        for m in result.watchlist_matches]})

        self._db.run_write(record)
        return result

    def _score(self, customer_id: str, template: audio.Samples, processed: Processed,
               replay: bool) -> VerifyResult:
        table = self.engine.table
        point = self.engine.operating_point
        score = float(np.dot(template, processed.embedding))
        decision_score = table.normalise(score, template, processed.embedding)
        llr = table.llr(decision_score)
        accepted = decision_score >= point.threshold and not replay
        step_up = (not replay) and abs(llr - table.llr(point.threshold)) < \
            self._settings.grey_zone_llr
        matches = self.watchlist.search(processed.embedding, self.engine.watchlist_point.threshold)
        return VerifyResult(
            customer_id=customer_id, decision=Decision.ACCEPT if accepted else Decision.REJECT,
            raw_score=score, llr=llr, probability=table.probability(decision_score),
            threshold=point.threshold, operating_point=self._settings.operating_point,
            step_up_recommended=step_up, net_speech_seconds=processed.net_speech_seconds,
            model_id=self.engine.model_id, replay_detected=replay, watchlist_matches=matches)

    def _check_rate(self, session: Session, customer_id: str, call_id: str) -> None:
        window = self._settings.attempt_window_seconds
        since = utcnow() - timedelta(seconds=window)
        per_customer = session.scalar(select(func.count()).select_from(models.VoiceAttempt).where(
            models.VoiceAttempt.customer_id == customer_id,
            models.VoiceAttempt.created_at >= since)) or 0
        if per_customer >= self._settings.max_attempts_per_customer:
            raise ResourceExhausted(
                f"at most {self._settings.max_attempts_per_customer} verification attempts per "
                f"customer in {window} s", reason="VOICE_RATE_LIMITED_CUSTOMER",
                field="customer_id", retry_after_seconds=float(window))
        per_call = session.scalar(select(func.count()).select_from(models.VoiceAttempt).where(
            models.VoiceAttempt.call_id == call_id,
            models.VoiceAttempt.created_at >= since)) or 0
        if per_call >= self._settings.max_attempts_per_call:
            raise ResourceExhausted(
                f"at most {self._settings.max_attempts_per_call} verification attempts per call",
                reason="VOICE_RATE_LIMITED_CALL", field="call_id",
                retry_after_seconds=float(window))

    def _prune_fingerprints(self, session: Session, customer_id: str) -> None:
        keep = self._settings.fingerprints_kept
        stale = session.scalars(
            select(models.VoiceFingerprint.id)
            .where(models.VoiceFingerprint.customer_id == customer_id,
                   models.VoiceFingerprint.kind == "verify")
            .order_by(models.VoiceFingerprint.id.desc()).offset(keep)).all()
        if stale:
            session.execute(delete(models.VoiceFingerprint)
                            .where(models.VoiceFingerprint.id.in_(stale)))

    def on_biometric_consent_withdrawn(self, customer_id: str) -> bool:
        """Delete the voiceprint of a customer who withdrew consent (whether there was one)."""
        return self._db.run_write(lambda session: remove_voiceprint(
            session, customer_id, reason="consent_withdrawn"))

    # -- watchlist ------------------------------------------------------------------

    def add_to_watchlist(self, label: str, item: AudioInput,
                         idempotency_key: str = "") -> WatchlistEntryView:
        violations = Violations()
        if not label.strip():
            violations.add("label", "required")
        elif len(label) > MAX_LABEL:
            violations.add("label", f"at most {MAX_LABEL} characters")
        violations.raise_if_any()
        idempotency.check_key(idempotency_key)
        processed = self.engine.process(item, field="audio",
                                        min_speech=self._settings.min_verify_speech_seconds)
        request = {"label": label, "audio": _digest(item)}

        def apply(session: Session) -> WatchlistEntryView:
            sealed = self._keyring.seal(processed.embedding.astype("<f4").tobytes(),
                                        models.WATCHLIST_PURPOSE)
            row = models.WatchlistEntry(
                id=secrets.token_hex(13), label=label, model_id=self.engine.model_id,
                model_version=self.engine.model_version, embedding_ciphertext=sealed.ciphertext,
                embedding_key_id=sealed.key_id, created_at=utcnow())
            session.add(row)
            events.emit(session, type="voiceprint.watchlist_entry_created", source=SOURCE,
                        subject=f"watchlist/{row.id}", data={"entry_id": row.id})
            return WatchlistEntryView(entry_id=row.id, label=row.label, model_id=row.model_id,
                                      created_at=row.created_at)

        return self._db.run_write(lambda session: idempotency.run_once(
            session, "voiceprint.watchlist.create", idempotency_key, request,
            lambda: apply(session), WatchlistEntryView))

    def remove_from_watchlist(self, entry_id: str, idempotency_key: str = "") -> None:
        if not entry_id or len(entry_id) > models.ID_LENGTH:
            raise InvalidArgument("expected watchlist/{entry_id}", field="name",
                                  reason="INVALID_NAME")
        idempotency.check_key(idempotency_key)

        def apply(session: Session) -> None:
            row = session.get(models.WatchlistEntry, entry_id)
            if row is None:
                raise NotFound("no such watchlist entry", reason="WATCHLIST_ENTRY_NOT_FOUND",
                               field="name")
            session.delete(row)

        self._db.run_write(lambda session: idempotency.run_once(
            session, "voiceprint.watchlist.delete", idempotency_key, {"entry_id": entry_id},
            lambda: apply(session), None))


def remove_voiceprint(session: Session, customer_id: str, *, reason: str) -> bool:
    """Delete a voiceprint and its replay fingerprints, with the event; whether there was one."""
    session.execute(delete(models.VoiceFingerprint)
                    .where(models.VoiceFingerprint.customer_id == customer_id))
    row = session.get(models.Voiceprint, customer_id)
    if row is None:
        return False
    session.delete(row)
    events.emit(session, type="voiceprint.deleted", source=SOURCE,
                subject=f"customers/{customer_id}/voiceprint",
                data={"customer_id": customer_id, "reason": reason})
    return True


def template_of(embeddings: Sequence[audio.Samples]) -> audio.Samples:
    """The voiceprint: the mean of the utterances' unit embeddings, scaled to unit length."""
    mean = np.mean(np.stack(embeddings), axis=0)
    norm = float(np.linalg.norm(mean))
    if not math.isfinite(norm) or norm == 0:
        raise FailedPrecondition("the utterances give no usable voiceprint",
                                 reason="NO_EMBEDDING", field="utterances")
    return np.asarray(mean / norm, dtype=np.float32)


def _digest(item: AudioInput) -> str:
    """What an idempotency record remembers of the audio: a digest, never the audio."""
    return hashlib.sha256(item.content).hexdigest() + f":{item.format.encoding}" \
        f":{item.format.sample_rate}"


def _view(row: models.Voiceprint) -> VoiceprintView:
    return VoiceprintView(customer_id=row.customer_id, model_id=row.model_id,
                          model_version=row.model_version, utterance_count=row.utterance_count,
                          net_speech_seconds=row.net_speech_seconds, created_at=row.created_at,
                          updated_at=row.updated_at)
