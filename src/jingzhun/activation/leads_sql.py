"""The SQL of lead scoring and assignment (DuckDB dialect, run by the engine).

1. `features_sql` — one row per lead (`source_records` of kind `lead`, the latest import
   of each lead id): its status as of the scoring instant (a rep's won/lost, else the
   import's won if converted by then, else lost once `review_days + outcome_days` have
   passed, else open), the instant its features are measured at (open: the scoring
   instant; decided: when it was reviewed, `review_days` after creation, or earlier if
   decided earlier), and the features: freshness, intent and fit. Every feature is
   what was known at that instant: the last activity counts only if it came before it
   (else the creation does), a customer is someone who had ordered by then, a member
   someone who had joined by then — so replaying a past day sees no later data.
2. `scored_sql` — the features with the fitted logistic model applied in SQL (its
   coefficients inlined), split into the log-odds each group contributes.
3. `assign_round_sql` — one round of handing out leads: every rep with quota left wants
   as many of the best open, unassigned leads of their territories as they have room for;
   a lead two reps want goes to the one who ranks it higher (then: more room left). Losers
   want again in the next round, until a round assigns nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlglot import exp

from jingzhun.activation.leads_settings import OTHER, ScoringSettings
from jingzhun.activation.policy import literal
from jingzhun.engine import parse_sql
from jingzhun.engine.base import check_table_name

# (feature, group, SQL over the features table `f`): what the model may learn from.
FEATURES: tuple[tuple[str, str, str], ...] = (
    ("freshness", "freshness", "f.freshness"),
    ("log_pages_viewed", "intent", "LN(1 + COALESCE(f.pages_viewed, 0))"),
    ("price_checks", "intent", "LEAST(COALESCE(f.price_checks, 0), 10)"),
    ("sample_requested", "intent", "CASE WHEN f.sample_requested THEN 1 ELSE 0 END"),
    ("source_livestream", "intent", "CASE WHEN f.source = 'livestream' THEN 1 ELSE 0 END"),
    ("source_store_visit", "intent", "CASE WHEN f.source = 'store_visit' THEN 1 ELSE 0 END"),
    ("source_ad_click", "intent", "CASE WHEN f.source = 'ad_click' THEN 1 ELSE 0 END"),
    ("log_product_views", "intent", "LN(1 + f.product_views)"),
    ("log_livestream_views", "intent", "LN(1 + f.livestream_views)"),
    ("existing_customer", "fit", "CASE WHEN f.orders_before > 0 THEN 1 ELSE 0 END"),
    ("member", "fit", "CASE WHEN f.is_member THEN 1 ELSE 0 END"),
    ("company", "fit", "CASE WHEN f.company IS NOT NULL THEN 1 ELSE 0 END"),
    ("city_has_store", "fit", "CASE WHEN f.city_has_store THEN 1 ELSE 0 END"),
)
GROUPS = ("freshness", "intent", "fit")

FEATURES_SQL = """
WITH raw AS (
  SELECT record_id, imported_at, identifiers->>'$.phone' AS phone,
    attributes->>'$.lead_id' AS lead_id, attributes->>'$.created_at' AS created_text,
    attributes->>'$.last_activity_at' AS activity_text, attributes->>'$.converted_at' AS converted_text,
    attributes->>'$.source' AS source, attributes->>'$.contact_name' AS contact_name,
    attributes->>'$.company' AS company, attributes->>'$.city' AS city,
    attributes->>'$.status' AS import_status, attributes->>'$.pages_viewed' AS pages_text,
    attributes->>'$.price_checks' AS checks_text, attributes->>'$.sample_requested' AS sample_text
  FROM {records} WHERE kind = 'lead'
),
latest AS (
  SELECT * FROM (
    SELECT raw.*, ROW_NUMBER() OVER (PARTITION BY lead_id ORDER BY imported_at DESC, record_id DESC) AS copy
    FROM raw WHERE lead_id IS NOT NULL AND created_text IS NOT NULL) AS ranked
  WHERE copy = 1
),
typed AS (
  SELECT record_id, lead_id, phone, contact_name, NULLIF(TRIM(company), '') AS company, city, source,
    CAST(created_text AS TIMESTAMPTZ) AS created_at, CAST(activity_text AS TIMESTAMPTZ) AS last_activity_at,
    CAST(converted_text AS TIMESTAMPTZ) AS converted_at, import_status,
    TRY_CAST(pages_text AS INTEGER) AS pages_viewed, TRY_CAST(checks_text AS INTEGER) AS price_checks,
    sample_text = 'Y' AS sample_requested
  FROM latest
),
current_leads AS (SELECT * FROM typed WHERE created_at <= :as_of),
rep_decided AS (
  SELECT lead_id, outcome, recorded_at FROM (
    SELECT lead_id, outcome, recorded_at,
      ROW_NUMBER() OVER (PARTITION BY lead_id ORDER BY recorded_at DESC) AS latest
    FROM lead_outcomes WHERE outcome IN ('won', 'lost') AND recorded_at <= :as_of) AS ranked
  WHERE latest = 1
),
unanswered AS (
  SELECT lead_id, COUNT(*) AS no_answers FROM lead_outcomes
  WHERE outcome = 'no_answer' AND recorded_at <= :as_of GROUP BY lead_id
),
judged AS (
  SELECT c.*, COALESCE(u.no_answers, 0) AS no_answers,
    c.created_at + INTERVAL {review_days} DAY AS reviewed_at,
    CASE WHEN r.lead_id IS NOT NULL THEN r.outcome
         WHEN c.import_status = 'won' AND c.converted_at <= :as_of THEN 'won'
         WHEN c.created_at + INTERVAL {window_days} DAY <= :as_of THEN 'lost'
         ELSE 'open' END AS status,
    CASE WHEN r.lead_id IS NOT NULL THEN 'rep' ELSE 'import' END AS status_source,
    CASE WHEN r.lead_id IS NOT NULL THEN r.recorded_at
         WHEN c.import_status = 'won' AND c.converted_at <= :as_of THEN c.converted_at
         WHEN c.created_at + INTERVAL {window_days} DAY <= :as_of THEN c.created_at + INTERVAL {window_days} DAY
    END AS decided_at
  FROM current_leads AS c
  LEFT JOIN rep_decided AS r ON r.lead_id = c.lead_id
  LEFT JOIN unanswered AS u ON u.lead_id = c.lead_id
),
measured AS (
  SELECT j.*,
    CASE WHEN j.status = 'open' THEN CAST(:as_of AS TIMESTAMPTZ)
         ELSE LEAST(j.reviewed_at, j.decided_at) END AS measured_at
  FROM judged AS j
),
owners AS (
  SELECT m.lead_id, MIN(i.person_id) AS person_id FROM measured AS m
  JOIN identities AS i ON i.id_type = 'phone' AND i.id_value = m.phone
  JOIN persons AS p ON p.person_id = i.person_id AND p.status = 'active'
  GROUP BY m.lead_id
),
purchases AS (
  SELECT o.lead_id, COUNT(*) AS orders_before FROM owners AS o
  JOIN measured AS m ON m.lead_id = o.lead_id
  JOIN record_persons AS rp ON rp.record_kind = 'order' AND rp.person_id = o.person_id
  JOIN orders AS od ON od.order_id = rp.record_id
  WHERE od.placed_at <= m.measured_at AND COALESCE(od.status, '') <> 'cancelled'
  GROUP BY o.lead_id
),
views AS (
  SELECT o.lead_id, COUNT(*) AS product_views FROM owners AS o
  JOIN measured AS m ON m.lead_id = o.lead_id
  JOIN record_persons AS rp ON rp.record_kind = 'event' AND rp.person_id = o.person_id
  JOIN events AS e ON e.message_id = rp.record_id
  WHERE e.event IN ('Product Viewed', 'Product Added') AND e."timestamp" <= m.measured_at
    AND e."timestamp" > m.measured_at - INTERVAL {intent_days} DAY
  GROUP BY o.lead_id
),
livestreams AS (
  SELECT o.lead_id, COUNT(*) AS livestream_views FROM owners AS o
  JOIN measured AS m ON m.lead_id = o.lead_id
  JOIN record_persons AS rp ON rp.record_kind = 'source_record' AND rp.person_id = o.person_id
  JOIN source_records AS s ON s.record_id = rp.record_id AND s.kind = 'livestream_view'
  WHERE s.occurred_at <= m.measured_at AND s.occurred_at > m.measured_at - INTERVAL {intent_days} DAY
  GROUP BY o.lead_id
),
store_cities AS (SELECT DISTINCT city FROM stores WHERE city IS NOT NULL),
ages AS (
  SELECT m.*, CAST(DATE_DIFF('second', CASE WHEN m.last_activity_at <= m.measured_at THEN m.last_activity_at
                                           ELSE m.created_at END, m.measured_at) AS DOUBLE) / 86400
    AS days_since_activity  -- a DOUBLE: 86400.0 would make it a DECIMAL in DuckDB, rounded
  FROM measured AS m
)
SELECT a.lead_id, a.record_id, o.person_id, a.contact_name, a.company, a.city, a.source, a.created_at,
  a.last_activity_at, a.converted_at, a.status, a.status_source, a.decided_at, a.measured_at, a.no_answers,
  a.pages_viewed, a.price_checks, a.sample_requested, a.days_since_activity,
  CASE WHEN a.days_since_activity <= :fresh_days THEN 1.0
       ELSE POWER(0.5, (a.days_since_activity - :fresh_days) / :half_life_days) END AS freshness,
  COALESCE(v.product_views, 0) AS product_views, COALESCE(l.livestream_views, 0) AS livestream_views,
  COALESCE(b.orders_before, 0) AS orders_before,
  COALESCE(pt.member_id IS NOT NULL AND (pt.member_since IS NULL OR pt.member_since <= a.measured_at), FALSE)
    AS is_member,
  sc.city IS NOT NULL AS city_has_store
