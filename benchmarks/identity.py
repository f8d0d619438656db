"""Benchmark: `build_identity` on the 20,000-person demo, against hand-written DuckDB SQL.

The claim measured (issue 4, items 1-2): the deterministic ID graph — observations
from every source, normalization, junk detection, links, connected components in SQL
with one-per-person limits, stable person ids, merge records, and the identity tables —
runs through the engine (sqlglot rendering, materialized `identity_work_*` steps) at a
cost close to the same components hand-written in plain DuckDB SQL. The ceiling uses
DuckDB-only idioms (json_each, UNNEST of structs, arg_min, CTAS) on one connection and
leaves out what a CDP needs beyond the partition: junk values, limits, stable ids
across rebuilds, link evidence, change records.

Each side runs in its own process on its own copy of the workspace (so peak RSS is its
own). Both must produce the same partition of identifiers into persons (checked).

Usage:
    python benchmarks/identity.py [--demo /tmp/demo20k] [--keep DIR]
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRAIT_IDS = ("phone", "email", "wechat_openid", "wechat_unionid")

# The ceiling, one statement per step. The phone rule is the CN-mobile core of
# jingzhun's normalizer (the demo's phones are CN mobiles).
PLAIN_STEPS = [
    ("tuples", """
CREATE OR REPLACE TABLE b_tuples AS
SELECT md5(to_json([user_id, anonymous_id, context->>'$.device.id', traits->>'$.phone', traits->>'$.email',
                    traits->>'$.wechat_openid', traits->>'$.wechat_unionid'])) AS rid,
  any_value(user_id) AS user_id, any_value(anonymous_id) AS anonymous_id,
  any_value(context->>'$.device.id') AS device_id, any_value(traits->>'$.phone') AS phone,
  any_value(traits->>'$.email') AS email, any_value(traits->>'$.wechat_openid') AS openid,
  any_value(traits->>'$.wechat_unionid') AS unionid
FROM events GROUP BY ALL
"""),
    ("observations", r"""
CREATE OR REPLACE TABLE b_obs AS
WITH raw AS (
  SELECT 'event' AS kind, rid, o.t, o.v FROM b_tuples,
    UNNEST([{'t': 'member_id', 'v': user_id}, {'t': 'anonymous_id', 'v': anonymous_id},
            {'t': 'device_id', 'v': device_id}, {'t': 'phone', 'v': phone}, {'t': 'email', 'v': email},
            {'t': 'wechat_openid', 'v': openid}, {'t': 'wechat_unionid', 'v': unionid}]) AS u(o)
  UNION ALL SELECT 'order', order_id, j.key, j.value ->> '$' FROM orders, json_each(customer_identifiers) AS j
  UNION ALL SELECT 'order', order_id, customer_ref_type, customer_ref FROM orders WHERE customer_ref IS NOT NULL
  UNION ALL SELECT 'source_record', record_id, j.key, j.value ->> '$' FROM source_records, json_each(identifiers) AS j
  UNION ALL SELECT 'survey_response', response_id, respondent_ref_type, respondent_ref FROM survey_responses
)
SELECT DISTINCT kind, rid, t, v FROM (
  SELECT kind, rid, t, CASE
    WHEN t = 'phone' THEN CASE WHEN regexp_matches(regexp_replace(trim(v), '[\s\-()]', '', 'g'), '^(\+86|0086|86)?1[3-9][0-9]{9}$')
                               THEN '+86' || right(regexp_replace(trim(v), '[\s\-()]', '', 'g'), 11) END
    WHEN t = 'email' THEN lower(trim(v)) ELSE nullif(trim(v), '') END AS v
  FROM raw WHERE v IS NOT NULL AND t <> 'phone_masked'
) WHERE v IS NOT NULL
"""),
    ("edges", """
