"""The one mapping between the error tree and gRPC statuses with ``google.rpc`` details.

The server interceptor encodes with :func:`to_status`; ``singleid.clients``
decodes with :func:`from_status`, so a client catches the same classes the
service raised.
"""

from __future__ import annotations

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from singleid import errors

DOMAIN = "singleid"
INTERNAL_MESSAGE = "internal error; the server log has the details"

_CODES: list[tuple[type[errors.SingleIdError], grpc.StatusCode]] = [
    (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (errors.Aborted, grpc.StatusCode.ABORTED),
    (errors.ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (errors.Unavailable, grpc.StatusCode.UNAVAILABLE),
    (errors.Internal, grpc.StatusCode.INTERNAL),
]
_CLASS_BY_CODE = {code: cls for cls, code in _CODES}


def status_code_of(error: errors.SingleIdError) -> grpc.StatusCode:
    for cls, code in _CODES:
        if isinstance(error, cls):
            return code
    return grpc.StatusCode.INTERNAL


def to_status(error: errors.SingleIdError) -> status_pb2.Status:
    code = status_code_of(error)
    status = status_pb2.Status(code=code.value[0], message=error.message)
    _pack(status, error_details_pb2.ErrorInfo(
        reason=error.reason, domain=DOMAIN, metadata=error.metadata))
    if isinstance(error, errors.InvalidArgument) and error.violations:
        _pack(status, error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
            for v in error.violations
        ]))
    if isinstance(error, errors.FailedPrecondition):
        _pack(status, error_details_pb2.PreconditionFailure(violations=[
            error_details_pb2.PreconditionFailure.Violation(
                type=v.type, subject=v.subject, description=v.description)
            for v in error.violations
        ]))
    if isinstance(error, errors.ResourceExhausted):
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(int(error.retry_after_seconds * 1000))
        _pack(status, error_details_pb2.RetryInfo(retry_delay=delay))
    return status


def internal_status() -> status_pb2.Status:
    return status_pb2.Status(code=code_pb2.INTERNAL, message=INTERNAL_MESSAGE)


def from_status(code: grpc.StatusCode, message: str, status: status_pb2.Status | None
                ) -> errors.SingleIdError:
    """Rebuild the error a server raised from its status and details."""
    cls = _CLASS_BY_CODE.get(code, errors.Internal)
    info = error_details_pb2.ErrorInfo()
    bad_request = error_details_pb2.BadRequest()
    retry = error_details_pb2.RetryInfo()
    for detail in status.details if status is not None else []:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            detail.Unpack(info)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            detail.Unpack(bad_request)
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            detail.Unpack(retry)
    reason = info.reason or cls.default_reason
    metadata = dict(info.metadata)
    field = metadata.get("field")
    if cls is errors.InvalidArgument:
        violations = [errors.FieldViolation(v.field, v.description)
                      for v in bad_request.field_violations]
        return errors.InvalidArgument(message, reason=reason, field=field,
                                      violations=violations, metadata=metadata)
    if cls is errors.ResourceExhausted:
        return errors.ResourceExhausted(
            message, reason=reason, field=field,
            retry_after_seconds=retry.retry_delay.ToMilliseconds() / 1000)
    return cls(message, reason=reason, field=field, metadata=metadata)


def _pack(status: status_pb2.Status, detail: object) -> None:
    status.details.add().Pack(detail)
