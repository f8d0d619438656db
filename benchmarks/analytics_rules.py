"""Benchmark: association rules over ~2M orders (1M persons), beside a hand-written DuckDB query.

The claim measured (issue 6, "Done when"): the association rules jingzhun compiles
(`jingzhun.analytics.basket.rules_sql`: Apriori passes as self-joins, run through the DuckDB
engine) give the same pairs, value for value, as an analyst's hand-written DuckDB query in
the same run, in comparable time — and triples cost little on top.

Measured at two levels of the same orders (kept orders' lines; the catalogue's
subcategory, or the product itself):
  subcategory  48 subcategories, min support 0.02% (~440 baskets; about 230 triples)
  product      5,000 products, min support 0.002% (~44 baskets)
Ours: `association_rules(engine, level, min_support, max_size=2)` — frequent items, pairs
among them, rule metrics — as a DataFrame. Baseline: one hand-written query: distinct
(order, item), items over the support, ordered pairs of them in an order (both directions
at once, `x.item <> y.item`), support, confidence, lift, leverage, conviction. Both must
give the same rows (`jingzhun.engine.parity.compare_tables`). Ours with triples
(`max_size=3`) is timed too, with no baseline.

Data: the generator of `benchmarks/segments.py` (imported; ~2.2M orders, 5,000 products,
1M persons, ~50M events), built once under --cache (the same default cache as
`benchmarks/analytics.py`, so the two share one build). Both sides run in one process on the
same DuckDB file (same threads and memory limit), alternating rounds (A B, B A, ...) after
one warm-up each; medians are compared.

Usage:
    python benchmarks/analytics_rules.py [--persons 1000000] [--events-per-person 50] [--repeats 3] [--cache DIR]
                                         [--memory-limit 6GB]
Prints one JSON object on stdout; progress goes to stderr. `measure_association_rules(path,
repeats)` does the measuring for a prepared warehouse (benchmarks/analytics.py may fold it in).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).parent))
import segments  # noqa: E402  (the data builder and its cache)

LEVELS = {"subcategory": 0.0002, "product": 0.00002}
COLUMNS = ["antecedent", "consequent", "baskets", "support", "confidence", "lift", "leverage", "conviction"]

# The same pairs as a DuckDB user writes them. Items come straight from products by
# product_id (every generated line carries one); ours also falls back on barcode and sku.
PLAIN_SQL = """
WITH basket AS (
  SELECT DISTINCT oi.order_id, {item} AS item
  FROM order_items AS oi JOIN orders AS o ON o.order_id = oi.order_id
  JOIN products AS p ON p.product_id = oi.product_id
  WHERE coalesce(o.status, '') <> 'cancelled' AND oi.quantity > 0),
n AS (SELECT count(DISTINCT order_id)::DOUBLE AS n FROM basket),
item AS (SELECT item, count(*) AS c FROM basket GROUP BY item
         HAVING count(*) / (SELECT n FROM n) >= {support}),
kept AS (SELECT * FROM basket WHERE item IN (SELECT item FROM item)),
pair AS (SELECT x.item AS a, y.item AS c, count(*) AS ac
         FROM kept AS x JOIN kept AS y ON x.order_id = y.order_id AND x.item <> y.item
         GROUP BY ALL HAVING count(*) / (SELECT n FROM n) >= {support})
SELECT pair.a AS antecedent, pair.c AS consequent, pair.ac AS baskets, pair.ac / n AS support,
  pair.ac / ia.c AS confidence, pair.ac * n / (ia.c * ic.c) AS lift,
  pair.ac / n - ia.c * ic.c / (n * n) AS leverage,
  CASE WHEN pair.ac < ia.c THEN (1 - ic.c / n) / (1 - pair.ac / ia.c) END AS conviction
