"""OIDC provider benchmark: token grants and full password logins over real HTTP.

Starts ``singleid serve`` (one process, so every figure is per server process)
the way users do, registers a confidential client and logins with the CLI, then
drives it from ``--clients`` load processes, each an asyncio loop with
``--concurrency`` requests in flight (closed loop), ``--warmup`` seconds
unmeasured and ``--duration`` seconds measured per phase:

- ``client_credentials`` grants (client_secret_basic);
- ``refresh_token`` grants: each in-flight slot keeps its own token chain and
  always presents the newest refresh token (rotation on every call);
- full password logins: a fresh browser each time does GET /authorize,
  POST /login (argon2id at m=19 MiB, t=2) and the code exchange at /token
  with PKCE; the latency is the whole sequence.

The baseline, measured in the same run against the same process, is
``/healthz`` (the same HTTP stack doing no work). Each figure also carries
``per_server_cpu_second``: completed requests per CPU-second the server
process used, i.e. what one process does with a core to itself, which a
machine shared with other load cannot hide, and ``server_cores_used``: the
server's CPU-seconds per second of the phase (a password login can use two
cores: argon2id releases the GIL). Keycloak's sizing guide
budgets 120 refresh or client-credentials grants and 15 password logins per
second per vCPU; the targets here are 500/s and 30/s per process.

One JSON object a line on stdout (progress on stderr):

    python bench/oidc.py [--duration 10] [--warmup 3] [--clients 2] [--concurrency 16]
                         [--database sqlite|postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from singleid.idp.oidc.testing import CALLBACK, PASSWORD, Oidc, form_fields, pkce, start_oidc

BENCHMARK = "oidc"
PG_ADMIN_URL = os.environ.get("SINGLEID_BENCH_PG_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def progress(message: str) -> None:
    print(f"[oidc] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Job:
    kind: str  # "healthz", "client_credentials", "refresh_token", "login"
    issuer: str
    client_id: str
    client_secret: str
    users: list[str]
    refresh_tokens: list[str]
    concurrency: int
    start_at: float
    warmup: float
    duration: float


async def _healthz(http: httpx.AsyncClient, job: Job, slot: int, state: dict[int, str]) -> None:
    response = await http.get("/healthz")
    response.raise_for_status()


async def _client_credentials(http: httpx.AsyncClient, job: Job, slot: int,
                              state: dict[int, str]) -> None:
    response = await http.post("/token", data={"grant_type": "client_credentials"},
                               auth=(job.client_id, job.client_secret))
    response.raise_for_status()


async def _refresh(http: httpx.AsyncClient, job: Job, slot: int, state: dict[int, str]) -> None:
    response = await http.post("/token", data={"grant_type": "refresh_token",
                                               "refresh_token": state[slot]},
                               auth=(job.client_id, job.client_secret))
    response.raise_for_status()
    state[slot] = response.json()["refresh_token"]


async def _login(http: httpx.AsyncClient, job: Job, slot: int, state: dict[int, str]) -> None:
    verifier, challenge = pkce()
    params = {"client_id": job.client_id, "response_type": "code", "scope": "openid profile",
              "redirect_uri": CALLBACK, "state": uuid.uuid4().hex, "nonce": uuid.uuid4().hex,
              "code_challenge": challenge, "code_challenge_method": "S256"}
    http.cookies.clear()  # a new browser: no session
    page = await http.get("/authorize", params=params)
    page.raise_for_status()
    user = job.users[slot % len(job.users)]
    reply = await http.post("/login", data={**form_fields(page.text), "identifier": user,
                                            "password": PASSWORD})
    if reply.status_code != 302:
        raise RuntimeError(f"login answered {reply.status_code}")
    code = parse_qs(urlsplit(reply.headers["location"]).query)["code"][0]
    token = await http.post("/token", data={"grant_type": "authorization_code", "code": code,
                                            "redirect_uri": CALLBACK, "code_verifier": verifier},
                            auth=(job.client_id, job.client_secret))
    token.raise_for_status()


CALLS = {"healthz": _healthz, "client_credentials": _client_credentials,
         "refresh_token": _refresh, "login": _login}


async def _drive(job: Job) -> tuple[list[float], int, int]:
    call = CALLS[job.kind]
    measure_from = job.start_at + job.warmup
    measure_to = measure_from + job.duration
    latencies: list[float] = []
    errors = 0
    completed = 0
    state = dict(enumerate(job.refresh_tokens))

    async def slot_loop(slot: int) -> None:
        nonlocal errors, completed
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=job.issuer, limits=limits, timeout=30) as http:
            while time.time() < measure_to:
                began = time.perf_counter()
                try:
                    await call(http, job, slot, state)
                except (httpx.HTTPError, RuntimeError, KeyError):
                    if measure_from <= time.time() <= measure_to:
                        errors += 1
                    continue
                completed += 1
                # Throughput counts what completed inside the measured window.
                if measure_from <= time.time() <= measure_to:
                    latencies.append(time.perf_counter() - began)

    await asyncio.sleep(max(0.0, job.start_at - time.time()))
    await asyncio.gather(*(slot_loop(i) for i in range(job.concurrency)))
    return latencies, errors, completed


def _worker(job: Job, out: Any) -> None:
    out.send(asyncio.run(_drive(job)))


def run_phase(kind: str, oidc: Oidc, client: dict[str, Any], users: list[str],
              refresh_tokens: list[list[str]], options: argparse.Namespace) -> dict[str, Any]:
    start_at = time.time() + 1.5
    ctx = multiprocessing.get_context("spawn")
    processes = []
    pipes = []
    for index in range(options.clients):
        receive, send = ctx.Pipe(duplex=False)
        concurrency = options.login_concurrency if kind == "login" else options.concurrency
        job = Job(kind, oidc.issuer, client["client_id"], client.get("client_secret", ""),
                  users, refresh_tokens[index] if refresh_tokens else [],
                  concurrency, start_at, options.warmup, options.duration)
        process = ctx.Process(target=_worker, args=(job, send))
        process.start()
        processes.append(process)
        pipes.append(receive)
    latencies: list[float] = []
    errors = 0
    completed = 0
    cpu_before, wall_before = server_cpu_seconds(oidc), time.monotonic()
    for receive in pipes:
        chunk, failed, done = receive.recv()
        latencies.extend(chunk)
        errors += failed
        completed += done
    cpu_used = server_cpu_seconds(oidc) - cpu_before
    wall = time.monotonic() - wall_before
    for process in processes:
        process.join()
    latencies.sort()

    def pct(q: float) -> float:
        if not latencies:
            return 0.0
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    return {"per_second": len(latencies) / options.duration, "p50_ms": round(pct(0.50), 2),
            "p99_ms": round(pct(0.99), 2), "errors": errors, "count": len(latencies),
            "per_server_cpu_second": completed / cpu_used if cpu_used > 0 else 0.0,
            "server_cores_used": cpu_used / wall if wall > 0 else 0.0}


def server_cpu_seconds(oidc: Oidc) -> float:
    """User + system CPU time of the (single) server process so far."""
    assert oidc.server.process is not None
    fields = Path(f"/proc/{oidc.server.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def figure(name: str, measured: dict[str, Any], unit: str, baseline: dict[str, Any],
           target: float, options: argparse.Namespace) -> None:
    value = measured["per_second"]
    record = {"benchmark": BENCHMARK, "figure": name, "value": round(value, 1), "unit": unit,
              "baseline": round(baseline["per_second"], 1),
              "baseline_name": "/healthz on the same server process",
              "ratio": (round(value / baseline["per_second"], 3)
                        if baseline["per_second"] else None),
              "p50_ms": measured["p50_ms"], "p99_ms": measured["p99_ms"],
              # Load-independent: completed requests per CPU-second the server used, i.e.
              # what one process does with a whole core to itself.
              "per_server_cpu_second": round(measured["per_server_cpu_second"], 1),
              "baseline_per_server_cpu_second": round(baseline["per_server_cpu_second"], 1),
              # How much CPU the server got: well under its need means the machine's
              # other load, not the server, bounded the wall-clock rate.
              "server_cores_used": round(measured["server_cores_used"], 2),
              "errors": measured["errors"], "target": f">= {target:g}/s per process",
              "meets_target": value >= target, "server_processes": 1,
              "database": options.database, "clients": options.clients,
              "concurrency_per_client": (options.login_concurrency if name == "password_logins"
                                         else options.concurrency),
              "duration_s": options.duration, "load_average_1m": round(os.getloadavg()[0], 2)}
    print(json.dumps(record), flush=True)


def refresh_chains(oidc: Oidc, client: dict[str, Any], user: str, count: int) -> list[str]:
    tokens = []
    for _ in range(count):
        tokens.append(oidc.tokens_for(client, user, scope="openid profile")["refresh_token"])
    return tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16,
                        help="requests in flight per client process (token grants)")
    parser.add_argument("--login-concurrency", type=int, default=4,
                        help="logins in flight per client process")
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="singleid-bench-oidc-") as tmp:
        database_url = ""
        dropper = None
        if options.database == "postgres":
            import psycopg  # noqa: PLC0415
            from sqlalchemy import make_url  # noqa: PLC0415

            name = f"singleid_bench_{uuid.uuid4().hex[:12]}"
            admin = make_url(PG_ADMIN_URL).set(drivername="postgresql")
            with psycopg.connect(admin.render_as_string(hide_password=False),
                                 autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            database_url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(
                hide_password=False)

            def dropper() -> None:
                with psycopg.connect(admin.render_as_string(hide_password=False),
                                     autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

        oidc = start_oidc(Path(tmp) / "data", database_url,
                          extra_env={"SINGLEID_LOG_LEVEL": "ERROR"})
        try:
            progress(f"server on {oidc.issuer} ({options.database}); preparing")
            client = oidc.add_client("--grant-type", "authorization_code", "--grant-type",
                                     "refresh_token", "--grant-type", "client_credentials")
            users = [oidc.add_login()[0] for _ in range(options.users)]
            with oidc.browser() as browser:  # consent once per user, as a returning customer
                for user in users:
                    oidc.code(browser, oidc.auth_params(client["client_id"],
                                                        scope="openid profile"), user)
                    browser.cookies.clear()
            chains = [refresh_chains(oidc, client, users[0], options.concurrency)
                      for _ in range(options.clients)]
            progress("baseline: /healthz")
            baseline = run_phase("healthz", oidc, client, users, [], options)
            progress(f"baseline {baseline['per_second']:.0f}/s")
            for kind, name, target in (("client_credentials", "client_credentials_grants", 500),
                                       ("refresh_token", "refresh_token_grants", 500),
                                       ("login", "password_logins", 30)):
                progress(f"measuring {kind}")
                measured = run_phase(kind, oidc, client, users, chains, options)
                progress(f"{kind}: {measured['per_second']:.1f}/s p50 {measured['p50_ms']} ms "
                         f"p99 {measured['p99_ms']} ms errors {measured['errors']}")
                figure(name, measured, "per_second", baseline, target, options)
        finally:
            oidc.server.stop()
            if dropper is not None:
                dropper()


if __name__ == "__main__":
    main()