FROM ages AS a
LEFT JOIN owners AS o ON o.lead_id = a.lead_id
LEFT JOIN purchases AS b ON b.lead_id = a.lead_id
LEFT JOIN views AS v ON v.lead_id = a.lead_id
LEFT JOIN livestreams AS l ON l.lead_id = a.lead_id
LEFT JOIN person_traits AS pt ON pt.person_id = o.person_id
LEFT JOIN store_cities AS sc ON sc.city = a.city
"""

# The intent tags a rep sees beside the score, as a JSON array.
INTENT_TAGS_SQL = """'[' || CONCAT_WS(',',
    CASE WHEN f.source IS NOT NULL THEN '"source:' || f.source || '"' END,
    CASE WHEN f.sample_requested THEN '"sample_requested"' END,
    CASE WHEN COALESCE(f.price_checks, 0) > 0 THEN '"price_checked"' END,
    CASE WHEN COALESCE(f.pages_viewed, 0) >= 5 THEN '"browsed_5_pages"' END,
    CASE WHEN f.product_views > 0 THEN '"viewed_products"' END,
    CASE WHEN f.livestream_views > 0 THEN '"watched_livestream"' END,
    CASE WHEN f.days_since_activity <= :fresh_days THEN '"active_recently"' END) || ']'"""


def features_sql(as_of: datetime, settings: ScoringSettings, records: str = "source_records") -> exp.Expression:
    """Every lead's status and features as of `as_of` (see the module docstring).

    `records` is the table holding the imported lead rows (`source_records`; the parity
    test gives both engines the same rows under another name).
    """
    days = {"review_days": int(settings.review_days), "intent_days": int(settings.intent_days),
            "window_days": int(settings.review_days + settings.outcome_days)}  # whole days: Spark wants INTERVAL n DAY
    query = parse_sql(FEATURES_SQL.format(records=check_table_name(records), **days))
    values = {"as_of": as_of, "fresh_days": float(settings.fresh_days), "half_life_days": float(settings.half_life_days)}
    return exp.replace_placeholders(query, **{k: literal(v) for k, v in values.items()})


def matrix_sql(features: str) -> exp.Expression:
    """The model's inputs per lead (one column per FEATURES entry), its label and split key."""
    columns = ", ".join(f"{sql} AS {name}" for name, _, sql in FEATURES)
    return parse_sql(f"SELECT f.lead_id, f.status, f.created_at, {columns} FROM {features} AS f")


