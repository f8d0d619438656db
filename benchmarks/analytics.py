"""Benchmark: analytics over 1M persons / 50M events / 2M orders, each beside hand-written DuckDB SQL.

The claim measured (issue 6, "Done when"): the cube and the root-cause drill-down, compiled
by jingzhun and run through the DuckDB engine, give the same result as an analyst's
hand-written DuckDB query in the same run, in comparable time.

Measurements (one `Measurement` each; a new analysis is one more entry in MEASUREMENTS):
  cube        GMV, buyers, AOV, product views and conversion by month × gender over 2025-Q4
              (orders + record_persons + person_traits, and 50M events for views and visitors);
              the baseline is three CTEs per fact over their keys, as written by hand.
  root_cause  product views on the planted spike day against the 14 days before, drilled
              by Adtributor over 8 dimensions (GROUPING SETS per level); the baseline is a
              hand-written UNION ALL of per-dimension GROUP BYs per level, scored by the same
              Python. Both must name the planted product.
  association_rules  pair rules (support, confidence, lift, leverage, conviction) over 2.2M
              baskets at subcategory level, from `benchmarks/analytics_rules.py` (which also
              runs alone, with triples and the product level); the baseline is its hand-written
              Apriori-by-self-join query.

Data: the generator of `benchmarks/segments.py` (imported; 1M persons, ~50 events each,
~2.2M orders, 5,000 products), built once under --cache, plus a planted livestream spike
(`plant_spike`): on SPIKE_DAY from 20:00 local, SPIKE_VIEWS extra `Product Viewed` events of
one product launched 9 days before, from persons who were active anyway.

Both sides run in one process on the same DuckDB file (same threads and memory limit),
alternating in rounds (A B, B A, ...): one warm-up each, then --repeats timed runs;
medians are compared, and the results must be equal (`jingzhun.engine.parity`).

Usage:
    python benchmarks/analytics.py [--persons 1000000] [--events-per-person 50] [--repeats 3] [--cache DIR]
Prints one JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).parent))
import analytics_rules  # noqa: E402  (the association-rules measurement)

import segments  # noqa: E402  (the data builder and its cache)

TIMEZONE = segments.TIMEZONE
SPIKE_VERSION = 1  # bump when the planted spike changes
SPIKE_DAY = date(2025, 12, 20)
SPIKE_PRODUCT = "PRD004321"
SPIKE_VIEWS = 150_000
CUBE_PERIOD = "2025-Q4"
ROOT_CAUSE_DIMENSIONS = ["platform", "province", "gender", "age_band", "member_level", "category", "brand", "product"]

# On SPIKE_DAY, 20:00-23:00 Shanghai, SPIKE_VIEWS app views of SPIKE_PRODUCT by persons active that
# year; the product's launch date moves to 9 days before (a new item in a livestream).
SPIKE_SQL = """
CREATE OR REPLACE TEMP TABLE spike_people AS
SELECT n, person_id FROM (SELECT row_number() OVER (ORDER BY hash(person_id, 'spike')) - 1 AS n, person_id
                          FROM person_traits) WHERE n < {people};
CREATE OR REPLACE TEMP TABLE spike AS
SELECT 'spike-' || k::VARCHAR AS message_id, sp.person_id,
  TIMESTAMPTZ '{day} 12:00:00+00' + to_microseconds((hash(k, 'ts') % 10800000000)::BIGINT) AS ts
FROM range({views}) AS t(k) JOIN spike_people AS sp ON sp.n = k % (SELECT count(*) FROM spike_people);
INSERT INTO events BY NAME
SELECT message_id, 'track' AS type, 'Product Viewed' AS event, ts AS timestamp, ts AS original_timestamp,
  ts + INTERVAL 1 SECOND AS received_at, 'app' AS channel,
  json_object('product_id', '{product}', 'category', p.category, 'brand', p.brand, 'currency', 'CNY')::VARCHAR
    AS properties
