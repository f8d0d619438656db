"""Benchmark: evaluating a 5-condition audience over 1M persons / 50M events, against hand-written SQL.

The claim measured (issue 5, "Done when"): an audience written in our rule language,
compiled by `build_rule_sql` and materialized through the DuckDB engine (what the
audience stage does with a definition), takes under 2 s over 1M persons and ~50M
events, and within 1.5x of the same audience hand-written in plain DuckDB SQL on a
plain `duckdb.connect` to the same file with the same threads and memory limit.

The audience (five conditions, a Chinese cosmetics retailer's typical brief):
  1. women aged 25-40 (person_traits);
  2. viewed cosmetics products at least 3 times in the last 30 days (events, JSON properties);
  3. spent at least 200 CNY on kept orders in the last 90 days (orders);
  4. do not hold the tag `churn_risk` (tags);
  5. reachable by phone or WeChat (identities).

Data: generated directly in DuckDB SQL (range(), hash-based pseudo-random values; no
Python loops) into a workspace warehouse created by `jingzhun.schema.migrate`: persons,
person_traits, identities, ~50 events per person over two years (Segment-shaped, JSON
properties, appended in time order as a collector loads them), orders and order lines
against a 5,000-product catalogue, record_persons (the ID graph's record owners), tags
with history and two runs of scores. Built once per size under --cache and reused; the
JSON reports the real row counts and the file size.

Both sides run in one process on the same DuckDB database (same threads, same memory
limit), alternating in rounds (A B, B A, ...) so a shared machine's load hits both
alike: one warm-up each, then --repeats timed runs; medians are compared. Ours is
`build_rule_sql` + `engine.materialize` (compile, render, CREATE TABLE AS); the
baseline is the hand-written CREATE TABLE AS. Both member lists must be equal (count
and an md5 over the sorted ids). --explain DIR writes EXPLAIN ANALYZE of both queries and
puts their costliest operators in the JSON.

Usage:
    python benchmarks/segments.py [--persons 1000000] [--events-per-person 50] [--repeats 5]
                                  [--cache DIR] [--explain DIR]
Prints one JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

GENERATOR_VERSION = 2  # bump when the data below changes: cached warehouses are rebuilt
SEED = 20251231
AS_OF = "2025-12-31 15:59:59+00"  # 23:59:59 on 31 December in Shanghai: the latest record
TIMEZONE = "Asia/Shanghai"

AUDIENCE = {"all": [
    {"all": [{"trait": "gender", "op": "=", "value": "F"},
             {"trait": "age", "op": "between", "value": [25, 40]}]},
    {"event": {"name": "Product Viewed", "where": [{"property": "category", "op": "=", "value": "cosmetics"}],
               "window": {"last": "30d"}, "count": {"op": ">=", "value": 3}}},
    {"order": {"window": {"last": "90d"}, "sum": {"field": "net_amount", "op": ">=", "value": 200}}},
    {"not": {"tag": "churn_risk"}},
    {"has_identifier": ["phone", "wechat_openid", "wechat_unionid"]},
]}

# The same audience as a DuckDB user writes it: semi-joins on HAVING groups, an anti-join,
# filters on person_traits first. Windows are (start, as_of], as the rule language's.
PLAIN_SQL = """
SELECT pt.person_id FROM person_traits AS pt
WHERE pt.gender = 'F' AND pt.age BETWEEN 25 AND 40
  AND pt.person_id IN (
    SELECT rp.person_id FROM events AS e
    JOIN record_persons AS rp ON rp.record_kind = 'event' AND rp.record_id = e.message_id
    WHERE e.event = 'Product Viewed' AND e.timestamp > {start_30d} AND e.timestamp <= {as_of}
      AND e.properties->>'$.category' = 'cosmetics'
    GROUP BY rp.person_id HAVING count(*) >= 3)
  AND pt.person_id IN (
    SELECT rp.person_id FROM orders AS o
    JOIN record_persons AS rp ON rp.record_kind = 'order' AND rp.record_id = o.order_id
    WHERE o.placed_at > {start_90d} AND o.placed_at <= {as_of}
      AND (o.status IS NULL OR o.status NOT IN ('cancelled', 'refunded'))
    GROUP BY rp.person_id HAVING sum(o.net_amount) >= 200)
  AND NOT EXISTS (SELECT 1 FROM tags AS t WHERE t.person_id = pt.person_id
                  AND t.tag_id = 'churn_risk' AND t.valid_to IS NULL)
  AND EXISTS (SELECT 1 FROM identities AS i WHERE i.person_id = pt.person_id
              AND i.id_type IN ('phone', 'wechat_openid', 'wechat_unionid'))
