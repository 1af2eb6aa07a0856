"""The gRPC servicer for ProfileService: proto in, service call, proto out.

The services are synchronous (SQLAlchemy); each call runs in the context's
bounded thread pool so the event loop never blocks. WatchChanges polls the
outbox from the pool and is woken at once by this process's own commits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2, timestamp_pb2

from singleid.errors import InvalidArgument
from singleid.profile.catalogue import Catalogue, CatalogueError, Sensitivity, load_cached
from singleid.profile.config import get_profile_settings
from singleid.profile.service import (
    ChangeFeed,
    ConsentService,
    Cursor,
    Filters,
    ProfileService,
)
from singleid.profile.service.notify import changes
from singleid.profile.service.types import AttributeView, ConsentView, HistoryEntry
from singleid.prototime import timestamp
from singleid.server.context import AppContext
from singleid.v1 import profile_pb2, profile_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]
WATCH_POLL_SECONDS = 0.1
WATCH_BATCH = 500

_SENSITIVITY = {
    Sensitivity.ORDINARY.value: profile_pb2.SENSITIVITY_ORDINARY,
    Sensitivity.PERSONAL.value: profile_pb2.SENSITIVITY_PERSONAL,
    Sensitivity.SPECIAL.value: profile_pb2.SENSITIVITY_SPECIAL,
}


def register(context: AppContext, server: grpc.aio.Server) -> list[str]:
    """The ``singleid.services`` entry point. Loads the catalogue: a bad one stops start-up."""
    try:
        catalogue = load_cached(get_profile_settings().profile_catalogue)
    except (CatalogueError, OSError) as exc:
        raise OSError(f"attribute catalogue: {exc}") from None
    profile_pb2_grpc.add_ProfileServiceServicer_to_server(
        ProfileServicer(context, catalogue), server)
    return [profile_pb2.DESCRIPTOR.services_by_name["ProfileService"].full_name]


class ProfileServicer(profile_pb2_grpc.ProfileServiceServicer):
    def __init__(self, context: AppContext, catalogue: Catalogue) -> None:
        self._run = context.run_blocking
        self._catalogue = catalogue
        self._profiles = ProfileService(context.db, context.keyring, catalogue)
        self._consents = ConsentService(context.db, catalogue)
        self._feed = ChangeFeed(context.db)

    async def GetProfile(self, request: profile_pb2.GetProfileRequest,
                         context: Context) -> profile_pb2.Profile:
        mask = list(request.read_mask.paths) if request.HasField("read_mask") else None
        view = await self._run(self._profiles.get, request.customer_id, mask)
        return profile_pb2.Profile(
            name=f"customers/{view.customer_id}/profile", customer_id=view.customer_id,
            resolved_from_alias=view.resolved_from_alias, version=view.version, etag=view.etag,
            attributes=[_attribute(a) for a in view.attributes],
            update_time=timestamp(view.update_time))

    async def UpdateProfile(self, request: profile_pb2.UpdateProfileRequest,
                            context: Context) -> profile_pb2.UpdateProfileResponse:
        values = json_format.MessageToDict(request.values) if request.HasField("values") else {}
        result = await self._run(
            self._profiles.update, request.customer_id, request.source, values,
            list(request.update_mask.paths),
            expected_version=request.expected_version
            if request.HasField("expected_version") else None,
            source_time=_datetime(request.source_time)
            if request.HasField("source_time") else None,
            idempotency_key=request.idempotency_key)
        if result.updated:
            changes.notify()
        return profile_pb2.UpdateProfileResponse(
            customer_id=result.customer_id, version=result.version, etag=result.etag,
            updated_attributes=result.updated, skipped_attributes=result.skipped,
            unchanged_attributes=result.unchanged)

    async def GetAttributeHistory(self, request: profile_pb2.GetAttributeHistoryRequest,
                                  context: Context) -> profile_pb2.GetAttributeHistoryResponse:
        page = await self._run(self._profiles.history, request.customer_id, request.attribute,
                               request.page_size, request.page_token)
        return profile_pb2.GetAttributeHistoryResponse(
            changes=[_change(e) for e in page.entries], next_page_token=page.next_page_token)

    async def EraseAttributes(self, request: profile_pb2.EraseAttributesRequest,
                              context: Context) -> profile_pb2.EraseAttributesResponse:
        result = await self._run(self._profiles.erase, request.customer_id,
                                 list(request.attributes), request.reason,
                                 erase_all=request.all, actor=request.actor,
                                 idempotency_key=request.idempotency_key)
        changes.notify()
        return profile_pb2.EraseAttributesResponse(
            customer_id=result.customer_id, version=result.version, etag=result.etag,
            erased_attributes=result.erased)

    async def GetCatalogue(self, request: profile_pb2.GetCatalogueRequest,
                           context: Context) -> profile_pb2.Catalogue:
        return profile_pb2.Catalogue(
            version=self._catalogue.version, source_trust=list(self._catalogue.trust),
            attributes=[profile_pb2.CatalogueAttribute(
                name=a.name, type=a.type.value, list=a.is_list,
                sensitivity=_SENSITIVITY[a.sensitivity.value], owners=sorted(a.owners),
                description=a.description) for a in self._catalogue.attributes.values()])

    async def SetConsent(self, request: profile_pb2.SetConsentRequest,
                         context: Context) -> profile_pb2.Consent:
        view = await self._run(
            self._consents.set, request.customer_id, request.purpose, request.granted,
            request.text_version, request.channel,
            _datetime(request.change_time) if request.HasField("change_time") else None,
            request.idempotency_key)
        changes.notify()
        return _consent(view)

    async def GetConsent(self, request: profile_pb2.GetConsentRequest,
                         context: Context) -> profile_pb2.Consent:
        view = await self._run(self._consents.get, request.customer_id, request.purpose)
        if view is None:
            return profile_pb2.Consent(customer_id=request.customer_id, purpose=request.purpose,
                                       granted=False)
        return _consent(view)

    async def ListConsents(self, request: profile_pb2.ListConsentsRequest,
                           context: Context) -> profile_pb2.ListConsentsResponse:
        views = await self._run(self._consents.list, request.customer_id)
        return profile_pb2.ListConsentsResponse(consents=[_consent(v) for v in views])

    async def WatchChanges(self, request: profile_pb2.WatchChangesRequest,
                           context: Context) -> AsyncIterator[profile_pb2.ChangeEvent]:
        filters = Filters.of(list(request.types), list(request.attributes))
        if request.resume_token:
            cursor = Cursor.parse(request.resume_token)
        elif request.from_now:
            cursor = Cursor.parse(await self._run(self._feed.head_token))
        else:
            cursor = Cursor.parse(await self._run(self._feed.start_token))
        while not (changes.stopping is not None and changes.stopping.is_set()):
            batch = await self._run(self._feed.poll, cursor, filters, WATCH_BATCH)
            for event in batch:
                yield profile_pb2.ChangeEvent(
                    id=event.id, type=event.type, source=event.source, subject=event.subject,
                    time=timestamp(event.time), data=_struct(event.data),
                    resume_token=event.resume_token, cloudevent_json=event.envelope_json)
            if len(batch) < WATCH_BATCH:
                await changes.wait(WATCH_POLL_SECONDS)


# -- conversions ------------------------------------------------------------------

def _datetime(stamp: timestamp_pb2.Timestamp) -> datetime:
    if stamp.seconds < 0 or stamp.seconds > 253402300799:
        raise InvalidArgument("out of range", field="source_time")
    return stamp.ToDatetime(tzinfo=UTC)


def _value(value: Any) -> struct_pb2.Value:
    """A JSON-shaped Python value as google.protobuf.Value (without json_format's overhead)."""
    message = struct_pb2.Value()
    if value is None:
        message.null_value = struct_pb2.NULL_VALUE
    elif isinstance(value, bool):
        message.bool_value = value
    elif isinstance(value, int | float):
        message.number_value = value
    elif isinstance(value, str):
        message.string_value = value
    elif isinstance(value, list):
        message.list_value.extend(value)
    else:
        message.struct_value.update(value)
    return message


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(value)
    return message


def _attribute(view: AttributeView) -> profile_pb2.ProfileAttribute:
    return profile_pb2.ProfileAttribute(
        name=view.name, value=_value(view.value), source=view.source,
        source_time=timestamp(view.source_time), version=view.version,
        update_time=timestamp(view.update_time), sensitivity=_SENSITIVITY[view.sensitivity])


def _change(entry: HistoryEntry) -> profile_pb2.AttributeChange:
    message = profile_pb2.AttributeChange(
        attribute=entry.name, kind=entry.kind, source=entry.source,
        source_time=timestamp(entry.source_time), version=entry.version,
        change_time=timestamp(entry.change_time), sensitive=entry.sensitive,
        redacted=entry.redacted, reason=entry.reason)
    if entry.old_value is not None:
        message.old_value.CopyFrom(_value(entry.old_value))
    if entry.new_value is not None:
        message.new_value.CopyFrom(_value(entry.new_value))
    return message


def _consent(view: ConsentView) -> profile_pb2.Consent:
    return profile_pb2.Consent(
        customer_id=view.customer_id, purpose=view.purpose, granted=view.granted,
        text_version=view.text_version, channel=view.channel,
        change_time=timestamp(view.change_time), version=view.version)
