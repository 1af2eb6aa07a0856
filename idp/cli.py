"""``singleid products …`` and ``singleid customers …``: the idp's sub-commands.

They call the same services as the gRPC API, on the database the settings name.
"""

from __future__ import annotations

import click

from singleid.clitools import app_context, echo_json
from singleid.idp.normalize import IdentifierKind
from singleid.idp.service import CustomerService, ProductService
from singleid.idp.service.types import Lookup


def commands() -> list[click.Command]:
    """The ``singleid.commands`` entry point."""
    return [products, customers]


@click.group()
def products() -> None:
    """The ecosystem's products, under whose codes accounts are registered."""


@products.command("add")
@click.argument("code")
@click.option("--name", "display_name", default="", help="A human-readable name.")
def products_add(code: str, display_name: str) -> None:
    """Register a product code (e.g. cards, loans, loyalty, messenger)."""
    with app_context() as context:
        echo_json(ProductService(context.db).create(code, display_name))


@products.command("list")
def products_list() -> None:
    """Print every product as a JSON line."""
    with app_context() as context:
        service = ProductService(context.db)
        token = ""
        while True:
            page = service.list(page_token=token)
            for product in page.items:
                echo_json(product)
            token = page.next_page_token
            if not token:
                return


@click.group()
def customers() -> None:
    """Look up central customer IDs."""


@customers.command("resolve")
@click.option("--id", "customer_id", default="", help="A central customer ID.")
@click.option("--account", nargs=2, default=None, metavar="PRODUCT ACCOUNT_ID",
              help="A product's account.")
@click.option("--kind", type=click.Choice([k.value for k in IdentifierKind]),
              help="With --value: an identifier.")
@click.option("--value", default="")
def customers_resolve(customer_id: str, account: tuple[str, str] | None, kind: str | None,
                      value: str) -> None:
    """Find the central ID from an ID, an account, or an identifier."""
    lookup = Lookup(customer_id=customer_id, product_account=account,
                    identifier=(IdentifierKind(kind), value) if kind else None)
    with app_context() as context:
        echo_json(CustomerService(context.db, context.keyring).resolve(lookup))


@customers.command("get")
@click.argument("customer_id")
def customers_get(customer_id: str) -> None:
    """Print a customer with accounts and (masked) identifiers."""
    with app_context() as context:
        echo_json(CustomerService(context.db, context.keyring).get(customer_id))