"""

# ---- data generation: DuckDB SQL only ----------------------------------------------------
# Every value is a function of (person key, item number, salt) through hash(), so the
# generator needs no state and no joins: u(...) is uniform in [0, 1).

CATEGORIES = ("cosmetics", "skincare", "apparel", "shoes", "bags", "beauty_tools", "home", "baby")
PER_CATEGORY = 625  # 5,000 products: product p is in category p % 8

MACROS = """
CREATE OR REPLACE TEMP MACRO u(a, b) AS hash(a, b, {seed}) / 18446744073709551616.0;
CREATE OR REPLACE TEMP MACRO u3(a, b, c) AS hash(a, b, c, {seed}) / 18446744073709551616.0;
CREATE OR REPLACE TEMP MACRO pid(key) AS printf('P%016x', hash(key, 'person', {seed}));
CREATE OR REPLACE TEMP MACRO cat_name(c) AS {categories}[c + 1];
CREATE OR REPLACE TEMP MACRO gender_of(key) AS
  CASE WHEN u(key, 1) < 0.03 THEN NULL WHEN u(key, 2) < 0.68 THEN 'F' ELSE 'M' END;
-- the favourite category: cosmetics and skincare for most women, apparel and shoes for men
CREATE OR REPLACE TEMP MACRO fav_of(key) AS CASE
  WHEN gender_of(key) = 'F' THEN [0, 0, 0, 0, 1, 1, 1, 2, 2, 3, 4, 5, 6, 7][1 + floor(14 * u(key, 3))::INT]
  ELSE [2, 2, 2, 3, 3, 4, 1, 6, 0, 7][1 + floor(10 * u(key, 3))::INT] END;
CREATE OR REPLACE TEMP MACRO member_of(key) AS u(key, 6) >= 0.45;
CREATE OR REPLACE TEMP MACRO anon_of(key) AS printf('a%015x', hash(key, 'device', {seed}) >> 4);
-- a category (the favourite, or any), then a product in it (popular ones more often)
CREATE OR REPLACE TEMP MACRO category_of(key, item, salt) AS
  CASE WHEN u3(key, item, salt) < 0.6 THEN fav_of(key) ELSE floor(8 * u3(key, item, salt + 1))::INT END;
CREATE OR REPLACE TEMP MACRO product_in(category, key, item, salt) AS
  category + 8 * floor({per_category} * pow(u3(key, item, salt), 2))::INT;
CREATE OR REPLACE TEMP MACRO price_of(p) AS
  round(exp(ln(19) + pow(u(p, 'price'), 1.4) * ln(1500 / 19)), 0)::DECIMAL(18, 2);
CREATE OR REPLACE TEMP MACRO brand_of(p) AS
  ['素野', '花西子', '完美日记', '珀莱雅', '薇诺娜', '雅诗兰黛', '兰蔻', '欧莱雅', '李宁', '安踏',
   '波司登', '太平鸟', 'UR', '优衣库', '小米', '名创优品', '全棉时代', '好孩子', '戴森', '飞利浦'][1 + (hash(p, 'brand') % 20)::INT];
CREATE OR REPLACE TEMP MACRO product_id(p) AS 'PRD' || lpad(p::VARCHAR, 6, '0');
CREATE OR REPLACE TEMP MACRO sku_of(p) AS 'SKU' || lpad(p::VARCHAR, 6, '0');
CREATE OR REPLACE TEMP MACRO barcode_of(p) AS '69' || lpad((hash(p, 'barcode') % 100000000000)::VARCHAR, 11, '0');
CREATE OR REPLACE TEMP MACRO back(days) AS
  TIMESTAMPTZ '{as_of}' - to_microseconds((days * 86400000000)::BIGINT);