def _linear(coefficients: Mapping[str, float], centers: Mapping[str, float], group: str | None) -> str:
    """Σ coef × (x − center) over the features of `group` (all when None), as SQL."""
    terms = [f"{_double(coefficients[name])} * (({sql}) - {_double(centers[name])})" for name, part, sql in FEATURES
             if name in coefficients and (group is None or part == group)]
    return " + ".join(terms) if terms else "CAST(0 AS DOUBLE)"


def _double(value: float) -> str:
    """A DOUBLE literal (a bare 0.53 is a DECIMAL in DuckDB, and decimal arithmetic keeps 38 digits)."""
    return f"CAST({float(value)!r} AS DOUBLE)"


def scored_sql(features: str, coefficients: Mapping[str, float] | None, centers: Mapping[str, float],
               intercept: float, version: str, scored_at: datetime, territories: Sequence[tuple[str, str]],
               fresh_days: float) -> exp.Expression:
    """`leads`: the features with the model applied; without a model, score and parts are NULL."""
    if coefficients is None:
        score, parts = "CAST(NULL AS DOUBLE)", {group: "CAST(NULL AS DOUBLE)" for group in GROUPS}
    else:
        score = f"1.0 / (1.0 + EXP(-({_double(intercept)} + {_linear(coefficients, centers, None)})))"
        parts = {group: _linear(coefficients, centers, group) for group in GROUPS}
    territory = _territory_sql("f.city", territories)
    return exp.replace_placeholders(parse_sql(f"""
SELECT f.lead_id, f.record_id, f.person_id, f.contact_name, f.company, f.city, {territory} AS territory,
  f.source, f.created_at, f.last_activity_at, f.status, f.status_source, f.days_since_activity, f.freshness,
  {INTENT_TAGS_SQL} AS intent_tags, CAST(f.no_answers AS INTEGER) AS no_answers, {score} AS score,
  {parts['freshness']} AS freshness_part, {parts['intent']} AS intent_part, {parts['fit']} AS fit_part,
  :version AS model_version, :scored_at AS scored_at
FROM {features} AS f
"""), version=literal(version), scored_at=literal(scored_at), fresh_days=literal(float(fresh_days)))