CREATE OR REPLACE TABLE b_edges AS
WITH o AS (SELECT kind, rid, t || ':' || v AS node,
  CASE t WHEN 'member_id' THEN 100 WHEN 'wechat_unionid' THEN 95 WHEN 'phone' THEN 80 WHEN 'email' THEN 70
         WHEN 'device_id' THEN 20 WHEN 'anonymous_id' THEN 10 ELSE 60 END AS priority FROM b_obs),
c AS (SELECT kind, rid, arg_min(node, (-priority, node)) AS center FROM o GROUP BY ALL)
SELECT DISTINCT least(o.node, c.center) AS a, greatest(o.node, c.center) AS b
FROM o JOIN c USING (kind, rid) WHERE o.node <> c.center
"""),
    ("components", None),  # the same iterative min-label propagation, run below
    ("persons", """
CREATE OR REPLACE TABLE b_persons AS
SELECT n.node, 'P' || substr(md5(coalesce(l.label, n.node)), 1, 16) AS person_id
FROM (SELECT DISTINCT t || ':' || v AS node FROM b_obs) n LEFT JOIN b_labels l USING (node)
"""),
    ("record_persons", """
CREATE OR REPLACE TABLE b_record_persons AS
WITH owner AS (SELECT kind, rid, min(p.person_id) AS person_id FROM b_obs o
               JOIN b_persons p ON p.node = o.t || ':' || o.v GROUP BY ALL)
SELECT 'event' AS record_kind, e.message_id AS record_id, w.person_id FROM events e
JOIN owner w ON w.kind = 'event' AND w.rid = md5(to_json([e.user_id, e.anonymous_id, e.context->>'$.device.id',
  e.traits->>'$.phone', e.traits->>'$.email', e.traits->>'$.wechat_openid', e.traits->>'$.wechat_unionid']))
UNION ALL SELECT kind, rid, person_id FROM owner WHERE kind <> 'event'
"""),
]

CC_INIT = """
CREATE OR REPLACE TABLE b_sym AS SELECT a AS src, b AS dst FROM b_edges UNION SELECT b, a FROM b_edges;
CREATE OR REPLACE TABLE b_l0 AS SELECT src AS node, least(src, min(dst)) AS label FROM b_sym GROUP BY src;
"""
CC_ROUND = """
CREATE OR REPLACE TABLE {nxt} AS
WITH nbr AS (SELECT e.src AS node, min(l.label) AS label FROM b_sym e JOIN {cur} l ON l.node = e.dst GROUP BY e.src),
prop AS (SELECT c.node, least(c.label, n.label) AS label, c.label AS old FROM {cur} c JOIN nbr n USING (node))
SELECT p.node, least(p.label, q.label) AS label, least(p.label, q.label) <> p.old AS changed
FROM prop p JOIN prop q ON q.node = p.label
"""


def copy_workspace(demo: Path, target: Path) -> Path:
    """A private copy of the demo workspace without its source files."""
    shutil.copytree(demo, target, ignore=shutil.ignore_patterns("data", "demo-truth", "log", "spark-warehouse"))
    (target / "log").mkdir(exist_ok=True)
    return target


def run_jingzhun(workspace_dir: str) -> dict:
    from jingzhun.core import open_workspace
    from jingzhun.engine import open_engine
    from jingzhun.identity import build_identity

    workspace = open_workspace(workspace_dir)
    with open_engine(workspace) as engine:
        started = time.perf_counter()
        result = build_identity(workspace, engine)
        first = time.perf_counter() - started
        started = time.perf_counter()
        build_identity(workspace, engine)   # a rebuild with no new data: same ids, no changes
        again = time.perf_counter() - started
        partition = engine.query("SELECT id_type || ':' || id_value AS node, person_id FROM identities")
        changes = engine.row_count("identity_changes")
    _save(workspace_dir, "jingzhun_partition.parquet", partition)
    return {"seconds": round(first, 2), "rebuild_seconds": round(again, 2), "tables": result.tables,
            "changes_after_rebuild": changes, "peak_rss_mb": _peak_rss_mb()}


def run_plain(workspace_dir: str) -> dict:
    import duckdb

    connection = duckdb.connect(str(Path(workspace_dir) / "warehouse.duckdb"))
    steps: dict[str, float] = {}
    started = time.perf_counter()
    for name, sql in PLAIN_STEPS:
        at = time.perf_counter()
        if sql is None:
            rounds = _plain_components(connection)
        else:
            connection.execute(sql)
        steps[name] = round(time.perf_counter() - at, 2)
    seconds = time.perf_counter() - started
    partition = connection.sql("SELECT node, person_id FROM b_persons").to_arrow_table()
    rows = connection.sql("SELECT count(*) FROM b_record_persons").fetchall()[0][0]
    connection.close()
    _save(workspace_dir, "plain_partition.parquet", partition)
    return {"seconds": round(seconds, 2), "steps": steps, "rounds": rounds, "record_persons": rows,
            "peak_rss_mb": _peak_rss_mb()}


def _plain_components(connection) -> int:
    connection.execute(CC_INIT)
    cur, nxt, rounds = "b_l0", "b_l1", 0
    while True:
        rounds += 1
        connection.execute(CC_ROUND.format(cur=cur, nxt=nxt))
        if connection.sql(f"SELECT count(*) FROM {nxt} WHERE changed").fetchall()[0][0] == 0:
            break
        cur, nxt = nxt, cur
    connection.execute(f"CREATE OR REPLACE TABLE b_labels AS SELECT node, label FROM {nxt}")
    return rounds


def _save(workspace_dir: str, name: str, table) -> None:
    import pyarrow.parquet as pq

    pq.write_table(table, Path(workspace_dir) / name)


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def same_partition(jingzhun_file: Path, plain_file: Path) -> dict:
    """Do both sides put the same identifiers together? (compared on shared identifiers)"""
    import duckdb

    row = duckdb.sql(f"""
