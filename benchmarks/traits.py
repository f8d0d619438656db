"""Benchmark: the traits stage on the 20,000-person demo, against hand-written DuckDB SQL.

The claim measured (issue 4, item 4): `compute_traits` — every trait of every person,
by event time, RFM, and the long history table — runs on DuckDB through the engine
(sqlglot rendering, materialized `traits_*` steps) at a cost close to the same main
queries hand-written in plain DuckDB SQL (the ceiling: one connection, no rendering, no
intermediate tables, no history). Each side runs in its own process on its own copy of
the workspace, so peak RSS is its own.

OneID: if `jingzhun.identity.build_identity` exists it builds `record_persons`; else
(and with --truth-identity) `record_persons` and `persons` are built from the demo's
answer key (`demo-truth/identifiers.parquet`), and the JSON says which.

Usage:
    python benchmarks/traits.py [--demo /tmp/demo20k] [--keep DIR] [--truth-identity]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRUTH_IDS_SQL = """
CREATE OR REPLACE TABLE truth_ids AS
SELECT id_type, id_value, 'P' || LPAD(CAST(person_key AS VARCHAR), 8, '0') AS person_id
FROM read_parquet('{truth}/identifiers.parquet')
UNION ALL
SELECT 'wechat_oa_openid', openid, 'P' || LPAD(CAST(person_key AS VARCHAR), 8, '0')
FROM read_parquet('{truth}/social_wechat_openids.parquet')
"""
# Each record's first identifier the answer key knows, in a fixed order.
TRUTH_RECORDS_SQL = """
CREATE OR REPLACE TABLE record_persons AS
WITH ids AS (SELECT id_type, id_value, MIN(person_id) AS person_id FROM truth_ids GROUP BY ALL),
claims AS (
  SELECT 'event' AS record_kind, message_id AS record_id, 1 AS rank, 'member_id' AS id_type, user_id AS id_value FROM events
  UNION ALL SELECT 'event', message_id, 2, t, anonymous_id FROM events, (VALUES ('anonymous_id'), ('device_id'), ('wechat_openid')) v(t)
  UNION ALL SELECT 'order', order_id, 1, customer_ref_type, customer_ref FROM orders
  UNION ALL SELECT 'survey_response', response_id, 1, respondent_ref_type, respondent_ref FROM survey_responses
  UNION ALL SELECT 'source_record', record_id, k.rank, k.t, identifiers->>('$.' || k.t) FROM source_records,
    (VALUES (1, 'member_id'), (2, 'phone'), (3, 'wechat_unionid'), (4, 'douyin_user_id'), (5, 'weibo_user_id'),
            (6, 'wechat_oa_openid')) k(rank, t)
)
SELECT record_kind, record_id, arg_min(ids.person_id, rank) AS person_id
FROM claims JOIN ids USING (id_type, id_value) GROUP BY record_kind, record_id
"""
TRUTH_PERSONS_SQL = """
INSERT INTO persons (person_id, status, created_at)
SELECT DISTINCT person_id, 'active', TIMESTAMPTZ '2024-11-01 00:00:00+00' FROM truth_ids
"""
TRUTH_IDENTITIES_SQL = """
INSERT INTO identities (id_type, id_value, person_id, strength)
SELECT id_type, id_value, MIN(person_id), 'strong' FROM truth_ids GROUP BY ALL
"""

# The ceiling: the same main traits in one hand-written DuckDB statement (DuckDB-only
# idioms: arg_max, mode, QUALIFY, list quantiles, MATERIALIZED CTEs), simpler rules (no
# per-attribute source fallback, unweighted picks, plain NTILE), no sqlglot, no
# intermediate tables, no history table.
PLAIN_SQL = """
CREATE OR REPLACE TABLE plain_person_traits AS
WITH p AS (SELECT person_id FROM persons WHERE status = 'active'),
rp AS (SELECT * FROM record_persons WHERE person_id IN (SELECT person_id FROM p)),
ev AS MATERIALIZED (
  SELECT rp.person_id, e.message_id, e.timestamp AS ts, (e.timestamp AT TIME ZONE 'Asia/Shanghai')::DATE AS day,
    e.type, e.event, e.channel, coalesce(e.anonymous_id, e.user_id) AS stream,
    e.properties->>'$.category' AS category, TRY_CAST(e.properties->>'$.price' AS DOUBLE) AS price,
    CASE WHEN lower(e.context->>'$.os.name') = 'ios' OR e.context->>'$.userAgent' LIKE '%iPhone%' THEN 'ios'
         WHEN lower(e.context->>'$.os.name') = 'android' OR e.context->>'$.userAgent' LIKE '%Android%' THEN 'android'
         WHEN e.context->>'$.userAgent' LIKE '%Windows%' OR e.context->>'$.userAgent' LIKE '%Macintosh%' THEN 'pc'
         ELSE 'other' END AS device
  FROM events e JOIN rp ON rp.record_kind = 'event' AND rp.record_id = e.message_id
  WHERE e.timestamp <= $as_of
),
od AS MATERIALIZED (
  SELECT rp.person_id, o.order_id, o.placed_at AS ts, (o.placed_at AT TIME ZONE 'Asia/Shanghai')::DATE AS day,
    coalesce(o.platform, 'pos') AS platform, o.channel, o.store_id, o.status, o.net_amount AS amount,
    o.coupon_code IS NOT NULL AS coupon, h.day IS NOT NULL AS holiday
  FROM orders o JOIN rp ON rp.record_kind = 'order' AND rp.record_id = o.order_id
  LEFT JOIN plain_holidays h ON h.day = (o.placed_at AT TIME ZONE 'Asia/Shanghai')::DATE
  WHERE o.placed_at <= $as_of AND o.status <> 'cancelled'
),
social AS (
  SELECT rp.person_id, count(*) FILTER (s.kind = 'livestream_view' AND s.occurred_at > $as_of - INTERVAL 90 DAY) AS live,
    count(*) FILTER (s.kind = 'interaction' AND s.occurred_at > $as_of - INTERVAL 90 DAY) AS social_interactions_90d,
    bool_or(s.kind = 'follow' AND s.attributes->>'$.unfollowed_at' IS NULL) AS follows_official_account,
    arg_max(s.attributes->>'$.gender', s.occurred_at) AS social_gender
  FROM source_records s JOIN rp ON rp.record_kind = 'source_record' AND rp.record_id = s.record_id
  WHERE s.kind IN ('follow', 'interaction', 'livestream_view') AND s.occurred_at <= $as_of GROUP BY ALL
),
identify AS (
  SELECT rp.person_id, arg_max(e.traits, e.timestamp) AS doc
  FROM events e JOIN rp ON rp.record_kind = 'event' AND rp.record_id = e.message_id
  WHERE e.type = 'identify' AND e.timestamp <= $as_of GROUP BY ALL
),
reach AS (
  SELECT person_id, bool_or(id_type = 'phone') AS has_phone, bool_or(id_type = 'email') AS has_email,
    bool_or(id_type LIKE 'wechat%') AS has_wechat FROM identities GROUP BY ALL
),
terciles AS (
  SELECT category, quantile_cont(price::DOUBLE, [1 / 3, 2 / 3]) AS q FROM products GROUP BY ALL
),
band AS (
  SELECT od.person_id, CASE WHEN avg(CASE WHEN i.unit_price <= t.q[1] THEN 0 WHEN i.unit_price > t.q[2] THEN 2 ELSE 1 END)
      < 2 / 3 THEN 'low' WHEN avg(CASE WHEN i.unit_price <= t.q[1] THEN 0 WHEN i.unit_price > t.q[2] THEN 2 ELSE 1 END)
      > 4 / 3 THEN 'high' ELSE 'mid' END AS price_band
  FROM od JOIN order_items i USING (order_id) JOIN products pr ON pr.sku = i.sku OR pr.barcode = i.barcode
  JOIN terciles t ON t.category = pr.category WHERE od.status <> 'refunded' GROUP BY ALL
),
crm AS (
  SELECT rp.person_id, arg_max(s.attributes, s.occurred_at) AS doc, min(s.occurred_at) AS member_since
  FROM source_records s JOIN rp ON rp.record_kind = 'source_record' AND rp.record_id = s.record_id
  WHERE s.kind = 'member' GROUP BY ALL
),
survey AS (
  SELECT rp.person_id, arg_max(r.answers, r.submitted_at) AS doc
  FROM survey_responses r JOIN rp ON rp.record_kind = 'survey_response' AND rp.record_id = r.response_id GROUP BY ALL
),
act AS (
  SELECT person_id, min(ts) AS first_seen_at, max(ts) AS last_seen_at, count(*) AS events_total,
    count(DISTINCT day) FILTER (ts > $as_of - INTERVAL 30 DAY) AS active_days_30d,
    count(DISTINCT day) FILTER (ts > $as_of - INTERVAL 90 DAY) AS active_days_90d,
    count(*) FILTER (ts > $as_of - INTERVAL 90 DAY AND type IN ('page', 'screen')) AS page_views_90d,
    count(*) FILTER (ts > $as_of - INTERVAL 90 DAY AND event = 'Product Viewed') AS product_views_90d,
    count(*) FILTER (ts > $as_of - INTERVAL 90 DAY AND event = 'Product Added') AS cart_adds_90d,
    mode(device) AS device_type
  FROM ev GROUP BY ALL
),
sess AS (
  SELECT person_id, count(*) FILTER (gap IS NULL OR gap > INTERVAL 30 MINUTE) AS sessions_90d
  FROM (SELECT person_id, ts - lag(ts) OVER (PARTITION BY person_id, stream ORDER BY ts) AS gap
        FROM ev WHERE ts > $as_of - INTERVAL 90 DAY) GROUP BY ALL
),
fav AS (
  SELECT person_id, category AS favourite_category FROM ev WHERE category IS NOT NULL
  GROUP BY person_id, category
  QUALIFY row_number() OVER (PARTITION BY person_id ORDER BY count(*) DESC, category) = 1
),
buy AS (
  SELECT person_id, count(*) FILTER (status <> 'refunded') AS orders_total,
    sum(amount) FILTER (status <> 'refunded') AS gmv_total,
    count(*) FILTER (status = 'refunded') / count(*) AS refund_rate,
    max(ts) FILTER (status <> 'refunded') AS last_order_at,
    mode(platform) AS preferred_channel, mode(store_id) AS preferred_store_id,
    avg((channel = 'online')::INT) AS online_order_share, avg(coupon::INT) AS coupon_order_share,
    avg(holiday::INT) AS holiday_order_share
  FROM od GROUP BY ALL
),
rfm AS (
  SELECT person_id, ntile(5) OVER (ORDER BY last_order_at) AS rfm_r, ntile(5) OVER (ORDER BY orders_total) AS rfm_f,
    ntile(5) OVER (ORDER BY gmv_total) AS rfm_m,
    CASE WHEN gmv_total > avg(gmv_total) OVER () THEN 'important_' ELSE 'general_' END ||
    CASE WHEN epoch(last_order_at) > avg(epoch(last_order_at)) OVER () AND orders_total > avg(orders_total) OVER () THEN 'value'
         WHEN epoch(last_order_at) > avg(epoch(last_order_at)) OVER () THEN 'develop'
         WHEN orders_total > avg(orders_total) OVER () THEN 'keep' ELSE 'retain' END AS rfm_class
  FROM buy WHERE orders_total > 0
)
SELECT p.person_id, crm.doc->>'$.name' AS name,
  coalesce(crm.doc->>'$.gender', identify.doc->>'$.gender', social.social_gender) AS gender,
  crm.doc->>'$.city' AS city, coalesce(crm.doc->>'$.level', identify.doc->>'$.member_level') AS member_level,
  date_diff('year', TRY_CAST(crm.doc->>'$.birthday' AS DATE), $as_of::DATE) AS age,
  crm.member_since, survey.doc->>'$.income' AS income_band, survey.doc->>'$.job' AS job,
  act.* EXCLUDE (person_id), sess.sessions_90d, fav.favourite_category, buy.* EXCLUDE (person_id),
  band.price_band, rfm.* EXCLUDE (person_id), social.* EXCLUDE (person_id, social_gender), reach.* EXCLUDE (person_id)
