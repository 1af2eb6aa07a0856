"""The error tree survives the trip to a gRPC status and back."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2

from singleid import errors, rpc_status


def _round_trip(error: errors.SingleIdError) -> errors.SingleIdError:
    status = rpc_status.to_status(error)
    return rpc_status.from_status(grpc.StatusCode(_code(status.code)), status.message, status)


def _code(number: int) -> tuple[int, str]:
    return next(code.value for code in grpc.StatusCode if code.value[0] == number)


@pytest.mark.parametrize(("error", "code"), [
    (errors.InvalidArgument("bad", field="phone"), grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound("no", field="customer_id"), grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExists("dup", field="account_id"), grpc.StatusCode.ALREADY_EXISTS),
    (errors.FailedPrecondition("pre", field="product"), grpc.StatusCode.FAILED_PRECONDITION),
    (errors.PermissionDenied("no", field="source"), grpc.StatusCode.PERMISSION_DENIED),
    (errors.Aborted("stale", field="expected_version"), grpc.StatusCode.ABORTED),
    (errors.ResourceExhausted("slow down"), grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.Unauthenticated("who?"), grpc.StatusCode.UNAUTHENTICATED),
])
def test_each_class_maps_to_its_status_and_back(error: errors.SingleIdError,
                                                code: grpc.StatusCode) -> None:
    assert rpc_status.status_code_of(error) is code
    back = _round_trip(error)
    assert type(back) is type(error)
    assert back.reason == error.reason
    assert back.field == error.field
    assert back.message == error.message


def test_status_carries_error_info_with_reason_domain_and_field() -> None:
    status = rpc_status.to_status(errors.NotFound("no customer", reason="CUSTOMER_NOT_FOUND",
                                                  field="customer_id"))
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert (info.reason, info.domain, info.metadata["field"]) == (
        "CUSTOMER_NOT_FOUND", "singleid", "customer_id")


def test_invalid_argument_lists_every_field_violation() -> None:
    error = errors.InvalidArgument.of([
        errors.FieldViolation("identifiers[0].value", "not a phone number"),
        errors.FieldViolation("display_name", "at most 200 characters"),
    ])
    status = rpc_status.to_status(error)
    bad_request = error_details_pb2.BadRequest()
    assert any(d.Unpack(bad_request) for d in status.details)
    assert [v.field for v in bad_request.field_violations] == [
        "identifiers[0].value", "display_name"]
    back = _round_trip(error)
    assert isinstance(back, errors.InvalidArgument)
    assert back.violations == error.violations
    assert back.field == "identifiers[0].value"


def test_failed_precondition_carries_precondition_failure() -> None:
    status = rpc_status.to_status(errors.FailedPrecondition(
        "product 'x' is not registered", reason="UNKNOWN_PRODUCT", field="product",
        subject="products/x"))
    failure = error_details_pb2.PreconditionFailure()
    assert any(d.Unpack(failure) for d in status.details)
    assert (failure.violations[0].type, failure.violations[0].subject) == (
        "UNKNOWN_PRODUCT", "products/x")


def test_resource_exhausted_carries_retry_info() -> None:
    back = _round_trip(errors.ResourceExhausted("slow down", retry_after_seconds=2.5))
    assert isinstance(back, errors.ResourceExhausted)
    assert back.retry_after_seconds == 2.5


def test_internal_status_hides_the_cause() -> None:
    status = rpc_status.internal_status()
    assert status.message == rpc_status.INTERNAL_MESSAGE
    assert not status.details


def test_a_status_without_details_still_maps_to_its_class() -> None:
    error = rpc_status.from_status(grpc.StatusCode.NOT_FOUND, "gone", None)
    assert isinstance(error, errors.NotFound)
    assert error.reason == "NOT_FOUND"


def test_unknown_codes_become_internal() -> None:
    assert isinstance(rpc_status.from_status(grpc.StatusCode.DATA_LOSS, "x", None),
                      errors.Internal)