def _territory_sql(city: str, territories: Sequence[tuple[str, str]]) -> str:
    if not territories:
        return f"CAST('{OTHER}' AS VARCHAR)"
    branches = " ".join(f"WHEN {literal(c).sql('duckdb')} THEN {literal(t).sql('duckdb')}" for c, t in territories)
    return f"CASE {city} {branches} ELSE '{OTHER}' END"


# ---- assignment -------------------------------------------------------------------------------

OPEN_ASSIGNMENTS = "SELECT lead_id FROM lead_assignments WHERE closed_at IS NULL"

ASSIGN_ROUND_SQL = """
WITH reps AS (SELECT * FROM (SELECT '' AS rep_id, 0 AS quota, CAST(NULL AS DATE) AS period_start, 0 AS rep_order)
              AS placeholder_reps),
rep_territories AS (SELECT * FROM (SELECT '' AS rep_id, '' AS territory) AS placeholder_territories),
used AS (
  SELECT a.rep_id, COUNT(*) AS used FROM lead_assignments AS a JOIN reps AS r
    ON r.rep_id = a.rep_id AND a.period_start = r.period_start
  GROUP BY a.rep_id
),
room AS (
  SELECT r.rep_id, r.period_start, r.rep_order, r.quota - COALESCE(u.used, 0) AS room
  FROM reps AS r LEFT JOIN used AS u ON u.rep_id = r.rep_id
  WHERE r.quota - COALESCE(u.used, 0) > 0
),
attempts AS (SELECT lead_id, COUNT(*) AS attempts, MAX(closed_at) AS last_closed FROM lead_assignments
             GROUP BY lead_id),
city_territories AS (SELECT * FROM (SELECT '' AS city, '' AS territory) AS placeholder_cities),
pool AS (
  SELECT l.lead_id, COALESCE(ct.territory, 'other') AS territory,
    COALESCE(l.score, l.freshness) * POWER(:decay, l.no_answers) AS priority,
    l.score, COALESCE(t.attempts, 0) + 1 AS attempt
  FROM leads AS l LEFT JOIN attempts AS t ON t.lead_id = l.lead_id
  LEFT JOIN city_territories AS ct ON ct.city = l.city
  WHERE l.status = 'open' AND l.lead_id NOT IN (SELECT lead_id FROM lead_assignments WHERE closed_at IS NULL)
    AND (l.no_answers = 0 OR t.last_closed IS NULL OR t.last_closed <= :cooled)
),
wanted AS (
  SELECT r.rep_id, r.period_start, r.room, r.rep_order, p.lead_id, p.territory, p.priority, p.score, p.attempt,
    ROW_NUMBER() OVER (PARTITION BY r.rep_id ORDER BY p.priority DESC, p.lead_id) AS pick
  FROM room AS r JOIN rep_territories AS rt ON rt.rep_id = r.rep_id
  JOIN pool AS p ON p.territory = rt.territory
),
claimed AS (
  SELECT w.*, ROW_NUMBER() OVER (PARTITION BY w.lead_id ORDER BY w.pick, w.room DESC, w.rep_order) AS claim
  FROM wanted AS w WHERE w.pick <= w.room
)
SELECT lead_id || ':' || CAST(attempt AS VARCHAR) AS assignment_id, lead_id, CAST(attempt AS INTEGER) AS attempt,
  rep_id, territory, period_start, score, :now AS assigned_at, :assigned_by AS assigned_by,
  CAST(NULL AS TIMESTAMPTZ) AS closed_at, CAST(NULL AS VARCHAR) AS close_reason
FROM claimed WHERE claim = 1
"""


