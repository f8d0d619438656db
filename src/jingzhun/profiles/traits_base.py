"""Base attributes (基础属性): who the person is, from CRM, surveys, SDKs and social platforms.

Several sources may state the same attribute, and they do not agree. The rule is
per attribute: the most trusted source that states it wins, and within a source the
latest statement wins (by the record's own time: registration, submission, event
time; ties on the record id):

    1 crm         CRM member rows (source_records kind member)
    2 survey      questionnaire answers (survey_responses) — 小数据: income, job
    3 events      Segment identify calls' traits
    4 social      what WeChat, Douyin and Weibo report (gender only; the platforms guess)
    5 identities  identifiers the ID graph resolved to the person (member_id)

A source that leaves an attribute empty (or unparseable, e.g. a bad birthday) does
not hide a lower source's value. `member_since` is the earliest CRM registration.
The winners are one long table (person_id, trait, value, source), so the portrait
can say where each value came from.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp

from jingzhun.engine import parse_sql
from jingzhun.profiles.traits_sql import BASE_CANDIDATES, TraitWindow, bind, owned


@dataclass(frozen=True)
class BaseSource:
    """One source of base attributes: its rows (person_id, record_id, observed_at, …)
    and, per trait, the expressions over those rows that state it (first non-empty wins)."""

    name: str
    rank: int
    rows_sql: str
    fields: dict[str, tuple[str, ...]]


CRM = BaseSource(
    "crm", 1,
    f"""SELECT rp.person_id, s.record_id, s.occurred_at AS observed_at, s.attributes AS doc, s.identifiers AS ids
    FROM source_records AS s {owned('source_record', 's', 'record_id')}
    WHERE s.kind = 'member' AND (s.occurred_at IS NULL OR s.occurred_at <= :as_of)""",
    {
        "name": ("doc->>'$.name'",), "gender": ("doc->>'$.gender'",),
        "birth_date": ("doc->>'$.birthday'", "doc->>'$.birth_date'"),
        "province": ("doc->>'$.province'",), "city": ("doc->>'$.city'",),
        "member_id": ("ids->>'$.member_id'", "doc->>'$.member_id'"),
        "member_level": ("doc->>'$.level'", "doc->>'$.member_level'"),
        "register_store": ("doc->>'$.register_store'",),
    },
)
SURVEY = BaseSource(
    "survey", 2,
    f"""SELECT rp.person_id, r.response_id AS record_id, r.submitted_at AS observed_at, r.answers AS doc
    FROM survey_responses AS r {owned('survey_response', 'r', 'response_id')}
    WHERE r.submitted_at IS NULL OR r.submitted_at <= :as_of""",
    {
        "income_band": ("doc->>'$.income'", "doc->>'$.income_band'"),
        "job": ("doc->>'$.job'",),
        "price_sensitivity": ("doc->>'$.price_sensitivity'",),
    },
)
EVENTS = BaseSource(
    "events", 3,
    f"""SELECT rp.person_id, e.message_id AS record_id, e."timestamp" AS observed_at, e.traits AS doc
    FROM events AS e {owned('event', 'e', 'message_id')}
    WHERE e.type = 'identify' AND e.traits IS NOT NULL AND e."timestamp" <= :as_of""",
    {
        "name": ("doc->>'$.name'",), "gender": ("doc->>'$.gender'",),
        "birth_date": ("doc->>'$.birthday'",),
        "province": ("doc->>'$.province'", "doc->>'$.address.state'"),
        "city": ("doc->>'$.city'", "doc->>'$.address.city'"),
        "member_level": ("doc->>'$.member_level'",),
    },
)
SOCIAL = BaseSource(
    "social", 4,
    f"""SELECT rp.person_id, s.record_id, s.occurred_at AS observed_at, s.attributes AS doc
    FROM source_records AS s {owned('source_record', 's', 'record_id')}
    WHERE s.kind IN ('follow', 'interaction') AND s.occurred_at <= :as_of""",
    {"gender": ("doc->>'$.gender'",)},
)
IDENTITIES = BaseSource(
    "identities", 5,
    """SELECT i.person_id, i.id_value AS record_id, i.last_seen AS observed_at, i.id_value
    FROM identities AS i JOIN persons AS pe ON pe.person_id = i.person_id AND pe.status = 'active'
    WHERE i.id_type = 'member_id'""",
    {"member_id": ("id_value",)},
)
SOURCES: tuple[BaseSource, ...] = (CRM, SURVEY, EVENTS, SOCIAL, IDENTITIES)

# Each trait's stated text, cleaned: gender to M/F (男/女, male/female, WeChat's 1/2),
# dates to ISO (a timestamp keeps its date), numbers to integers; empty becomes NULL.
_CLEAN = {
    "gender": """CASE WHEN UPPER(TRIM(value)) IN ('M', 'MALE', '男', '1') THEN 'M'
                      WHEN UPPER(TRIM(value)) IN ('F', 'FEMALE', '女', '2') THEN 'F' END""",
    "birth_date": "CAST(TRY_CAST(SUBSTRING(TRIM(value), 1, 10) AS DATE) AS VARCHAR)",
    "price_sensitivity": "CAST(TRY_CAST(TRIM(value) AS INTEGER) AS VARCHAR)",
}


def _source_select(source: BaseSource) -> str:
    """One source's candidates: a row per record and trait it can state."""
    cases = " ".join(
        f"WHEN '{trait}' THEN COALESCE({', '.join(f'CAST({e} AS VARCHAR)' for e in exprs)})"
        for trait, exprs in source.fields.items()
    )
    traits = ", ".join(f"('{trait}')" for trait in source.fields)
    return (
        f"SELECT r.person_id, t.trait, CASE t.trait {cases} END AS value, {source.rank} AS source_rank, "
        f"'{source.name}' AS source, r.observed_at, r.record_id "
        f"FROM ({source.rows_sql}) AS r CROSS JOIN (VALUES {traits}) AS t(trait)"
    )


