"""A generator of legacy accounts with ground truth, for tests, evaluation and benchmarks.

Each person gets one to four accounts in different products, written the ways
legacy systems wrote them: transliterated names under different schemes,
diminutives, typos, missing fields, every phone format, birth dates in several
formats (sometimes with day and month swapped), surnames changed by marriage.
Hard negatives are people who look alike and are not the same: family members
sharing a phone and an address, twins with the same birth date and surname,
and namesakes with the same full name and birth date in different cities.

Columns: the import contract, plus ``person_id`` (the truth), ``product`` and
``hard_negative`` (a group name shared by look-alike different persons).
"""

from __future__ import annotations

import csv
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from singleid.matching import translit
from singleid.matching.diminutives import TABLE

MALE = ["александр", "алексей", "андрей", "антон", "артем", "борис", "вадим", "валентин",
        "валерий", "василий", "виктор", "владимир", "владислав", "вячеслав", "геннадий",
        "георгий", "григорий", "денис", "дмитрий", "евгений", "иван", "игорь", "илья",
        "кирилл", "константин", "максим", "михаил", "никита", "николай", "олег", "павел",
        "петр", "роман", "семен", "сергей", "станислав", "степан", "тимофей", "федор",
        "юрий", "яков", "ярослав", "тимур", "анатолий"]
FEMALE = ["александра", "анастасия", "анна", "валентина", "вера", "виктория", "галина",
          "дарья", "евгения", "екатерина", "елена", "елизавета", "зинаида", "ирина", "ксения",
          "лариса", "любовь", "людмила", "маргарита", "марина", "мария", "надежда",
          "наталья", "нина", "оксана", "ольга", "полина", "светлана", "софья", "тамара",
          "татьяна", "юлия"]
SURNAMES = ["иванов", "смирнов", "кузнецов", "попов", "васильев", "петров", "соколов",
            "михайлов", "новиков", "федоров", "морозов", "волков", "алексеев", "лебедев",
            "семенов", "егоров", "павлов", "козлов", "степанов", "николаев", "орлов",
            "андреев", "макаров", "никитин", "захаров", "зайцев", "соловьев", "борисов",
            "яковлев", "григорьев", "романов", "воробьев", "сергеев", "кузьмин", "фролов",
            "александров", "дмитриев", "королев", "гусев", "киселев", "ильин", "максимов",
            "поляков", "сорокин", "виноградов", "ковалев", "белов", "медведев", "антонов",
            "тарасов", "жуков", "баранов", "филиппов", "комаров", "давыдов", "беляев",
            "герасимов", "богданов", "осипов", "сидоров", "матвеев", "титов", "марков",
            "миронов", "крылов", "куликов", "карпов", "власов", "мельников", "денисов",
            "гаврилов", "тихонов", "казаков", "афанасьев", "данилов", "савельев", "тимофеев",
            "фомин", "чернов", "абрамов", "мартынов", "ефимов", "федотов", "щербаков",
            "назаров", "калинин", "исаев", "чернышев", "быков", "маслов", "родионов",
            "коновалов", "лазарев", "воронин", "климов", "филатов", "пономарев", "голубев",
            "кудрявцев", "прохоров", "наумов", "потапов", "журавлев", "овчинников",
            "трофимов", "леонов", "соболев", "ермаков", "колесников", "гончаров", "емельянов",
            "никифоров", "грачев", "котов", "гришин", "ефремов", "архипов", "громов",
            "кириллов", "малышев", "панов", "моисеев", "румянцев", "акимов", "кондратьев",
            "бирюков", "горбунов", "анисимов", "еремин", "тихомиров", "галкин", "лукьянов",
            "михеев", "скворцов", "юдин", "белоусов", "нестеров", "симонов", "прокофьев",
            "харитонов", "князев", "цветков", "левин", "митрофанов", "воронов", "аксенов",
            "софронов", "мальцев", "логинов", "горшков", "савин", "краснов", "майоров",
            "демидов", "елисеев", "рыбаков", "сафонов", "плотников", "демин", "хохлов",
            "жданов", "хабибуллин", "цой", "ким", "шевченко", "бондаренко", "мамедов"]
