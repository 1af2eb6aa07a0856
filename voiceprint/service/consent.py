"""Biometric consent comes from the profile (decision 0502).

:class:`ProfileBiometricConsent` asks the profile's ``ConsentService`` (purpose
``biometrics``) before every enrollment and verification, so a withdrawn consent
stops use at once; :mod:`.withdrawals` then deletes the voiceprint.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from singleid.db import Database
from singleid.profile.service import ConsentService

BIOMETRICS = "biometrics"


@runtime_checkable
class BiometricConsent(Protocol):
    """Answers whether a customer consents to the processing of their voice (biometrics)."""

    def has_biometric_consent(self, customer_id: str) -> bool: ...


class ProfileBiometricConsent:
    """The profile's consent for the purpose ``biometrics``."""

    def __init__(self, db: Database) -> None:
        self._consents = ConsentService(db)

    def has_biometric_consent(self, customer_id: str) -> bool:
        return self._consents.has_consent(customer_id, BIOMETRICS)
