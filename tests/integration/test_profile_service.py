"""The profile services on SQLite and PostgreSQL: writes, rules, events, history, merges."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from singleid.db import Database
from singleid.errors import Aborted, InvalidArgument, NotFound, PermissionDenied
from singleid.events import OutboxEvent
from singleid.idp.service import CustomerService, MergeService, ProductService
from singleid.keyring import Keyring
from singleid.profile import catalogue, models
from singleid.profile.service import ChangeFeed, ConsentService, Cursor, Filters, ProfileService
from singleid.profile.service.export import ExportService

UNKNOWN_ID = "0" * 26


@pytest.fixture
def profiles(db: Database, keyring: Keyring) -> ProfileService:
    return ProfileService(db, keyring, catalogue.load())


@pytest.fixture
def customers(db: Database, keyring: Keyring) -> CustomerService:
    ProductService(db).create("cards", "Cards")
    return CustomerService(db, keyring)


def new_customer(customers: CustomerService, account: str) -> str:
    return customers.register("cards", account).customer_id


def events_of(db: Database, type_suffix: str = "") -> list[OutboxEvent]:
    with db.read() as session:
        found = session.scalars(select(OutboxEvent).order_by(OutboxEvent.seq)).all()
    return [e for e in found if e.type.startswith("singleid.profile") or
            e.type.startswith("singleid.consent")] if not type_suffix else [
        e for e in found if e.type.endswith(type_suffix)]


def values(profile: Any) -> dict[str, Any]:
    return {a.name: a.value for a in profile.attributes}


def test_write_then_read_with_sources_versions_and_sealed_storage(
        db: Database, profiles: ProfileService, customers: CustomerService) -> None:
    cid = new_customer(customers, "a-1")
    first = profiles.update(cid, "customer", {"preferred_name": "Аня", "language": "ru"})
    assert (first.version, first.updated) == (1, ["language", "preferred_name"])
    second = profiles.update(cid, "loyalty", {"loyalty_tier": "gold"})
    assert second.version == 2
    view = profiles.get(cid)
    assert values(view) == {"preferred_name": "Аня", "language": "ru", "loyalty_tier": "gold"}
    by_name = {a.name: a for a in view.attributes}
    assert (by_name["loyalty_tier"].source, by_name["loyalty_tier"].version) == ("loyalty", 2)
    assert by_name["preferred_name"].version == 1
    assert view.version == 2
    assert view.etag == f'"{cid}.2"'
    assert values(profiles.get(cid, ["language"])) == {"language": "ru"}
    with db.read() as session:
        row = session.get(models.ProfileAttribute, (cid, "preferred_name"))
        assert row is not None
        assert row.value is None
        assert row.ciphertext is not None
        assert "Аня".encode() not in row.ciphertext


def test_special_attributes_only_when_the_mask_names_them(
        profiles: ProfileService, customers: CustomerService) -> None:
    cid = new_customer(customers, "a-2")
    profiles.update(cid, "contact_center", {"contact_center_notes": "calls after 6pm"})
    assert values(profiles.get(cid)) == {}
    assert values(profiles.get(cid, ["contact_center_notes"])) == {
        "contact_center_notes": "calls after 6pm"}


def test_ownership_and_validation_apply_nothing_partly(
        profiles: ProfileService, customers: CustomerService) -> None:
    cid = new_customer(customers, "a-3")
    with pytest.raises(PermissionDenied) as denied:
        profiles.update(cid, "cards", {"segment": "mass", "loyalty_tier": "gold"})
    assert denied.value.field == "loyalty_tier"
    assert "loyalty_tier" in denied.value.message
    with pytest.raises(InvalidArgument) as invalid:
        profiles.update(cid, "customer", {"preferred_name": "Аня", "language": "xx",
                                          "phones": ["nope"]})
    assert {v.field for v in invalid.value.violations} == {"language", "phones"}
    with pytest.raises(InvalidArgument) as unknown:
        profiles.update(cid, "customer", {"favourite_colour": "red"})
    assert unknown.value.violations[0].field == "update_mask.paths[0]"
    assert profiles.get(cid).version == 0
    assert values(profiles.get(cid)) == {}


def test_unknown_customer_is_not_found(profiles: ProfileService) -> None:
    with pytest.raises(NotFound):
        profiles.update(UNKNOWN_ID, "loyalty", {"loyalty_tier": "gold"})
    with pytest.raises(NotFound):
        profiles.get(UNKNOWN_ID)


def test_expected_version_and_source_timestamps(
        profiles: ProfileService, customers: CustomerService) -> None:
    cid = new_customer(customers, "a-4")
    now = datetime.now(UTC)
    profiles.update(cid, "loyalty", {"loyalty_tier": "gold"}, source_time=now)
    with pytest.raises(Aborted) as stale:
        profiles.update(cid, "loyalty", {"loyalty_tier": "basic"}, expected_version=0)
    assert stale.value.field == "expected_version"
    older = profiles.update(cid, "loyalty", {"loyalty_tier": "basic"},
                            source_time=now - timedelta(hours=1))
    assert older.skipped == ["loyalty_tier"]
    assert older.version == 1
    assert values(profiles.get(cid)) == {"loyalty_tier": "gold"}
    forced = profiles.update(cid, "loyalty", {"loyalty_tier": "basic"}, expected_version=1,
                             source_time=now - timedelta(hours=1))
    assert forced.updated == ["loyalty_tier"]
    assert forced.version == 2
    same = profiles.update(cid, "loyalty", {"loyalty_tier": "basic"})
    assert same.unchanged == ["loyalty_tier"]
    assert same.version == 2


def test_an_idempotency_key_applies_once(db: Database, profiles: ProfileService,
                                         customers: CustomerService) -> None:
    cid = new_customer(customers, "a-5")
    first = profiles.update(cid, "loyalty", {"loyalty_tier": "gold"}, idempotency_key="k1")
    profiles.update(cid, "loyalty", {"loyalty_tier": "silver"})
    again = profiles.update(cid, "loyalty", {"loyalty_tier": "gold"}, idempotency_key="k1")
    assert again == first
    assert values(profiles.get(cid)) == {"loyalty_tier": "silver"}
    assert len(events_of(db, "profile.updated.v1")) == 2


def test_events_name_attributes_and_versions_never_values(
        db: Database, profiles: ProfileService, customers: CustomerService) -> None:
    cid = new_customer(customers, "a-6")
    profiles.update(cid, "kyc", {"passport": {"series": "4509", "number": "123456"},
                                 "birth_date": "1990-05-17"})
    (event,) = events_of(db)
    envelope = json.loads(event.to_json())
    assert envelope["type"] == "singleid.profile.updated.v1"
    assert envelope["subject"] == cid
    assert envelope["specversion"] == "1.0"
    assert {a["name"] for a in envelope["data"]["attributes"]} == {"passport", "birth_date"}
    assert all(a["version"] == 1 for a in envelope["data"]["attributes"])
    text = event.to_json().decode()
    assert "4509" not in text
    assert "123456" not in text
    assert "1990" not in text


def test_history_then_erasure_redacts(db: Database, profiles: ProfileService,
                                      customers: CustomerService) -> None:
    cid = new_customer(customers, "a-7")
    profiles.update(cid, "loyalty", {"loyalty_tier": "gold"})
    profiles.update(cid, "loyalty", {"loyalty_tier": "silver"})
    profiles.update(cid, "customer", {"preferred_name": "Аня"})
    tier = profiles.history(cid, "loyalty_tier").entries
    assert [(e.old_value, e.new_value) for e in tier] == [("gold", "silver"), (None, "gold")]
    (name,) = profiles.history(cid, "preferred_name").entries
    assert name.sensitive
    assert name.new_value is None
    page = profiles.history(cid, page_size=2)
    assert len(page.entries) == 2
    assert page.next_page_token
    assert len(profiles.history(cid, page_token=page.next_page_token).entries) == 1

    erased = profiles.erase(cid, ["loyalty_tier", "preferred_name"], "request #1")
    assert erased.erased == ["loyalty_tier", "preferred_name"]
    assert values(profiles.get(cid)) == {}
    entries = profiles.history(cid, "loyalty_tier").entries
    assert entries[0].kind == "erased"
    assert entries[0].reason == "request #1"
    assert all(e.old_value is None and e.new_value is None for e in entries)
    assert all(e.redacted for e in entries[1:])
    (event,) = events_of(db, "profile.erased.v1")
    assert event.data["attributes"][0]["name"] == "loyalty_tier"


def test_consents_and_the_withdrawal_event(db: Database, customers: CustomerService) -> None:
    cid = new_customer(customers, "a-8")
    consents = ConsentService(db, catalogue.load())
    assert not consents.has_consent(cid, "biometrics")
    consents.set(cid, "biometrics", True, "v3", "app")
    assert consents.has_consent(cid, "biometrics")
    consents.set(cid, "biometrics", True, "v3", "app")  # no change: no event
    consents.set(cid, "biometrics", False, "v3", "ivr")
    assert not consents.has_consent(cid, "biometrics")
    (withdrawn,) = events_of(db, "consent.withdrawn.v1")
    assert withdrawn.subject == cid
    assert withdrawn.data["purpose"] == "biometrics"
    assert len(events_of(db, "consent.granted.v1")) == 1
    with pytest.raises(InvalidArgument) as bad:
        consents.set(cid, "selling-data", True, "v1", "app")
    assert bad.value.field == "purpose"
    assert [c.purpose for c in consents.list(cid)] == ["biometrics"]


def test_merge_survivorship_then_unmerge_restores_both(
        db: Database, profiles: ProfileService, customers: CustomerService) -> None:
    survivor, merged = new_customer(customers, "m-1"), new_customer(customers, "m-2")
    old, new = datetime.now(UTC) - timedelta(days=1), datetime.now(UTC)
    profiles.update(survivor, "cards", {"segment": "mass"}, source_time=new)
    profiles.update(survivor, "customer", {"preferred_name": "Аня"}, source_time=new)
    profiles.update(merged, "analytics", {"segment": "affluent"}, source_time=new)  # less trusted
    profiles.update(merged, "kyc", {"birth_date": "1990-05-17"}, source_time=old)  # only there
    profiles.update(merged, "contact_center", {"preferred_name": "Анна"}, source_time=new)

    MergeService(db).merge(survivor, merged, "same person", actor="test")
    view = profiles.get(merged)  # through the alias
    assert view.customer_id == survivor
    assert view.resolved_from_alias
    assert values(view) == {"segment": "mass", "preferred_name": "Аня",
                            "birth_date": "1990-05-17"}
    assert len(events_of(db, "profile.merged.v1")) == 1

    profiles.update(survivor, "customer", {"language": "en"})  # survives the unmerge
    MergeService(db).unmerge(merged, "wrong person", actor="test")
    assert values(profiles.get(survivor)) == {"segment": "mass", "preferred_name": "Аня",
                                              "language": "en"}
    assert values(profiles.get(merged)) == {"segment": "affluent", "birth_date": "1990-05-17",
                                            "preferred_name": "Анна"}
    assert len(events_of(db, "profile.unmerged.v1")) == 1


def test_the_change_feed_filters_and_resumes(db: Database, profiles: ProfileService,
                                             customers: CustomerService) -> None:
    cid = new_customer(customers, "w-1")
    feed = ChangeFeed(db)
    profiles.update(cid, "loyalty", {"loyalty_tier": "gold"})
    profiles.update(cid, "customer", {"language": "ru"})
    everything = feed.poll(Cursor(), Filters())
    assert [e.type for e in everything][-2:] == ["singleid.profile.updated.v1"] * 2
    tiers = feed.poll(Cursor(), Filters.of(["profile.updated.v1"], ["loyalty_tier"]))
    assert len(tiers) == 1
    resumed = feed.poll(Cursor.parse(tiers[0].resume_token), Filters())
    assert [e.id for e in resumed] == [everything[-1].id]


def test_export_leaves_sensitive_attributes_out_unless_asked(
        db: Database, keyring: Keyring, profiles: ProfileService,
        customers: CustomerService) -> None:
    cid = new_customer(customers, "e-1")
    profiles.update(cid, "customer", {"preferred_name": "Аня", "language": "ru"})
    export = ExportService(db, keyring, catalogue.load())
    (row,) = list(export.rows())
    assert row["language"] == "ru"
    assert "preferred_name" not in row
    (full,) = list(export.rows(frozenset({catalogue.Sensitivity.PERSONAL})))
    assert full["preferred_name"] == "Аня"
    assert "passport" not in full


def test_over_long_names_are_invalid_argument_not_a_database_error(
        db: Database, profiles: ProfileService, customers: CustomerService) -> None:
    cid = new_customer(customers, "l-1")
    with pytest.raises(InvalidArgument) as source:
        profiles.update(cid, "s" * 200, {"language": "ru"})
    assert source.value.field == "source"
    with pytest.raises(InvalidArgument) as actor:
        profiles.erase(cid, ["language"], "request", actor="a" * 100)
    assert actor.value.field == "actor"
    with pytest.raises(InvalidArgument) as channel:
        ConsentService(db).set(cid, "marketing", True, "v1", "c" * 40)
    assert channel.value.field == "channel"
    with pytest.raises(InvalidArgument) as key:
        profiles.update(cid, "customer", {"language": "ru"}, idempotency_key="k" * 200)
    assert key.value.field == "idempotency_key"


def test_the_change_feed_delivers_a_late_commit_below_a_seen_event(db: Database) -> None:
    def add(seq: int) -> None:
        with db.write() as session:
            session.add(OutboxEvent(seq=seq, event_id=str(uuid.uuid4()), type="singleid.t.v1",
                                    source="/t", subject="s", time=datetime.now(UTC), data={}))

    feed = ChangeFeed(db)
    cursor = Cursor()
    add(1)
    add(3)  # 2 is "still in flight"
    assert [e.type for e in feed.poll(cursor, Filters())] == ["singleid.t.v1"] * 2
    assert (cursor.watermark, cursor.seen) == (1, {3})
    add(2)
    late = feed.poll(cursor, Filters())
    assert len(late) == 1
    assert (cursor.watermark, cursor.seen) == (3, set())
    add(4)
    assert len(feed.poll(Cursor.parse(late[0].resume_token), Filters())) == 1


def test_a_merge_keeps_the_most_recent_consent_decision_and_unmerge_restores_it(
        db: Database, customers: CustomerService) -> None:
    survivor, merged = new_customer(customers, "cm-1"), new_customer(customers, "cm-2")
    consents = ConsentService(db)
    day_ago = datetime.now(UTC) - timedelta(days=1)
    consents.set(survivor, "biometrics", True, "v1", "app", change_time=day_ago)
    consents.set(merged, "biometrics", True, "v1", "ivr", change_time=day_ago)
    consents.set(merged, "biometrics", False, "v1", "ivr")  # withdrawn since, on the other ID
    withdrawn_before = len(events_of(db, "consent.withdrawn.v1"))

    MergeService(db).merge(survivor, merged, "same person", actor="test")
    assert not consents.has_consent(survivor, "biometrics")
    assert not consents.has_consent(merged, "biometrics")
    after_merge = events_of(db, "consent.withdrawn.v1")
    assert len(after_merge) == withdrawn_before + 1
    assert after_merge[-1].subject == survivor  # voiceprint deletes the survivor's template

    MergeService(db).unmerge(merged, "wrong person", actor="test")
    assert consents.has_consent(survivor, "biometrics")
    assert not consents.has_consent(merged, "biometrics")
    assert events_of(db, "consent.granted.v1")[-1].subject == survivor
