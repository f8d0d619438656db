"""Marketplace buyers linked to their CRM members by masked phone, surname and city (模糊匹配).

A purchase on Tmall, JD or Douyin shop arrives with the platform's buyer id
(`tmall_open_uid`, `jd_pin`, `douyin_user_id`), a masked receiver phone
(`187****8991`), a masked receiver name (`王**`) and the shipping city. Nothing in it
links deterministically: the buyer id appears nowhere else and a masked phone is weak
evidence that never links (docs/identity.md). Chinese CDPs compare such receivers with
the members' full phones, names and cities; so does `link_marketplace_buyers`, and
with the receivers of the other platforms (one person's Tmall and Douyin accounts ship
to the same masked phone, surname and city):

1. **Blocking**: a receiver meets a member only when the member's full phone masks to
   the receiver's (`18712348991` → `187****8991`) and their surnames are equal (a
   receiver of another platform: the same masked phone and surname). One equi-join.
2. **How often a stranger would fit** (from the data): a masked phone hides four
   digits, so of the targets whose phone starts with the same three digits about 1 in
   10,000 shares the key by chance; of those, the share with the surname, and with the
   city, fit too: λ for one receiver (`expected_chance_fits_per_million` in the evidence).
3. **How often the buyer really is a target who fits** (from the data): over all
   receivers, the fits found minus the fits expected by chance, per receiver (τ, one
   rate per platform, type compared with and level: same city, or other city).
4. **Probability** that the receiver is one fitting target: odds r = τ / ((1 − τ) λ)
   against chance, shared among all fitting targets of the type: p = r / (1 + Σ r).

A buyer id is linked (`auto_merged`) only when exactly one target of a type (one
member phone, one buyer id) fits its receivers plausibly, that target fits no more
buyer ids of the same platform than the id type's `max_per_person`, and
p ≥ `auto_link_threshold`. Otherwise the plausible pairs go to the review queue
(`pending`) with the conflict named. Every row carries its evidence as JSON.
Operators' decisions are kept: a rejected pair is left out before the probabilities
are computed, and a buyer with an accepted pair of a type gets no new candidates of it.
The SQL is in `marketplace_sql`; docs/matching.md has the details and the demo's
numbers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp

from jingzhun.core.workspace import Workspace
from jingzhun.engine import Column, Engine, MaterializeHints, parse_sql
from jingzhun.identity import marketplace_sql as S
from jingzhun.identity.config import MarketplaceSettings, load_identity_config
from jingzhun.identity.tables import replace_rows
from jingzhun.schema.tables import MATCH_CANDIDATES

Progress = Callable[[str, int, int], None]

PREFIX = "mk-"                   # candidate ids of this matcher (the Splink matcher's are mc-)
RULE = "marketplace_match"       # the rule of its links in identity_links
MODEL_VERSION = "marketplace-1"
BUYERS = "identity_market_buyers"            # kept: the buyer side of the review queue
BUYER_FIELDS = ("name", "birthday", "gender", "province", "city", "phone")  # as the review queue's
BUYER_COLUMNS = (Column("buyer_type", "VARCHAR"), Column("buyer_id", "VARCHAR"),
                 *(Column(name, "VARCHAR") for name in BUYER_FIELDS), Column("orders", "BIGINT"))


@dataclass(frozen=True)
class MarketplaceResult:
    """What one run wrote: rows per table, notes for the pipeline, counts per status."""

    tables: dict[str, int] = field(default_factory=dict)
    notes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    auto_merged: int = 0
    pending: int = 0


def link_marketplace_buyers(workspace: Workspace | None, engine: Engine, records: str,
                            progress: Progress | None = None) -> MarketplaceResult:
    """Score marketplace receivers against the members in `records` (the matcher's member
    table: member_id, phone, name, city) and against each other platform's receivers, and
    rewrite this matcher's match candidates.

    Returns:
        A `MarketplaceResult` with the rows written and the counts per status.
    """
    config = load_identity_config(workspace)
    settings, registry = config.marketplace, config.registry()
    report = progress or (lambda step, done, total: None)
    engine.create_table(MATCH_CANDIDATES.name, MATCH_CANDIDATES.columns)
    skipped = _skip_reason(engine, settings, records)
    if skipped:
        written = write_marketplace_candidates(engine, None)
        return MarketplaceResult({MATCH_CANDIDATES.name: written["rows"]}, [(skipped, {})])
    report("marketplace_receivers", 0, 3)
    _scratch(engine, S.RECEIVERS, S.receivers_sql(settings, registry))
    _scratch(engine, S.TARGETS, S.targets_sql(records))
    _scratch(engine, S.PROFILES, S.PROFILES_SQL)
    report("marketplace_pairs", 1, 3)
    _scratch(engine, S.PAIRS, S.PAIRS_SQL)
    _scratch(engine, S.RATES, S.RATES_SQL)
    _scratch(engine, S.SCORED, S.SCORED_SQL)
    report("marketplace_candidates", 2, 3)
    written = write_marketplace_candidates(engine, S.candidates_sql(settings, registry, PREFIX), settings)
    engine.materialize(BUYERS, bind(S.BUYERS_SQL, own=PREFIX + "%"))
    note = {"auto_merged": written["auto_merged"], "pending": written["pending"], **_run_counts(engine)}
    for name in S.SCRATCH:
        engine.drop_table(name)
    return MarketplaceResult({MATCH_CANDIDATES.name: written["rows"], BUYERS: engine.row_count(BUYERS)},
                             [("note.marketplace_done", note)], note["auto_merged"], note["pending"])


def _run_counts(engine: Engine) -> dict[str, Any]:
    """Buyers compared, and the members' true-fit rate (same city) for the run's note."""
    buyers = engine.query(f"SELECT COUNT(DISTINCT buyer_type || ':' || buyer_id) AS n FROM {S.RECEIVERS}")
    rate = engine.query(bind(f"SELECT SUM(rate_city * receivers) / SUM(receivers) AS rate FROM {S.RATES} "
                             f"WHERE target_type = :member", member=S.MEMBER_TYPE)).column("rate")[0].as_py()
    return {"buyers": buyers.column("n")[0].as_py(), "rate_city": round(float(rate or 0.0), 4)}


def _skip_reason(engine: Engine, settings: MarketplaceSettings, records: str) -> str | None:
    """Why nothing can be compared (a note key), or None."""
    if not settings.enabled:
        return "note.marketplace_disabled"
    if not engine.table_exists(records) or not engine.table_exists("orders"):
        return "note.marketplace_no_data"
    if "receiver_name" not in engine.query("SELECT * FROM orders LIMIT 0").column_names:
        return "note.marketplace_no_data"
    plain = engine.query(bind(f"SELECT COUNT(*) AS n FROM {records} WHERE REGEXP_MATCHES(phone, :mobile)",
                              mobile=S.CN_MOBILE_E164))
    if not plain.column("n")[0].as_py():
        return "note.marketplace_no_phones"
    return None


def write_marketplace_candidates(engine: Engine, fresh: str | None,
                                 settings: MarketplaceSettings | None = None) -> dict[str, int]:
    """Rewrite `match_candidates`: decisions and other matchers' rows kept, this matcher's
    undecided rows replaced by the `fresh` query (removed when None).

    The next table is computed in the engine (a scratch table, then one replace), never
    through Python: at a million buyers it is hundreds of MB of evidence.

    Returns:
        Rows written in all, and this matcher's undecided rows per status.
    """
    values: dict[str, object] = {"own": PREFIX + "%"}
    union = ""
    if fresh is not None and settings is not None:
        union = f"UNION ALL SELECT * FROM ({fresh}) AS fresh"
        values.update(review=settings.review_threshold, auto=settings.auto_link_threshold,
                      version=MODEL_VERSION, now=_now())
    _scratch(engine, S.NEXT, bind(S.WRITE_SQL.format(fresh=union), **values))
    counts = engine.query(bind(f"SELECT COUNT(*) AS rows, SUM(CASE WHEN candidate_id LIKE :own AND status = "
                               f"'auto_merged' THEN 1 ELSE 0 END) AS auto_merged, SUM(CASE WHEN candidate_id "
                               f"LIKE :own AND status = 'pending' THEN 1 ELSE 0 END) AS pending FROM {S.NEXT}",
                               own=PREFIX + "%")).to_pylist()[0]
    with engine.transaction():
        replace_rows(engine, MATCH_CANDIDATES, f"SELECT * FROM {S.NEXT}")
    engine.drop_table(S.NEXT)
    return {name: int(value or 0) for name, value in counts.items()}


def _scratch(engine: Engine, name: str, sql: str | exp.Expression) -> None:
    engine.materialize(name, sql, MaterializeHints(scratch=True))


def bind(sql: str, **values: object) -> exp.Expression:
    """Parse DuckDB-dialect SQL and bind `:name` placeholders as literals (never as text)."""
    return exp.replace_placeholders(parse_sql(sql), **{k: exp.convert(v) for k, v in values.items()})


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)
