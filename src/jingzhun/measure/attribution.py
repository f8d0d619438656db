"""Which touches deserve the credit for an order: five rules and a data-driven Markov model.

**Touches** (per person, in time order): a campaign message that arrived (`message:sms`,
with its campaign), an ad click — a visit whose UTM medium is paid, credited to the
ad_spend channel its `utm_source` maps to (`ad:xiaohongshu`, with the UTM campaign) —
and an organic visit by channel (`organic:app`); a visit is a run of tracked events with
no gap longer than `session_gap_minutes`, classified by its first event. Links from our
own messages come back as message clicks, so they are the message's touch, not a visit.

**Paths**: each kept order (conversion) takes the touches of its person in the
`lookback_days` before it and after the person's previous order; touches followed by no
order form the person's non-converting path. An order with no touch is credited to
`(direct)` by the rules.

**Rules** (per path, weights summing to one): first touch, last touch, linear, time decay
(weight 2^(−days before the order / half_life_days)), position-based 40/20/40 (first and
last 40% each, the middle 20% shared; two touches 50/50, one touch all). Each rule's
credited conversions and order value per channel and campaign is a GROUP BY in the engine.

**Markov** (Anderl et al. 2016): the engine counts transitions between states —
(start), each touch channel, (conversion), (null) — over every path; the removal effect
of a channel is the relative drop in the chance of reaching (conversion) from (start)
when the channel is removed (its visitors go to (null)), from the absorbing chain's
fundamental matrix (numpy over the few states). Conversions and value are shared out in
proportion to the removal effects.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sqlglot import exp

from jingzhun.core.workspace import Workspace
from jingzhun.engine import Engine, parse_sql, to_local_time
from jingzhun.identity.tables import replace_rows
from jingzhun.measure.settings import AttributionSettings, load_measure_settings
from jingzhun.measure.sources import CONVERSION_ORDERS, SENDS
from jingzhun.schema.tables import ATTRIBUTION_CREDITS

RULES = ("first", "last", "linear", "time_decay", "position")
MODELS = (*RULES, "markov")
START, CONVERSION, NULL = "(start)", "(conversion)", "(null)"
MESSAGE_MEDIUMS = ("email", "sms", "push", "wechat")


def _quoted(values: tuple[str, ...] | list[str]) -> str:
    return ", ".join(exp.convert(v).sql("duckdb") for v in values)


def touches_sql(settings: AttributionSettings) -> str:
    """SELECT touch_id, person_id, touch_at, touch_channel, touch_kind, campaign_id: every touch."""
    mapped = " ".join(f"WHEN {exp.convert(k).sql('duckdb')} THEN {exp.convert(v).sql('duckdb')}"
                      for k, v in settings.ad_sources.items())
    return f"""
WITH visits AS (
  SELECT rp.person_id, e.message_id, e.timestamp, e.channel,
    LOWER(e.context->>'$.campaign.medium') AS medium, LOWER(e.context->>'$.campaign.source') AS utm_source,
    e.context->>'$.campaign.name' AS utm_campaign,
    LAG(e.timestamp) OVER (PARTITION BY rp.person_id ORDER BY e.timestamp, e.message_id) AS previous_at
  FROM events AS e JOIN record_persons AS rp ON rp.record_kind = 'event' AND rp.record_id = e.message_id
  WHERE COALESCE(e.source_id, '') <> 'jingzhun-tracking' AND e.type IN ('track', 'page', 'screen')
),
sessions AS (
  SELECT * FROM visits
  WHERE previous_at IS NULL OR timestamp > previous_at + INTERVAL {settings.session_gap_minutes} MINUTE
)
SELECT 'v:' || message_id AS touch_id, person_id, timestamp AS touch_at,
  CASE WHEN medium IN ({_quoted(settings.paid_mediums)}) THEN 'ad:' || COALESCE(CASE utm_source {mapped} END, utm_source)
       WHEN medium IN ({_quoted(MESSAGE_MEDIUMS)}) THEN 'message:' || medium
       ELSE 'organic:' || COALESCE(channel, 'other') END AS touch_channel,
  CASE WHEN medium IN ({_quoted(settings.paid_mediums)}) THEN 'ad'
       WHEN medium IN ({_quoted(MESSAGE_MEDIUMS)}) THEN 'message' ELSE 'organic' END AS touch_kind,
  CASE WHEN medium IN ({_quoted(settings.paid_mediums)}) OR medium IN ({_quoted(MESSAGE_MEDIUMS)})
       THEN utm_campaign END AS campaign_id
FROM sessions
UNION ALL
SELECT 'm:' || delivery_id AS touch_id, person_id, anchor_at AS touch_at,
  'message:' || channel AS touch_channel, 'message' AS touch_kind, campaign_id