CITIES = ["москва", "санкт-петербург", "новосибирск", "екатеринбург", "казань",
          "нижний новгород", "челябинск", "самара", "омск", "ростов-на-дону", "уфа",
          "красноярск", "воронеж", "пермь", "волгоград", "краснодар", "саратов", "тюмень"]
STREETS = ["ленина", "мира", "советская", "гагарина", "пушкина", "садовая", "лесная",
           "школьная", "молодежная", "центральная", "новая", "заречная", "победы"]
PRODUCTS = ["cards", "loans", "deposits", "insurance", "loyalty", "messenger"]
DOMAINS = ["mail.ru", "yandex.ru", "gmail.com", "bk.ru", "inbox.ru", "list.ru", "rambler.ru"]
COLUMNS = ["account_id", "product", "person_id", "hard_negative", "last_name", "first_name",
           "middle_name", "birth_date", "phone", "email", "passport", "address", "city",
           "created_at", "password_hash"]

_BCRYPT_ALPHABET = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_DIMINUTIVES: dict[str, list[str]] = {}
for _line in TABLE.strip().splitlines():
    _full, _, _rest = _line.partition(":")
    _DIMINUTIVES[_full.strip()] = [s for s in _rest.split() if "ё" not in s][:3]


@dataclass
class Truth:
    person_id: str
    last: str
    first: str
    middle: str
    female: bool
    born: date
    phone: str      # 10 national digits
    email: str
    passport: str   # 10 digits
    city: str
    street: str
    house: int
    flat: int
    maiden: str = ""
    hard_negative: str = ""


def _female_surname(surname: str) -> str:
    if surname.endswith(("ов", "ев", "ин", "ын")):
        return surname + "а"
    if surname.endswith("ский"):
        return surname[:-2] + "ая"
    return surname


def _male_surname(surname: str) -> str:
    if surname.endswith(("ова", "ева", "ина", "ына")):
        return surname[:-1]
    if surname.endswith("ская"):
        return surname[:-2] + "ий"
    return surname


def _patronymic(father: str, female: bool) -> str:
    father = {"павел": "павл", "лев": "льв"}.get(father, father)
    if father.endswith("й"):
        stem, male, fem = father[:-1], "евич", "евна"
    elif father.endswith(("а", "я")):
        stem, male, fem = father[:-1], "ич", "ична"
    elif father.endswith("ь"):
        stem, male, fem = father[:-1], "евич", "евна"
    else:
        stem, male, fem = father, "ович", "овна"
    return stem + (fem if female else male)


