"""``singleid legacy …`` as users run it: import, match, explain --png, evaluate."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from singleid.matching.synthetic import write_csv

HEADER = "account_id;фамилия;first_name;birth_date;phone;passport;city\n"


def run(args: list[str], data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SINGLEID_DATA_DIR": str(data_dir), "SINGLEID_LOG_LEVEL": "WARNING"}
    return subprocess.run([sys.executable, "-m", "singleid", *args], env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_import_match_and_explain_from_the_command_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert run(["products", "add", "cards"], data).returncode == 0
    assert run(["products", "add", "loans"], data).returncode == 0
    legacy = tmp_path / "cards.csv"
    legacy.write_bytes((
        "id,фамилия,first_name,birth_date,phone,passport,city\n"
        "c-1,Петрова,Анна,05.03.1985,8 916 123-45-67,4509 123456,Москва\n"
        "c-2,Петрова,Анна,31.02.1985,,,\n").encode("cp1251"))
    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps({"id": "account_id", "фамилия": "last_name"},
                                  ensure_ascii=False), encoding="utf-8")
    result = run(["legacy", "import", "--product", "cards", "--encoding", "cp1251",
                  "--mapping", str(mapping), str(legacy)], data)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert (summary["imported"], summary["rejected"]) == (1, 1)
    rejects = [json.loads(line) for line in Path(summary["reject_file"]).read_text(
        encoding="utf-8").splitlines()]
    assert rejects == [{"line": 3, "field": "birth_date", "reason": "INVALID_DATE",
                        "description": "no such calendar date"}]
    assert "importing into cards" in result.stderr  # the progress bar

    loans = tmp_path / "loans.jsonl"
    loans.write_text(json.dumps({"account_id": "l-1", "last_name": "Petrova",
                                 "first_name": "Anya", "birth_date": "1985-03-05",
                                 "phone": "+79161234567"}) + "\n", encoding="utf-8")
    assert run(["legacy", "import", "--product", "loans", "--no-progress", str(loans)],
               data).returncode == 0
    matched = run(["legacy", "match"], data)
    assert json.loads(matched.stdout)["auto_merges"] == 1, matched.stderr

    png = tmp_path / "why.png"
    explained = run(["legacy", "explain", "cards:c-1", "loans:l-1", "--png", str(png)], data)
    assert explained.returncode == 0, explained.stderr
    assert re.search(r"first_name\s+diminutive_or_translit\s+\+", explained.stdout)
    assert "auto_merge" in explained.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    missing = run(["legacy", "explain", "cards:c-1", "loans:nope"], data)
    assert missing.returncode != 0
    assert "ACCOUNT_NOT_FOUND" in missing.stderr


def test_evaluate_prints_the_summary_line(tmp_path: Path) -> None:
    path = tmp_path / "generated.csv"
    write_csv(path, 120, seed=4, hard_negative_share=0.3)
    result = run(["legacy", "evaluate", str(path), "--truth-column", "person_id",
                  "--hard-negative-column", "hard_negative"], tmp_path / "data")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    last = re.fullmatch(r"pairwise F1 ([\d.]+) \| cluster F1 ([\d.]+) \| wrong auto-merges "
                        r"(\d+) \| review (\d+)", lines[-1])
    assert last is not None, lines[-1]
    assert float(last[1]) > 0.8
    assert int(last[3]) == 0
    assert any(line.startswith("auto-merges of hard negatives 0") for line in lines)
    bad = run(["legacy", "evaluate", str(path), "--truth-column", "nosuch"], tmp_path / "data")
    assert bad.returncode != 0
    assert "truth_column" in bad.stderr or "nosuch" in bad.stderr
