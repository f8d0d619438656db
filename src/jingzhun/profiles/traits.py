"""Traits (用户画像的属性): one wide row per person, and a long history of every value.

`compute_traits(workspace, engine)` reads the collected tables through
`record_persons` (the ID graph's answer to "whose record is this?") and writes:

- `person_traits` — the wide serving table, one row per active person, typed
  columns (base attributes, behaviour, purchases, RFM, reachability); rebuilt in full.
- `traits` — the long table with history: a value that changed closes its old row
  (`valid_to = as_of`) and opens a new one (`valid_from = as_of`); unchanged values
  are untouched, so the portrait of any past day can be read back.

Everything is SQL run by the engine (DuckDB or Spark), counted by EVENT time up to
`as_of` (default: the latest event or order time in the data), so late or replayed
events give the same result, and the same data and `as_of` give the same rows on
both engines. The rules (sessions, picks, price band, RFM classes) are in
docs/traits.md and beside each query in `traits_sql.py`.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from sqlglot import exp

from jingzhun.core.workspace import Workspace
from jingzhun.engine import Engine, MaterializeHints, TableHandle
from jingzhun.profiles import traits_sql as q
from jingzhun.profiles.traits_base import base_candidates_sql, base_values_sql
from jingzhun.profiles.traits_calendar import holiday_table
from jingzhun.profiles.traits_history import apply_history, diff_history
from jingzhun.schema.tables import PERSON_TRAITS, TRAITS

# The eight classic RFM classes (R, F, M each above or below the buyers' average).
RFM_CLASSES: dict[str, dict[str, str]] = {
    "important_value": {"zh": "重要价值客户", "en": "Important value"},
    "important_develop": {"zh": "重要发展客户", "en": "Important to develop"},
    "important_keep": {"zh": "重要保持客户", "en": "Important to keep"},
    "important_retain": {"zh": "重要挽留客户", "en": "Important to win back"},
    "general_value": {"zh": "一般价值客户", "en": "General value"},
    "general_develop": {"zh": "一般发展客户", "en": "General to develop"},
    "general_keep": {"zh": "一般保持客户", "en": "General to keep"},
    "general_retain": {"zh": "一般挽留客户", "en": "General to win back"},
}

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class TraitsResult:
    """What the traits stage did: rows written per table, and notes (i18n key, values)."""

    as_of: dt.datetime
    tables: dict[str, int] = field(default_factory=dict)
    notes: list[tuple[str, dict[str, object]]] = field(default_factory=list)
    person_traits: TableHandle | None = None
    step_seconds: dict[str, float] = field(default_factory=dict)


# Shares are of kept orders; money ratios are rounded half up in whole cents.
PERSON_TRAITS_SQL = f"""
WITH people AS (SELECT person_id FROM persons WHERE status = 'active'),
base AS (
  SELECT person_id,
    MAX(CASE WHEN trait = 'name' THEN value END) AS name,
    MAX(CASE WHEN trait = 'gender' THEN value END) AS gender,
    TRY_CAST(MAX(CASE WHEN trait = 'birth_date' THEN value END) AS DATE) AS birth_date,
    MAX(CASE WHEN trait = 'province' THEN value END) AS province,
    MAX(CASE WHEN trait = 'city' THEN value END) AS city,
    MAX(CASE WHEN trait = 'member_id' THEN value END) AS member_id,
    MAX(CASE WHEN trait = 'member_level' THEN value END) AS member_level,
    TRY_CAST(MAX(CASE WHEN trait = 'member_since' THEN value END) AS TIMESTAMPTZ) AS member_since,
    MAX(CASE WHEN trait = 'register_store' THEN value END) AS register_store,
    MAX(CASE WHEN trait = 'income_band' THEN value END) AS income_band,
    MAX(CASE WHEN trait = 'job' THEN value END) AS job,
    TRY_CAST(MAX(CASE WHEN trait = 'price_sensitivity' THEN value END) AS INTEGER) AS price_sensitivity
  FROM {q.BASE_VALUES} GROUP BY person_id
),
aged AS (
  SELECT *, :as_of_year - YEAR(birth_date)
    - CASE WHEN :as_of_md < MONTH(birth_date) * 100 + DAY(birth_date) THEN 1 ELSE 0 END AS age_years
  FROM base
),
reach AS (
  SELECT person_id,
    MAX(CASE WHEN id_type = 'phone' THEN 1 ELSE 0 END) AS phone,
    MAX(CASE WHEN id_type = 'email' THEN 1 ELSE 0 END) AS email,
    MAX(CASE WHEN id_type LIKE 'wechat%' OR id_type LIKE 'wecom%' THEN 1 ELSE 0 END) AS wechat
  FROM identities WHERE person_id IS NOT NULL GROUP BY person_id
),
buyers AS (
  SELECT person_id, DATE_DIFF('day', last_order_day, :as_of_day) AS r_days, orders_total AS f, gmv_cents AS m
  FROM {q.PURCHASES} WHERE orders_total > 0
),
tiles AS (
  SELECT *, NTILE(5) OVER (ORDER BY r_days DESC, person_id) AS r_tile,
    NTILE(5) OVER (ORDER BY f, person_id) AS f_tile, NTILE(5) OVER (ORDER BY m, person_id) AS m_tile,
    AVG(r_days) OVER () AS r_mean, AVG(f) OVER () AS f_mean, AVG(m) OVER () AS m_mean
  FROM buyers
),
rfm AS (
  SELECT person_id, MIN(r_tile) OVER (PARTITION BY r_days) AS rfm_r,
    MIN(f_tile) OVER (PARTITION BY f) AS rfm_f, MIN(m_tile) OVER (PARTITION BY m) AS rfm_m,
    CASE WHEN m > m_mean THEN 'important_' ELSE 'general_' END
      || CASE WHEN r_days < r_mean AND f > f_mean THEN 'value' WHEN r_days < r_mean THEN 'develop'
              WHEN f > f_mean THEN 'keep' ELSE 'retain' END AS rfm_class
  FROM tiles
)
SELECT p.person_id,
  b.name, b.gender, b.birth_date,
  CAST(CASE WHEN b.age_years BETWEEN 0 AND 120 THEN b.age_years END AS INTEGER) AS age,
  CASE WHEN b.age_years IS NULL OR b.age_years NOT BETWEEN 0 AND 120 THEN NULL
       WHEN b.age_years < 25 THEN '<25' WHEN b.age_years < 30 THEN '25-29' WHEN b.age_years < 35 THEN '30-34'
       WHEN b.age_years < 40 THEN '35-39' WHEN b.age_years < 50 THEN '40-49' ELSE '50+' END AS age_band,
  b.province, b.city, b.member_id, b.member_level, b.member_since, b.register_store,
  b.income_band, b.job, b.price_sensitivity,
  a.first_seen_at, a.last_seen_at,
  CAST(COALESCE(a.active_days_30d, 0) AS INTEGER) AS active_days_30d,
  CAST(COALESCE(a.active_days_90d, 0) AS INTEGER) AS active_days_90d,
  CAST(COALESCE(a.sessions_90d, 0) AS INTEGER) AS sessions_90d,
  CAST(COALESCE(a.page_views_90d, 0) AS INTEGER) AS page_views_90d,
  CAST(COALESCE(a.product_views_90d, 0) AS INTEGER) AS product_views_90d,
  CAST(COALESCE(a.cart_adds_90d, 0) AS INTEGER) AS cart_adds_90d,
  CAST(COALESCE(a.events_total, 0) AS BIGINT) AS events_total,
  k.favourite_category, k.preferred_channel, k.preferred_store_id, k.device_type, pb.price_band,
  CAST(COALESCE(o.orders_total, 0) AS INTEGER) AS orders_total,
  CAST(COALESCE(o.orders_365d, 0) AS INTEGER) AS orders_365d,
  CAST(COALESCE(o.gmv_total, 0) AS DECIMAL(18, 2)) AS gmv_total,
  CAST(COALESCE(o.gmv_365d, 0) AS DECIMAL(18, 2)) AS gmv_365d,
  CAST(CASE WHEN o.orders_total > 0 THEN
    CAST(FLOOR((2 * o.gmv_cents + o.orders_total) / (2 * o.orders_total)) AS DOUBLE) / 100 END AS DECIMAL(18, 2)) AS aov,
  CASE WHEN o.orders_total + o.refunded_orders > 0
    THEN CAST(o.refunded_orders AS DOUBLE) / (o.orders_total + o.refunded_orders) END AS refund_rate,
  o.first_order_at, o.last_order_at,
  CAST(DATE_DIFF('day', o.last_order_day, :as_of_day) AS INTEGER) AS days_since_last_order,
  CASE WHEN o.orders_total > 0 THEN CAST(o.online_orders AS DOUBLE) / o.orders_total END AS online_order_share,
  CASE WHEN o.orders_total > 0 THEN CAST(o.offline_orders AS DOUBLE) / o.orders_total END AS offline_order_share,
  CASE WHEN o.orders_total > 0 THEN CAST(o.coupon_orders AS DOUBLE) / o.orders_total END AS coupon_order_share,
  CASE WHEN o.orders_total > 0 THEN CAST(o.holiday_orders AS DOUBLE) / o.orders_total END AS holiday_order_share,
  CAST(COALESCE(a.livestream_views_90d, 0) AS INTEGER) AS livestream_views_90d,
  CAST(COALESCE(a.social_interactions_90d, 0) AS INTEGER) AS social_interactions_90d,
  COALESCE(a.follows_official_account, FALSE) AS follows_official_account,
  CAST(r.rfm_r AS INTEGER) AS rfm_r, CAST(r.rfm_f AS INTEGER) AS rfm_f, CAST(r.rfm_m AS INTEGER) AS rfm_m,
  r.rfm_class,
  COALESCE(i.phone, 0) = 1 AS has_phone, COALESCE(i.email, 0) = 1 AS has_email,
  COALESCE(i.wechat, 0) = 1 AS has_wechat,
  :as_of AS as_of, :computed_at AS computed_at
