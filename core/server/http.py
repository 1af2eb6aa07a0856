"""The HTTP app: metrics and health, plus each domain's routes (``singleid.http`` entry points)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from singleid.plugins import load_plugins
from singleid.server import metrics
from singleid.server.context import AppContext, HttpPlugin


async def metrics_endpoint(_request: Request) -> Response:
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)


async def health_endpoint(_request: Request) -> Response:
    return PlainTextResponse("ok")


def build_app(context: AppContext) -> Starlette:
    routes: list[BaseRoute] = [
        Route("/metrics", metrics_endpoint),
        Route("/healthz", health_endpoint),
    ]
    plugin: HttpPlugin
    for plugin in load_plugins("singleid.http"):
        routes.extend(plugin(context))
    return Starlette(routes=routes)
