"""Who is calling: the authenticated client of the current gRPC call, for every layer.

The server's interceptor sets it from the access token before the servicer runs,
and ``AppContext.run_blocking`` carries it into the worker thread, so services
and api modules read it without a parameter. Outside a call (the CLI, tests
calling services in-process, ``SINGLEID_AUTH=off``) there is no caller and
nothing is restricted: those paths are already trusted by whoever runs them.

Binding rule (docs/decisions/0901): a client bound to a product acts for that
product only; an unbound client with the ``admin`` scope acts for any.
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from dataclasses import dataclass, field

from singleid.errors import PermissionDenied

ADMIN_SCOPE = "admin"
SENSITIVITIES = ("ordinary", "personal", "special")


@dataclass(frozen=True)
class Caller:
    client_id: str
    subject: str  # the customer ID for user tokens, else the client ID
    scopes: frozenset[str]
    product: str | None = None
    source: str | None = None
    sensitivity: str = "ordinary"
    # Personal attributes only with a verified-call proof (the contact center).
    needs_verified_call: bool = False
    peer: str = ""
    # Customer ID and attribute names the api layer touched, for the audit record.
    touched: dict[str, object] = field(default_factory=dict, compare=False, hash=False)

    @property
    def unbound_admin(self) -> bool:
        return ADMIN_SCOPE in self.scopes and self.product is None

    def may_read(self, sensitivity: str) -> bool:
        """Whether this client may read ``sensitivity`` (ordinary < personal < special)."""
        return SENSITIVITIES.index(sensitivity) <= SENSITIVITIES.index(self.sensitivity)


_CURRENT: ContextVar[Caller | None] = ContextVar("singleid_caller", default=None)


def current() -> Caller | None:
    return _CURRENT.get()


def bind(caller: Caller | None) -> object:
    """Make ``caller`` the current one; returns the token for :func:`unbind`."""
    return _CURRENT.set(caller)


def unbind(token: object) -> None:
    # A stream closed from another context: that context ends with it.
    with contextlib.suppress(ValueError):
        _CURRENT.reset(token)  # type: ignore[arg-type]


def own_product(requested: str, field_name: str = "product") -> str:
    """The product to act for: the caller's own; another one is PERMISSION_DENIED.

    An empty ``requested`` means the caller's bound product.
    """
    return _own("product", "acts for product", requested, field_name)


def own_source(requested: str, field_name: str = "source") -> str:
    """The profile source to write as: the caller's own; another one is PERMISSION_DENIED."""
    return _own("source", "writes as source", requested, field_name)


def _own(binding: str, acts: str, requested: str, field_name: str) -> str:
    """The caller's bound ``binding`` (product or source), checked against ``requested``."""
    caller = current()
    if caller is None or caller.unbound_admin:
        return requested
    bound: str | None = getattr(caller, binding)
    what = "profile source" if binding == "source" else binding
    if bound is None:
        raise PermissionDenied(f"client {caller.client_id!r} is bound to no {what}",
                               reason=f"CLIENT_NOT_BOUND_TO_{binding.upper()}",
                               field=field_name)
    if requested and requested != bound:
        raise PermissionDenied(f"client {caller.client_id!r} {acts} {bound!r} only",
                               reason=f"ANOTHER_{binding.upper()}", field=field_name)
    return bound


def visible_products() -> str | None:
    """The one product whose accounts the caller may see, or None for all."""
    caller = current()
    if caller is None or caller.unbound_admin:
        return None
    return caller.product or ""


def note(customer_id: str | None = None, attributes: tuple[str, ...] = ()) -> None:
    """Record, for the audit trail, which customer and attribute names a call touched."""
    caller = current()
    if caller is None:
        return
    if customer_id:
        caller.touched["customer_id"] = customer_id
    if attributes:
        caller.touched["attributes"] = tuple(attributes)
