"""The outbox relay to NATS JetStream with real processes: a SIGKILL mid-load, a broker outage.

Each test publishes under its own subject prefix into its own stream, deleted
at the end, so runs sharing the NATS server do not see each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import nats
import pytest

from singleid.clients import CustomersClient, ProfileClient
from singleid.clients.profile import attribute_values, event_data
from singleid.errors import SingleIdError
from singleid.testing import ServerProcess
from tests.conftest import require

pytestmark = pytest.mark.slow

NATS_HOST, NATS_PORT = "127.0.0.1", 4222
WRITERS = 4


def _nats_up() -> bool:
    with contextlib.suppress(OSError), socket.create_connection((NATS_HOST, NATS_PORT), 2):
        return True
    return False


@pytest.fixture
def stream() -> Iterator[tuple[str, str]]:
    """A (stream name, subject prefix) of our own, deleted afterwards."""
    require(_nats_up(), f"NATS is not reachable at {NATS_HOST}:{NATS_PORT}")
    tag = uuid.uuid4().hex[:10]
    yield f"TEST_{tag}", f"t{tag}."

    async def delete() -> None:
        nc = await nats.connect(f"nats://{NATS_HOST}:{NATS_PORT}")
        with contextlib.suppress(Exception):
            await nc.jetstream().delete_stream(f"TEST_{tag}")
        await nc.close()

    asyncio.run(delete())


def nats_ids(stream_name: str, prefix: str) -> Counter[str]:
    """Every message in the stream, read by a fresh consumer, counted by Nats-Msg-Id."""

    async def read() -> Counter[str]:
        nc = await nats.connect(f"nats://{NATS_HOST}:{NATS_PORT}")
        seen: Counter[str] = Counter()
        try:
            js = nc.jetstream()
            try:
                info = await js.stream_info(stream_name)
            except Exception:
                return seen
            if info.state.messages == 0:
                return seen
            sub = await js.subscribe(f"{prefix}singleid.>", stream=stream_name,
                                     ordered_consumer=True)
            while sum(seen.values()) < info.state.messages:
                msg = await sub.next_msg(timeout=5)
                seen[(msg.headers or {})["Nats-Msg-Id"]] += 1
            await sub.unsubscribe()
        finally:
            await nc.close()
        return seen

    return asyncio.run(read())


def relay_env(stream_name: str, prefix: str, url: str) -> dict[str, str]:
    return {"SINGLEID_EVENT_BROKER": "nats", "SINGLEID_NATS_URL": url,
            "SINGLEID_NATS_STREAM": stream_name, "SINGLEID_EVENT_SUBJECT_PREFIX": prefix,
            "SINGLEID_RELAY_MAX_BACKOFF_SECONDS": "1", "SINGLEID_RELAY_LEASE_SECONDS": "2"}


def all_events(server: ServerProcess) -> list[Any]:
    with ProfileClient(server.grpc_addr, timeout=30, auth=server.token) as client:
        return list(client.watch_changes(timeout=5))


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


def test_sigkill_during_updates_loses_nothing(database_url: str, tmp_path: Path,
                                              stream: tuple[str, str]) -> None:
    stream_name, prefix = stream
    env = relay_env(stream_name, prefix, f"nats://{NATS_HOST}:{NATS_PORT}")
    server = ServerProcess(data_dir=tmp_path / "data", database_url=database_url, env=env).start()
    try:
        with closing(CustomersClient(server.grpc_addr, auth=server.token)) as customers:
            customers.create_product("cards", "Cards")
            ids = [customers.register_customer("cards", f"k-{i}").customer_id
                   for i in range(WRITERS)]
        acked: dict[str, list[tuple[int, int]]] = {cid: [] for cid in ids}  # (n, version)
        stop = threading.Event()

        def writer(cid: str) -> None:
            with ProfileClient(server.grpc_addr, timeout=5, attempts=1,
                               auth=server.token) as client:
                n = 0
                while not stop.is_set():
                    n += 1
                    try:
                        result = client.update_profile(cid, "analytics", {"tags_auto": [f"n{n}"]})
                    except SingleIdError:
                        return
                    acked[cid].append((n, result.version))

        threads = [threading.Thread(target=writer, args=(cid,)) for cid in ids]
        for thread in threads:
            thread.start()
        time.sleep(3)
        server.kill()  # SIGKILL, mid-load
        stop.set()
        for thread in threads:
            thread.join(30)
    finally:
        server.kill()
    assert all(len(a) >= 3 for a in acked.values()), "too few updates before the kill"

    restarted = ServerProcess(data_dir=tmp_path / "data", database_url=database_url,
                              env=env).start()
    try:
        with ProfileClient(restarted.grpc_addr, timeout=30, auth=restarted.token) as client:
            for cid, changes in acked.items():
                profile = client.get_profile(cid)
                _last_n, last_version = changes[-1]
                # Acknowledged is durable; one more may have committed without its ack.
                assert profile.version in (last_version, last_version + 1)
                stored_n = int(attribute_values(profile)["tags_auto"][0][1:])
                assert stored_n == profile.version  # the n-th write made version n
                history = {e.version: e.new_value.list_value.values[0].string_value
                           for e in client.history(cid, "tags_auto", page_size=1000).changes}
                assert all(history[v] == f"n{n}" for n, v in changes)
        events = [e for e in all_events(restarted)
                  if e.type == "singleid.profile.updated.v1"]
        with ProfileClient(restarted.grpc_addr, auth=restarted.token) as client:
            for cid in ids:
                version = client.get_profile(cid).version
                ours = sorted(int(event_data(e)["version"]) for e in events if e.subject == cid)
                assert ours == list(range(1, version + 1))  # one event per change, none extra
        every_id = {e.id for e in all_events(restarted)}
        wait_for(lambda: set(nats_ids(stream_name, prefix)) == every_id, 30,
                 "the relay to publish every committed event")
        seen = nats_ids(stream_name, prefix)
        assert set(seen) == every_id
        assert all(count == 1 for count in seen.values())
    finally:
        restarted.stop()


class TcpProxy:
    """A TCP forwarder we can take down and bring back on the same port: a broker outage."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):  # wakes the accept() blocked in its thread
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        self._conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_RDWR)


