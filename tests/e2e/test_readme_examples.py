"""Every titled example of the README, run as it is against a real server after ``singleid demo``.

A README block is an example when its info string carries a title
(```` ```sh title="…" ```` or ```` ```python title="…" ````). Each runs in a
fresh shell or interpreter, in one shared working directory, with the
``SINGLEID_*`` variables of the server; the expected output is checked here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from singleid.testing import ServerProcess
from tests.conftest import require
from tests.e2e.journey.conftest import free_port, run_demo
from tests.voice_data import MISSING, VOICE_DIR, voice_data_present

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r'^```(sh|python) title="([^"]+)"\n(.*?)^```$', re.MULTILINE | re.DOTALL)
# What each example must print (the kind of user is the title's first words).
EXPECTED = {
    "service developer": re.compile(r"^[0-9a-z]{26} Аня platinum$", re.MULTILINE),
    "app developer": re.compile(r"/authorize\?response_type=code&client_id=shop-web&.*"
                                r"code_challenge_method=S256"),
    "IVR integrator": re.compile(r"^DECISION_ACCEPT llr \d+\.\d replay False$", re.MULTILINE),
    "operator": re.compile(r'"auto_merges": 0, "review": 1, .*'
                           r"^http://[0-9.:]+/staff/login\?next=/review$",
                           re.MULTILINE | re.DOTALL),
    "administrator": re.compile(r"^[3-9] signing keys published$", re.MULTILINE),
}


@dataclass(frozen=True)
class Example:
    language: str
    title: str
    code: str


def examples() -> list[Example]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return [Example(*match.groups()) for match in BLOCK.finditer(text)]


@pytest.fixture(scope="module")
def environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], Path]]:
    require(voice_data_present(), MISSING)
    root = tmp_path_factory.mktemp("readme")
    http = f"127.0.0.1:{free_port()}"
    settings = {"SINGLEID_HTTP_ADDR": http, "SINGLEID_ISSUER": f"http://{http}",
                "SINGLEID_LOG_LEVEL": "WARNING"}
    env = {**os.environ, **settings, "SINGLEID_DATA_DIR": str(root / "data"),
           "SINGLEID_DATABASE_URL": f"sqlite:///{root / 'data' / 'singleid.db'}",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "VOICE_DIR": str(VOICE_DIR), "APP_URL": f"http://127.0.0.1:{free_port()}"}
    run_demo({**env, "SINGLEID_DEMO_VOICE_DIR": str(VOICE_DIR)}, free_port())
    server = ServerProcess(data_dir=root / "data", database_url=env["SINGLEID_DATABASE_URL"],
                           env=settings).start()
    env["SINGLEID_GRPC_ADDR"] = server.grpc_addr
    env["SINGLEID_CLIENT_ID"], env["SINGLEID_CLIENT_SECRET"] = server.credentials
    work = root / "work"
    work.mkdir()
    yield env, work
    server.stop()


def test_every_kind_of_user_has_an_example() -> None:
    kinds = [next((k for k in EXPECTED if e.title.startswith(k)), None) for e in examples()]
    assert sorted(k for k in kinds if k) == sorted(EXPECTED)
    assert None not in kinds, "an example without an expected output here"


@pytest.mark.parametrize("example", examples(), ids=lambda e: e.title.split(":")[0])
def test_the_example_runs_as_written(example: Example,
                                     environment: tuple[dict[str, str], Path]) -> None:
    env, work = environment
    command = (["bash", "-euo", "pipefail", "-c", example.code] if example.language == "sh"
               else [sys.executable, "-c", example.code])
    result = subprocess.run(command, env=env, cwd=work, capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, f"{example.title}:\n{result.stdout}\n{result.stderr[-3000:]}"
    expected = next(p for k, p in EXPECTED.items() if example.title.startswith(k))
    assert expected.search(result.stdout), f"{example.title} printed:\n{result.stdout}"
