"""``python -m singleid.clients.cabinet``: serve the loyalty cabinet with uvicorn.

Flags, or ``CABINET_*`` variables; ``--client-file`` reads the JSON that
``singleid demo`` writes (client_id, client_secret, issuer).
"""

from __future__ import annotations

import argparse
import json
import os
from urllib.parse import urlsplit

import uvicorn

from singleid.clients.cabinet.app import CabinetConfig, create_app


def _arguments() -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="python -m singleid.clients.cabinet",
                                     description="The loyalty cabinet, a sample relying party.")
    parser.add_argument("--client-file", default=env("CABINET_CLIENT_FILE", ""),
                        help="JSON with client_id, client_secret and issuer (singleid demo)")
    parser.add_argument("--issuer", default=env("CABINET_ISSUER", ""))
    parser.add_argument("--client-id", default=env("CABINET_CLIENT_ID", ""))
    parser.add_argument("--client-secret", default=env("CABINET_CLIENT_SECRET", ""))
    parser.add_argument("--listen", default=env("CABINET_URL", "http://127.0.0.1:8000"),
                        help="the cabinet's own URL (its redirect URI is <URL>/auth/callback)")
    parser.add_argument("--grpc", default=env("CABINET_SINGLEID_GRPC", ""),
                        help="singleid's gRPC address, to show the profile from ProfileService")
    return parser.parse_args()


def main() -> None:
    args = _arguments()
    given = {"issuer": args.issuer, "client_id": args.client_id,
             "client_secret": args.client_secret}
    if args.client_file:
        with open(args.client_file, encoding="utf-8") as file:
            stored = json.load(file)
        given = {key: value or stored.get(key, "") for key, value in given.items()}
    if missing := [key for key, value in given.items() if not value]:
        raise SystemExit(f"cabinet: missing {', '.join(missing)} (flags, CABINET_* or "
                         "--client-file)")
    config = CabinetConfig(base_url=args.listen, grpc_target=args.grpc, **given)
    where = urlsplit(args.listen)
    print(f"cabinet listening: {config.base_url}", flush=True)  # tests wait for this line
    uvicorn.run(create_app(config), host=where.hostname or "127.0.0.1", port=where.port or 80,
                log_level="warning")


if __name__ == "__main__":
    main()
