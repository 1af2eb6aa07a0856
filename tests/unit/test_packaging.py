"""The import namespace and the generated code are what DESIGN.md says they are."""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import singleid
import singleid.idp
import singleid.v1

ROOT = Path(__file__).resolve().parents[2]


def test_singleid_is_imported_from_the_editable_install_not_the_source_folder() -> None:
    # Strict editable mode links the sources into build/; pytest must not pick
    # up a folder that merely happens to be on sys.path.
    assert "__editable__" in singleid.__file__
    assert "__editable__" in singleid.idp.__file__


def test_every_source_folder_with_modules_is_a_listed_package() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapped = {Path(folder) for folder in config["package-dir"].values()}
    assert set(config["packages"]) == set(config["package-dir"])
    skip = {"tests", "bench", "build", "scripts", "docs"}
    folders = {path.parent.relative_to(ROOT) for path in ROOT.glob("*/**/*.py")
               if path.parts[len(ROOT.parts)] not in skip and ".venv" not in path.parts
               and "__pycache__" not in path.parts}
    assert folders <= mapped, f"folders not installed as packages: {folders - mapped}"


def test_stdlib_profile_is_not_shadowed_from_the_repository_root() -> None:
    result = subprocess.run([sys.executable, "-m", "cProfile", "-m", "singleid", "--help"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "serve" in result.stdout


def test_committed_stubs_match_the_protos(tmp_path: Path) -> None:
    proto_dir = ROOT / "proto"
    shutil.copytree(proto_dir, tmp_path / "proto",
                    ignore=shutil.ignore_patterns("*.py", "*.pyi", "__pycache__"))
    protos = sorted(str(p.relative_to(proto_dir.parent))
                    for p in proto_dir.glob("singleid/v1/*.proto"))
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-Iproto",
                    "--python_out=proto", "--grpc_python_out=proto", "--mypy_out=proto",
                    "--mypy_grpc_out=proto", *protos],
                   cwd=tmp_path, check=True, capture_output=True, timeout=120)
    generated = sorted(p.name for p in (tmp_path / "proto/singleid/v1").glob("*_pb2*"))
    assert generated, "protoc generated nothing"
    committed = Path(singleid.v1.__file__).resolve().parent
    stale = [name for name in generated
             if not (committed / name).exists()
             or not filecmp.cmp(tmp_path / "proto/singleid/v1" / name, committed / name,
                                shallow=False)]
    assert not stale, f"stale generated stubs (run scripts/gen-proto): {stale}"