def assign_round_sql(reps: Sequence[tuple[str, int, object, int]], rep_territories: Sequence[tuple[str, str]],
                     city_territories: Sequence[tuple[str, str]], now: datetime, cooled: datetime, decay: float,
                     assigned_by: str) -> exp.Expression:
    """The assignments of one round: `reps` is (rep_id, quota, period_start, order); a lead's
    territory is read from `city_territories` now, so a changed sales.yaml applies at once."""
    query = parse_sql(ASSIGN_ROUND_SQL)
    inline = {"placeholder_reps": _values(["rep_id", "quota", "period_start", "rep_order"], reps),
              "placeholder_territories": _values(["rep_id", "territory"], rep_territories),
              "placeholder_cities": _values(["city", "territory"], city_territories)}

    def swap(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Subquery) and node.alias in inline:
            return inline[node.alias].subquery(node.alias)
        return node

    bound = query.transform(swap)
    values = {"now": now, "cooled": cooled, "decay": float(decay), "assigned_by": assigned_by}
    return exp.replace_placeholders(bound, **{k: literal(v) for k, v in values.items()})


def _values(columns: list[str], rows: Sequence[tuple]) -> exp.Select:
    """SELECT … FROM (VALUES …): a small inline table (an empty one returns no rows)."""
    if not rows:
        nulls = ", ".join(f"CAST(NULL AS VARCHAR) AS {c}" for c in columns)
        return parse_sql(f"SELECT {nulls} WHERE 1 = 0")  # type: ignore[return-value]
    listed = ", ".join("(" + ", ".join(literal(v).sql("duckdb") for v in row) + ")" for row in rows)
    return parse_sql(f"SELECT * FROM (VALUES {listed}) AS v({', '.join(columns)})")  # type: ignore[return-value]


# Checked inside the assigning transaction; any row found rolls it back.
DOUBLE_ASSIGNED_SQL = """
SELECT lead_id, COUNT(*) AS open_assignments FROM lead_assignments WHERE closed_at IS NULL
GROUP BY lead_id HAVING COUNT(*) > 1
"""
DUPLICATE_IDS_SQL = """
SELECT assignment_id, COUNT(*) AS copies FROM lead_assignments GROUP BY assignment_id HAVING COUNT(*) > 1
"""
