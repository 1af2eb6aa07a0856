"""The match model: comparison levels, weights, hard rules, clustering, estimation."""

from __future__ import annotations

import json
from itertools import combinations

import pytest

from singleid.matching import model
from singleid.matching.model import NULL, PairDecision, Thresholds
from singleid.matching.record import Features, LegacyRow, person_from_row
from singleid.matching.synthetic import Generator


def features(**values: str) -> Features:
    return Features.of(person_from_row(LegacyRow(account_id="x", **values)))


ANNA = dict(last_name="Петрова", first_name="Анна", middle_name="Сергеевна",
            birth_date="05.03.1985", phone="+7 916 123-45-67", email="anna@mail.ru",
            passport="4509 123456", city="Москва", address="г. Москва, ул. Ленина, д. 5, кв. 1")


def levels(a: Features, b: Features) -> dict[str, str]:
    return {c.name: "null" if lv == NULL else c.levels[lv]
            for c, lv in zip(model.COMPARISONS, model.compare(a, b), strict=True)}


def test_comparison_levels_see_through_spelling() -> None:
    a = features(**ANNA)
    b = features(last_name="PETROVA", first_name="Anya", middle_name="Sergeyevna",
                 birth_date="1985-05-03", phone="89161234567", email="ANNA@mail.ru",
                 passport="4509123457", city="г. Москва")
    got = levels(a, b)
    assert got["last_name"] == "translit"
    assert got["first_name"] == "diminutive_or_translit"
    assert got["middle_name"] == "exact_or_translit"
    assert got["birth_date"] == "day_month_swapped"
    assert got["phone"] == "exact"
    assert got["email"] == "exact"
    assert got["passport"] == "one_digit_typo"
    assert got["city"] == "exact"
    assert got["address"] == "null"


@pytest.mark.parametrize(("one", "other", "level"), [
    ("1985-03-05", "1985-03-05", "exact"),
    ("1985-03-05", "1985-03-06", "one_digit_typo"),
    ("1985-03-05", "1985-08-30", "within_1_year"),
    ("1985-03-05", "1995-03-05", "one_digit_typo"),
    ("1985-03-05", "1991-07-01", "else"),
])
def test_date_distance_levels(one: str, other: str, level: str) -> None:
    assert levels(features(last_name="А", birth_date=one),
                  features(last_name="А", birth_date=other))["birth_date"] == level


def test_married_surname_is_a_disagreement_that_other_fields_outweigh() -> None:
    m = model.Model.default()
    maiden = features(**{**ANNA, "last_name": "Сидорова"})
    scored = m.score(features(**ANNA), maiden)
    assert levels(features(**ANNA), maiden)["last_name"] == "else"
    assert scored.probability > 0.999
    assert scored.hard_rules == ()


@pytest.mark.parametrize(("change", "rule"), [
    ({"passport": "4510 654321"}, "PASSPORTS_DIFFER"),
    ({"birth_date": "17.08.1991", "passport": ""}, "BIRTH_DATES_FAR"),
    ({"first_name": "Мария", "passport": ""}, "FIRST_NAMES_DIFFER"),
    ({"middle_name": "Сергеевич", "first_name": "Саша"}, "GENDERS_DIFFER"),
    ({"phone": "", "email": "", "passport": "", "address": "", "city": "Казань"},
     "IDENTIFIERS_DIFFER"),
    ({"middle_name": "Игоревна", "passport": ""}, "PATRONYMICS_DIFFER"),
])
def test_hard_rules_cap_a_pair_at_review(change: dict[str, str], rule: str) -> None:
    scored = model.Model.default().score(features(**ANNA), features(**{**ANNA, **change}))
    assert rule in scored.hard_rules
    assert model.decide(scored, Thresholds(auto_merge=0.5, review=0.1)) == "review"


def test_names_and_a_date_alone_never_merge_namesakes() -> None:
    bare = {k: ANNA[k] for k in ("last_name", "first_name", "middle_name", "birth_date")}
    a = features(**bare, city="Москва")
    b = features(**bare, city="Казань")
    scored = model.Model.default().score(a, b)
    assert "IDENTIFIERS_DIFFER" in scored.hard_rules
    # Nothing but names and a date, nothing against them: still not enough.
    assert "NO_SHARED_IDENTIFIER" in model.Model.default().score(
        features(**bare), features(**bare)).hard_rules


def test_names_a_date_and_the_same_city_merge_without_identifiers() -> None:
    bare = {k: ANNA[k] for k in ("last_name", "first_name", "middle_name", "birth_date")}
    a = features(**bare, city="Москва")
    b = features(**bare, address="г. Москва, ул. Ленина, д. 5, кв. 1")  # the city in the address
    assert levels(a, b)["city"] == "exact"
    assert model.Model.default().score(a, b).hard_rules == ()