FROM spike, (SELECT category, brand FROM products WHERE product_id = '{product}') AS p;
INSERT INTO record_persons BY NAME SELECT 'event' AS record_kind, message_id AS record_id, person_id FROM spike;
UPDATE products SET launch_date = DATE '{launch}' WHERE product_id = '{product}'
"""


def plant_spike(folder: Path) -> None:
    """Add the livestream spike to the generated warehouse (once per SPIKE_VERSION)."""
    import duckdb

    marker = folder / f".spike-v{SPIKE_VERSION}"
    if marker.exists():
        return
    sql = SPIKE_SQL.format(day=SPIKE_DAY, views=SPIKE_VIEWS, people=SPIKE_VIEWS // 2, product=SPIKE_PRODUCT,
                           launch=SPIKE_DAY - timedelta(days=9))
    with duckdb.connect(str(folder / "warehouse.duckdb")) as con:
        con.execute("SET TimeZone = 'UTC'")
        for statement in segments.statements(sql):
            con.execute(statement)
        con.execute("CHECKPOINT")
    marker.write_text(json.dumps({"day": str(SPIKE_DAY), "product": SPIKE_PRODUCT, "views": SPIKE_VIEWS}))


# ---- what is measured ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    """One analysis and its hand-written baseline; both return a table to compare."""

    name: str
    what: str
    ours: Callable[[object], pd.DataFrame]  # gets the DuckDB engine
    plain: Callable[[object], pd.DataFrame]  # gets a plain duckdb connection
    summary: Callable[[pd.DataFrame], dict] = lambda frame: {"rows": len(frame)}


def _utc_bounds(first: date, last: date) -> tuple[str, str]:
    zone = ZoneInfo(TIMEZONE)
    start = datetime.combine(first, clock(), tzinfo=zone).astimezone(UTC)
    stop = datetime.combine(last + timedelta(days=1), clock(), tzinfo=zone).astimezone(UTC)
    return f"TIMESTAMPTZ '{start.isoformat(sep=' ')}'", f"TIMESTAMPTZ '{stop.isoformat(sep=' ')}'"


CUBE_MEASURES = ("gmv", "buyers", "aov", "views", "conversion")


def cube_ours(engine) -> pd.DataFrame:
    from jingzhun.analytics import CubeQuery, run_cube

    query = CubeQuery(measures=CUBE_MEASURES, by=("month", "gender"), period=CUBE_PERIOD)
    return run_cube(engine, query, TIMEZONE).frame


CUBE_PLAIN = """
WITH o AS (
  SELECT CAST(date_trunc('month', CAST(o.placed_at AT TIME ZONE '{tz}' AS DATE)) AS DATE) AS month, pt.gender,
         sum(o.net_amount) AS gmv, count(DISTINCT o.order_id) AS orders, count(DISTINCT rp.person_id) AS buyers,
         count(DISTINCT CASE WHEN o.platform IN ('web', 'app', 'miniprogram') THEN rp.person_id END) AS tracked_buyers
  FROM orders o
  LEFT JOIN record_persons rp ON rp.record_kind = 'order' AND rp.record_id = o.order_id
  LEFT JOIN person_traits pt ON pt.person_id = rp.person_id
  WHERE (o.status IS NULL OR o.status NOT IN ('cancelled', 'refunded')) AND o.placed_at >= {start} AND o.placed_at < {stop}
  GROUP BY ALL),
v AS (
  SELECT CAST(date_trunc('month', CAST(e.timestamp AT TIME ZONE '{tz}' AS DATE)) AS DATE) AS month, pt.gender,
         count(*) AS views
  FROM events e
  LEFT JOIN record_persons rp ON rp.record_kind = 'event' AND rp.record_id = e.message_id
  LEFT JOIN person_traits pt ON pt.person_id = rp.person_id
  WHERE e.event = 'Product Viewed' AND e.timestamp >= {start} AND e.timestamp < {stop}
  GROUP BY ALL),
e AS (
  SELECT CAST(date_trunc('month', CAST(e.timestamp AT TIME ZONE '{tz}' AS DATE)) AS DATE) AS month, pt.gender,
         count(DISTINCT rp.person_id) AS visitors
  FROM events e
  LEFT JOIN record_persons rp ON rp.record_kind = 'event' AND rp.record_id = e.message_id
  LEFT JOIN person_traits pt ON pt.person_id = rp.person_id
  WHERE e.timestamp >= {start} AND e.timestamp < {stop}
  GROUP BY ALL),
k AS (SELECT month, gender FROM o UNION SELECT month, gender FROM v UNION SELECT month, gender FROM e)
SELECT k.month, k.gender, o.gmv, o.buyers, o.gmv::DOUBLE / nullif(o.orders, 0) AS aov, v.views,
       o.tracked_buyers::DOUBLE / nullif(e.visitors, 0) AS conversion
