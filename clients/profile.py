"""A typed client for ``singleid.v1.ProfileService``.

Values are plain JSON-shaped Python (str, int, float, bool, list, dict).
Mutations carry an idempotency key (a fresh one unless you give yours), so they
are retried on UNAVAILABLE as safely as reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2
from google.protobuf.field_mask_pb2 import FieldMask

from singleid.clients.auth import TokenSource
from singleid.clients.base import (
    DEFAULT_ATTEMPTS,
    DEFAULT_TIMEOUT_SECONDS,
    BaseClient,
    _error,
    new_idempotency_key,
)
from singleid.v1 import profile_pb2, profile_pb2_grpc


def attribute_values(profile: profile_pb2.Profile) -> dict[str, Any]:
    """A profile's attributes as {name: value}."""
    return {a.name: json_format.MessageToDict(a.value) for a in profile.attributes}


def event_data(event: profile_pb2.ChangeEvent) -> dict[str, Any]:
    """An event's ``data`` as plain JSON-shaped Python (numbers are floats, as in JSON)."""
    return json_format.MessageToDict(event.data)


class ProfileClient(BaseClient):
    def __init__(self, target: str = "127.0.0.1:50051", *, channel: grpc.Channel | None = None,
                 timeout: float = DEFAULT_TIMEOUT_SECONDS,
                 attempts: int = DEFAULT_ATTEMPTS, auth: TokenSource | str | None = None,
                 credentials: grpc.ChannelCredentials | None = None) -> None:
        super().__init__(target, channel=channel, timeout=timeout, attempts=attempts, auth=auth,
                         credentials=credentials)
        self.stub = profile_pb2_grpc.ProfileServiceStub(self.channel)

    def __enter__(self) -> ProfileClient:
        return self

    def get_profile(self, customer_id: str, attributes: Iterable[str] = (), *,
                    verified_call_proof: str = "", call_id: str = "") -> profile_pb2.Profile:
        """The profile; a verified-call proof (from an accepting Verify in ``call_id``) lets
        a contact-center client see personal attributes."""
        request = profile_pb2.GetProfileRequest(customer_id=customer_id,
                                                verified_call_proof=verified_call_proof,
                                                call_id=call_id)
        if paths := list(attributes):
            request.read_mask.CopyFrom(FieldMask(paths=paths))
        return self._call(self.stub.GetProfile, request, idempotent=True)

    def update_profile(self, customer_id: str, source: str, values: Mapping[str, Any], *,
                       expected_version: int | None = None,
                       source_time: datetime | None = None,
                       update_mask: Iterable[str] = (),
                       idempotency_key: str = "") -> profile_pb2.UpdateProfileResponse:
        request = profile_pb2.UpdateProfileRequest(
            customer_id=customer_id, source=source,
            update_mask=FieldMask(paths=list(update_mask)),
            idempotency_key=idempotency_key or new_idempotency_key())
        request.values.update(dict(values))
        if expected_version is not None:
            request.expected_version = expected_version
        if source_time is not None:
            request.source_time.FromDatetime(source_time)
        return self._call(self.stub.UpdateProfile, request, idempotent=True)

    def erase_attributes(self, customer_id: str, attributes: Iterable[str] = (), *,
                         erase_all: bool = False, reason: str, actor: str = "",
                         idempotency_key: str = "") -> profile_pb2.EraseAttributesResponse:
        request = profile_pb2.EraseAttributesRequest(
            customer_id=customer_id, attributes=list(attributes), all=erase_all, reason=reason,
            actor=actor, idempotency_key=idempotency_key or new_idempotency_key())
        return self._call(self.stub.EraseAttributes, request, idempotent=True)

    def history(self, customer_id: str, attribute: str = "", page_size: int = 0,
                page_token: str = "") -> profile_pb2.GetAttributeHistoryResponse:
        return self._call(self.stub.GetAttributeHistory, profile_pb2.GetAttributeHistoryRequest(
            customer_id=customer_id, attribute=attribute, page_size=page_size,
            page_token=page_token), idempotent=True)

    def set_consent(self, customer_id: str, purpose: str, granted: bool, *, text_version: str,
                    channel: str, idempotency_key: str = "") -> profile_pb2.Consent:
        return self._call(self.stub.SetConsent, profile_pb2.SetConsentRequest(
            customer_id=customer_id, purpose=purpose, granted=granted,
            text_version=text_version, channel=channel,
            idempotency_key=idempotency_key or new_idempotency_key()), idempotent=True)

    def has_consent(self, customer_id: str, purpose: str) -> bool:
        consent = self._call(self.stub.GetConsent, profile_pb2.GetConsentRequest(
            customer_id=customer_id, purpose=purpose), idempotent=True)
        return consent.granted

    def watch_changes(self, resume_token: str = "", *, types: Iterable[str] = (),
                      attributes: Iterable[str] = (), from_now: bool = False,
                      timeout: float | None = None) -> Iterator[profile_pb2.ChangeEvent]:
        """Events as they commit; keep each event's resume_token to reconnect after it."""
        request = profile_pb2.WatchChangesRequest(
            resume_token=resume_token, types=list(types), attributes=list(attributes),
            from_now=from_now)
        try:
            yield from self.stub.WatchChanges(request, timeout=timeout)
        except grpc.RpcError as exc:
            if isinstance(exc, grpc.Call) and exc.code() is grpc.StatusCode.DEADLINE_EXCEEDED:
                return
            raise _error(exc) from None


def struct(values: Mapping[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(dict(values))
    return message
