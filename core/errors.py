"""The domain error tree.

Services raise these; ``singleid.rpc_status`` maps them once to gRPC statuses
with ``google.rpc`` details, and back again in ``singleid.clients``. Every error
carries a stable UPPER_SNAKE ``reason`` and names the offending field.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class SingleIdError(Exception):
    """Base of every error a service raises on purpose."""

    default_reason = "ERROR"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        field: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.field = field
        self.metadata = dict(metadata or {})
        if field is not None:
            self.metadata.setdefault("field", field)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason}: {self.message})"


class InvalidArgument(SingleIdError):
    default_reason = "INVALID_ARGUMENT"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        field: str | None = None,
        violations: list[FieldViolation] | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, field=field, metadata=metadata)
        self.violations = list(violations or [])
        if field is not None and not self.violations:
            self.violations.append(FieldViolation(field, message))

    @classmethod
    def of(cls, violations: list[FieldViolation],
           reason: str = "INVALID_ARGUMENT") -> InvalidArgument:
        """One error naming every bad field, so a caller fixes them all at once."""
        summary = "; ".join(f"{v.field}: {v.description}" for v in violations)
        first = violations[0].field if violations else None
        return cls(summary, reason=reason, field=first, violations=violations)


class NotFound(SingleIdError):
    default_reason = "NOT_FOUND"


class AlreadyExists(SingleIdError):
    default_reason = "ALREADY_EXISTS"


@dataclass(frozen=True)
class PreconditionViolation:
    type: str
    subject: str
    description: str


class FailedPrecondition(SingleIdError):
    default_reason = "FAILED_PRECONDITION"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        field: str | None = None,
        subject: str = "",
        metadata: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, field=field, metadata=metadata)
        self.violations = [PreconditionViolation(self.reason, subject or (field or ""), message)]


class PermissionDenied(SingleIdError):
    default_reason = "PERMISSION_DENIED"


class Aborted(SingleIdError):
    default_reason = "ABORTED"


class ResourceExhausted(SingleIdError):
    default_reason = "RESOURCE_EXHAUSTED"

    def __init__(
        self,
        message: str,
        *,
        retry_after_seconds: float = 1.0,
        reason: str | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message, reason=reason, field=field)
        self.retry_after_seconds = retry_after_seconds


class Unauthenticated(SingleIdError):
    default_reason = "UNAUTHENTICATED"


class Unavailable(SingleIdError):
    """Transient: the server, or its database, could not be reached. Retry."""

    default_reason = "UNAVAILABLE"


class Internal(SingleIdError):
    """Raised on the client side only: the server failed; its log has the traceback."""

    default_reason = "INTERNAL"


@dataclass
class Violations:
    """Collects field violations while validating a request, then raises them together."""

    items: list[FieldViolation] = field(default_factory=list)

    def add(self, field_name: str, description: str) -> None:
        self.items.append(FieldViolation(field_name, description))

    def raise_if_any(self) -> None:
        if self.items:
            raise InvalidArgument.of(self.items)
