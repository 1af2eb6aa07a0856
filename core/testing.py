"""Running real ``singleid serve`` processes from tests and benchmarks."""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from singleid.bearer import BearerInterceptor, CachedToken, fetch_client_credentials

_LISTENING = re.compile(r"singleid listening: grpc=(\S+) http=https?://(\S+)")
START_TIMEOUT_SECONDS = 60.0
BOOTSTRAP_CLIENT_ID = "singleid-test-admin"


@dataclass
class ServerProcess:
    """A ``singleid serve`` child process on free ports, with its output kept for asserts."""

    data_dir: Path
    database_url: str = ""
    workers: int = 1
    env: Mapping[str, str] = field(default_factory=dict)
    grpc_addr: str = ""
    http_addr: str = ""
    process: subprocess.Popen[str] | None = None
    output: list[str] = field(default_factory=list)
    # An unbound administrator client with every scope (SINGLEID_BOOTSTRAP_CLIENT).
    credentials: tuple[str, str] = field(
        default_factory=lambda: (BOOTSTRAP_CLIENT_ID, secrets.token_urlsafe(24)))
    _token: CachedToken | None = field(default=None, repr=False)

    def start(self) -> ServerProcess:
        env = {**os.environ, "SINGLEID_DATA_DIR": str(self.data_dir),
               "SINGLEID_DATABASE_URL": self.database_url,
               "SINGLEID_GRPC_ADDR": "127.0.0.1:0", "SINGLEID_HTTP_ADDR": "127.0.0.1:0",
               "SINGLEID_BOOTSTRAP_CLIENT": ":".join(self.credentials),
               **self.env}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "singleid", "serve", "--workers", str(self.workers)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
        listening = threading.Event()
        threading.Thread(target=self._read_output, args=(listening,), daemon=True).start()
        if not listening.wait(START_TIMEOUT_SECONDS):
            self.kill()
            raise RuntimeError("singleid serve did not start:\n" + "".join(self.output[-40:]))
        if self.workers > 1:
            self.wait_for_workers()
        return self

    @property
    def token(self) -> str:
        """An access token of the bootstrap client, fetched from the token endpoint, kept
        until a minute before it expires."""
        if self._token is None:
            endpoint = f"http://{self.http_addr}/token"
            self._token = CachedToken(
                lambda: fetch_client_credentials(endpoint, *self.credentials))
        return self._token.token()

    @property
    def metadata(self) -> list[tuple[str, str]]:
        """Call metadata with the bootstrap client's token, for raw stubs."""
        return [("authorization", f"Bearer {self.token}")]

    def channel(self, **options: Any) -> grpc.Channel:
        """A channel to the server that sends the bootstrap client's token on every call."""
        channel = grpc.insecure_channel(self.grpc_addr, options=list(options.items()))
        return grpc.intercept_channel(channel, BearerInterceptor(lambda: self.token))

    def _read_output(self, listening: threading.Event) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            if match := _LISTENING.search(line):
                self.grpc_addr, self.http_addr = match.groups()
                listening.set()

    def wait_for_workers(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        """Wait until every worker logged that it serves."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum('"message": "serving"' in line for line in self.output) >= self.workers:
                return
            time.sleep(0.05)
        raise RuntimeError("workers did not start:\n" + "".join(self.output[-40:]))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL the whole process group: the supervisor and every worker."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