FROM ({SENDS}) AS s WHERE delivered AND person_id IS NOT NULL"""


def paths_sql(settings: AttributionSettings) -> str:
    """Every touch with its path: the order it led to (position, path length, days before the
    order, amount), or the person's non-converting path (order_id NULL)."""
    return f"""
WITH touches AS ({touches_sql(settings)}),
conversion_orders AS ({CONVERSION_ORDERS}),
conversions AS (
  SELECT person_id, order_id, placed_at, amount,
    LAG(placed_at) OVER (PARTITION BY person_id ORDER BY placed_at, order_id) AS previous_at
  FROM conversion_orders
),
assigned AS (
  SELECT t.*, c.order_id, c.placed_at, c.amount FROM touches AS t
  JOIN conversions AS c ON c.person_id = t.person_id AND t.touch_at <= c.placed_at
    AND t.touch_at > c.placed_at - INTERVAL {settings.lookback_days} DAY
    AND (c.previous_at IS NULL OR t.touch_at > c.previous_at)
),
unassigned AS (
  SELECT t.*, CAST(NULL AS VARCHAR) AS order_id, CAST(NULL AS TIMESTAMPTZ) AS placed_at,
    CAST(NULL AS DECIMAL(18, 2)) AS amount
  FROM touches AS t WHERE NOT EXISTS (SELECT 1 FROM assigned AS a WHERE a.touch_id = t.touch_id)
),
pathed AS (
  SELECT *, COALESCE('o:' || order_id, 'n:' || person_id) AS path_id FROM assigned
  UNION ALL SELECT *, 'n:' || person_id AS path_id FROM unassigned
)
SELECT path_id, person_id, order_id, touch_id, touch_at, touch_channel, touch_kind, campaign_id, amount,
  ROW_NUMBER() OVER (PARTITION BY path_id ORDER BY touch_at, touch_id) AS pos,
  COUNT(*) OVER (PARTITION BY path_id) AS n,
  (EPOCH(placed_at) - EPOCH(touch_at)) / 86400.0 AS days_before
FROM pathed"""


def rule_credits_sql(settings: AttributionSettings) -> exp.Expression:
    """model, touch_channel, touch_kind, campaign_id, conversions, value: the five rules' credit."""
    half = settings.half_life_days
    weights = {
        "first": "CASE WHEN pos = 1 THEN 1.0 ELSE 0.0 END",
        "last": "CASE WHEN pos = n THEN 1.0 ELSE 0.0 END",
        "linear": "1.0 / n",
        "time_decay": f"POWER(2.0, -days_before / {half}) / SUM(POWER(2.0, -days_before / {half})) "
                      "OVER (PARTITION BY path_id)",
        "position": "CASE WHEN n = 1 THEN 1.0 WHEN n = 2 THEN 0.5 WHEN pos = 1 OR pos = n THEN 0.4 "
                    "ELSE 0.2 / (n - 2) END",
    }
    weighted = ", ".join(f"{w} AS w_{name}" for name, w in weights.items())
    per_model = " UNION ALL ".join(
        f"SELECT '{name}' AS model, touch_channel, touch_kind, campaign_id, SUM(w_{name}) AS conversions, "
        f"SUM(w_{name} * CAST(amount AS DOUBLE)) AS value FROM weighted "
        f"GROUP BY touch_channel, touch_kind, campaign_id" for name in weights)
    direct = " UNION ALL ".join(
        f"SELECT '{name}' AS model, '(direct)' AS touch_channel, 'none' AS touch_kind, "
        "CAST(NULL AS VARCHAR) AS campaign_id, CAST(COUNT(*) AS DOUBLE) AS conversions, "
        "SUM(CAST(amount AS DOUBLE)) AS value FROM untouched" for name in weights)
    return parse_sql(f"""
WITH paths AS ({paths_sql(settings)}),
weighted AS (SELECT paths.*, {weighted} FROM paths WHERE order_id IS NOT NULL),
conversion_orders AS ({CONVERSION_ORDERS}),
untouched AS (
  SELECT * FROM conversion_orders AS o
  WHERE NOT EXISTS (SELECT 1 FROM paths AS p WHERE p.order_id = o.order_id)
)
{per_model} UNION ALL {direct}""")


def transitions_sql(settings: AttributionSettings) -> exp.Expression:
    """from_state, to_state, transitions: the Markov chain's counts over every path."""
    return parse_sql(f"""
WITH paths AS ({paths_sql(settings)}),
steps AS (
  SELECT path_id, pos, n, touch_channel, order_id IS NOT NULL AS converted,
    COALESCE(LAG(touch_channel) OVER (PARTITION BY path_id ORDER BY pos), '{START}') AS previous_state
  FROM paths
),
edges AS (
  SELECT previous_state AS from_state, touch_channel AS to_state FROM steps
  UNION ALL
  SELECT touch_channel AS from_state, CASE WHEN converted THEN '{CONVERSION}' ELSE '{NULL}' END AS to_state
  FROM steps WHERE pos = n
)
SELECT from_state, to_state, CAST(COUNT(*) AS BIGINT) AS transitions FROM edges GROUP BY from_state, to_state""")


# ---- the Markov chain ------------------------------------------------------------------------------


