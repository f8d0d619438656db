"""Benchmark: marketplace buyers linked to members at a million members, against hand-written SQL.

The claim measured: `link_marketplace_buyers` (identity/marketplace.py) finds candidates
only through equi-joins on the masked phone and surname, so it runs at a retailer's
scale on one machine, and its probability (chance fits from the data) keeps the links
precise where a plain "exactly one member fits" rule is not.

Data, built in SQL (seeded hashes, no Python loop): `--members` CRM members with a
mobile phone (40 prefixes, 8 random digits), a surname (100 surnames, skewed like
real ones: the commonest about 8%) and one of 30 cities (skewed); `--buyers` buyer ids
on Tmall, JD and Douyin, 70% of them members shipping to their own phone, surname and
city (a member has at most one buyer id per platform, as the id types' limits say), 30%
strangers; one to three orders each with the masked phone (`187****8991`),
the masked name (`王**`) and the city. The truth is which member each buyer is.

* **jingzhun** — `link_marketplace_buyers` over the member table and `orders` in a
  DuckDB file, through the engine: receivers, members and the other platforms'
  receivers as targets, rates and chance fits, conflicts, candidates written to
  `match_candidates` with evidence.
* **hand-written** — the rule a data engineer would write first, in one DuckDB
  statement: link a buyer to a member when exactly one member has the masked phone,
  surname and city of its receiver. Members only (no cross-platform links).

Both are scored against the truth (precision and recall of buyer→member links).

Usage:
    python benchmarks/marketplace.py [--members 1000000] [--buyers 700000]
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

PREFIXES = [str(p) for p in (130, 131, 132, 133, 134, 135, 136, 137, 138, 139, 147, 150, 151, 152, 153, 155,
                             156, 157, 158, 159, 166, 170, 173, 175, 176, 177, 178, 180, 181, 182, 183, 184,
                             185, 186, 187, 188, 189, 191, 198, 199)]
SURNAMES = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪"
                "范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤")[:100]
CITIES = ["上海", "北京", "广州", "深圳", "杭州", "成都", "重庆", "武汉", "南京", "西安", "苏州", "天津", "长沙", "郑州",
          "东莞", "青岛", "沈阳", "宁波", "昆明", "合肥", "佛山", "福州", "厦门", "济南", "大连", "哈尔滨", "长春", "南宁",
          "贵阳", "兰州"]


def _pick(values: list[str], key: str, power: float) -> str:
    """A skewed, seeded choice from a SQL list literal: index floor(u^power * n)."""
    listed = "[" + ", ".join(f"'{v}'" for v in values) + "]"
    u = f"((hash({key}) % 1000000) / 1000000.0)"
    return f"{listed}[CAST(floor(pow({u}, {power}) * {len(values)}) AS INTEGER) + 1]"


def person_sql(key: str) -> str:
    """Phone, surname and city of a synthetic person keyed by `key` (a SQL expression)."""
    prefix, surname, city = (_pick(values, f"{key} || '{tag}'", power) for values, tag, power in
                             ((PREFIXES, "p", 1.0), (SURNAMES, "s", 2.2), (CITIES, "c", 1.8)))
    phone = f"'+86' || {prefix} || lpad(CAST(hash({key} || 'd') % 100000000 AS VARCHAR), 8, '0')"
    return f"{phone} AS phone, {surname} AS surname, {city} AS city"


def build(engine, members: int, buyers: int) -> None:
    """The member table (as the matching stage prepares it) and the marketplace orders."""
    from jingzhun.identity.matching_records import RECORDS
    from jingzhun.schema import migrate

    migrate(engine)
    engine.execute(f"""
CREATE OR REPLACE TABLE bench_members AS
SELECT 'M' || i AS member_id, {person_sql("CAST(i AS VARCHAR)")} FROM range({members}) AS t(i)""")
    engine.execute(f"""
CREATE OR REPLACE TABLE {RECORDS} AS
SELECT member_id, phone, NULL AS email, surname || '某某' AS name, NULL AS gender, NULL AS birthday,
  NULL AS province, city || '市' AS city, NULL AS name_pinyin, NULL AS name_swapped FROM bench_members""")
    engine.execute(f"""