WITH j AS (SELECT * FROM read_parquet('{jingzhun_file}')), p AS (SELECT * FROM read_parquet('{plain_file}')),
both_sides AS (SELECT j.person_id AS a, p.person_id AS b FROM j JOIN p USING (node))
SELECT count(*) AS identifiers, count(DISTINCT a) AS jingzhun_persons, count(DISTINCT b) AS plain_persons,
  count(DISTINCT (a, b)) AS cells FROM both_sides
""").fetchall()[0]
    identifiers, ours, theirs, cells = row
    return {"identifiers_compared": identifiers, "jingzhun_persons": ours, "plain_persons": theirs,
            "identical": ours == theirs == cells}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", default="/tmp/demo20k")
    parser.add_argument("--keep", default=None, help="keep the workspace copies in this folder")
    parser.add_argument("--side", choices=["jingzhun", "plain"], help=argparse.SUPPRESS)
    parser.add_argument("--workspace", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        print(json.dumps(run_jingzhun(args.workspace) if args.side == "jingzhun" else run_plain(args.workspace)))
        return
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-identity-"))
    results = {}
    for side in ("plain", "jingzhun"):
        workspace = copy_workspace(Path(args.demo), root / side)
        output = subprocess.run([sys.executable, __file__, "--side", side, "--workspace", str(workspace)],
                                check=True, capture_output=True, text=True).stdout
        results[side] = json.loads(output.strip().splitlines()[-1])
    check = same_partition(root / "jingzhun" / "jingzhun_partition.parquet", root / "plain" / "plain_partition.parquet")
    print(json.dumps({
        "claim": "build_identity within a small factor of the same components hand-written in DuckDB SQL",
        "demo": args.demo,
        "jingzhun_build_identity": results["jingzhun"],
        "hand_written_duckdb": results["plain"],
        "ratio": round(results["jingzhun"]["seconds"] / results["plain"]["seconds"], 2),
        "partition_check": check,
        "ceiling_leaves_out": ["junk detection", "one-per-person limits", "stable ids across rebuilds",
                               "link evidence and identity_links", "merge/split records", "Spark portability"],
    }, indent=2))
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