FROM p LEFT JOIN crm USING (person_id) LEFT JOIN survey USING (person_id) LEFT JOIN act USING (person_id)
LEFT JOIN sess USING (person_id) LEFT JOIN fav USING (person_id) LEFT JOIN buy USING (person_id)
LEFT JOIN rfm USING (person_id) LEFT JOIN social USING (person_id) LEFT JOIN identify USING (person_id)
LEFT JOIN reach USING (person_id) LEFT JOIN band USING (person_id)
"""


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def copy_demo(demo: Path, target: Path) -> Path:
    """A private copy of the demo workspace without its source files."""
    shutil.copytree(demo, target, ignore=shutil.ignore_patterns("data", "log", "demo-truth"))
    (target / "demo-truth").symlink_to(demo / "demo-truth")
    return target


def identity_available() -> bool:
    try:
        from jingzhun.identity import build_identity  # noqa: F401
    except ImportError:
        return False
    return True


def prepare(folder: Path, use_truth: bool) -> str:
    """Give the copy `record_persons` and `persons`: from build_identity or the truth."""
    import duckdb

    from jingzhun.core import open_workspace
    from jingzhun.engine import open_engine
    from jingzhun.schema import migrate

    workspace = open_workspace(folder)
    with open_engine(workspace) as engine:
        migrate(engine)
        if not use_truth and identity_available():
            from jingzhun.identity import build_identity

            build_identity(workspace, engine)
            return "build_identity"
    with duckdb.connect(str(folder / "warehouse.duckdb")) as con:
        truth = folder / "demo-truth"
        for statement in (TRUTH_IDS_SQL.format(truth=truth), "DELETE FROM persons", "DELETE FROM identities",
                          TRUTH_PERSONS_SQL, TRUTH_IDENTITIES_SQL):
            con.execute(statement)
        con.execute("DROP TABLE IF EXISTS record_persons")
        con.execute(TRUTH_RECORDS_SQL)
    return "demo-truth identifiers.parquet"


def run_jingzhun(folder: Path) -> dict[str, object]:
    from jingzhun.core import open_workspace
    from jingzhun.engine import open_engine
    from jingzhun.profiles import compute_traits

    workspace = open_workspace(folder)
    with open_engine(workspace) as engine:
        began = time.perf_counter()
        result = compute_traits(workspace, engine)
        seconds = time.perf_counter() - began
        again = time.perf_counter()
        rerun = compute_traits(workspace, engine)  # same data: history untouched
        rerun_seconds = time.perf_counter() - again
        classes = engine.query("SELECT rfm_class, COUNT(*) AS n FROM person_traits "
                               "WHERE rfm_class IS NOT NULL GROUP BY 1 ORDER BY 1").to_pylist()
    history = result.step_seconds["traits"]
    return {"seconds": round(seconds, 2), "portrait_seconds": round(seconds - history, 2),
            "history_seconds": round(history, 2), "rerun_seconds": round(rerun_seconds, 2),
            "rerun_history_seconds": rerun.step_seconds["traits"],
            "step_seconds": result.step_seconds,
            "persons": result.tables["person_traits"], "trait_rows": result.tables["traits"],
            "rerun_history_changes": rerun.tables["traits"], "as_of": result.as_of.isoformat(),
            "rfm_classes": {row["rfm_class"]: row["n"] for row in classes},
            "peak_rss_mb": round(peak_rss_mb())}


def run_plain(folder: Path) -> dict[str, object]:
    import duckdb

    from jingzhun.profiles.traits_calendar import holiday_table

    with duckdb.connect(str(folder / "warehouse.duckdb")) as con:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET enable_progress_bar = false")
        as_of = con.execute("SELECT greatest((SELECT max(timestamp) FROM events), "
                            "(SELECT max(placed_at) FROM orders))").fetchall()[0][0]
        days = holiday_table(1969, as_of.year + 1)  # the same calendar, built before the clock starts
        con.register("days", days)
        began = time.perf_counter()
        con.execute("CREATE OR REPLACE TABLE plain_holidays AS SELECT * FROM days")
        con.execute(PLAIN_SQL.replace("$as_of", f"TIMESTAMPTZ '{as_of.isoformat()}'"))
        seconds = time.perf_counter() - began
        persons = con.execute("SELECT COUNT(*) FROM plain_person_traits").fetchone()[0]
    return {"seconds": round(seconds, 2), "persons": persons, "peak_rss_mb": round(peak_rss_mb())}


def child(side: str, folder: Path) -> dict[str, object]:
    """Run one side in a fresh process (so ru_maxrss is its own); return its JSON line."""
    out = subprocess.run([sys.executable, __file__, "--child", side, "--keep", str(folder)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{side} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--demo", type=Path, default=Path("/tmp/demo20k"))
    parser.add_argument("--keep", type=Path, default=None)
    parser.add_argument("--truth-identity", action="store_true")
    parser.add_argument("--child", choices=["prepare", "prepare-truth", "jingzhun", "plain"], default=None)
    args = parser.parse_args()
    if args.child:
        if args.child.startswith("prepare"):
            print(json.dumps({"record_persons_from": prepare(args.keep, args.child == "prepare-truth")}))
        else:
            print(json.dumps(run_jingzhun(args.keep) if args.child == "jingzhun" else run_plain(args.keep)))
        return
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-traits-"))
    base = copy_demo(args.demo, root / "base")
    prepared = child("prepare-truth" if args.truth_identity else "prepare", base)
    sides = {}
    for side in ("jingzhun", "plain"):
        folder = root / side
        shutil.copytree(base, folder, symlinks=True)
        sides[side] = child(side, folder)
    plain = max(sides["plain"]["seconds"], 1e-9)
    print(json.dumps({"benchmark": "traits", "demo": str(args.demo), **prepared,
                      "jingzhun": sides["jingzhun"], "plain_duckdb": sides["plain"],
                      "time_ratio": round(sides["jingzhun"]["seconds"] / plain, 2),
                      "time_ratio_without_history": round(sides["jingzhun"]["portrait_seconds"] / plain, 2),
                      "load_average": list(os.getloadavg())}, ensure_ascii=False, indent=2))
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