CREATE OR REPLACE TABLE bench_buyers AS
WITH b AS (SELECT j, ['tmall_open_uid', 'jd_pin', 'douyin_user_id'][j % 3 + 1] AS buyer_type,
             CASE WHEN hash(j || 'm') % 10 < 7
                  THEN 'M' || (((j // 3) * 7919 + (j % 3) * 1000003) % {members}) END AS member_id
           FROM range({buyers}) AS t(j))
SELECT b.j, b.buyer_type, 'B' || b.j AS buyer_id, b.member_id,
  COALESCE(m.phone, s.phone) AS phone, COALESCE(m.surname, s.surname) AS surname, COALESCE(m.city, s.city) AS city
FROM b LEFT JOIN bench_members AS m ON m.member_id = b.member_id
CROSS JOIN LATERAL (SELECT {person_sql("'s' || CAST(b.j AS VARCHAR)")}) AS s""")
    engine.execute("""
INSERT INTO orders (order_id, source_id, channel, platform, customer_ref, customer_ref_type, placed_at, currency,
                    ship_city, customer_identifiers, receiver_name)
SELECT 'o' || j || '-' || n, 'bench', 'online', buyer_type, buyer_id, buyer_type, TIMESTAMPTZ '2025-11-11 12:00:00+00',
  'CNY', city || '市',
  to_json(map_from_entries([(buyer_type, buyer_id),
    ('phone_masked', substr(phone, 4, 3) || '****' || substr(phone, 11, 4))])), surname || '**'
FROM bench_buyers, range(1 + CAST(hash(j || 'n') % 3 AS INTEGER)) AS t(n)""")


HAND_WRITTEN = """
CREATE OR REPLACE TABLE bench_plain AS
WITH r AS (SELECT DISTINCT customer_ref_type AS buyer_type, customer_ref AS buyer_id,
             customer_identifiers->>'$.phone_masked' AS masked, substr(receiver_name, 1, 1) AS surname,
             ship_city AS city FROM orders),
m AS (SELECT member_id, substr(phone, 4, 3) || '****' || substr(phone, 11, 4) AS masked,
        substr(name, 1, 1) AS surname, city FROM identity_match_records),
fits AS (SELECT r.buyer_type, r.buyer_id, m.member_id FROM r
         JOIN m ON m.masked = r.masked AND m.surname = r.surname AND m.city = r.city)
SELECT buyer_type, buyer_id, min(member_id) AS member_id FROM fits
GROUP BY buyer_type, buyer_id HAVING count(DISTINCT member_id) = 1
"""

SCORE = """
SELECT count(*) AS linked, sum(CASE WHEN b.member_id = l.member_id THEN 1 ELSE 0 END) AS correct,
  (SELECT count(*) FROM bench_buyers WHERE member_id IS NOT NULL) AS members_among_buyers
FROM ({links}) AS l JOIN bench_buyers AS b ON b.buyer_type = l.buyer_type AND b.buyer_id = l.buyer_id
"""
JINGZHUN_LINKS = ("SELECT left_type AS buyer_type, left_value AS buyer_id, right_value AS member_id "
                  "FROM match_candidates WHERE right_type = 'member_id' AND status = 'auto_merged'")
# Links between buyer ids of two platforms: true when both are the same member.
ACROSS = """
SELECT count(*) AS linked, sum(CASE WHEN a.member_id = b.member_id THEN 1 ELSE 0 END) AS correct
FROM match_candidates AS c
JOIN bench_buyers AS a ON a.buyer_type = c.left_type AND a.buyer_id = c.left_value
JOIN bench_buyers AS b ON b.buyer_type = c.right_type AND b.buyer_id = c.right_value
WHERE c.status = 'auto_merged'
"""


def score(engine, links: str) -> dict:
    row = engine.query(SCORE.format(links=links)).to_pylist()[0]
    linked, correct, total = (int(row[k] or 0) for k in ("linked", "correct", "members_among_buyers"))
    return {"linked": linked, "correct": correct, "precision": round(correct / linked, 5) if linked else None,
            "recall": round(correct / total, 5) if total else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--buyers", type=int, default=700_000)
    args = parser.parse_args()

    from jingzhun.engine import DuckDBEngine
    from jingzhun.identity.marketplace import link_marketplace_buyers
    from jingzhun.identity.matching_records import RECORDS

    with tempfile.TemporaryDirectory() as folder, DuckDBEngine(Path(folder) / "warehouse.duckdb") as engine:
        started = time.perf_counter()
        build(engine, args.members, args.buyers)
        built = time.perf_counter() - started

        started = time.perf_counter()
        result = link_marketplace_buyers(None, engine, RECORDS)
        jingzhun_seconds = time.perf_counter() - started

        started = time.perf_counter()
        engine.execute(HAND_WRITTEN)
        plain_seconds = time.perf_counter() - started

        statuses = engine.query("SELECT right_type = 'member_id' AS to_member, status, count(*) AS n "
                                "FROM match_candidates GROUP BY ALL ORDER BY ALL").to_pylist()
        print(json.dumps({
            "members": args.members, "buyers": args.buyers, "orders": engine.row_count("orders"),
            "build_seconds": round(built, 1),
            "jingzhun": {"seconds": round(jingzhun_seconds, 2), **score(engine, JINGZHUN_LINKS),
                         "across_platforms": engine.query(ACROSS).to_pylist()[0],
                         "candidates": statuses, "note": result.notes[-1][1]},
            "hand_written_unique_fit": {"seconds": round(plain_seconds, 2),
                                        **score(engine, "SELECT * FROM bench_plain")},
        }, ensure_ascii=False, default=str))


if __name__ == "__main__":
    main()
