"""The cost of authentication: ResolveCustomer with token validation against the same server
with ``SINGLEID_AUTH=off``, in the same run, on the same database.

Two ``singleid serve`` processes (one each) share one database; the load
generator of ``bench/customers.py`` drives both in alternating rounds, the
first with the bootstrap client's JWT access token on every call (checked in
memory: signature, expiry, revocation list, client, scope, rate limit), the
second without any. Target: with tokens, >= 90% of the throughput without.

Figures (one JSON object a line): throughput, p50 and p99 latency, and the
server's CPU time per call, each with the unauthenticated server as baseline.

    python bench/auth.py [--duration 10] [--backend postgres|sqlite] [--customers 2000]
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from singleid.keyring import KeyMaterial

# bench/customers.py: the load generator, the servers and the figures (a script, not a package).
sys.path.insert(0, str(Path(__file__).parent))
load_generator: Any = importlib.import_module("customers")

BENCHMARK = "auth"  # bench/run runs every bench/*.py that names its benchmark
TARGET_RATIO = 0.90


def figure(name: str, value: float, unit: str, baseline: float, **extra: Any) -> None:
    record = {"benchmark": BENCHMARK, "figure": name, "value": round(value, 3), "unit": unit,
              "baseline": round(baseline, 3),
              "ratio": round(value / baseline, 3) if baseline else None, **extra}
    print(json.dumps(record), flush=True)


def run(options: Any, backend: str) -> None:
    keyring = KeyMaterial.generate().to_json()
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="singleid-bench-")))
        pool = load_generator.ClientPool(options.clients)
        stack.callback(pool.close)
        bench = load_generator.Bench(pool, options, load_generator.Profiler(None))
        database_url = (load_generator.create_database(stack) if backend == "postgres"
                        else f"sqlite:///{tmp / 'singleid.db'}")
        checked = load_generator.start_singleid(
            stack, tmp / "on", database_url, 1, keyring, name="singleid, tokens checked")
        bench.seed(checked)
        unchecked = load_generator.start_singleid(
            stack, tmp / "off", database_url, 1, keyring, auth=False,
            name="singleid, SINGLEID_AUTH=off")
        off, on = bench.compare([unchecked, checked], "ResolveCustomer", "resolve")
    name = f"ResolveCustomer by phone with token validation, 1 process, {backend}"
    figure(f"{name}: throughput", on.per_second, "requests/s", off.per_second,
                          target=f">= {TARGET_RATIO:.0%} of baseline",
                          meets_target=on.per_second >= TARGET_RATIO * off.per_second)
    figure(f"{name}: p50 latency", on.p50_ms, "ms", off.p50_ms)
    figure(f"{name}: p99 latency", on.p99_ms, "ms", off.p99_ms)
    figure(f"{name}: server CPU per call", on.cpu_us["server"], "us",
                          off.cpu_us["server"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0,
                        help="measured seconds per server, over all rounds (default 10)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (default 2)")
    parser.add_argument("--warmup", type=float, default=1.5,
                        help="unmeasured seconds before each round (default 1.5)")
    parser.add_argument("--clients", type=int, default=2, help="load processes (default 2)")
    parser.add_argument("--concurrency", type=int, default=32,
                        help="calls in flight per client process (default 32)")
    parser.add_argument("--channels", type=int, default=8,
                        help="connections per client process (default 8)")
    parser.add_argument("--customers", type=int, default=2000,
                        help="customers seeded before measuring (default 2000)")
    parser.add_argument("--backend", choices=["postgres", "sqlite"], default="postgres")
    args = parser.parse_args()
    options = load_generator.Options(
        duration=args.duration, warmup=args.warmup, rounds=args.rounds, clients=args.clients,
        concurrency=args.concurrency, channels=args.channels, customers=args.customers)
    run(options, args.backend)
    return 0


if __name__ == "__main__":
    sys.exit(main())
