"""Benchmark: live campaign KPIs (click → KPI) and a full KPI rebuild over 50M events beside hand-written SQL.

Claims measured (issue 8, "Done when"):

1. **click → KPI**: the time from a tracked click reaching the collector (the `/t/c/…`
   redirect answered) to `campaign_kpis` reflecting it — the real collector on 127.0.0.1
   with `jingzhun serve`'s hooks up to the live KPIs (events to their persons, message
   events, then the live KPIs). Clicks go one at a
   time; each is timed until the collector's `/health` counts its batch as loaded, which
   it does only after the batch's hooks ran (collect/collector/loader.py). The same clicks
   then go to a collector without the KPI hook: the loader's own latency, to show what the
   hook adds. Afterwards the warehouse must count every click in `campaign_kpis`.
2. **rebuild**: `rebuild_kpis` (the kept orders with their person, then the measure stage's
   query, through our engine) over
   1M persons / ~50M events / ~2M deliveries, against the same KPIs written by hand in
   plain DuckDB SQL on the same file, alternating runs; both tables must agree cell for
   cell on every count, GMV and cost.

Data: benchmarks/segments.py's generator (1M persons, ~50 events each, orders, the ID
graph's record owners), cached under --cache, copied once and given 100 campaigns of
20,000 recipients each (10% held out, SMS / e-mail / app push / WeChat, clicks and opens
as `message_events`) in SQL. The latency part runs on the same copy.

Usage:
    python benchmarks/measure.py [--persons 1000000] [--clicks 60] [--repeats 3] [--cache DIR]
Prints one JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import segments as data  # noqa: E402 — the shared 1M-person generator and cache

MEASURE_VERSION = 2  # 2: record_persons stored in record_id order, as the identity stage writes it
CAMPAIGNS = 100
EVERY = 50  # each campaign reaches one person in EVERY: 20,000 of 1M

DELIVERIES_SQL = """
INSERT INTO campaigns BY NAME
SELECT 'bench_c' || lpad(n::VARCHAR, 3, '0') AS campaign_id, 'Benchmark campaign ' || n::VARCHAR AS name,
  'once' AS kind, 'bench_audience' AS segment_id, ['sms', 'email', 'app_push', 'wechat'][1 + n % 4] AS channel,
  1 AS version, 'active' AS status, TIMESTAMPTZ '{as_of}' AS created_at
FROM range({campaigns}) AS t(n);
INSERT INTO deliveries BY NAME
SELECT md5(c.campaign_id || p.person_id) AS delivery_id, c.campaign_id, p.person_id, c.channel, 'main' AS step,
  CASE WHEN u3(c.n, p.k, 61) < 0.1 THEN 'control' ELSE 'treatment' END AS variant, 'once' AS run_id,
  'marketing' AS purpose,
  CASE WHEN u3(c.n, p.k, 61) < 0.1 THEN 'held_out' WHEN u3(c.n, p.k, 62) < 0.96 THEN 'sent' ELSE 'failed' END AS status,
  c.at AS scheduled_at, CASE WHEN u3(c.n, p.k, 61) >= 0.1 AND u3(c.n, p.k, 62) < 0.96
    THEN c.at + to_seconds(floor(3600 * u3(c.n, p.k, 63))::BIGINT) END AS sent_at,
  CAST(CASE WHEN c.channel = 'sms' AND u3(c.n, p.k, 61) >= 0.1 AND u3(c.n, p.k, 62) < 0.96 THEN 0.045 ELSE 0 END
       AS DECIMAL(18, 4)) AS cost, c.at AS updated_at
FROM (SELECT n, 'bench_c' || lpad(n::VARCHAR, 3, '0') AS campaign_id, ['sms', 'email', 'app_push', 'wechat'][1 + n % 4]
        AS channel, back(180 - n * 1.75) AS at FROM range({campaigns}) AS t(n)) AS c
JOIN (SELECT person_id, hash(person_id) AS k FROM persons) AS p ON p.k % {every} = c.n % {every};
INSERT INTO message_events BY NAME
SELECT md5(delivery_id || kind) AS message_event_id, delivery_id, campaign_id, person_id, kind AS event_type,
  sent_at + to_seconds(floor(30 + 7200 * u(hash(delivery_id), 64))::BIGINT) AS occurred_at