"""

# One row per person with everything the other tables draw from. Activity: events per
# person log-normal (median ~ half the mean, a long tail of heavy users); the last active
# day skewed to the past (most retail customers lapse), activity spread over a span before it.
PERSONS_SQL = """
CREATE OR REPLACE TEMP TABLE gen_persons AS
SELECT key, pid(key) AS person_id, gender_of(key) AS gender,
  CASE WHEN u(key, 4) < 0.12 THEN NULL ELSE 18 + floor(47 * pow(u(key, 5), 1.4))::INT END AS age,
  floor(12 * pow(u(key, 7), 1.8))::INT AS city,
  CASE WHEN member_of(key) THEN ['普通', '普通', '普通', '银卡', '银卡', '金卡', '钻石'][1 + floor(7 * u(key, 8))::INT] END
    AS member_level,
  floor(exp(ln({events_per_person}) - 0.72
            + 1.2 * sqrt(-2 * ln(1 - u(key, 9))) * cos(2 * pi() * u(key, 10))))::INT AS n_events,
  730 * pow(u(key, 11), 2.2) AS recency,
  CASE WHEN u(key, 13) < 0.55 THEN 1 + floor(-ln(1 - u(key, 14)) * 3.5)::INT ELSE 0 END AS n_orders
FROM range({persons}) AS t(key);
CREATE OR REPLACE TEMP TABLE gen_persons AS SELECT *, (730 - recency) * u(key, 12) AS span FROM gen_persons;
"""

CITIES = """[('上海', '上海'), ('北京', '北京'), ('广东', '深圳'), ('广东', '广州'), ('浙江', '杭州'),
  ('四川', '成都'), ('江苏', '南京'), ('湖北', '武汉'), ('重庆', '重庆'), ('陕西', '西安'),
  ('江苏', '苏州'), ('湖南', '长沙')]"""

PORTRAIT_SQL = """
INSERT INTO persons BY NAME
SELECT person_id, 'active' AS status, back(recency + span + 30 * u(key, 20)) AS created_at FROM gen_persons;
INSERT INTO person_traits BY NAME
SELECT person_id, '会员' || (key % 997)::VARCHAR AS name, gender,
  CASE WHEN age IS NOT NULL THEN (DATE '{as_of_date}' - INTERVAL (age * 365 + floor(365 * u(key, 21))::INT) DAY)::DATE END
    AS birth_date, age,
  CASE WHEN age < 25 THEN '<25' WHEN age < 30 THEN '25-29' WHEN age < 35 THEN '30-34' WHEN age < 40 THEN '35-39'
       WHEN age < 50 THEN '40-49' WHEN age IS NOT NULL THEN '50+' END AS age_band,
  {cities}[city + 1][1] AS province, {cities}[city + 1][2] AS city,
  CASE WHEN member_level IS NOT NULL THEN 'M' || lpad(key::VARCHAR, 9, '0') END AS member_id, member_level,
  cat_name(fav_of(key)) AS favourite_category,
  u(key, 31) < 0.88 AS has_phone, u(key, 33) < 0.15 AS has_email, u(key, 32) < 0.55 AS has_wechat,
  TIMESTAMPTZ '{as_of}' AS as_of, TIMESTAMPTZ '{as_of}' AS computed_at