class Generator:
    def __init__(self, seed: int = 1) -> None:
        self.rng = random.Random(seed)  # noqa: S311 - synthetic data, not secrets
        self._ids = 0
        self._used_phones: set[str] = set()
        self._used_passports: set[str] = set()

    # -- people ----------------------------------------------------------------------
    def _phone(self) -> str:
        while True:
            number = "9" + "".join(self.rng.choice("0123456789") for _ in range(9))
            if number not in self._used_phones:
                self._used_phones.add(number)
                return number

    def _passport(self) -> str:
        while True:
            number = f"{self.rng.randint(1000, 9999)}{self.rng.randint(100000, 999999)}"
            if number not in self._used_passports:
                self._used_passports.add(number)
                return number

    def _person(self, **overrides: object) -> Truth:
        self._ids += 1
        female = bool(overrides.pop("female", self.rng.random() < 0.5))
        first = self.rng.choice(FEMALE if female else MALE)
        surname = self.rng.choice(SURNAMES)
        last = _female_surname(surname) if female else surname
        middle = _patronymic(self.rng.choice(MALE), female)
        born = date(1950, 1, 1) + timedelta(days=self.rng.randint(0, 365 * 55))
        translit_first = translit.skeleton(first).replace(" ", "")
        email = f"{translit_first}.{translit.skeleton(surname)}{self.rng.randint(1, 9999)}" \
                f"@{self.rng.choice(DOMAINS)}"
        truth = Truth(person_id=f"p{self._ids}", last=last, first=first, middle=middle,
                      female=female, born=born, phone=self._phone(), email=email,
                      passport=self._passport(), city=self.rng.choice(CITIES),
                      street=self.rng.choice(STREETS), house=self.rng.randint(1, 150),
                      flat=self.rng.randint(1, 300))
        for key, value in overrides.items():
            setattr(truth, key, value)
        if truth.female and self.rng.random() < 0.3 and not truth.maiden:
            truth.maiden = _female_surname(self.rng.choice(SURNAMES))
        return truth

    def people(self, count: int, hard_negative_share: float = 0.15) -> Iterator[Truth]:
        made = 0
        group = 0
        while made < count:
            if self.rng.random() < hard_negative_share:
                group += 1
                for truth in self._look_alikes(f"hn{group}"):
                    made += 1
                    yield truth
            else:
                made += 1
                yield self._person()

    def _look_alikes(self, group: str) -> list[Truth]:
        kind = self.rng.choice(("family", "twins", "namesakes"))
        a = self._person(hard_negative=group)
        if kind == "family":  # a spouse and a child at the same phone and address
            spouse = self._person(female=not a.female, hard_negative=group, phone=a.phone,
                                  city=a.city, street=a.street, house=a.house, flat=a.flat)
            family = a.last if not a.female else a.last[:-1] if a.last.endswith("а") else a.last
            spouse.last = _female_surname(family) if spouse.female else family
            child_female = self.rng.random() < 0.5
            father = spouse if a.female else a
            child = self._person(female=child_female, hard_negative=group, phone=a.phone,
                                 city=a.city, street=a.street, house=a.house, flat=a.flat,
                                 born=a.born + timedelta(days=365 * 25 + self.rng.randint(
                                     0, 3000)))
            child.last = _female_surname(family) if child_female else family
            child.middle = _patronymic(father.first, child_female)
            return [a, spouse, child]
        if kind == "twins":  # same surname, birth date, patronymic, address, phone
            female = self.rng.random() < 0.5
            b = self._person(female=female, hard_negative=group, last=a.last if a.female == female
                             else _female_surname(a.last) if female else _male_surname(a.last),
                             middle=_patronymic(
                                 a.middle[:-4] or "иван", female),
                             born=a.born, phone=a.phone, city=a.city, street=a.street,
                             house=a.house, flat=a.flat)
            b.middle = a.middle if a.female == female else b.middle
            while b.first == a.first or translit.skeleton(b.first) == translit.skeleton(a.first):
                b.first = self.rng.choice(FEMALE if female else MALE)
            return [a, b]
        b = self._person(female=a.female, hard_negative=group, last=a.last, first=a.first,
                         middle=a.middle, born=a.born, maiden="")
        while b.city == a.city:
            b.city = self.rng.choice(CITIES)
        return [a, b]

    # -- accounts ------------------------------------------------------------------------
    def accounts(self, truth: Truth) -> list[dict[str, str]]:
        n = self.rng.choices([1, 2, 3, 4], weights=[35, 35, 20, 10])[0]
        products = self.rng.sample(PRODUCTS, n)
        return [self._account(truth, product, k) for k, product in enumerate(products)]

    def _account(self, t: Truth, product: str, k: int) -> dict[str, str]:
        rng = self.rng
        self._ids += 1
        last = t.maiden if (t.maiden and k == 0) else t.last
        first, middle = t.first, t.middle
        roll = rng.random()
        if roll < 0.15 and _DIMINUTIVES.get(first):
            first = rng.choice(_DIMINUTIVES[first])
        if rng.random() < 0.08:
            last = self._typo(last)
        if rng.random() < 0.04:
            first = self._typo(first)
        if rng.random() < 0.2:
            middle = ""
        if rng.random() < 0.15:
            scheme = rng.choice(translit.SCHEMES)
            last, first, middle = (translit.to_latin(x, scheme) for x in (last, first, middle))
        last, first, middle = (self._case(x) for x in (last, first, middle))
        born = t.born
        if rng.random() < 0.02 and born.day <= 12 and born.day != born.month:
            born = born.replace(day=born.month, month=born.day)
        born_text = self._date(born)
        if rng.random() < 0.02:
            digits = list(born_text)
            spots = [i for i, c in enumerate(digits) if c.isdigit() and i >= len(digits) - 2]
            if spots:
                i = rng.choice(spots)
                digits[i] = str((int(digits[i]) + 1) % 10)
                born_text = "".join(digits)
        if rng.random() < 0.08:
            born_text = ""
        phone = self._phone_format(t.phone) if rng.random() < 0.85 else ""
        email = t.email if rng.random() < 0.55 else ""
        if email and rng.random() < 0.3:
            email = email.upper()
        passport = self._passport_format(t.passport) if rng.random() < 0.45 else ""
        city = t.city if rng.random() < 0.7 else ""
        address = (f"{rng.choice(['г. ', 'г ', ''])}{t.city.title()}, "
                   f"{rng.choice(['ул. ', 'улица ', ''])}{t.street.title()}, "
                   f"{rng.choice(['д. ', 'д', 'дом '])}{t.house}, "
                   f"{rng.choice(['кв. ', 'кв', 'квартира '])}{t.flat}"
                   ) if rng.random() < 0.5 else ""
        return {"account_id": f"{product[:2]}-{self._ids}", "product": product,
                "person_id": t.person_id, "hard_negative": t.hard_negative,
                "last_name": last, "first_name": first, "middle_name": middle,
                "birth_date": born_text, "phone": phone, "email": email,
                "passport": passport, "address": address, "city": city,
                "created_at": f"20{rng.randint(10, 24)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}",
                "password_hash": self._bcrypt_like()}

    def _bcrypt_like(self) -> str:
        """A string in bcrypt's layout (salt and digest at random: nobody signs in with it)."""
        return "$2b$10$" + "".join(self.rng.choice(_BCRYPT_ALPHABET) for _ in range(53))

    def _typo(self, word: str) -> str:
        if len(word) < 4:
            return word
        i = self.rng.randrange(1, len(word) - 1)
        op = self.rng.random()
        if op < 0.4:
            return word[:i] + word[i + 1] + word[i] + word[i + 2:]
        if op < 0.7:
            return word[:i] + word[i + 1:]
        return word[:i] + word[i] + word[i:]

    def _case(self, text: str) -> str:
        roll = self.rng.random()
        if roll < 0.15:
            return text.upper()
        if roll < 0.25:
            return text
        return "-".join(p[:1].upper() + p[1:] for p in text.split("-"))

    def _date(self, born: date) -> str:
        return self.rng.choice([
            born.isoformat(), born.strftime("%d.%m.%Y"), born.strftime("%d/%m/%Y"),
            born.strftime("%Y%m%d"), born.strftime("%d.%m.%Y"), born.strftime("%d-%m-%Y")])

    def _phone_format(self, n: str) -> str:
        return self.rng.choice([
            f"+7 {n[:3]} {n[3:6]}-{n[6:8]}-{n[8:]}", f"8 ({n[:3]}) {n[3:]}", f"8{n}", n,
            f"+7{n}", f"8-{n[:3]}-{n[3:6]}-{n[6:8]}-{n[8:]}", f"7{n}"])

    def _passport_format(self, p: str) -> str:
        return self.rng.choice([p, f"{p[:4]} {p[4:]}", f"{p[:2]} {p[2:4]} {p[4:]}",
                                f"{p[:4]} № {p[4:]}"])

    def rows(self, people: int, hard_negative_share: float = 0.15) -> Iterator[dict[str, str]]:
        for truth in self.people(people, hard_negative_share):
            yield from self.accounts(truth)


def write_csv(path: Path, people: int, *, seed: int = 1, hard_negative_share: float = 0.15
              ) -> int:
    """Write a generated set; returns the number of rows."""
    count = 0
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, COLUMNS)
        writer.writeheader()
        for row in Generator(seed).rows(people, hard_negative_share):
            writer.writerow(row)
            count += 1
    return count