FROM people AS p
LEFT JOIN aged AS b ON b.person_id = p.person_id
LEFT JOIN {q.ACTIVITY} AS a ON a.person_id = p.person_id
LEFT JOIN {q.PICKS} AS k ON k.person_id = p.person_id
LEFT JOIN {q.PRICE_BANDS} AS pb ON pb.person_id = p.person_id
LEFT JOIN {q.PURCHASES} AS o ON o.person_id = p.person_id
LEFT JOIN rfm AS r ON r.person_id = p.person_id
LEFT JOIN reach AS i ON i.person_id = p.person_id
"""


def person_traits_sql(window: q.TraitWindow, computed_at: dt.datetime) -> exp.Expression:
    """The SELECT behind `person_traits`, over the `traits_*` intermediate tables."""
    local = window.as_of.astimezone(ZoneInfo(window.timezone)).date()
    extra = {"as_of_day": local, "as_of_year": local.year, "as_of_md": local.month * 100 + local.day,
             "computed_at": computed_at}
    expression = q.bind(PERSON_TRAITS_SQL, window)
    return exp.replace_placeholders(expression, **{k: exp.convert(v) for k, v in extra.items()})


# (logical name, SQL) in dependency order; each is materialized before the next runs.
STEPS: tuple[tuple[str, str], ...] = (
    (q.EVENT_FACTS, q.EVENT_FACTS_SQL),
    (q.ORDER_FACTS, q.ORDER_FACTS_SQL),
    (q.ORDER_LINES, q.ORDER_LINES_SQL),
    (q.SOCIAL_FACTS, q.SOCIAL_FACTS_SQL),
    (q.ACTIVITY, q.ACTIVITY_SQL),
    (q.PURCHASES, q.PURCHASES_SQL),
    (q.PICKS, q.PICKS_SQL),
    (q.PRICE_BANDS, q.PRICE_BANDS_SQL),
)
SCRATCH = MaterializeHints(scratch=True)  # the traits_* work tables, dropped at the end
INTERMEDIATE = (q.HOLIDAYS, q.BASE_CANDIDATES, q.BASE_VALUES, *(name for name, _ in STEPS), q.NEXT)


def default_as_of(engine: Engine) -> dt.datetime:
    """The latest event or order time in the data (so a fixed demo period gives stable
    results); now when there is no data at all."""
    latest = engine.query(
        "SELECT MAX(at) AS at FROM (SELECT MAX(\"timestamp\") AS at FROM events "
        "UNION ALL SELECT MAX(placed_at) FROM orders)"
    ).column("at")[0].as_py()
    return q.utc(latest) if latest is not None else q.utc(None)


def _require_inputs(engine: Engine) -> None:
    """Name the missing input tables (and how to get them) instead of failing in SQL."""
    missing = [name for name in q.INPUTS if not engine.table_exists(name)]
    if missing:
        raise q.TraitsError(
            f"traits need the tables {', '.join(missing)}, which this workspace does not have yet.",
            fix="run `jingzhun migrate`, then the identity stage (`jingzhun pipeline`) to attribute records to persons",
            field="record_persons" if "record_persons" in missing else missing[0],
            message_zh=f"计算画像需要数据表 {'、'.join(missing)}，但当前工作区还没有。",
            fix_zh="请先运行 `jingzhun migrate`，再运行身份识别阶段（`jingzhun pipeline`）把记录归属到顾客",
        )


def _write_holidays(engine: Engine, window: q.TraitWindow) -> None:
    """The holiday and promotion days of every year an order falls in."""
    span = engine.query(
        exp.select(exp.func("min", exp.column("placed_at")).as_("first")).from_("orders")
    ).column("first")[0].as_py()
    first_year = (q.utc(span).year if span is not None else window.as_of.year) - 1
    engine.write_table(q.HOLIDAYS, holiday_table(first_year, window.as_of.year + 1), mode="replace")


class _Steps:
    """Reports each step to `progress` before it runs and times it."""

    def __init__(self, progress: Progress | None, total: int) -> None:
        self.progress, self.total = progress, total
        self.seconds: dict[str, float] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        if self.progress is not None:
            self.progress(name, len(self.seconds), self.total)
        started = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - started, 3)


def compute_traits(
    workspace: Workspace,
    engine: Engine,
    as_of: dt.datetime | None = None,
    progress: Progress | None = None,
    *,
    full_history: bool = False,
) -> TraitsResult:
    """Compute every person's traits as of `as_of` and record what changed.

    Args:
        as_of: the instant described (UTC if naive); default: the latest event or
            order time. Data after it is ignored, so a past `as_of` rebuilds the past.
        progress: called as `progress(step, done, total)` before each step.
        full_history: compare every person's values with the open history, not only
            those whose row differs from the previous `person_traits`.

    Returns:
        A `TraitsResult`: rows of `person_traits`, rows of `traits` opened plus closed,
        and the seconds each step took.
    """
    _require_inputs(engine)
    window = q.TraitWindow(q.utc(as_of) if as_of else default_as_of(engine), workspace.config.timezone)
    steps = _Steps(progress, total=len(STEPS) + 5)
    with steps.step(q.HOLIDAYS):
        _write_holidays(engine, window)
    with steps.step(q.BASE_CANDIDATES):
        engine.materialize(q.BASE_CANDIDATES, base_candidates_sql(window), SCRATCH)
    with steps.step(q.BASE_VALUES):
        engine.materialize(q.BASE_VALUES, base_values_sql(), SCRATCH)
    for name, sql in STEPS:
        with steps.step(name):
            engine.materialize(name, q.bind(sql, window), SCRATCH)
    with steps.step(PERSON_TRAITS.name):
        engine.materialize(q.NEXT, person_traits_sql(window, q.utc(None)), SCRATCH)
    with steps.step(TRAITS.name):
        change = diff_history(engine, PERSON_TRAITS, window.as_of, q.NEXT, full=full_history)
        with engine.transaction():  # history and the serving table move together where possible
            apply_history(engine, change, window.as_of)
            handle = engine.materialize(PERSON_TRAITS.name, f"SELECT * FROM {q.NEXT}")
    for name in INTERMEDIATE:
        engine.drop_table(name)
    persons = engine.row_count(PERSON_TRAITS.name)
    notes = [("note.traits_computed", {"persons": persons, "as_of": window.as_of.isoformat(),
                                       "seconds": round(sum(steps.seconds.values()), 2)}),
             ("note.traits_history", {"opened": change.opened, "closed": change.closed})]
    tables = {PERSON_TRAITS.name: persons, TRAITS.name: change.opened + change.closed}
    return TraitsResult(window.as_of, tables, notes, handle, steps.seconds)


def run_traits(workspace: Workspace, engine: Engine, progress: Progress | None = None) -> TraitsResult:
    """The pipeline stage: `compute_traits` as of the latest data."""
    return compute_traits(workspace, engine, progress=progress)
