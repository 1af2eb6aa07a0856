from __future__ import annotations

import itertools

from singleid.idp import ids


def test_ids_are_26_crockford_characters() -> None:
    for _ in range(1000):
        value = ids.new_id()
        assert len(value) == ids.LENGTH
        assert set(value) <= set(ids.ALPHABET)
        assert ids.is_valid(value)


def test_ids_are_unique_and_not_sequential() -> None:
    values = [ids.new_id() for _ in range(10_000)]
    assert len(set(values)) == len(values)
    # Random, not ordered: consecutive IDs are not sorted more often than chance.
    ascending = sum(a < b for a, b in itertools.pairwise(values))
    assert 4500 < ascending < 5500


def test_every_position_varies() -> None:
    values = [ids.new_id() for _ in range(2000)]
    for position in range(ids.LENGTH):
        assert len({v[position] for v in values}) > 4


def test_validation_rejects_lookalikes() -> None:
    good = ids.new_id()
    assert not ids.is_valid("")
    assert not ids.is_valid(good.upper()) or good.upper() == good
    assert not ids.is_valid(good[:-1])
    assert not ids.is_valid(good + "0")
    assert not ids.is_valid("i" * ids.LENGTH)  # no i, l, o, u in Crockford's alphabet
    assert not ids.is_valid("8" + good[1:])  # 128 bits: the first character is 0-7
