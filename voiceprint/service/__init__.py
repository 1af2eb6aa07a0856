"""The voiceprint domain's services: plain Python in, dataclasses out."""

from singleid.voiceprint.service.consent import BiometricConsent, ProfileBiometricConsent
from singleid.voiceprint.service.engine import CalibrationError, VoiceEngine, process
from singleid.voiceprint.service.voiceprints import VoiceprintService, template_of
from singleid.voiceprint.service.withdrawals import ConsentWithdrawals

__all__ = ["BiometricConsent", "CalibrationError", "ConsentWithdrawals",
           "ProfileBiometricConsent", "VoiceEngine", "VoiceprintService", "process",
           "template_of"]
