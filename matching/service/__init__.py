"""Matching's services: plain Python in, dataclasses out."""

from singleid.matching.service.importer import ImportService, ImportSummary, Reject
from singleid.matching.service.matcher import MatchingService

__all__ = ["ImportService", "ImportSummary", "MatchingService", "Reject"]
