"""The voiceprint domain's services: plain Python in, dataclasses out."""

from singleid.voiceprint.service.consent import BiometricConsent, TableBiometricConsent
from singleid.voiceprint.service.engine import CalibrationError, VoiceEngine, process
from singleid.voiceprint.service.voiceprints import VoiceprintService, template_of

__all__ = ["BiometricConsent", "CalibrationError", "TableBiometricConsent", "VoiceEngine",
           "VoiceprintService", "process", "template_of"]