FROM pair JOIN item AS ia ON ia.item = pair.a JOIN item AS ic ON ic.item = pair.c, n
"""
PLAIN_ITEM = {"subcategory": "p.subcategory", "product": "p.product_id"}


def rules_ours(engine, level: str, max_size: int = 2) -> pd.DataFrame:
    from jingzhun.analytics import association_rules

    frame = association_rules(engine, level=level, min_support=LEVELS[level], max_size=max_size).frame
    return frame[COLUMNS]


def rules_plain(con, level: str) -> pd.DataFrame:
    sql = PLAIN_SQL.format(item=PLAIN_ITEM[level], support=LEVELS[level])
    return con.sql(sql).to_arrow_table().to_pandas()[COLUMNS]


def _timed(run) -> tuple[float, pd.DataFrame]:  # noqa: ANN001
    began = time.perf_counter()
    result = run()
    return time.perf_counter() - began, result


def _compare(level: str, ours: pd.DataFrame, plain: pd.DataFrame) -> dict[str, object]:
    from jingzhun.engine.parity import compare_tables

    def arrow(frame: pd.DataFrame) -> pa.Table:  # infinite conviction (confidence 1) as NULL, as SQL gives it
        frame = frame.assign(conviction=frame["conviction"].replace(float("inf"), None))
        return pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)

    report = compare_tables(level, arrow(ours), arrow(plain))
    return {"equal_results": report.equal, "differences": report.differences[:3]}


def measure_level(engine, con, level: str, repeats: int) -> dict[str, object]:
    """One warm-up each, `repeats` alternating rounds of pairs, then ours with triples."""
    results = {"ours": rules_ours(engine, level), "plain": rules_plain(con, level)}
    runs: dict[str, list[float]] = {"ours": [], "plain": []}
    for round_no in range(repeats):
        for side in (("ours", "plain") if round_no % 2 == 0 else ("plain", "ours")):
            seconds, results[side] = _timed(lambda s=side: rules_ours(engine, level) if s == "ours"
                                            else rules_plain(con, level))
            runs[side].append(seconds)
        segments.say(f"  {level} round {round_no + 1}: ours {runs['ours'][-1]:.2f} s, plain {runs['plain'][-1]:.2f} s")
    triples = [_timed(lambda: rules_ours(engine, level, max_size=3)) for _ in range(max(1, repeats // 2))]
    ours, plain = statistics.median(runs["ours"]), statistics.median(runs["plain"])
    best = results["ours"].iloc[0] if len(results["ours"]) else None
    return {"min_support": LEVELS[level], "rules": len(results["ours"]),
            "jingzhun_median_seconds": round(ours, 3), "plain_median_seconds": round(plain, 3),
            "ratio": round(ours / max(plain, 1e-9), 2),
            "runs": {side: [round(s, 3) for s in values] for side, values in runs.items()},
            **_compare(level, results["ours"], results["plain"]),
            "with_triples_median_seconds": round(statistics.median(s for s, _ in triples), 3),
            "with_triples_rules": len(triples[-1][1]),
            "top_rule": None if best is None else {"rule": f"{best['antecedent']} → {best['consequent']}",
                                                    "lift": round(float(best["lift"]), 3)}}


def measure_association_rules(warehouse_path: Path | str, repeats: int = 3,
                              memory_limit: str | None = None) -> dict[str, object]:
    """Ours against the hand-written pairs at each level, on a prepared warehouse."""
    import duckdb

    from jingzhun.engine import DuckDBEngine, default_memory_limit

    limit = memory_limit or default_memory_limit()
    with DuckDBEngine(warehouse_path, memory_limit=limit) as engine:
        con = engine.connection  # the same database, threads and memory limit for both sides
        con.execute("SET enable_progress_bar = false")
        con.execute("SET max_temp_directory_size = '20GB'")  # a bad plan fails rather than fill the disk
        rows = {name: con.execute(f"SELECT count(*) FROM {name}").fetchall()[0][0]
                for name in ("orders", "order_items", "products")}
        measured = {}
        for level in LEVELS:
            segments.say(f"measuring association rules at {level} level")
            measured[level] = measure_level(engine, con, level, max(repeats, 1))
    return {"rows": rows, "levels": measured, "duckdb": duckdb.__version__, "memory_limit": limit}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=1_000_000)
    parser.add_argument("--events-per-person", type=float, default=50.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "jingzhun-bench-analytics")
    parser.add_argument("--memory-limit", default=None, help="DuckDB's, e.g. 6GB (default: half the RAM)")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    folder = segments.prepared_workspace(args.persons, args.events_per_person, args.cache)
    measured = measure_association_rules(folder / "warehouse.duckdb", args.repeats, args.memory_limit)
    print(json.dumps({"benchmark": "analytics_rules", "persons": args.persons, **measured,
                      "load_average": [round(x, 2) for x in os.getloadavg()]},  # the machine may be shared
                     ensure_ascii=False, indent=2, default=str))


if __name__ == "__main__":
    main()