FROM gen_persons;
INSERT INTO identities BY NAME
SELECT id_type, id_value, person_id, strength FROM (
  SELECT 'phone' AS id_type, '+861' || lpad((hash(key, 'phone') % 10000000000)::VARCHAR, 10, '0') AS id_value,
    person_id, 'strong' AS strength FROM gen_persons WHERE u(key, 31) < 0.88
  UNION ALL SELECT 'wechat_openid', 'o' || substr(md5(key::VARCHAR || 'openid'), 1, 27), person_id, 'strong'
    FROM gen_persons WHERE u(key, 32) < 0.55
  UNION ALL SELECT 'wechat_unionid', 'u' || substr(md5(key::VARCHAR || 'unionid'), 1, 27), person_id, 'strong'
    FROM gen_persons WHERE u(key, 32) < 0.55 AND u(key, 34) < 0.7
  UNION ALL SELECT 'email', 'user' || key::VARCHAR || '@qq.com', person_id, 'strong' FROM gen_persons WHERE u(key, 33) < 0.15
  UNION ALL SELECT 'member_id', 'M' || lpad(key::VARCHAR, 9, '0'), person_id, 'strong' FROM gen_persons
    WHERE member_level IS NOT NULL
  UNION ALL SELECT 'anonymous_id', anon_of(key), person_id, 'weak' FROM gen_persons
);
"""

# Events come in visits of 8 (k // 8): a visit browses one category, at a time in the
# person's active span (later more often), 45 s between its events. Rows are appended in
# time order, as the collector loads its log.
EVENT_KIND = """CASE WHEN u3(key, k, 2) < 0.55 THEN 'Product Viewed' WHEN u3(key, k, 2) < 0.65 THEN 'Product Added'
  WHEN u3(key, k, 2) < 0.73 THEN 'Product List Viewed' WHEN u3(key, k, 2) < 0.78 THEN 'Products Searched'
  WHEN u3(key, k, 2) < 0.80 THEN 'Order Completed' END"""
EVENTS_SQL = """
INSERT INTO events BY NAME
SELECT md5(key::VARCHAR || '.' || k::VARCHAR) AS message_id,
  CASE WHEN kind IS NULL THEN 'page' ELSE 'track' END AS type, kind AS event,
  CASE WHEN kind IS NULL THEN ['首页', '分类', '商品详情', '购物车', '直播间'][1 + floor(5 * u3(key, k, 8))::INT] END AS name,
  CASE WHEN member_of(key) AND u3(key, k, 7) < 0.6 THEN 'M' || lpad(key::VARCHAR, 9, '0') END AS user_id,
  anon_of(key) AS anonymous_id, ts AS timestamp, ts AS original_timestamp, ts + INTERVAL 1 SECOND AS received_at,
  CASE WHEN u3(key, k, 6) < 0.45 THEN 'app' WHEN u3(key, k, 6) < 0.8 THEN 'miniprogram' ELSE 'web' END AS channel,
  CASE
    WHEN kind IN ('Product Viewed', 'Product Added') THEN json_object('product_id', product_id(p), 'sku', sku_of(p),
      'category', cat_name(p % 8), 'brand', brand_of(p), 'price', price_of(p), 'currency', 'CNY')
    WHEN kind = 'Product List Viewed' THEN json_object('list_id', cat_name(p % 8), 'category', cat_name(p % 8))
    WHEN kind = 'Products Searched' THEN json_object('query', brand_of(p) || ' ' || cat_name(p % 8))
    WHEN kind = 'Order Completed' THEN json_object('order_id', 'W' || (hash(key, k) % 100000000)::VARCHAR,
      'total', price_of(p), 'currency', 'CNY')
    ELSE json_object('path', '/products/' || product_id(p), 'title', brand_of(p))
  END::VARCHAR AS properties