FROM k
LEFT JOIN o ON o.month = k.month AND o.gender IS NOT DISTINCT FROM k.gender
LEFT JOIN v ON v.month = k.month AND v.gender IS NOT DISTINCT FROM k.gender
LEFT JOIN e ON e.month = k.month AND e.gender IS NOT DISTINCT FROM k.gender
ORDER BY k.month, k.gender
"""


def cube_plain(con) -> pd.DataFrame:
    from jingzhun.analytics import parse_period

    period = parse_period(CUBE_PERIOD)
    start, stop = _utc_bounds(period.start, period.end)
    from jingzhun.analytics.cube import to_frame

    return to_frame(con.sql(CUBE_PLAIN.format(tz=TIMEZONE, start=start, stop=stop)).to_arrow_table())


ROOT_CAUSE_BASE = f"{SPIKE_DAY - timedelta(days=14)}..{SPIKE_DAY - timedelta(days=1)}"


def root_cause_ours(engine) -> pd.DataFrame:
    from jingzhun.analytics import find_root_cause

    analysis = find_root_cause(engine, "views", str(SPIKE_DAY), ROOT_CAUSE_BASE, ROOT_CAUSE_DIMENSIONS,
                               timezone=TIMEZONE)
    return analysis.frame.assign(reading=" | ".join(analysis.reading_lines("en")))


# The spike's views by hand: one CTE of the rows with every dimension, one GROUP BY per dimension.
PLAIN_COLUMNS = {"platform": "e.channel", "province": "pt.province", "gender": "pt.gender",
                 "age_band": "pt.age_band", "member_level": "pt.member_level", "category": "pr.category",
                 "brand": "pr.brand", "product": "e.properties->>'$.product_id'"}
ROOT_CAUSE_PLAIN = """
WITH v AS (
  SELECT CASE WHEN e.timestamp >= {current_start} THEN 'current' ELSE 'base' END AS side, {columns}
  FROM events e
  LEFT JOIN record_persons rp ON rp.record_kind = 'event' AND rp.record_id = e.message_id
  LEFT JOIN person_traits pt ON pt.person_id = rp.person_id
  LEFT JOIN (SELECT product_id, min(category) AS category, min(brand) AS brand FROM products GROUP BY product_id) pr
    ON pr.product_id = e.properties->>'$.product_id'
  WHERE e.event = 'Product Viewed' AND e.timestamp >= {base_start} AND e.timestamp < {current_stop}),
f AS (SELECT * FROM v {where})
SELECT dimension, value, side, sum(n) AS views FROM (
  {branches}
  UNION ALL SELECT '(total)', '(total)', side, count(*) FROM f GROUP BY side)