def conversion_probability(matrix: np.ndarray, states: list[str], removed: str | None = None) -> float:
    """The chance of absorbing in (conversion) from (start); `removed` sends its visitors to (null)."""
    p = matrix.copy()
    if removed is not None:
        i = states.index(removed)
        p[i, :] = 0.0
        p[i, states.index(NULL)] = 1.0
    transient = [i for i, s in enumerate(states) if s not in (CONVERSION, NULL)]
    q = p[np.ix_(transient, transient)]
    r = p[np.ix_(transient, [states.index(CONVERSION)])]
    absorbed = np.linalg.solve(np.eye(len(transient)) - q, r)  # (I − Q)⁻¹ R, the fundamental matrix's reach
    return float(absorbed[transient.index(states.index(START)), 0])


def transition_matrix(counts: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Row-normalized transition probabilities from (from_state, to_state, transitions)."""
    states = sorted(set(counts["from_state"]) | set(counts["to_state"]) | {START, CONVERSION, NULL})
    index = {s: i for i, s in enumerate(states)}
    matrix = np.zeros((len(states), len(states)))
    for row in counts.itertuples():  # one row per observed transition pair (tens to hundreds)
        matrix[index[row.from_state], index[row.to_state]] += float(row.transitions)
    totals = matrix.sum(axis=1, keepdims=True)
    matrix = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    for absorbing in (CONVERSION, NULL):
        matrix[index[absorbing], index[absorbing]] = 1.0
    return matrix, states


def removal_effects(counts: pd.DataFrame) -> pd.DataFrame:
    """touch_channel, removal_effect, share: each channel's removal effect and its share of their sum."""
    matrix, states = transition_matrix(counts)
    base = conversion_probability(matrix, states)
    channels = [s for s in states if s not in (START, CONVERSION, NULL)]
    effects = [1 - conversion_probability(matrix, states, c) / base if base > 0 else 0.0 for c in channels]
    frame = pd.DataFrame({"touch_channel": channels, "removal_effect": effects})
    total = frame["removal_effect"].sum()
    frame["share"] = frame["removal_effect"] / total if total > 0 else 0.0
    return frame


# ---- running and reading ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AttributionResult:
    credits: pd.DataFrame  # model, touch_channel, touch_kind, campaign_id, conversions, value
    removal: pd.DataFrame  # touch_channel, removal_effect, share
    transitions: pd.DataFrame
    sql: dict[str, str]


def compute_attribution(workspace: Workspace | None, engine: Engine,
                        settings: AttributionSettings | None = None) -> AttributionResult:
    """Every model's credit per touch channel and campaign (the stage writes it with `write_attribution`)."""
    settings = settings or load_measure_settings(workspace).attribution
    timezone = workspace.config.timezone if workspace else "Asia/Shanghai"
    rules, chain = rule_credits_sql(settings), transitions_sql(settings)
    credits = engine.query(rules).to_pandas()
    transitions = engine.query(chain).to_pandas()
    removal = removal_effects(transitions) if not transitions.empty else pd.DataFrame(
        {"touch_channel": pd.Series([], dtype=object), "removal_effect": pd.Series([], dtype=float),
         "share": pd.Series([], dtype=float)})
    converting = credits[(credits.model == "linear") & (credits.touch_channel != "(direct)")]
    total_conversions, total_value = float(converting.conversions.sum()), float(converting.value.fillna(0).sum())
    kinds = credits.drop_duplicates("touch_channel").set_index("touch_channel")["touch_kind"]
    markov = pd.DataFrame({
        "model": "markov", "touch_channel": removal["touch_channel"],
        "touch_kind": removal["touch_channel"].map(kinds).fillna(removal["touch_channel"].astype(str).str.split(":").str[0]),
        "campaign_id": None, "conversions": removal["share"] * total_conversions,
        "value": removal["share"] * total_value})
    frame = pd.concat([credits, markov], ignore_index=True)
    period = period_sql(timezone)
    frame["period_start"], frame["period_end"] = engine.query(period).to_pylist()[0].values()
    return AttributionResult(frame, removal, transitions, {"rules": engine.render(rules),
                                                           "transitions": engine.render(chain),
                                                           "period": engine.render(period)})


def period_sql(timezone: str) -> exp.Expression:
    """The local days of the first and the last order the credit was shared out for."""
    day = exp.cast(to_local_time(exp.column("placed_at"), timezone), exp.DataType.build("DATE")).sql("duckdb")
    return parse_sql(f"SELECT MIN({day}) AS period_start, MAX({day}) AS period_end FROM ({CONVERSION_ORDERS}) AS o")


def write_attribution(engine: Engine, result: AttributionResult, computed_at: dt.datetime) -> int:
    """Store the credits as `attribution_credits` (replacing the previous run's)."""
    import pyarrow as pa

    frame = result.credits.copy()
    frame["computed_at"] = computed_at
    table = pa.Table.from_pandas(frame[ATTRIBUTION_CREDITS.column_names], preserve_index=False)
    for column in ("period_start", "period_end"):  # dates even when unknown (Spark reads nulls as INT)
        at = table.schema.get_field_index(column)
        table = table.set_column(at, column, table.column(column).cast(pa.date32()))
    engine.write_table("measure_attribution_rows", table, mode="replace")
    try:
        return replace_rows(engine, ATTRIBUTION_CREDITS, "SELECT * FROM measure_attribution_rows")
    finally:
        engine.drop_table("measure_attribution_rows")
