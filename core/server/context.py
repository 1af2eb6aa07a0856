"""What a domain's gRPC services and CLI commands are given to work with."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import ParamSpec, Protocol, TypeVar

import grpc
from starlette.routing import BaseRoute

from singleid.db import Database
from singleid.keyring import Keyring, load_keyring
from singleid.settings import Settings

P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class AppContext:
    settings: Settings
    db: Database
    keyring: Keyring
    executor: ThreadPoolExecutor = field(init=False)

    def __post_init__(self) -> None:
        self.executor = ThreadPoolExecutor(self.settings.blocking_threads,
                                           thread_name_prefix="singleid-blocking")

    @classmethod
    def from_settings(cls, settings: Settings) -> AppContext:
        db = Database(settings.effective_database_url, pool_size=settings.db_pool_size)
        return cls(settings=settings, db=db, keyring=load_keyring(settings.keyring,
                                                                  settings.data_dir))

    async def run_blocking(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run synchronous work (a database call) off the event loop, in the bounded pool.

        The call's context variables (its caller) go with it.
        """
        loop = asyncio.get_running_loop()
        call = partial(contextvars.copy_context().run, fn, *args, **kwargs)
        return await loop.run_in_executor(self.executor, call)

    def close(self) -> None:
        self.executor.shutdown(wait=True)
        self.db.dispose()


class HttpPlugin(Protocol):
    """A domain's ``singleid.http`` entry point: its HTTP routes (pages, OIDC endpoints)."""

    def __call__(self, context: AppContext) -> list[BaseRoute]: ...


class WorkerPlugin(Protocol):
    """A domain's ``singleid.workers`` entry point: a background task of each server process.

    It runs on the process's event loop from start-up until ``stop`` is set (SIGTERM,
    SIGINT), then has the shutdown grace period to return. It must not block the loop.
    """

    async def __call__(self, context: AppContext, stop: asyncio.Event) -> None: ...


class ServicePlugin(Protocol):
    """A domain's ``singleid.services`` entry point: add servicers, return their full names."""

    def __call__(self, context: AppContext, server: grpc.aio.Server) -> list[str]: ...
