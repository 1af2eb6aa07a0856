"""The profile domain's services: plain Python in, dataclasses out.

Other domains use :class:`ConsentService` (``has_consent``) and
:class:`ProfileService`; nothing outside this package touches the profile's tables.
"""

from singleid.profile.service.changes import ChangeFeed, Cursor, Filters
from singleid.profile.service.consents import ConsentService
from singleid.profile.service.export import ExportService
from singleid.profile.service.profiles import ProfileService

__all__ = ["ChangeFeed", "ConsentService", "Cursor", "ExportService", "Filters",
           "ProfileService"]