FROM deliveries, (VALUES ('clicked', 0.03), ('opened', 0.15)) AS e(kind, share)
WHERE status = 'sent' AND u(hash(delivery_id), kind) < share AND (kind = 'clicked' OR channel IN ('email', 'app_push'));
"""

# The same KPIs as a DuckDB user writes them for this data: one pass per table, no engine.
PLAIN_SQL = """
CREATE OR REPLACE TABLE bench_plain_kpis AS
WITH responses AS (
  SELECT delivery_id, min(occurred_at) FILTER (event_type = 'clicked') AS clicked_at,
    bool_or(event_type = 'opened') AS opened, bool_or(event_type = 'unsubscribed') AS unsubscribed
  FROM message_events GROUP BY delivery_id
),
d AS (
  SELECT d.*, r.clicked_at, coalesce(r.opened, false) AS opened, coalesce(r.unsubscribed, false) AS unsubscribed,
    CASE WHEN d.status = 'held_out' THEN 'control' ELSE 'treatment' END AS arm,
    coalesce(d.sent_at, d.scheduled_at, d.updated_at) AS anchor
  FROM deliveries AS d LEFT JOIN responses AS r USING (delivery_id)
),
kept AS (  -- each order once: the order file's row over the web's Order Completed event
  SELECT person_id, order_id, placed_at, amount FROM (
    SELECT rp.person_id, o.order_id, o.placed_at, o.net_amount::DECIMAL(18, 2) AS amount, 1 AS priority
    FROM orders AS o JOIN record_persons AS rp ON rp.record_kind = 'order' AND rp.record_id = o.order_id
    WHERE o.status IS NULL OR o.status NOT IN ('cancelled', 'refunded')
    UNION ALL
    SELECT rp.person_id, e.properties->>'$.order_id', e.timestamp,
      TRY_CAST(coalesce(e.properties->>'$.revenue', e.properties->>'$.total') AS DECIMAL(18, 2)), 2
    FROM events AS e JOIN record_persons AS rp ON rp.record_kind = 'event' AND rp.record_id = e.message_id
    WHERE e.event = 'Order Completed' AND e.properties->>'$.order_id' IS NOT NULL)
  QUALIFY row_number() OVER (PARTITION BY order_id ORDER BY priority, person_id) = 1
),
matched AS (
  SELECT DISTINCT d.campaign_id, d.channel, d.anchor, d.arm, d.delivery_id, k.order_id, k.amount
  FROM d JOIN kept AS k ON k.person_id = d.person_id
    AND ((k.placed_at >= d.anchor AND k.placed_at < d.anchor + INTERVAL 7 DAY)
         OR (k.placed_at >= d.clicked_at AND k.placed_at < d.clicked_at + INTERVAL 7 DAY))
  WHERE (d.arm = 'treatment' AND d.status = 'sent') OR d.arm = 'control'
),
per_cell AS (
  SELECT campaign_id, channel, day, arm,
    count(DISTINCT order_id) AS orders, sum(amount) AS gmv FROM (
      SELECT DISTINCT campaign_id, channel, (anchor AT TIME ZONE 'Asia/Shanghai')::DATE AS day, arm, order_id, amount
      FROM matched) GROUP BY campaign_id, channel, day, arm
)
SELECT d.campaign_id, d.channel, (d.anchor AT TIME ZONE 'Asia/Shanghai')::DATE AS day, d.arm, count(*) AS audience,
  count(*) FILTER (d.status = 'sent') AS sent, count(*) FILTER (d.status = 'sent') AS delivered,
  count(*) FILTER (d.opened) AS opened, count(*) FILTER (d.clicked_at IS NOT NULL) AS clicked,
  count(DISTINCT m.delivery_id) AS converted, coalesce(any_value(c.orders), 0) AS orders,
  coalesce(any_value(c.gmv), 0) AS gmv,
  sum(CASE WHEN d.status = 'sent' THEN d.cost ELSE 0 END) AS cost
FROM d LEFT JOIN (SELECT DISTINCT delivery_id FROM matched) AS m USING (delivery_id)
LEFT JOIN per_cell AS c ON c.campaign_id = d.campaign_id AND c.channel = d.channel AND c.arm = d.arm
  AND c.day = (d.anchor AT TIME ZONE 'Asia/Shanghai')::DATE
