"""The HTTP app: metrics and health now; domains add their pages and OIDC routes."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from singleid.server import metrics


async def metrics_endpoint(_request: Request) -> Response:
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)


async def health_endpoint(_request: Request) -> Response:
    return PlainTextResponse("ok")


def build_app() -> Starlette:
    return Starlette(routes=[
        Route("/metrics", metrics_endpoint),
        Route("/healthz", health_endpoint),
    ])