GROUP BY ALL
"""


def root_cause_plain(con) -> pd.DataFrame:
    from jingzhun.analytics import Thresholds, parse_period
    from jingzhun.analytics.measures import MEASURES
    from jingzhun.analytics.root_cause import _frame, _readings, drill

    current, base = parse_period(str(SPIKE_DAY)), parse_period(ROOT_CAUSE_BASE)
    base_start, _ = _utc_bounds(base.start, base.end)
    current_start, current_stop = _utc_bounds(current.start, current.end)

    def fetch(filters: dict[str, str], dims: list[str]) -> tuple[pd.DataFrame, str]:
        where = " AND ".join(f"{name} = '{value}'" for name, value in filters.items())
        branches = "\n  UNION ALL ".join(
            f"SELECT '{d}' AS dimension, coalesce(CAST({d} AS VARCHAR), '(none)') AS value, side, count(*) AS n "
            f"FROM f GROUP BY ALL" for d in dims)
        sql = ROOT_CAUSE_PLAIN.format(
            columns=", ".join(f"{expr} AS {name}" for name, expr in PLAIN_COLUMNS.items()),
            current_start=current_start, base_start=base_start, current_stop=current_stop,
            where=f"WHERE {where}" if where else "", branches=branches)
        return con.execute(sql).fetch_df(), sql

    result = drill(MEASURES["views"], list(ROOT_CAUSE_DIMENSIONS), current, base, fetch, Thresholds())
    ids = sorted({v for level in result.levels for c in level.candidates if c["dimension"] == "product"
                  for v in c["elements"]} | {lv.filters["product"] for lv in result.levels if "product" in lv.filters})
    listed = ", ".join(f"'{i}'" for i in ids) or "NULL"
    products = con.execute(f"SELECT product_id, min(name) AS name, CAST(min(launch_date) AS DATE) AS launch_date "
                           f"FROM products WHERE product_id IN ({listed}) GROUP BY product_id").fetch_df()
    products["launch_date"] = [d.date() if hasattr(d, "date") else d for d in products["launch_date"]]
    frame = _frame(result, products, current, Thresholds())
    readings = _readings(MEASURES["views"], result, frame, current, base, Thresholds())
    return frame.assign(reading=" | ".join(en for _, en in readings))


def root_cause_summary(frame: pd.DataFrame) -> dict:
    top = frame[(frame["level"] == 1) & frame["in_explanation"]].iloc[0]
    return {"rows": len(frame), "top_cause": f"{top['dimension']}={top['value']}",
            "explanatory_power": round(float(top["explanatory_power"]), 3),
            "days_since_launch": None if pd.isna(top["days_since_launch"]) else int(top["days_since_launch"]),
            "found_planted_product": bool(top["value"] == SPIKE_PRODUCT), "readings": frame["reading"].iloc[0]}


def _rules_comparable(frame: pd.DataFrame) -> pd.DataFrame:
    """Infinite conviction (confidence 1) as NULL, as the hand-written SQL gives it."""
    return frame.assign(conviction=frame["conviction"].replace(float("inf"), None))


def rules_summary(frame: pd.DataFrame) -> dict:
    best = frame.sort_values("lift", ascending=False).iloc[0] if len(frame) else None
    return {"rules": len(frame), "top_lift_rule": None if best is None else
            f"{best['antecedent']} → {best['consequent']} (lift {float(best['lift']):.2f})"}


MEASUREMENTS: list[Measurement] = [
    Measurement("cube", f"{', '.join(CUBE_MEASURES)} by month x gender, {CUBE_PERIOD}", cube_ours, cube_plain),
    Measurement("root_cause", f"views on {SPIKE_DAY} vs {ROOT_CAUSE_BASE}, {len(ROOT_CAUSE_DIMENSIONS)} dimensions",
                root_cause_ours, root_cause_plain, root_cause_summary),
    Measurement("association_rules",
                f"pair rules at subcategory level, min support {analytics_rules.LEVELS['subcategory']}",
                lambda engine: _rules_comparable(analytics_rules.rules_ours(engine, "subcategory")),
                lambda con: _rules_comparable(analytics_rules.rules_plain(con, "subcategory")),
                rules_summary),
]


# ---- running --------------------------------------------------------------------------------------


def _as_arrow(frame: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)


def measure_one(item: Measurement, engine, con, repeats: int) -> dict[str, object]:
    """Warm-up each side, then `repeats` alternating rounds; the last results are compared."""
    from jingzhun.engine.parity import compare_tables

    results = {"ours": item.ours(engine), "plain": item.plain(con)}
    runs: dict[str, list[float]] = {"ours": [], "plain": []}
    for round_no in range(repeats):
        for side in (("ours", "plain") if round_no % 2 == 0 else ("plain", "ours")):
            began = time.perf_counter()
            results[side] = item.ours(engine) if side == "ours" else item.plain(con)
            runs[side].append(time.perf_counter() - began)
        segments.say(f"  {item.name} round {round_no + 1}: ours {runs['ours'][-1]:.2f} s, "
                     f"plain {runs['plain'][-1]:.2f} s")
    report = compare_tables(item.name, _as_arrow(results["ours"]), _as_arrow(results["plain"]))
    ours, plain = statistics.median(runs["ours"]), statistics.median(runs["plain"])
    return {"what": item.what, "jingzhun_median_seconds": round(ours, 3), "plain_median_seconds": round(plain, 3),
            "ratio": round(ours / max(plain, 1e-9), 2), "runs": {k: [round(s, 3) for s in v] for k, v in runs.items()},
            "equal_results": report.equal, "differences": report.differences[:3],
            **item.summary(results["ours"])}


def main() -> None:
    import duckdb

    from jingzhun.core import open_workspace
    from jingzhun.engine import default_memory_limit, open_engine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=1_000_000)
    parser.add_argument("--events-per-person", type=float, default=50.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "jingzhun-bench-analytics")
    parser.add_argument("--only", nargs="*", help="names of measurements to run (default: all)")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    folder = segments.prepared_workspace(args.persons, args.events_per_person, args.cache)
    plant_spike(folder)
    workspace = open_workspace(folder)
    settings = workspace.config.engine.duckdb
    config = {key: value for key, value in (("threads", settings.threads),
                                            ("memory_limit", settings.memory_limit or default_memory_limit()))
              if value}
    chosen = [m for m in MEASUREMENTS if not args.only or m.name in args.only]
    with open_engine(workspace) as engine, duckdb.connect(str(workspace.resolve(settings.path)), config=config) as con:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET enable_progress_bar = false")
        rows = {name: con.execute(f"SELECT count(*) FROM {name}").fetchall()[0][0]
                for name in ("persons", "events", "orders", "order_items", "products", "record_persons")}
        measured = {}
        for item in chosen:
            segments.say(f"measuring {item.name}: {item.what}")
            measured[item.name] = measure_one(item, engine, con, max(args.repeats, 1))
    print(json.dumps({
        "benchmark": "analytics", "persons": args.persons, "events_per_person": args.events_per_person,
        "rows": rows, "spike": {"day": str(SPIKE_DAY), "product": SPIKE_PRODUCT, "extra_views": SPIKE_VIEWS},
        "measurements": measured, "duckdb": duckdb.__version__,
        "load_average": [round(x, 2) for x in os.getloadavg()],  # the machine may be shared
    }, ensure_ascii=False, indent=2, default=str))


if __name__ == "__main__":
    main()