GROUP BY ALL
"""


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def prepared(persons: int, cache: Path) -> Path:
    """The segments workspace of this size, copied once and given the campaigns above."""
    source = data.prepared_workspace(persons, 50, cache)
    root = cache / f"measure-v{MEASURE_VERSION}-{persons}"
    if (root / ".ready").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(source, root)
    import duckdb

    from jingzhun.core import open_workspace
    from jingzhun.engine import open_engine
    from jingzhun.schema import migrate

    with open_engine(open_workspace(root)) as engine:
        migrate(engine)
    began = time.perf_counter()
    with duckdb.connect(str(root / "warehouse.duckdb")) as con:
        con.execute("SET TimeZone = 'UTC'")
        for statement in data.statements(data.fill(data.MACROS, persons, 50)):
            con.execute(statement)
        script = DELIVERIES_SQL.replace("{campaigns}", str(CAMPAIGNS)).replace("{every}", str(EVERY))
        for statement in data.statements(data.fill(script, persons, 50)):
            con.execute(statement)
        # The identity stage stores record_persons sorted by record id (the real-time hooks look
        # batches up there); the generator writes them in person order.
        con.execute("CREATE TEMP TABLE sorted_record_persons AS SELECT * FROM record_persons ORDER BY record_id")
        con.execute("DELETE FROM record_persons")
        con.execute("INSERT INTO record_persons SELECT * FROM sorted_record_persons ORDER BY record_id")
        con.execute("CHECKPOINT")
    say(f"  campaigns, deliveries and responses added in {time.perf_counter() - began:.1f} s")
    (root / ".ready").write_text("{}")
    return root


# ---- 1. click → KPI -------------------------------------------------------------------------------

def _serve(root: Path, hooks: list[str], port: int):
    import uvicorn

    from jingzhun.collect.collector import create_app
    from jingzhun.core import open_workspace

    app = create_app(open_workspace(root), after_load=hooks)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, thread


def _links(root: Path, count: int, campaign: str) -> list[str]:
    """Signed click links for `count` sent deliveries of `campaign` (as its messages carry them)."""
    from jingzhun.collect.collector.tracking import sign_token, tracking_secret
    from jingzhun.core import open_workspace
    from jingzhun.engine import open_engine

    workspace = open_workspace(root)
    with open_engine(workspace, read_only=True) as engine:
        ids = engine.query(f"SELECT delivery_id FROM deliveries WHERE campaign_id = '{campaign}' AND status = 'sent' "
                           f"ORDER BY delivery_id LIMIT {count}").column(0).to_pylist()
    secret = tracking_secret(workspace)
    return [f"/t/c/{sign_token(secret, d, campaign, 'https://shop.example.com/landing')}" for d in ids]


def click_latency(root: Path, hooks: list[str], links: list[str], port: int) -> dict[str, object]:
    """Seconds from each click's redirect to `/health` counting its batch loaded (hooks done)."""
    server, thread = _serve(root, hooks, port)
    url = f"http://127.0.0.1:{port}"
    try:
        def loaded() -> int:
            return httpx.get(f"{url}/health", timeout=30).json()["loaded_events"]

        warm, seconds = links[0], []
        began = time.perf_counter()  # the first batch: hooks import, the KPI hook computes every live cell
        httpx.get(url + warm, follow_redirects=False, timeout=30)
        while loaded() < 1 or not _hooks_caught_up(url):
            time.sleep(0.2)
        warm_up = time.perf_counter() - began
        for n, link in enumerate(links[1:], start=2):  # one click at a time
            began = time.perf_counter()
            assert httpx.get(url + link, follow_redirects=False, timeout=30).status_code == 302
            while loaded() < n:
                time.sleep(0.01)
            seconds.append(time.perf_counter() - began)
    finally:
        server.should_exit = True
        thread.join(600)
    return {"clicks": len(seconds), "p50_s": round(statistics.median(seconds), 3),
            "p99_s": round(_percentile(seconds, 0.99), 3), "max_s": round(max(seconds), 3),
            "first_batch_s": round(warm_up, 1)}


def _hooks_caught_up(url: str) -> bool:
    states = httpx.get(f"{url}/health", timeout=30).json()["after_load"]
    throughs = {state["through"] for state in states.values()}
    return len(throughs) == 1 and None not in throughs


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def clicks_in_kpis(root: Path, campaign: str) -> dict[str, int]:
    from jingzhun.core import open_workspace
    from jingzhun.engine import open_engine

    with open_engine(open_workspace(root), read_only=True) as engine:
        kpi = engine.query(f"SELECT CAST(SUM(clicked) AS BIGINT) AS n FROM campaign_kpis WHERE campaign_id = '{campaign}'")
        raw = engine.query(f"SELECT COUNT(DISTINCT delivery_id) AS n FROM message_events WHERE campaign_id = '{campaign}' "
                           "AND event_type = 'clicked'")
        return {"campaign_kpis": int(kpi.column(0)[0].as_py() or 0), "message_events": int(raw.column(0)[0].as_py())}


