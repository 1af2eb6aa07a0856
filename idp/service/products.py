"""The products of the ecosystem: each registers its accounts under its code."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from singleid import idempotency, paging
from singleid.db import Database, utcnow
from singleid.errors import AlreadyExists, NotFound, Violations
from singleid.idp import models
from singleid.idp.service import validation
from singleid.idp.service.types import Page, ProductView

MAX_PRODUCT_NAME = 200


class ProductService:
    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, code: str, display_name: str = "", idempotency_key: str = "") -> ProductView:
        violations = Violations()
        validation.product_code(violations, "code", code)
        validation.text(violations, "display_name", display_name, limit=MAX_PRODUCT_NAME)
        violations.raise_if_any()

        def apply(session: Session) -> ProductView:
            if session.get(models.Product, code) is not None:
                raise AlreadyExists(f"product {code!r} exists", reason="PRODUCT_EXISTS",
                                    field="code")
            row = models.Product(code=code, display_name=display_name or code,
                                 created_at=utcnow())
            session.add(row)
            session.flush()
            return _view(row)

        request = {"code": code, "display_name": display_name}
        return self._db.run_write(lambda s: idempotency.run_once(
            s, "CreateProduct", idempotency_key, request, lambda: apply(s), ProductView))

    def get(self, code: str) -> ProductView:
        with self._db.read() as session:
            row = session.get(models.Product, code)
            if row is None:
                raise NotFound(f"no product {code!r}", reason="PRODUCT_NOT_FOUND", field="code")
            return _view(row)

    def list(self, page_size: int = 0, page_token: str = "") -> Page[ProductView]:
        size = paging.page_size(page_size)
        offset = paging.page_token(page_token)
        with self._db.read() as session:
            rows = list(session.scalars(select(models.Product).order_by(models.Product.code)
                                        .offset(offset).limit(size)))
            total = session.scalar(select(func.count()).select_from(models.Product)) or 0
        more = offset + len(rows) < total
        return Page([_view(r) for r in rows],
                    paging.next_page_token(offset + len(rows) if more else None))


def _view(row: models.Product) -> ProductView:
    return ProductView(code=row.code, display_name=row.display_name, created_at=row.created_at)
