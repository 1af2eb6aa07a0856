"""``singleid serve --workers N``: N server processes sharing the ports (SO_REUSEPORT).

The supervisor migrates the schema once, resolves port 0 to a real port held
open for the children, starts each child as its own ``singleid serve``, forwards
SIGTERM and SIGINT, and restarts a child that dies.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from types import FrameType

from singleid.keyring import load_keyring
from singleid.server.app import bound_addr, reuseport_socket
from singleid.settings import WORKER_ENV, Settings

log = logging.getLogger(__name__)

RESTART_DELAY_SECONDS = 1.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Ask the kernel to stop a worker whose supervisor was killed, so no orphan keeps the port."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def supervise(settings: Settings, workers: int) -> int:
    # A bad key ring fails here, once, not in every worker restarted forever; and the
    # development ring is generated once, not by workers racing to write it.
    load_keyring(settings.keyring, settings.data_dir)
    grpc_hold = reuseport_socket(settings.grpc_addr, "SINGLEID_GRPC_ADDR")
    http_hold = reuseport_socket(settings.http_addr, "SINGLEID_HTTP_ADDR")
    env = {**os.environ, "SINGLEID_GRPC_ADDR": bound_addr(grpc_hold),
           "SINGLEID_HTTP_ADDR": bound_addr(http_hold)}
    stopping = False

    def start(index: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "singleid", "serve", "--workers", "1", "--no-migrate",
             "--quiet"], env={**env, WORKER_ENV: str(index)}, preexec_fn=_die_with_parent)  # noqa: PLW1509 - the supervisor runs no threads

    received: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        received.append(signum)
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    children = [start(i) for i in range(workers)]
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    scheme = "https" if settings.tls else "http"
    print(f"singleid listening: grpc={env['SINGLEID_GRPC_ADDR']} "
          f"http={scheme}://{env['SINGLEID_HTTP_ADDR']} workers={workers}", flush=True)

    while not stopping:
        for index, child in enumerate(children):
            if child.poll() is not None and not stopping:
                log.error("worker exited; restarting",
                          extra={"worker": index, "returncode": child.returncode})
                time.sleep(RESTART_DELAY_SECONDS)
                if stopping:  # a signal came during the delay: start nothing more
                    children.pop(index)  # its exit, before the stop, is logged above
                    break
                children[index] = start(index)
                if stopping:  # it came while the worker started, so that one missed it
                    children[index].send_signal(received[-1])
        time.sleep(0.2)
    codes = [child.wait() for child in children]
    grpc_hold.close()
    http_hold.close()
    return 0 if all(code in (0, -signal.SIGTERM, -signal.SIGINT) for code in codes) else 1