@pytest.mark.parametrize(("one", "other", "level"), [
    ("Игорь", "Иогрь", "one_edit_from_a_spelling"),     # a swapped pair of letters
    ("Зинаида", "Зиа", "one_edit_from_a_spelling"),      # a typo in Зина, her short form
    ("Борис", "Бояр", "one_edit_from_a_spelling"),       # Боря, mistyped
    ("Игорь", "Олег", "else"),
    ("Галина", "Валя", "else"),                          # Галя and Валя: two known names
])
def test_a_typo_in_a_name_or_its_short_form_is_not_another_name(one: str, other: str,
                                                                 level: str) -> None:
    a, b = features(last_name="Орлов", first_name=one), features(last_name="Орлов",
                                                                  first_name=other)
    assert levels(a, b)["first_name"] == level
    assert ("FIRST_NAMES_DIFFER" in model.Model.default().score(a, b).hard_rules) == (
        level == "else")


def test_first_and_last_name_written_the_other_way_round() -> None:
    a = features(last_name="Петрова", first_name="Анна")
    b = features(last_name="Анна", first_name="Петрова")
    assert levels(a, b)["first_name"] == "diminutive_or_translit"
    assert levels(a, b)["last_name"] == "translit"


def test_a_passport_one_typo_off_is_shared_and_swapped_names_share_a_block() -> None:
    bare = {k: ANNA[k] for k in ("last_name", "first_name", "birth_date", "city")}
    a = features(**bare, passport="4509 123456", address="ул. Ленина, д. 5")
    b = features(**bare, passport="4509 123465", address="ул. Мира, д. 40")
    assert levels(a, b)["passport"] == "one_digit_typo"
    assert model.Model.default().score(a, b).hard_rules == ()
    swapped = features(last_name="Анна", first_name="Петрова", birth_date="05.03.1985")
    assert set(model.blocking_keys(features(**bare))) & set(model.blocking_keys(swapped))


def test_one_passport_overrides_a_mistyped_name_or_date_but_not_a_twin() -> None:
    m = model.Model.default()
    typo = m.score(features(**ANNA), features(**{**ANNA, "first_name": "Мария"}))
    assert "FIRST_NAMES_DIFFER" not in typo.hard_rules
    far = m.score(features(**ANNA), features(**{**ANNA, "birth_date": "17.08.1991"}))
    assert "BIRTH_DATES_FAR" not in far.hard_rules
    # Twins: one birth date, one phone and address, their own passports.
    twin = m.score(features(**ANNA), features(**{**ANNA, "first_name": "Мария",
                                                 "passport": "4509 654321"}))
    assert {"FIRST_NAMES_DIFFER", "PASSPORTS_DIFFER"} <= set(twin.hard_rules)


def test_a_common_value_weighs_less_than_a_rare_one() -> None:
    m = model.Model.default()
    m.tf = {"last_name": {"ivanov": 0.02, "verbakov": 0.00001}}
    common = m.score(features(last_name="Иванов"), features(last_name="Иванов"))
    rare = m.score(features(last_name="Щербаков"), features(last_name="Щербаков"))
    assert rare.weights[1] > common.weights[1] + 5
    # A share is kept within 1/20 and 20 times the level's u.
    assert rare.weights[1] == pytest.approx(
        m.level_weight(model.BY_NAME["last_name"], 0, features(last_name="Нетакой")) + 4.32,
        abs=0.01)


def test_evidence_holds_levels_and_weights_but_no_personal_values() -> None:
    scored = model.Model.default().score(features(**ANNA), features(**ANNA))
    evidence = scored.evidence()
    assert evidence["phone"].startswith("exact +")
    assert float(evidence["probability"]) == pytest.approx(scored.probability, abs=1e-6)
    text = json.dumps(evidence, ensure_ascii=False)
    for value in ("петрова", "916", "4509", "anna", "ленина"):
        assert value not in text.lower()
    assert len(evidence) <= 32
    assert all(len(v) <= 256 for v in evidence.values())


def test_clusters_do_not_chain_through_a_conflict() -> None:
    # 0~1, 1~2 and 2~3 are confident, but 0 and 3 conflict (say, twins): 3 must not join.
    scored = model.Model.default().score(features(**ANNA), features(**ANNA))
    decisions = [PairDecision(0, 1, scored, "auto_merge"), PairDecision(1, 2, scored,
                                                                         "auto_merge"),
                 PairDecision(2, 3, scored, "auto_merge")]
    clusters, demoted = model.cluster(4, decisions, conflict=lambda x, y: {x, y} == {0, 3})
    assert clusters == [[0, 1, 2]]
    assert [(d.i, d.j, d.action) for d in demoted] == [(2, 3, "review")]
    clusters, demoted = model.cluster(4, decisions, conflict=lambda x, y: False)
    assert clusters == [[0, 1, 2, 3]]
    assert demoted == []


