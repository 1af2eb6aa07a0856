"""The shipped diminutives table: everyday and short forms of Russian first names.

One line a full name: the full form, then its diminutives and common foreign
forms (Cyrillic). Matching looks a given first name up here (after
normalisation) and compares the full forms, so Саша and Александр agree.
Ambiguous short forms (Саша: Александр or Александра; Женя: Евгений or Евгения)
map to the male form; gender-specific fields (patronymic, surname ending) tell
the two apart elsewhere.
"""

from __future__ import annotations

TABLE = """
александр: саша саня шура шурик санек алекс сашка сашок алексаша
александра: сашенька шурочка
алексей: леша алеша лёша алёша лешка алекс
анастасия: настя настена ася стася
анатолий: толя толик
андрей: андрюша андрюха дрюня
анна: аня анюта нюра аннушка анечка
антон: тоша антоша
артем: тема артемка
борис: боря борька
вадим: вадик дима
валентин: валя
валентина: валя
валерий: валера
василий: вася васек
вера: верочка
виктор: витя витек
виктория: вика
владимир: вова володя вовка вован
владислав: влад владик слава
вячеслав: слава славик
галина: галя
геннадий: гена
георгий: жора гоша юра егор
григорий: гриша
дарья: даша дашенька
денис: дэн дениска
дмитрий: дима митя димон димка
евгений: женя женька
евгения: женечка
екатерина: катя катюша катерина кэт
елена: лена леночка аленка
елизавета: лиза лизонька
зинаида: зина
иван: ваня ванька ванечка
игорь: игорек
илья: илюша
ирина: ира иринка ируся
кирилл: киря кирюша
константин: костя костик
ксения: ксюша ксеня оксана
лариса: лара
любовь: люба
людмила: люда мила людочка
максим: макс максимка
маргарита: рита марго
марина: мариша
мария: маша маня маруся машенька мари
михаил: миша мишка михась
надежда: надя
наталья: наташа ната натали наталия
никита: никитка
николай: коля колян николаша
нина: ниночка
оксана: ксана
олег: олежка
ольга: оля олечка оленька
павел: паша павлик
петр: петя петруша
полина: поля
роман: рома ромка
светлана: света светик
семен: сеня
сергей: сережа серега сергуня серж
софья: соня софия софа
станислав: стас слава
степан: степа
тамара: тома
татьяна: таня танюша татьяна
тимофей: тима тимоша
тимур: тима
федор: федя
юлия: юля юлечка джулия
юрий: юра юрик
яков: яша
ярослав: ярик слава
"""


def _parse(text: str) -> dict[str, tuple[str, ...]]:
    table: dict[str, list[str]] = {}
    for line in text.strip().splitlines():
        full, _, rest = line.partition(":")
        full = full.strip().replace("ё", "е")
        table.setdefault(full, [])
        if full not in table[full]:
            table[full].insert(0, full)
        for short in rest.split():
            forms = table.setdefault(short.replace("ё", "е"), [])
            if full not in forms:
                forms.append(full)
    return {name: tuple(forms) for name, forms in table.items()}


# Every full form a name may stand for, the likeliest first (Тима: Тимофей or Тимур).
FULL_FORMS: dict[str, tuple[str, ...]] = _parse(TABLE)
FULL_FORM: dict[str, str] = {name: forms[0] for name, forms in FULL_FORMS.items()}
