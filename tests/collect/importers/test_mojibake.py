"""Garbled text (乱码) is recognized, its likely original named, and real text left alone."""

import csv
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jingzhun.collect.importers import import_file
from jingzhun.collect.importers.mapping import parse_mapping
from jingzhun.collect.importers.mojibake import find_garbled, judge
from jingzhun.core import Workspace
from jingzhun.core.errors import ConfigError
from jingzhun.demo.dirty import mojibake
from jingzhun.engine import Engine

from .conftest import reasons, scalar

CASES = [
    ("çŽ‹èŠ³", "cp1252", "王芳"),  # UTF-8 read as Windows-1252 (docs/demo-data.md)
    ("é™ˆå¨Ÿä¸€", "cp1252", "陈娟一"),
    ("ä¸ç¿", "cp1252", "\ufffd\ufffd"),  # bytes lost by the wrong decode: still garbled, cut short
    ("鐜夎倢姘村厜", "gbk", "玉肌水光"),  # UTF-8 read as GBK
    ("王芳", None, None),
    ("浙江 武汉", None, None),
    ("玉肌水光润泽轻盈粉底液 #01象牙白", None, None),
    ("Café™", None, None),
    ("José Müller", None, None),
    ("“quoted”", None, None),
    ("SH001", None, None),
]


@pytest.mark.parametrize(("text", "codec", "repaired"), CASES)
def test_judge(text: str, codec: str | None, repaired: str | None) -> None:
    found = judge(text)
    assert (found.codec if found else None) == codec
    assert (found.repaired if found else None) == repaired


def _demo_texts(demo: Path) -> list[str]:
    persons = pq.read_table(demo.parent / "demo-truth/persons.parquet", columns=["name", "province", "city"])
    with open(demo / "catalog/products.csv", encoding="utf-8", newline="") as source:
        products = [row["name"] for row in csv.DictReader(source)]
    return sorted({*products, *(v for column in persons.columns for v in column.to_pylist() if v)})


def test_real_names_places_and_products_are_not_flagged(demo: Path) -> None:
    texts = _demo_texts(demo)
    flagged, verdicts = find_garbled(pa.array(texts, pa.string()))
    assert len(texts) > 500 and verdicts == {} and flagged is None


@pytest.mark.parametrize("codec", ["gbk", "cp1252"])
def test_every_garbled_product_name_is_caught(demo: Path, codec: str) -> None:
    with open(demo / "catalog/products.csv", encoding="utf-8", newline="") as source:
        names = sorted({row["name"] for row in csv.DictReader(source)})
    garbled = mojibake(pa.array(names), codec)  # the demo generator's own 乱码 (lossy, as real tools are)
    flagged, verdicts = find_garbled(garbled)
    assert flagged is not None and flagged.to_pylist() == [True] * len(names)
    for name, text in zip(names, garbled.to_pylist(), strict=True):
        assert verdicts[text].codec == codec
        recovered = sum(a == b for a, b in zip(verdicts[text].repaired, name, strict=False))
        assert recovered >= 0.6 * len(name), (name, verdicts[text])  # each lost byte spoils one character (�)


def _members(path: Path, names: list[str]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["会员编号", "姓名", "手机号", "省份"])
        for i, name in enumerate(names):
            writer.writerow([f"JZ1000000{i:02d}", name, f"1381234{i:04d}", "浙江省"])
    return path


def test_garbled_member_names_wait_in_quarantine_with_the_likely_name(workspace: Workspace, engine: Engine,
                                                                      tmp_path: Path) -> None:
    garbled = mojibake(pa.array(["王芳", "陈娟一"]), "cp1252").to_pylist() + mojibake(pa.array(["张伟明"]), "gbk").to_pylist()
    path = _members(tmp_path / "members.csv", ["李娜", *garbled, "Anna Müller"])
    result = import_file(workspace, engine, "crm_members", path)
    assert (result.rows_loaded, result.rows_quarantined) == (2, 3) and result.balanced
    assert reasons(engine, "crm_members") == {"mojibake": 3}
    rows = engine.query("SELECT field, reason FROM quarantine ORDER BY line_no").to_pylist()
    assert {row["field"] for row in rows} == {"姓名"}
    assert "“王芳”" in rows[0]["reason"] and "“陈娟一”" in rows[1]["reason"] and "张伟" in rows[2]["reason"]
    assert garbled[0] in rows[0]["reason"]  # the value as found, so it can be searched for in the source
    assert scalar(engine, "SELECT count(*) FROM source_records WHERE attributes LIKE '%李娜%'") == 1


def test_check_mojibake_is_for_text_fields() -> None:
    with pytest.raises(ConfigError, match="check_mojibake"):
        parse_mapping({"kind": "stores", "fields": {"opened_on": {"type": "date", "check_mojibake": True}}}, "m.yaml")