def test_a_record_like_two_conflicting_records_joins_neither() -> None:
    # 1 is a sparse account that matches namesakes 0 and 2, who conflict.
    scored = model.Model.default().score(features(**ANNA), features(**ANNA))
    decisions = [PairDecision(0, 1, scored, "auto_merge"), PairDecision(1, 2, scored,
                                                                         "auto_merge"),
                 PairDecision(3, 4, scored, "auto_merge")]
    clusters, demoted = model.cluster(5, decisions, conflict=lambda x, y: {x, y} == {0, 2})
    assert clusters == [[3, 4]]
    assert sorted((d.i, d.j) for d in demoted) == [(0, 1), (1, 2)]


def test_a_far_likelier_partner_is_not_ambiguous() -> None:
    m = model.Model.default()
    strong = m.score(features(**ANNA), features(**ANNA))
    weak = m.score(features(**{**ANNA, "email": "", "passport": ""}),
                   features(**{**ANNA, "phone": "", "passport": "", "address": ""}))
    assert strong.match_weight - weak.match_weight > model.AMBIGUITY_MARGIN
    decisions = [PairDecision(0, 1, strong, "auto_merge"), PairDecision(1, 2, weak,
                                                                        "auto_merge")]
    clusters, demoted = model.cluster(3, decisions, conflict=lambda x, y: {x, y} == {0, 2})
    assert clusters == [[0, 1]]
    assert [(d.i, d.j) for d in demoted] == [(1, 2)]


def test_em_learns_that_agreement_is_likelier_among_matches() -> None:
    gen = Generator(seed=11)
    rows = list(gen.rows(300, hard_negative_share=0.1))
    feats = []
    for row in rows:
        try:
            feats.append(Features.of(person_from_row(LegacyRow.from_mapping(row))))
        except ValueError:
            continue
    fitted = model.fit(feats)
    for name in ("first_name", "last_name", "birth_date", "phone", "passport"):
        assert fitted.m[name][0] > 10 * fitted.u[name][0], name
        assert fitted.u[name][-1] > 0.9, name
    assert 0 < fitted.prior < 0.01


def test_blocking_finds_transliterated_and_swapped_duplicates() -> None:
    a = features(last_name="Щербаков", first_name="Дмитрий", birth_date="05.03.1985")
    b = features(last_name="Shcherbakov", first_name="Dmitry", birth_date="1985-05-03")
    c = features(last_name="Смирнов", first_name="Олег", birth_date="01.01.1970")
    assert model.candidate_pairs([a, b, c]) == {(0, 1)}


def test_generated_set_has_every_kind_of_look_alike() -> None:
    rows = list(Generator(seed=3).rows(400, hard_negative_share=0.3))
    groups: dict[str, set[str]] = {}
    for row in rows:
        if row["hard_negative"]:
            groups.setdefault(row["hard_negative"], set()).add(row["person_id"])
    assert len(groups) >= 10
    assert all(len(persons) >= 2 for persons in groups.values())
    by_person: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_person.setdefault(row["person_id"], []).append(row)
    multi = [accounts for accounts in by_person.values() if len(accounts) > 1]
    assert len(multi) > 100
    latin = sum(1 for r in rows if r["last_name"] and r["last_name"][0].isascii())
    assert latin > 20
    assert any(a["last_name"].lower() != b["last_name"].lower()
               for accounts in multi for a, b in combinations(accounts, 2))


def test_vectorised_batch_weights_equal_the_per_pair_score() -> None:
    from singleid.matching import batch  # noqa: PLC0415

    feats = []
    for row in Generator(seed=5).rows(600):
        try:
            feats.append(Features.of(person_from_row(LegacyRow.from_mapping(row))))
        except ValueError:
            continue
    assert len(feats) >= model.TF_MIN_RECORDS
    pairs = sorted(model.candidate_pairs(feats))
    levels = batch.level_matrix(feats, pairs, workers=2)
    fitted = model.fit_levels(feats, levels)
    assert fitted.tf["last_name"]
    import numpy as np  # noqa: PLC0415

    left = np.asarray([i for i, _ in pairs])
    vectorised = batch.weights(fitted, feats, levels, left)
    expected = [fitted.score(feats[i], feats[j]).match_weight for i, j in pairs]
    assert vectorised == pytest.approx(expected, abs=1e-6)
    result = batch.dedupe(feats, Thresholds(), model=fitted, workers=1)
    assert result.candidate_pairs == len(pairs)
    assert result.clusters