def test_the_relay_catches_up_after_a_broker_outage(database_url: str, tmp_path: Path,
                                                    stream: tuple[str, str]) -> None:
    stream_name, prefix = stream
    proxy = TcpProxy((NATS_HOST, NATS_PORT))
    proxy.start()
    env = relay_env(stream_name, prefix, f"nats://127.0.0.1:{proxy.port}")
    server = ServerProcess(data_dir=tmp_path / "data", database_url=database_url,
                           env=env).start()
    try:
        with closing(CustomersClient(server.grpc_addr, auth=server.token)) as customers:
            customers.create_product("cards", "Cards")
            cid = customers.register_customer("cards", "o-1").customer_id
        with ProfileClient(server.grpc_addr, auth=server.token) as client:
            client.update_profile(cid, "analytics", {"tags_auto": ["before"]})
            # The first signing keys (made at start-up for tokens), the registration, the update.
            wait_for(lambda: len(nats_ids(stream_name, prefix)) == 3, 20, "the first events")

            proxy.stop()  # the broker is gone
            for n in range(20):
                client.update_profile(cid, "analytics", {"tags_auto": [f"during{n}"]})
            time.sleep(2)
            assert len(nats_ids(stream_name, prefix)) == 3  # nothing got through meanwhile

            proxy.start()  # and back, on the same port
            every_id = {e.id for e in all_events(server)}
            assert len(every_id) == 23  # signing keys, registration, 21 profile updates
            wait_for(lambda: set(nats_ids(stream_name, prefix)) == every_id, 30,
                     "the relay to catch up")
        assert "relay: publishing failed; retrying" in "".join(server.output)
    finally:
        server.stop()
        proxy.stop()


def test_one_relay_across_workers_and_singleid_relay_takes_over(
        tmp_path: Path, stream: tuple[str, str], pg_url: str) -> None:
    """`serve --workers 2` runs one active relay; after it stops, `singleid relay` takes over."""
    stream_name, prefix = stream
    env = relay_env(stream_name, prefix, f"nats://{NATS_HOST}:{NATS_PORT}")
    first = ServerProcess(data_dir=tmp_path / "data", database_url=pg_url, workers=2,
                          env=env).start()
    relay: subprocess.Popen[str] | None = None
    second: ServerProcess | None = None
    try:
        with closing(CustomersClient(first.grpc_addr, auth=first.token)) as customers:
            customers.create_product("cards", "Cards")
            cid = customers.register_customer("cards", "r-1").customer_id
        with ProfileClient(first.grpc_addr, auth=first.token) as client:
            for n in range(10):
                client.update_profile(cid, "analytics", {"tags_auto": [f"a{n}"]})
        # The first signing keys (made at start-up for tokens), the registration, 10 updates.
        wait_for(lambda: len(nats_ids(stream_name, prefix)) == 12, 30, "the first events")
        relay = subprocess.Popen(
            [sys.executable, "-m", "singleid", "relay"], stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
            env={**os.environ, **env, "SINGLEID_DATABASE_URL": pg_url,
                 "SINGLEID_DATA_DIR": str(tmp_path / "data")})
        first.stop()  # releases its lease; the standalone relay takes over

        second = ServerProcess(data_dir=tmp_path / "data", database_url=pg_url,
                               env={**env, "SINGLEID_RELAY_IN_SERVE": "false"}).start()
        with ProfileClient(second.grpc_addr, auth=second.token) as client:
            for n in range(5):
                client.update_profile(cid, "analytics", {"tags_auto": [f"b{n}"]})
        every_id = {e.id for e in all_events(second)}
        wait_for(lambda: set(nats_ids(stream_name, prefix)) == every_id, 30,
                 "`singleid relay` to publish the rest")
    finally:
        first.stop()
        if second is not None:
            second.stop()
        out = ""
        if relay is not None:
            relay.send_signal(signal.SIGTERM)
            out, _ = relay.communicate(timeout=30)
    assert sum(line.count("relay lease taken") for line in first.output) == 1  # of 2 workers
    assert second is not None
    assert not any("relay lease taken" in line for line in second.output)
    assert "relay lease taken" in out, out[-2000:]