def _cleaned_value() -> str:
    cases = " ".join(f"WHEN '{trait}' THEN {sql}" for trait, sql in _CLEAN.items())
    return f"CASE trait {cases} ELSE NULLIF(TRIM(value), '') END"


def base_candidates_sql(window: TraitWindow, sources: tuple[BaseSource, ...] = SOURCES) -> exp.Expression:
    """The SELECT behind `traits_base_candidates`: every statement of a base attribute,
    as stated (person_id, trait, value, source_rank, source, observed_at, record_id).

    Materialized on its own so each JSON document is parsed once per trait: an engine
    inlining the cleaning expressions below into this query would parse it again for
    every reference (DuckDB does).

    Example:
        >>> import datetime as dt
        >>> w = TraitWindow(dt.datetime(2025, 1, 1, tzinfo=dt.UTC), "Asia/Shanghai")
        >>> "CROSS JOIN" in base_candidates_sql(w).sql(dialect="spark")
        True
    """
    return bind("\nUNION ALL\n".join(_source_select(source) for source in sources), window)


def base_values_sql(candidates: str = BASE_CANDIDATES) -> exp.Expression:
    """The SELECT behind `traits_base_values`: (person_id, trait, value, source), the
    winning statement of each base attribute per person, plus `member_since`.

    Example:
        >>> "ROW_NUMBER" in base_values_sql().sql(dialect="spark")
        True
    """
    sql = f"""
    WITH cleaned AS (
      SELECT person_id, trait, {_cleaned_value()} AS value, source_rank, source, observed_at, record_id
      FROM {candidates}
    ),
    ranked AS (
      SELECT person_id, trait, value, source, ROW_NUMBER() OVER (PARTITION BY person_id, trait
        ORDER BY source_rank, observed_at DESC NULLS LAST, record_id DESC) AS pick
      FROM cleaned WHERE value IS NOT NULL
    ),
    registered AS (
      SELECT person_id, MIN(observed_at) AS member_since FROM {candidates}
      WHERE source = '{CRM.name}' AND observed_at IS NOT NULL GROUP BY person_id
    )
    SELECT person_id, trait, value, source FROM ranked WHERE pick = 1
    UNION ALL
    SELECT person_id, 'member_since', STRFTIME(member_since, '%Y-%m-%d %H:%M:%S'), '{CRM.name}' FROM registered
    """
    return parse_sql(sql)
