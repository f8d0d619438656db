"""Identifier normalization as SQL, on both engines: tables of input → stored form."""

from __future__ import annotations

import hashlib

import pyarrow as pa
import pytest

from jingzhun.identity.identifiers import (
    NormalizeSettings,
    hash_forms_sql,
    masked_phone_sql,
    normalized_type_sql,
    plain_value_sql,
    stored_value_sql,
)
from jingzhun.identity.registry import DEFAULT_REGISTRY

CASES = [
    # (id_type, raw, expected type, expected value)
    ("phone", "13812345678", "phone", "+8613812345678"),
    ("phone", "138-1234-5678", "phone", "+8613812345678"),
    ("phone", "+86 138 1234 5678", "phone", "+8613812345678"),
    ("phone", "86-13812345678", "phone", "+8613812345678"),
    ("phone", "0086 13812345678", "phone", "+8613812345678"),
    ("phone", "(+86)138.1234.5678", "phone", "+8613812345678"),
    ("phone", " 138 1234 5678 ", "phone", "+8613812345678"),
    ("phone", "+8613812345678", "phone", "+8613812345678"),
    ("phone", "021-6234 5678", "phone", "+862162345678"),
    ("phone", "010 1234 5678", "phone", "+861012345678"),
    ("phone", "+1 650 555 1234", "phone", "+16505551234"),
    ("phone", "001 650 555 1234", "phone", "+16505551234"),
    ("phone", "187****8991", "phone_masked", "187****8991"),
    ("phone", "+86 187****8991", "phone_masked", "187****8991"),
    ("phone", "1381234567", "phone", None),       # 10 digits
    ("phone", "138123456789", "phone", None),     # 12 digits
    ("phone", "12812345678", "phone", None),      # not a mobile prefix
    ("phone", "2162345678", "phone", None),       # landline without its trunk 0
    ("phone", "13a12345678", "phone", None),
    ("phone_masked", "13812345678", "phone", "+8613812345678"),
    ("email", " Wang.Fang@QQ.com ", "email", "wang.fang@qq.com"),
    ("email", "not-an-email", "email", None),
    ("phone_md5", "ABCDEF0123456789ABCDEF0123456789", "phone_md5", "abcdef0123456789abcdef0123456789"),
    ("phone_md5", "not-hex", "phone_md5", None),
    ("email_sha256", "A" * 64, "email_sha256", "a" * 64),
    ("member_id", " JZ100000001 ", "member_id", "JZ100000001"),
    ("member_id", "   ", "member_id", None),
    ("wechat_openid", "oAbC-123_x", "wechat_openid", "oAbC-123_x"),
]


def _normalize(engine, settings: NormalizeSettings) -> list[dict]:
    engine.write_table("raw_ids", pa.table({"n": list(range(len(CASES))), "t": [c[0] for c in CASES],
                                            "v": [c[1] for c in CASES]}), mode="replace")
    typed = normalized_type_sql("t", "v")
    plain = plain_value_sql("nt", "v", DEFAULT_REGISTRY, settings)
    stored = stored_value_sql("nt", "p", DEFAULT_REGISTRY, settings)
    return engine.query(f"SELECT n, nt, p, {stored} AS s FROM (SELECT n, nt, v, {plain} AS p FROM "
                        f"(SELECT n, v, {typed} AS nt FROM raw_ids) AS a) AS b ORDER BY n").to_pylist()


def test_normalization_table(engine) -> None:
    rows = _normalize(engine, NormalizeSettings())
    got = [(row["nt"], row["p"]) for row in rows]
    assert got == [(case[2], case[3]) for case in CASES]
    assert all(row["s"] == row["p"] for row in rows)


def test_salted_storage_matches_the_importers(engine) -> None:
    from jingzhun.collect.importers.convert import salted_hash

    salt = bytes(range(32))
    rows = _normalize(engine, NormalizeSettings(salt_hex=salt.hex()))
    phone = rows[0]
    assert phone["p"] == "+8613812345678"
    assert phone["s"] == salted_hash(pa.array(["+8613812345678"]), salt)[0].as_py()
    already = rows[[c[1] for c in CASES].index("+8613812345678")]
    member = rows[[c[1] for c in CASES].index(" JZ100000001 ")]
    assert member["s"] == "JZ100000001"  # only PII types are salted
    # A value that arrives already salted (an importer hashed it) is kept as it is.
    engine.write_table("raw_ids", pa.table({"n": [0], "t": ["phone"], "v": [already["s"]]}), mode="replace")
    settings = NormalizeSettings(salt_hex=salt.hex())
    plain = plain_value_sql("t", "v", DEFAULT_REGISTRY, settings)
    again = engine.query(f"SELECT {stored_value_sql('t', 'p', DEFAULT_REGISTRY, settings)} AS s "
                         f"FROM (SELECT t, {plain} AS p FROM raw_ids) AS x").column("s").to_pylist()
    assert again == [already["s"]]


def test_hash_forms_cover_each_platform_spelling(engine) -> None:
    engine.write_table("plain_ids", pa.table({"id_type": ["phone", "email"],
                                              "id_value": ["+8613812345678", "wang@qq.com"],
                                              "plain_value": ["+8613812345678", "wang@qq.com"]}), mode="replace")
    forms = engine.query(f"SELECT hash_type, hash_value FROM ({hash_forms_sql('plain_ids')}) AS f").to_pylist()
    got = {(row["hash_type"], row["hash_value"]) for row in forms}
    expected = {("email_md5", hashlib.md5(b"wang@qq.com").hexdigest()),
                ("email_sha256", hashlib.sha256(b"wang@qq.com").hexdigest())}
    for spelled in (b"13812345678", b"+8613812345678", b"8613812345678"):  # Tencent/Ocean Engine, Google, Meta
        expected |= {("phone_md5", hashlib.md5(spelled).hexdigest()),
                     ("phone_sha256", hashlib.sha256(spelled).hexdigest())}
    assert got == expected


@pytest.mark.parametrize("raw", ["187****8991", "18712348991", "+86 187-1234-8991"])
def test_masked_form_of_any_phone(engine, raw: str) -> None:
    engine.write_table("one", pa.table({"v": [raw]}), mode="replace")
    assert engine.query(f"SELECT {masked_phone_sql('v')} AS m FROM one").column("m").to_pylist() == ["187****8991"]