# ---- 2. the full rebuild ------------------------------------------------------------------------------

COMPARED = ("audience", "sent", "delivered", "opened", "clicked", "converted", "orders", "gmv", "cost")


def rebuild_rounds(root: Path, repeats: int) -> dict[str, object]:
    import duckdb

    from jingzhun.core import open_workspace
    from jingzhun.engine import open_engine
    from jingzhun.measure import rebuild_kpis

    workspace = open_workspace(root)
    times: dict[str, list[float]] = {"ours": [], "plain": []}
    with open_engine(workspace) as engine:
        con: duckdb.DuckDBPyConnection = engine.connection  # the same database, threads and memory limit
        for round_no in range(repeats + 1):  # round 0 warms both up
            order = ("ours", "plain") if round_no % 2 else ("plain", "ours")
            for side in order:
                began = time.perf_counter()
                if side == "ours":
                    result = rebuild_kpis(workspace, engine)
                else:
                    con.execute(PLAIN_SQL).fetchall()
                if round_no:
                    times[side].append(time.perf_counter() - began)
            say(f"  round {round_no}: ours {times['ours'][-1:]} plain {times['plain'][-1:]}")
        agree = _agree(con)
        rows = engine.row_count("campaign_kpis")
        counts = con.execute("SELECT (SELECT COUNT(*) FROM events), (SELECT COUNT(*) FROM deliveries), "
                             "(SELECT COUNT(*) FROM message_events), (SELECT COUNT(*) FROM orders)").fetchall()[0]
    ours, plain = statistics.median(times["ours"]), statistics.median(times["plain"])
    return {"rows": rows, "events": counts[0], "deliveries": counts[1], "message_events": counts[2],
            "orders": counts[3], "ours_s": [round(t, 2) for t in times["ours"]],
            "plain_s": [round(t, 2) for t in times["plain"]], "ours_median_s": round(ours, 2),
            "plain_median_s": round(plain, 2), "ratio": round(ours / plain, 2), "tables_agree": agree,
            "sql_chars": len(result.sql["campaign_kpis"])}


def _agree(con) -> bool:
    """Every cell of ours equals the hand-written table's (counts, GMV, cost)."""
    columns = ", ".join(COMPARED)
    differing = con.execute(f"""
SELECT COUNT(*) FROM (
  (SELECT campaign_id, channel, day, arm, {columns} FROM campaign_kpis
   EXCEPT SELECT campaign_id, channel, day, arm, {columns} FROM bench_plain_kpis)
  UNION ALL
  (SELECT campaign_id, channel, day, arm, {columns} FROM bench_plain_kpis
   EXCEPT SELECT campaign_id, channel, day, arm, {columns} FROM campaign_kpis))""").fetchall()[0][0]
    return differing == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=1_000_000)
    parser.add_argument("--clicks", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "jingzhun-bench-segments")
    parser.add_argument("--port", type=int, default=18181)
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    root = prepared(args.persons, args.cache)
    campaign = f"bench_c{CAMPAIGNS - 1:03d}"
    links = _links(root, 2 * args.clicks + 2, campaign)
    hooks = ["jingzhun.identity.realtime:attribute_new_events", "jingzhun.activation.tracking:record_message_events",
             "jingzhun.measure.kpis:update_kpis"]  # `jingzhun serve`'s, in its order, up to the live KPIs
    say("click → KPI, with the live-KPI hook")
    live = click_latency(root, hooks, links[: args.clicks + 1], args.port)
    live["kpis_count_every_click"] = clicks_in_kpis(root, campaign)
    say("click → events, the loader without the live-KPI hook")
    loader = click_latency(root, hooks[:2], links[args.clicks + 1:], args.port + 1)
    say("full rebuild beside hand-written SQL")
    rebuild = rebuild_rounds(root, args.repeats)
    print(json.dumps({"benchmark": "measure", "persons": args.persons, "at": datetime.now(UTC).isoformat(),
                      "click_to_kpi": live, "click_to_events_without_kpi_hook": loader, "rebuild": rebuild},
                     indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