FROM (
  SELECT key, k, ts, {kind} AS kind, product_in(category_of(key, k // 8, 3), key, k, 5) AS p
  FROM (SELECT key, k, back(recency + span * pow(u3(key, k // 8, 1), 1.5)) - to_seconds((7 - k % 8) * 45) AS ts
        FROM (SELECT key, recency, span, unnest(range(n_events)) AS k FROM gen_persons))
  ORDER BY ts
);
INSERT INTO record_persons BY NAME
SELECT 'event' AS record_kind, md5(key::VARCHAR || '.' || k::VARCHAR) AS record_id, pid(key) AS person_id
FROM (SELECT key, unnest(range(n_events)) AS k FROM gen_persons);
""".replace("{kind}", EVENT_KIND)

# Orders in the person's active span; lines against the catalogue (online lines carry the
# SKU, POS lines the barcode); order totals are the sum of their lines, less a coupon.
ORDERS_SQL = """
CREATE OR REPLACE TEMP TABLE gen_orders AS
SELECT row_number() OVER (ORDER BY ts) AS order_no, key, j, ts, u3(key, j, 22) < 0.72 AS online,
  1 + floor(3 * pow(u3(key, j, 23), 2.5))::INT AS n_lines
FROM (SELECT key, j, back(recency + span * pow(u3(key, j, 21), 1.5)) AS ts
      FROM (SELECT key, recency, span, unnest(range(n_orders)) AS j FROM gen_persons WHERE n_orders > 0));
CREATE OR REPLACE TEMP TABLE gen_items AS
SELECT order_no, line_no, online, p, 1 + floor(2 * pow(u3(order_no, line_no, 24), 3))::INT AS quantity
FROM (SELECT order_no, key, online, line_no,
        product_in(category_of(key, order_no * 8 + line_no, 25), key, order_no * 8 + line_no, 27) AS p
      FROM (SELECT order_no, key, online, unnest(range(1, n_lines + 1)) AS line_no FROM gen_orders));
INSERT INTO products BY NAME
SELECT product_id(p) AS product_id, sku_of(p) AS sku, barcode_of(p) AS barcode,
  brand_of(p) || ' ' || cat_name(p % 8) || ' ' || p::VARCHAR AS name, brand_of(p) AS brand,
  cat_name(p % 8) AS category, cat_name(p % 8) || '_' || (hash(p, 'sub') % 6)::VARCHAR AS subcategory,
  brand_of(p) || '_line_' || (hash(p, 'line') % 4)::VARCHAR AS product_line,
  price_of(p) AS price, round(price_of(p) * 0.4, 2) AS cost, 'CNY' AS currency,
  DATE '2022-01-01' + INTERVAL (hash(p, 'launch') % 1400) DAY AS launch_date,
  p % 8 IN (0, 1, 7) AS is_consumable, TIMESTAMPTZ '{as_of}' AS updated_at
FROM range({products}) AS t(p);
INSERT INTO order_items BY NAME
SELECT 'O' || lpad(order_no::VARCHAR, 10, '0') AS order_id, line_no, product_id(p) AS product_id,
  CASE WHEN online THEN sku_of(p) END AS sku, CASE WHEN NOT online THEN barcode_of(p) END AS barcode,
  quantity, price_of(p) AS unit_price, 0 AS discount, price_of(p) * quantity AS amount, 'CNY' AS currency
FROM gen_items ORDER BY order_no, line_no;
INSERT INTO orders BY NAME
SELECT 'O' || lpad(g.order_no::VARCHAR, 10, '0') AS order_id,
  CASE WHEN online THEN 'online' ELSE 'offline' END AS channel,
  CASE WHEN NOT online THEN 'pos'
       ELSE ['app', 'app', 'app', 'miniprogram', 'miniprogram', 'tmall', 'tmall', 'jd', 'douyin_shop', 'web']
            [1 + floor(10 * u3(key, j, 26))::INT] END AS platform,
  CASE WHEN NOT online THEN 'S' || lpad((1 + hash(key, 'store') % 120)::VARCHAR, 3, '0') END AS store_id,
  'member_id' AS customer_ref_type, 'M' || lpad(key::VARCHAR, 9, '0') AS customer_ref,
  ts AS placed_at, ts + INTERVAL 2 MINUTE AS paid_at,
  CASE WHEN u3(key, j, 27) < 0.84 THEN 'completed' WHEN u3(key, j, 27) < 0.87 THEN 'shipped'
       WHEN u3(key, j, 27) < 0.89 THEN 'paid' WHEN u3(key, j, 27) < 0.95 THEN 'refunded' ELSE 'cancelled' END AS status,
  'CNY' AS currency, gross AS gross_amount,
  CASE WHEN u3(key, j, 28) < 0.25 THEN round(gross * 0.1, 2) ELSE 0 END AS discount_amount,
  gross - CASE WHEN u3(key, j, 28) < 0.25 THEN round(gross * 0.1, 2) ELSE 0 END AS net_amount,
  CASE WHEN u3(key, j, 28) < 0.25 THEN 'CP' || (hash(key, j) % 1000000)::VARCHAR END AS coupon_code
FROM gen_orders AS g JOIN (SELECT order_no, sum(price_of(p) * quantity) AS gross FROM gen_items GROUP BY ALL) AS s
  USING (order_no)
ORDER BY g.order_no;
INSERT INTO record_persons BY NAME
SELECT 'order' AS record_kind, 'O' || lpad(order_no::VARCHAR, 10, '0') AS record_id, pid(key) AS person_id
FROM gen_orders;
"""

# Tags: current holdings (valid_to NULL) and closed history rows; two runs of two scores.
TAGS_SQL = """
INSERT INTO tags BY NAME
SELECT person_id, tag_id, 1 AS tag_version, value, valid_from, valid_to FROM (
  SELECT person_id, 'churn_risk' AS tag_id, 'true' AS value, back(greatest(recency - 90, 0)) AS valid_from, NULL AS valid_to
    FROM gen_persons WHERE (recency > 150 AND u(key, 40) < 0.9) OR u(key, 41) < 0.04
  UNION ALL SELECT person_id, 'churn_risk', 'true', back(200), back(50) FROM gen_persons
    WHERE recency < 60 AND u(key, 42) < 0.3
  UNION ALL SELECT person_id, 'high_value', 'true', back(30), NULL FROM gen_persons WHERE n_orders >= 5
  UNION ALL SELECT person_id, 'coupon_sensitive', 'true', back(60), NULL FROM gen_persons WHERE u(key, 43) < 0.25
  UNION ALL SELECT person_id, 'cosmetics_lover', 'true', back(14), NULL FROM gen_persons
    WHERE fav_of(key) = 0 AND u(key, 44) < 0.6
  UNION ALL SELECT person_id, 'member_level', member_level, back(90), NULL FROM gen_persons
    WHERE member_level IS NOT NULL
);
INSERT INTO scores BY NAME
SELECT person_id, model, 'v' || run::VARCHAR AS model_version,
  CASE model WHEN 'churn_90d' THEN 1 / (1 + exp(3 - recency / 40 + u3(key, run, 45)))
       ELSE 1 / (1 + exp(recency / 60 + u3(key, run, 46))) END AS score,
  back(7 * (2 - run)) AS computed_at
FROM gen_persons, (VALUES ('churn_90d'), ('purchase_propensity_30d')) AS m(model), range(1, 3) AS r(run);
"""

STEPS = (("persons", PERSONS_SQL), ("portrait and identities", PORTRAIT_SQL), ("events", EVENTS_SQL),
         ("orders", ORDERS_SQL), ("tags and scores", TAGS_SQL))
TABLES = ("persons", "person_traits", "identities", "events", "record_persons", "orders", "order_items",
          "products", "tags", "scores")


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def statements(script: str) -> list[str]:
    return [part.strip() for part in script.split(";\n") if part.strip()]


def fill(sql: str, persons: int, events_per_person: float) -> str:
    values = {"seed": SEED, "as_of": AS_OF, "as_of_date": AS_OF[:10], "persons": persons,
              "events_per_person": events_per_person, "categories": repr(list(CATEGORIES)),
              "per_category": PER_CATEGORY, "products": PER_CATEGORY * len(CATEGORIES), "cities": CITIES}
    for name, value in values.items():
        sql = sql.replace("{" + name + "}", str(value))
    return sql


def generate(folder: Path, persons: int, events_per_person: float) -> None:
    """A new workspace whose warehouse holds the generated tables, in our schema."""
    import duckdb

    from jingzhun.core import init_workspace, open_workspace
    from jingzhun.engine import default_memory_limit, open_engine
    from jingzhun.schema import migrate

    init_workspace(folder)
    with open_engine(open_workspace(folder)) as engine:
        migrate(engine)
    limit = default_memory_limit()  # sorting 50M events spills past it rather than crowd the machine
    with duckdb.connect(str(folder / "warehouse.duckdb"), config={"memory_limit": limit} if limit else {}) as con:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET enable_progress_bar = false")
        for statement in statements(fill(MACROS, persons, events_per_person)):
            con.execute(statement)
        for name, script in STEPS:
            began = time.perf_counter()
            for statement in statements(fill(script, persons, events_per_person)):
                con.execute(statement)
            say(f"  generated {name} in {time.perf_counter() - began:.1f} s")
        con.execute("CHECKPOINT")


def prepared_workspace(persons: int, events_per_person: float, cache: Path) -> Path:
    """The generated workspace of this size, built once under `cache` and reused."""
    root = cache / f"segments-v{GENERATOR_VERSION}-{persons}-e{events_per_person:g}"
    if (root / ".ready").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    say(f"generating {persons:,} persons, ~{events_per_person:g} events each, in {root}")
    began = time.perf_counter()
    generate(root, persons, events_per_person)
    (root / ".ready").write_text(json.dumps({"generation_seconds": round(time.perf_counter() - began, 1)}))
    return root


# ---- measuring ------------------------------------------------------------------------------

OURS_TABLE = "bench_audience_members"
PLAIN_TABLE = "bench_plain_audience_members"
MEMBERS_SQL = "SELECT count(*) AS n, md5(coalesce(string_agg(person_id, ',' ORDER BY person_id), '')) AS digest FROM {}"


def plain_sql(as_of: datetime) -> str:
    """The hand-written audience with its window bounds as UTC instants."""
    def instant(moment: datetime) -> str:
        return f"TIMESTAMPTZ '{moment.isoformat(sep=' ')}'"
    return PLAIN_SQL.format(as_of=instant(as_of), start_30d=instant(as_of - timedelta(days=30)),
                            start_90d=instant(as_of - timedelta(days=90)))


def latest_record(con) -> datetime:
    """as_of as the audience stage picks it by default: the latest event or order time."""
    from datetime import UTC

    micros = con.execute("SELECT epoch_us(greatest((SELECT max(timestamp) FROM events), "
                         "(SELECT max(placed_at) FROM orders)))").fetchall()[0][0]
    return datetime.fromtimestamp(micros / 1e6, tz=UTC)


def run_ours(engine, as_of: datetime) -> tuple[float, float]:
    """Compile the rule, render it and materialize the members: (total, compile) seconds."""
    from jingzhun.profiles.rules_compiler import build_rule_sql

    began = time.perf_counter()
    query = build_rule_sql(AUDIENCE, as_of=as_of, timezone=TIMEZONE)
    compiled = time.perf_counter()
    engine.materialize(OURS_TABLE, query)
    return time.perf_counter() - began, compiled - began


def run_plain(con, sql: str) -> float:
    began = time.perf_counter()
    con.execute(f"CREATE OR REPLACE TABLE {PLAIN_TABLE} AS {sql}")
    return time.perf_counter() - began


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed_rounds(engine, con, as_of: datetime, repeats: int) -> dict[str, list[float]]:
    """One warm-up each, then `repeats` rounds alternating which side goes first."""
    sql = plain_sql(as_of)
    runs: dict[str, list[float]] = {"ours": [], "compile": [], "plain": [], "ours_cpu": [], "plain_cpu": []}
    run_ours(engine, as_of)
    run_plain(con, sql)
    for round_no in range(repeats):
        for side in (("ours", "plain") if round_no % 2 == 0 else ("plain", "ours")):
            cpu = cpu_seconds()
            if side == "ours":
                seconds, compile_seconds = run_ours(engine, as_of)
                runs["compile"].append(compile_seconds)
            else:
                seconds = run_plain(con, sql)
            runs[side].append(seconds)
            runs[f"{side}_cpu"].append(cpu_seconds() - cpu)
        say(f"  round {round_no + 1}: ours {runs['ours'][-1]:.3f} s, plain {runs['plain'][-1]:.3f} s")
    return runs


def members(con, table: str) -> dict[str, object]:
    count, digest = con.execute(MEMBERS_SQL.format(table)).fetchall()[0]
    return {"members": count, "md5_sorted_ids": digest}


def condition_sizes(engine, as_of: datetime) -> dict[str, int]:
    """How many persons each top-level condition keeps on its own (untimed)."""
    from sqlglot import exp

    from jingzhun.profiles.rules_compiler import build_rule_sql

    names = ("women_25_40", "cosmetics_views_30d_ge_3", "net_spend_90d_ge_200", "not_churn_risk",
             "phone_or_wechat")
    sizes = {}
    for name, condition in zip(names, AUDIENCE["all"], strict=True):
        query = build_rule_sql(condition, as_of=as_of, timezone=TIMEZONE).subquery("m")
        counted = engine.query(exp.select(exp.func("count", exp.Star()).as_("n")).from_(query))
        sizes[name] = counted.column("n")[0].as_py()
    return sizes


def data_size(con, folder: Path) -> dict[str, object]:
    rows = {name: con.execute(f"SELECT count(*) FROM {name}").fetchall()[0][0] for name in TABLES}
    warehouse = folder / "warehouse.duckdb"
    return {"rows": rows, "warehouse_mb": round(warehouse.stat().st_size / 2**20)}


def explain(engine, con, as_of: datetime, target: Path) -> dict[str, object]:
    """EXPLAIN ANALYZE of both queries (as SELECTs) written to `target`; the costliest operators."""
    from jingzhun.profiles.rules_compiler import build_rule_sql

    target.mkdir(parents=True, exist_ok=True)
    ours = engine.render(build_rule_sql(AUDIENCE, as_of=as_of, timezone=TIMEZONE))
    found: dict[str, object] = {}
    for side, connection, sql in (("jingzhun", engine.connection, ours), ("plain", con, plain_sql(as_of))):
        plan = connection.execute(f"EXPLAIN ANALYZE {sql}").fetchall()[0][1]
        (target / f"{side}.txt").write_text(f"{sql}\n\n{plan}", encoding="utf-8")
        profile = json.loads(connection.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}").fetchall()[0][1])
        (target / f"{side}.json").write_text(json.dumps(profile, ensure_ascii=False, indent=1), encoding="utf-8")
        found[side] = costliest(profile)
    found["written_to"] = str(target)
    return found


def costliest(profile: dict, top: int = 8) -> dict[str, object]:
    """The operators that took the most time (own time, summed over threads) in a JSON profile."""
    rows, pending = [], list(profile["operator"])
    while pending:
        node = pending.pop()
        pending.extend(node.get("children", []))
        info = node.get("extra_info") or {}
        what = info.get("Table") or info.get("Conditions") or info.get("Aggregates") or info.get("Expression") or ""
        rows.append({"operator": node["name"], "on": str(what)[:120], "join": info.get("Join Type"),
                     "rows": node.get("intermediate_rows"), "seconds": round(node.get("timing", 0.0), 4)})
    total = sum(row["seconds"] for row in rows)
    rows.sort(key=lambda row: -row["seconds"])
    return {"operator_seconds_total": round(total, 3),
            "top": [{k: v for k, v in row.items() if v is not None} for row in rows[:top]]}


def measure(folder: Path, repeats: int, explain_dir: Path | None) -> dict[str, object]:
    import duckdb

    from jingzhun.core import open_workspace
    from jingzhun.engine import default_memory_limit, open_engine

    workspace = open_workspace(folder)
    settings = workspace.config.engine.duckdb
    # The plain connection gets exactly the config open_engine gives the engine's.
    config = {key: value for key, value in (("threads", settings.threads),
                                            ("memory_limit", settings.memory_limit or default_memory_limit()))
              if value}
    with open_engine(workspace) as engine, duckdb.connect(str(workspace.resolve(settings.path)), config=config) as con:
        con.execute("SET enable_progress_bar = false")
        as_of = latest_record(con)
        say(f"measuring at as_of {as_of.isoformat()}, {repeats} rounds after a warm-up")
        runs = timed_rounds(engine, con, as_of, repeats)
        ours, plain = members(con, OURS_TABLE), members(con, PLAIN_TABLE)
        differ = con.execute(f"SELECT count(*) FROM ((FROM {OURS_TABLE} EXCEPT FROM {PLAIN_TABLE}) "
                             f"UNION ALL (FROM {PLAIN_TABLE} EXCEPT FROM {OURS_TABLE}))").fetchall()[0][0]
        same = {"engine": engine.connection.execute("SELECT current_setting('threads'), "
                                                    "current_setting('memory_limit')").fetchall()[0],
                "plain": con.execute("SELECT current_setting('threads'), current_setting('memory_limit')").fetchall()[0]}
        result = {
            "as_of": as_of.isoformat(), "data": data_size(con, folder),
            "audience": {"rule": AUDIENCE, **ours, "same_members": ours == plain and differ == 0,
                         "plain_members": plain["members"], "condition_sizes": condition_sizes(engine, as_of)},
            "jingzhun": summary(runs["ours"], runs["ours_cpu"]) | {
                "compile_ms_median": round(statistics.median(runs["compile"]) * 1000, 1),
                "what": "build_rule_sql + engine.materialize (render, CREATE TABLE AS)"},
            "plain_duckdb": summary(runs["plain"], runs["plain_cpu"]) | {
                "what": "hand-written CREATE TABLE AS on a plain duckdb.connect"},
            "settings": {"threads_memory_engine": list(same["engine"]), "threads_memory_plain": list(same["plain"]),
                         "duckdb": duckdb.__version__},
        }
        if explain_dir is not None:
            result["explain_analyze"] = explain(engine, con, as_of, explain_dir)
        for table in (OURS_TABLE, PLAIN_TABLE):
            con.execute(f"DROP TABLE IF EXISTS {table}")
    return result


def summary(seconds: list[float], cpu: list[float]) -> dict[str, object]:
    return {"median_seconds": round(statistics.median(seconds), 3), "runs": [round(s, 3) for s in seconds],
            "median_cpu_seconds": round(statistics.median(cpu), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=1_000_000)
    parser.add_argument("--events-per-person", type=float, default=50.0)
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds after one warm-up (at least 3)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "jingzhun-bench-segments")
    parser.add_argument("--explain", type=Path, default=None, help="write EXPLAIN ANALYZE of both queries here")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    folder = prepared_workspace(args.persons, args.events_per_person, args.cache)
    result = measure(folder, max(args.repeats, 3), args.explain)
    ours, plain = result["jingzhun"]["median_seconds"], result["plain_duckdb"]["median_seconds"]
    ratio = ours / max(plain, 1e-9)
    print(json.dumps({
        "benchmark": "segments", "persons": args.persons, "events_per_person": args.events_per_person,
        "generation_seconds": json.loads((folder / ".ready").read_text())["generation_seconds"],
        **result, "ratio": round(ratio, 2),
        "targets": {"under_2_s": ours < 2.0, "within_1_5x": ratio <= 1.5},
        "load_average": [round(x, 2) for x in os.getloadavg()],  # the machine may be shared
    }, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
