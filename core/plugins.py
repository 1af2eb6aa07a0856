"""How domains plug into core without core importing them: entry points.

- ``singleid.services``: add gRPC servicers to the server (``singleid.server``);
- ``singleid.commands``: return click commands for ``singleid``;
- ``singleid.models``: modules whose mappings join the shared metadata;
- ``singleid.http``: return Starlette routes for the HTTP app (``singleid.server.http``);
- ``singleid.workers``: background tasks of each ``singleid serve`` process, as
  ``async def worker(context, stop: asyncio.Event)`` (``singleid.server.context.WorkerPlugin``),
  started after the servers start and given the grace period to finish once ``stop`` is set;
- ``singleid.merge_hooks``: objects with ``merged(session, survivor_id, merged_id, merge_id)``
  and ``unmerged(...)``, called by the idp's MergeService inside the merge's own transaction.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any


def load_plugins(group: str) -> list[Any]:
    """The domains' entry points in a group, loaded in name order."""
    return [ep.load() for ep in sorted(entry_points(group=group), key=lambda ep: ep.name)]


def load_models() -> None:
    """Import every domain's models, so ``Base.metadata`` holds the whole schema."""
    from singleid import audit, events, idempotency  # noqa: F401, PLC0415 - core's own tables

    load_plugins("singleid.models")
