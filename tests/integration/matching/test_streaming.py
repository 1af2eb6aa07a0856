"""Imports stream: a 1M-row file is read in bounded memory, and batches land as rows arrive."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from singleid.db import Database
from singleid.idp.service import ProductService
from singleid.keyring import Keyring
from singleid.matching.record import LegacyRow
from singleid.matching.service import ImportService
from singleid.matching.service.importer import BATCH_SIZE, Parsed

HEADER = b"account_id,last_name,first_name,birth_date,phone\n"


READER = """
import resource, sys
from singleid.matching.service.importer import read_csv
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
count = 0
with open(sys.argv[1], "rb") as stream:
    for line, parsed in read_csv(stream):
        count += 1
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(count, line, (after - before) // 1024)
"""


def test_a_million_rows_stream_through_the_reader_in_bounded_memory(tmp_path: Path) -> None:
    rows = 1_000_000
    path = tmp_path / "million.csv"
    with path.open("wb") as out:
        out.write(HEADER)
        out.writelines(
            f"a-{n},Иванов{n % 977},Иван,{1 + n % 28:02d}.0{1 + n % 9}.19{50 + n % 50},"
            f"8916{n % 10_000_000:07d}\n".encode() for n in range(rows))
    assert path.stat().st_size > 50_000_000
    result = subprocess.run([sys.executable, "-c", READER, str(path)], capture_output=True,
                            text=True, timeout=240, check=True)
    count, last_line, grown_mib = map(int, result.stdout.split())
    assert count == rows
    assert last_line == rows + 1  # line numbers count the header
    # Holding the rows would take hundreds of MiB; streaming keeps the peak flat.
    assert grown_mib < 20, f"peak RSS grew {grown_mib} MiB"


def test_batches_are_stored_while_the_stream_is_still_being_read(db: Database,
                                                                 keyring: Keyring) -> None:
    ProductService(db).create("cards")
    importer = ImportService(db, keyring)
    produced = 0
    stored_while_reading: list[int] = []

    def rows() -> Iterator[Parsed]:
        nonlocal produced
        for n in range(BATCH_SIZE * 2 + 10):
            produced += 1
            if n == BATCH_SIZE + 5:
                stored_while_reading.append(len(importer.accounts()))
            yield n + 2, LegacyRow(account_id=f"s-{n}", last_name="Иванов", first_name="Иван",
                                   phone=f"8916{n:07d}")

    summary = importer.import_rows("cards", rows())
    assert summary.imported == BATCH_SIZE * 2 + 10
    assert stored_while_reading == [BATCH_SIZE]
