"""gRPC servicers for CustomerService and AdminService: proto in, service call, proto out.

The services are synchronous (SQLAlchemy); each call runs in the context's
bounded thread pool so the event loop never blocks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf import empty_pb2
from google.protobuf.field_mask_pb2 import FieldMask

from singleid import caller as callers
from singleid.errors import InvalidArgument
from singleid.idp.normalize import IdentifierKind
from singleid.idp.service import CustomerService, MergeService, ProductService
from singleid.idp.service.types import (
    CustomerState,
    CustomerView,
    IdentifierInput,
    IdentifierView,
    Lookup,
    MergeView,
    Outcome,
    ProductAccountView,
    ProductView,
)
from singleid.plugins import load_plugins
from singleid.prototime import timestamp
from singleid.server.context import AppContext
from singleid.v1 import admin_pb2, admin_pb2_grpc, customers_pb2, customers_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]

_KINDS = {
    customers_pb2.IDENTIFIER_KIND_PHONE: IdentifierKind.PHONE,
    customers_pb2.IDENTIFIER_KIND_EMAIL: IdentifierKind.EMAIL,
    customers_pb2.IDENTIFIER_KIND_PASSPORT: IdentifierKind.PASSPORT,
    customers_pb2.IDENTIFIER_KIND_TELEGRAM: IdentifierKind.TELEGRAM,
    customers_pb2.IDENTIFIER_KIND_VIBER: IdentifierKind.VIBER,
    customers_pb2.IDENTIFIER_KIND_WHATSAPP: IdentifierKind.WHATSAPP,
}
_KIND_CODES = {kind: code for code, kind in _KINDS.items()}
_OUTCOMES = {
    Outcome.CREATED: customers_pb2.RegisterCustomerResponse.OUTCOME_CREATED,
    Outcome.EXISTING_ACCOUNT: customers_pb2.RegisterCustomerResponse.OUTCOME_EXISTING_ACCOUNT,
    Outcome.ATTACHED_BY_VERIFIED_IDENTIFIER:
        customers_pb2.RegisterCustomerResponse.OUTCOME_ATTACHED_BY_VERIFIED_IDENTIFIER,
    Outcome.ATTACHED_BY_MATCHING:
        customers_pb2.RegisterCustomerResponse.OUTCOME_ATTACHED_BY_MATCHING,
}
_STATES = {CustomerState.ACTIVE: customers_pb2.Customer.STATE_ACTIVE,
           CustomerState.MERGED: customers_pb2.Customer.STATE_MERGED}


def register(context: AppContext, server: grpc.aio.Server) -> list[str]:
    """The ``singleid.services`` entry point."""
    # Other domains (matching) hear of every new ID through these entry points.
    listeners = [factory(context.db, context.keyring)
                 for factory in load_plugins("singleid.registration_listeners")]
    customers_pb2_grpc.add_CustomerServiceServicer_to_server(
        CustomerServicer(context, CustomerService(context.db, context.keyring, listeners),
                         MergeService(context.db)), server)
    admin_pb2_grpc.add_AdminServiceServicer_to_server(
        AdminServicer(context, ProductService(context.db)), server)
    return [customers_pb2.DESCRIPTOR.services_by_name["CustomerService"].full_name,
            admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name]


class CustomerServicer(customers_pb2_grpc.CustomerServiceServicer):
    def __init__(self, context: AppContext, customers: CustomerService,
                 merges: MergeService) -> None:
        self._run = context.run_blocking
        self._customers = customers
        self._merges = merges

    async def RegisterCustomer(self, request: customers_pb2.RegisterCustomerRequest,
                               context: Context) -> customers_pb2.RegisterCustomerResponse:
        result = await self._run(
            self._customers.register, callers.own_product(request.product), request.account_id,
            [_identifier_input(i) for i in request.identifiers], request.display_name,
            request.idempotency_key)
        callers.note(result.customer_id)
        return customers_pb2.RegisterCustomerResponse(
            customer_id=result.customer_id, created=result.created,
            outcome=_OUTCOMES[result.outcome],
            match_candidate_recorded=result.match_candidate_recorded)

    async def ResolveCustomer(self, request: customers_pb2.ResolveCustomerRequest,
                              context: Context) -> customers_pb2.ResolveCustomerResponse:
        which = request.WhichOneof("lookup")
        if which == "customer_id":
            lookup = Lookup(customer_id=request.customer_id or "")
        elif which == "product_account":
            product = callers.own_product(request.product_account.product,
                                          "product_account.product")
            lookup = Lookup(product_account=(product, request.product_account.account_id))
        elif which == "identifier":
            lookup = Lookup(identifier=(_kind(request.identifier.kind, "identifier.kind"),
                                        request.identifier.value))
        else:
            lookup = Lookup()
        result = await self._run(self._customers.resolve, lookup)
        return customers_pb2.ResolveCustomerResponse(
            customer_id=result.customer_id, resolved_from_alias=result.resolved_from_alias,
            alias_customer_id=result.alias_customer_id)

    async def GetCustomer(self, request: customers_pb2.GetCustomerRequest,
                          context: Context) -> customers_pb2.Customer:
        mask = request.read_mask if request.HasField("read_mask") else None
        if mask is not None and not mask.IsValidForDescriptor(customers_pb2.Customer.DESCRIPTOR):
            raise InvalidArgument("names a field Customer does not have", field="read_mask")
        view = await self._run(self._customers.get, request.customer_id)
        callers.note(view.customer_id, ("display_name", "identifiers"))  # personal, masked
        view = dataclasses.replace(view, product_accounts=_visible(view.product_accounts))
        return _masked(_customer(view), mask)

    async def LinkProductAccount(self, request: customers_pb2.LinkProductAccountRequest,
                                 context: Context) -> customers_pb2.ProductAccount:
        callers.note(request.customer_id)
        view = await self._run(self._customers.link_account, request.customer_id,
                               callers.own_product(request.product), request.account_id,
                               request.idempotency_key)
        return _account(view)

    async def UnlinkProductAccount(self, request: customers_pb2.UnlinkProductAccountRequest,
                                   context: Context) -> empty_pb2.Empty:
        await self._run(self._customers.unlink_account, callers.own_product(request.product),
                        request.account_id, request.idempotency_key)
        return empty_pb2.Empty()

    async def ListProductAccounts(self, request: customers_pb2.ListProductAccountsRequest,
                                  context: Context) -> customers_pb2.ListProductAccountsResponse:
        page = await self._run(self._customers.list_accounts, request.customer_id,
                               request.page_size, request.page_token)
        return customers_pb2.ListProductAccountsResponse(
            product_accounts=[_account(a) for a in _visible(page.items)],
            next_page_token=page.next_page_token)

    async def AddIdentifier(self, request: customers_pb2.AddIdentifierRequest,
                            context: Context) -> customers_pb2.Identifier:
        callers.note(request.customer_id, ("identifiers",))
        view = await self._run(self._customers.add_identifier, request.customer_id,
                               _identifier_input(request.identifier, "identifier"),
                               request.idempotency_key)
        return _identifier(view)

    async def RemoveIdentifier(self, request: customers_pb2.RemoveIdentifierRequest,
                               context: Context) -> empty_pb2.Empty:
        callers.note(request.customer_id, ("identifiers",))
        await self._run(self._customers.remove_identifier, request.customer_id,
                        _kind(request.identifier.kind, "identifier.kind"),
                        request.identifier.value, request.idempotency_key)
        return empty_pb2.Empty()

    async def MergeCustomers(self, request: customers_pb2.MergeCustomersRequest,
                             context: Context) -> customers_pb2.Merge:
        view = await self._run(self._merges.merge, request.survivor_customer_id,
                               request.merged_customer_id, request.reason,
                               dict(request.evidence), request.actor, request.idempotency_key)
        return _merge(view)

    async def UnmergeCustomer(self, request: customers_pb2.UnmergeCustomerRequest,
                              context: Context) -> customers_pb2.Merge:
        view = await self._run(self._merges.unmerge, request.merged_customer_id, request.reason,
                               request.actor, request.idempotency_key)
        return _merge(view)


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self, context: AppContext, products: ProductService) -> None:
        self._run = context.run_blocking
        self._products = products

    async def CreateProduct(self, request: admin_pb2.CreateProductRequest,
                            context: Context) -> admin_pb2.Product:
        return _product(await self._run(self._products.create, request.code,
                                        request.display_name, request.idempotency_key))

    async def GetProduct(self, request: admin_pb2.GetProductRequest,
                         context: Context) -> admin_pb2.Product:
        return _product(await self._run(self._products.get, request.code))

    async def ListProducts(self, request: admin_pb2.ListProductsRequest,
                           context: Context) -> admin_pb2.ListProductsResponse:
        page = await self._run(self._products.list, request.page_size, request.page_token)
        return admin_pb2.ListProductsResponse(products=[_product(p) for p in page.items],
                                              next_page_token=page.next_page_token)


# -- conversions ------------------------------------------------------------

def _kind(code: int, field: str) -> IdentifierKind:
    kind: IdentifierKind | None = _KINDS.get(code)  # type: ignore[call-overload]
    if kind is None:
        raise InvalidArgument("must be a known IdentifierKind", field=field,
                              reason="UNKNOWN_IDENTIFIER_KIND")
    return kind


def _identifier_input(message: customers_pb2.IdentifierInput,
                      field: str = "identifiers") -> IdentifierInput:
    return IdentifierInput(kind=_kind(message.kind, f"{field}.kind"), value=message.value,
                           verified=message.verified)


def _identifier(view: IdentifierView) -> customers_pb2.Identifier:
    return customers_pb2.Identifier(kind=_KIND_CODES[view.kind], masked_value=view.masked_value,
                                    verified=view.verified,
                                    create_time=timestamp(view.created_at))


def _account(view: ProductAccountView) -> customers_pb2.ProductAccount:
    return customers_pb2.ProductAccount(
        name=f"products/{view.product}/accounts/{view.account_id}", product=view.product,
        account_id=view.account_id, customer_id=view.customer_id,
        link_time=timestamp(view.linked_at))


def _visible(accounts: Sequence[ProductAccountView]) -> list[ProductAccountView]:
    """A product's client sees its own accounts only (the caller's binding)."""
    product = callers.visible_products()
    return [a for a in accounts if product is None or a.product == product]


def _customer(view: CustomerView) -> customers_pb2.Customer:
    return customers_pb2.Customer(
        name=f"customers/{view.customer_id}", customer_id=view.customer_id,
        state=_STATES[view.state], merged_into=view.merged_into or "",
        display_name=view.display_name,
        product_accounts=[_account(a) for a in view.product_accounts],
        identifiers=[_identifier(i) for i in view.identifiers],
        create_time=timestamp(view.created_at), update_time=timestamp(view.updated_at))


def _masked(message: customers_pb2.Customer, mask: FieldMask | None) -> customers_pb2.Customer:
    if mask is None or not mask.paths:
        return message
    partial = customers_pb2.Customer()
    mask.MergeMessage(message, partial)
    return partial


def _merge(view: MergeView) -> customers_pb2.Merge:
    return customers_pb2.Merge(
        name=f"merges/{view.merge_id}", merge_id=view.merge_id,
        survivor_customer_id=view.survivor_customer_id,
        merged_customer_id=view.merged_customer_id, reason=view.reason, evidence=view.evidence,
        actor=view.actor, merge_time=timestamp(view.merged_at),
        unmerge_time=timestamp(view.unmerged_at), unmerge_reason=view.unmerge_reason)


def _product(view: ProductView) -> admin_pb2.Product:
    return admin_pb2.Product(name=f"products/{view.code}", code=view.code,
                             display_name=view.display_name,
                             create_time=timestamp(view.created_at))
