"""Biometric consent: the interface the voiceprint domain needs, and a temporary home.

The profile service (issue 4, built in parallel) will own consents. Until it
lands, :class:`TableBiometricConsent` keeps them in ``voiceprint_consents``;
swapping it for the profile's implementation of :class:`BiometricConsent`
changes no caller. A withdrawal deletes the voiceprint: the profile's
"biometric consent withdrawn" event is to call
:meth:`VoiceprintService.on_biometric_consent_withdrawn`. See decision 0010.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from singleid.db import Database
from singleid.voiceprint import models


@runtime_checkable
class BiometricConsent(Protocol):
    """Answers whether a customer consents to the processing of their voice (biometrics)."""

    def has_biometric_consent(self, customer_id: str) -> bool: ...


class TableBiometricConsent:
    """Temporary: consents kept by the voiceprint domain itself (``voiceprint_consents``)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def has_biometric_consent(self, customer_id: str) -> bool:
        with self._db.read() as session:
            row = session.get(models.VoiceprintConsent, customer_id)
            return bool(row is not None and row.granted)
