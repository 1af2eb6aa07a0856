"""The WatchChanges cursor: tokens, out-of-order commits, and gaps that never fill."""

from __future__ import annotations

import pytest

from singleid.errors import InvalidArgument
from singleid.profile.service import changes
from singleid.profile.service.changes import Cursor


def test_a_token_round_trips() -> None:
    cursor = Cursor(watermark=7, seen={9, 12})
    again = Cursor.parse(cursor.token())
    assert (again.watermark, again.seen) == (7, {9, 12})


@pytest.mark.parametrize("token", ["garbage", "eyJ3IjogLTF9", Cursor(5, {3}).token()])
def test_a_foreign_token_is_invalid_argument(token: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        Cursor.parse(token)
    assert info.value.field == "resume_token"


def test_a_late_commit_below_a_seen_seq_is_still_delivered() -> None:
    cursor = Cursor()
    cursor.deliver(1)
    cursor.deliver(3)  # 2 is not committed yet
    cursor.advance(3)
    assert cursor.watermark == 1
    resumed = Cursor.parse(cursor.token())
    assert 3 in resumed.seen
    assert resumed.watermark == 1
    resumed.deliver(2)
    resumed.advance(3)
    assert (resumed.watermark, resumed.seen) == (3, set())


def test_a_gap_that_never_fills_is_let_go(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr("singleid.profile.service.changes.time.monotonic", lambda: clock[0])
    cursor = Cursor()
    cursor.deliver(2)
    cursor.advance(2)
    assert cursor.watermark == 0
    clock[0] += changes.GAP_SECONDS + 0.1
    cursor.advance(2)
    assert cursor.watermark == 2
