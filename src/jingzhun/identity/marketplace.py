"""Marketplace buyers linked to their CRM members by masked phone, surname and city (模糊匹配).

A purchase on Tmall, JD or Douyin shop arrives with the platform's buyer id
(`tmall_open_uid`, `jd_pin`, `douyin_user_id`), a masked receiver phone
(`187****8991`), a masked receiver name (`王**`) and the shipping city. Nothing in it
links deterministically: the buyer id appears nowhere else and a masked phone is weak
evidence that never links (docs/identity.md). Chinese CDPs compare such receivers with
the members' full phones, names and cities; so does `link_marketplace_buyers`:

1. **Blocking**: a receiver and a member are compared only when the member's full
   phone masks to the receiver's (`18712348991` → `187****8991`, first three and last
   four digits) and their surnames are equal: one equi-join, so the work grows with
   the look-alikes, not with buyers × members.
2. **How often a stranger would fit** (from the data): a masked phone hides four
   digits, so of the member phones with the same first three digits about 1 in 10,000
   shares the key by chance; of those, the share of members with the surname, and
   with the city, fit too. That is `expected_chance_fits` (λ) for one receiver.
3. **How often the buyer really is a member who fits** (from the data): over all
   receivers, the fits found minus the fits expected by chance, per receiver (τ, one
   rate per level: same city, or other city).
4. **Probability** that the receiver is one fitting member: odds r = τ / ((1 − τ) λ)
   against chance, shared among all fitting members: p = r / (1 + Σ r). One fit
   with a common surname in a big city among millions of members is weak; the same
   fit among thousands is strong.

A buyer id is linked (`auto_merged`) only when exactly one member (one phone) fits
its receivers plausibly, that member fits no other buyer id of the same platform
beyond the id type's `max_per_person`, and p ≥ `auto_link_threshold`. Otherwise the
plausible pairs go to the review queue (`pending`) with the conflict named. Every
row carries its evidence as JSON. Operators' decisions are kept: a rejected member
is left out before the probabilities are computed, and a buyer with an accepted
member gets no new candidates.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from jingzhun.core.workspace import Workspace
from jingzhun.engine import Column, Engine, MaterializeHints, parse_sql
from jingzhun.identity.config import MarketplaceSettings, load_identity_config
from jingzhun.identity.identifiers import in_list, is_masked_phone_sql, lit, masked_phone_sql
from jingzhun.identity.registry import Registry
from jingzhun.schema.tables import MATCH_CANDIDATES

Progress = Callable[[str, int, int], None]

PREFIX = "mk-"                   # candidate ids of this matcher (the Splink matcher's are mc-)
RULE = "marketplace_match"       # the rule of its links in identity_links
MODEL_VERSION = "marketplace-1"
MEMBER_TYPE = "member_id"
HIDDEN = 10_000                  # a masked phone hides four digits
LEVELS = ("phone_surname_city", "phone_surname")
BUYERS = "identity_market_buyers"            # kept: the buyer side of the review queue
PROFILES = "identity_work_market_profiles"   # scratch tables, dropped at the end
MEMBERS = "identity_work_market_members"
PAIRS = "identity_work_market_pairs"
RATES = "identity_work_market_rates"
SCORED = "identity_work_market_scored"
BUYER_FIELDS = ("name", "birthday", "gender", "province", "city", "phone")  # as the review queue's
BUYER_COLUMNS = (Column("buyer_type", "VARCHAR"), Column("buyer_id", "VARCHAR"),
                 *(Column(name, "VARCHAR") for name in BUYER_FIELDS), Column("orders", "BIGINT"))
CN_MOBILE_E164 = r"^\+861[3-9][0-9]{9}$"


@dataclass(frozen=True)
class MarketplaceResult:
    """What one run wrote: rows per table, notes for the pipeline, counts per status."""

    tables: dict[str, int] = field(default_factory=dict)
    notes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    auto_merged: int = 0
    pending: int = 0


def surname_sql(name: str) -> str:
    """The first character of a name when it is a Chinese character (王** → 王), else NULL.

    Masked receivers keep the surname (王**, 王*怡); a garbled or Latin name gives none.
    """
    first = f"SUBSTRING(TRIM({name}), 1, 1)"
    return f"(CASE WHEN REGEXP_MATCHES({first}, '^[一-鿿]$') THEN {first} END)"


def city_sql(city: str) -> str:
    """A city compared without its 市 suffix (上海市 = 上海); NULL when empty."""
    return f"NULLIF(REGEXP_REPLACE(TRIM({city}), '市$', ''), '')"


def buyer_orders_sql(settings: MarketplaceSettings, registry: Registry) -> str:
    """One row per order that names a platform buyer: its id, receiver and shipping city.

    The buyer id is read from `customer_identifiers` under its type or an alias
    (`buyer_open_uid`), else from `customer_ref`.
    """
    phone = ("COALESCE(o.customer_identifiers->>'$.phone_masked', "
             "CASE WHEN o.customer_ref_type = 'phone_masked' THEN o.customer_ref END)")
    parts = []
    for kind in settings.buyer_types:
        keys = [kind, *sorted(alias for alias, target in registry.aliases.items() if target == kind)]
        values = ", ".join(f"o.customer_identifiers->>{lit('$.' + key)}" for key in keys)
        ref = f"CASE WHEN o.customer_ref_type IN {in_list(keys)} THEN o.customer_ref END"
        parts.append(f"SELECT {lit(kind)} AS buyer_type, NULLIF(TRIM(COALESCE({values}, {ref})), '') AS buyer_id, "
                     f"o.order_id, {phone} AS raw_phone, o.receiver_name, o.ship_city, o.ship_province "
                     f"FROM orders AS o")
    return "\nUNION ALL\n".join(parts)


# One row per distinct receiver of a buyer (buyer, masked phone, surname, city) with the
# data's counts for it: member phones sharing its first three digits, members with its
# surname, in its city, and in all.
PROFILES_SQL = """
WITH orders AS ({orders}),
receivers AS (
  SELECT buyer_type, buyer_id, order_id,
    CASE WHEN {is_masked} THEN {masked} END AS masked,
    {surname} AS surname, {city} AS city, NULLIF(TRIM(ship_province), '') AS province
  FROM orders WHERE buyer_id IS NOT NULL
),
grouped AS (
  SELECT buyer_type, buyer_id, masked, surname, city, MIN(province) AS province, COUNT(*) AS orders
  FROM receivers WHERE masked IS NOT NULL
  GROUP BY buyer_type, buyer_id, masked, surname, city
),
prefixes AS (SELECT prefix, COUNT(DISTINCT phone) AS phones FROM {members} GROUP BY prefix),
keys AS (SELECT masked, COUNT(DISTINCT phone) AS phones FROM {members} GROUP BY masked),
surnames AS (SELECT surname, COUNT(*) AS members FROM {members} WHERE surname IS NOT NULL GROUP BY surname),
cities AS (SELECT city, COUNT(*) AS members FROM {members} WHERE city IS NOT NULL GROUP BY city),
total AS (SELECT COUNT(*) AS members, COUNT(surname) AS named FROM {members})
SELECT MD5(TO_JSON([g.buyer_type, g.buyer_id, g.masked, g.surname, g.city])) AS profile_id, g.*,
  COALESCE(k.phones, 0) AS key_phones, COALESCE(x.phones, 0) AS prefix_phones,
  CAST(COALESCE(s.members, 0) AS DOUBLE) / GREATEST(t.named, 1) AS surname_share,
  CAST(COALESCE(c.members, 0) AS DOUBLE) / GREATEST(t.members, 1) AS city_share
FROM grouped AS g
LEFT JOIN keys AS k ON k.masked = g.masked
LEFT JOIN prefixes AS x ON x.prefix = SUBSTRING(g.masked, 1, 3)
LEFT JOIN surnames AS s ON s.surname = g.surname
LEFT JOIN cities AS c ON c.city = g.city
CROSS JOIN total AS t
"""

MEMBERS_SQL = """
SELECT member_id, phone, {masked} AS masked, SUBSTRING(phone, 4, 3) AS prefix,
  {surname} AS surname, {city} AS city
FROM {records} WHERE REGEXP_MATCHES(phone, {mobile})
"""

# Receiver × member phone, blocked on masked phone and surname; members sharing a phone
# are one candidate (the graph joins them through it), named by the one in the city.
PAIRS_SQL = """
WITH joined AS (
  SELECT p.profile_id, p.buyer_type, p.buyer_id, m.phone, m.member_id,
    CASE WHEN m.city = p.city THEN 1 ELSE 0 END AS same_city
  FROM {profiles} AS p JOIN {members} AS m ON m.masked = p.masked AND m.surname = p.surname
  LEFT JOIN (SELECT left_type, left_value, right_value FROM match_candidates
             WHERE status = 'rejected' AND right_type = :member_type) AS r
    ON r.left_type = p.buyer_type AND r.left_value = p.buyer_id AND r.right_value = m.member_id
  WHERE r.right_value IS NULL
)
SELECT profile_id, MIN(buyer_type) AS buyer_type, MIN(buyer_id) AS buyer_id, phone,
  MAX(same_city) AS same_city, COUNT(*) AS members,
  SUBSTRING(MIN(CAST(1 - same_city AS VARCHAR) || member_id), 2) AS member_id
FROM joined GROUP BY profile_id, phone
"""

# The data's rates: receivers that could fit (they have a surname), the chance fits
# expected over all of them per level, and the fits found per level.
RATES_SQL = """
WITH expected AS (
  SELECT COUNT(*) AS receivers,
    SUM(prefix_phones * surname_share * city_share) / {hidden} AS chance_city,
    SUM(prefix_phones * surname_share * (1 - city_share)) / {hidden} AS chance_other
  FROM {profiles} WHERE surname IS NOT NULL
),
found AS (SELECT SUM(same_city) AS fits_city, SUM(1 - same_city) AS fits_other FROM {pairs})
SELECT e.receivers, e.chance_city, e.chance_other,
  COALESCE(f.fits_city, 0) AS fits_city, COALESCE(f.fits_other, 0) AS fits_other,
  GREATEST(COALESCE(f.fits_city, 0) - COALESCE(e.chance_city, 0), 0) / GREATEST(e.receivers, 1) AS rate_city,
  GREATEST(COALESCE(f.fits_other, 0) - COALESCE(e.chance_other, 0), 0) / GREATEST(e.receivers, 1) AS rate_other
FROM expected AS e CROSS JOIN found AS f
"""

# Each receiver × candidate: chance fits λ at its level, odds r against chance, the
# probability shared among the receiver's candidates, and on its own.
SCORED_SQL = """
WITH odds AS (
  SELECT a.*, p.masked, p.surname, p.city, p.orders, p.key_phones, p.prefix_phones,
    p.surname_share, p.city_share,
    CASE WHEN a.same_city = 1 THEN r.rate_city ELSE r.rate_other END AS rate,
    p.prefix_phones * p.surname_share
      * CASE WHEN a.same_city = 1 THEN p.city_share ELSE 1 - p.city_share END / {hidden} AS chance,
    LEAST(r.rate_city + r.rate_other, 0.999) AS rate_any
  FROM {pairs} AS a JOIN {profiles} AS p ON p.profile_id = a.profile_id CROSS JOIN {rates} AS r
), scored AS (
  SELECT *, CASE WHEN chance > 0 THEN rate / ((1 - rate_any) * chance) ELSE 0 END AS r FROM odds
)
SELECT *, r / (1 + SUM(r) OVER (PARTITION BY profile_id)) AS probability, r / (1 + r) AS alone,
  COUNT(*) OVER (PARTITION BY profile_id) AS key_surname_phones,
  SUM(same_city) OVER (PARTITION BY profile_id) AS fitting_phones
FROM scored
"""

# Per buyer and candidate phone: the receiver that makes the strongest case, the
# conflicts, and the row for match_candidates. A buyer an operator has settled (an
# accepted member) gets no new candidates; accepted pairs count as claims on a member.
CANDIDATES_SQL = """
WITH best AS (
  SELECT s.*,
    ROW_NUMBER() OVER (PARTITION BY buyer_type, buyer_id, phone ORDER BY probability DESC, profile_id) AS pick,
    SUM(orders) OVER (PARTITION BY buyer_type, buyer_id, phone) AS orders_fitting,
    MAX(alone) OVER (PARTITION BY buyer_type, buyer_id, phone) AS best_alone
  FROM {scored} AS s
),
plausible AS (SELECT * FROM best WHERE pick = 1 AND best_alone >= :review),
accepted AS (
  SELECT c.left_type AS buyer_type, c.left_value AS buyer_id, m.phone FROM match_candidates AS c
  JOIN {members} AS m ON m.member_id = c.right_value
  WHERE c.status = 'accepted' AND c.right_type = :member_type
),
claims AS (
  SELECT buyer_type, phone, COUNT(DISTINCT buyer_id) AS buyers FROM (
    SELECT buyer_type, buyer_id, phone FROM plausible UNION ALL SELECT buyer_type, buyer_id, phone FROM accepted
  ) AS c GROUP BY buyer_type, phone
),
fits AS (SELECT buyer_type, buyer_id, COUNT(*) AS phones FROM plausible GROUP BY buyer_type, buyer_id),
totals AS (SELECT buyer_type, buyer_id, SUM(orders) AS orders FROM {profiles} GROUP BY buyer_type, buyer_id),
judged AS (
  SELECT p.*, t.orders AS buyer_orders,
    CASE WHEN f.phones > 1 THEN 'buyer_fits_several_members'
         WHEN c.buyers > COALESCE(l.max_per_person, c.buyers) THEN 'member_fits_several_buyers'
         ELSE 'none' END AS conflict
  FROM plausible AS p
  JOIN fits AS f ON f.buyer_type = p.buyer_type AND f.buyer_id = p.buyer_id
  JOIN claims AS c ON c.buyer_type = p.buyer_type AND c.phone = p.phone
  JOIN totals AS t ON t.buyer_type = p.buyer_type AND t.buyer_id = p.buyer_id
  LEFT JOIN ({limits}) AS l ON l.buyer_type = p.buyer_type
  LEFT JOIN (SELECT DISTINCT buyer_type, buyer_id FROM accepted) AS settled
    ON settled.buyer_type = p.buyer_type AND settled.buyer_id = p.buyer_id
  WHERE settled.buyer_id IS NULL
)
SELECT {prefix} || SUBSTRING(MD5(buyer_type || ':' || buyer_id || '|' || member_id), 1, 16) AS candidate_id,
  buyer_type AS left_type, buyer_id AS left_value, :member_type AS right_type, member_id AS right_value,
  probability AS match_probability, LOG2(r) AS match_weight,
  CASE WHEN conflict = 'none' AND probability >= :auto THEN 'auto_merged' ELSE 'pending' END AS status,
  {evidence} AS evidence, :version AS model_version, :now AS created_at,
  CAST(NULL AS VARCHAR) AS reviewed_by, CAST(NULL AS TIMESTAMPTZ) AS reviewed_at
FROM judged
"""

# The evidence of one candidate, as JSON. Numbers are decimals, so both engines print
# them alike (Spark prints a small double as 4.0E-4, DuckDB as 0.0004).
EVIDENCE_FIELDS = (
    ("matcher", "'marketplace'"),
    ("level", f"CASE WHEN same_city = 1 THEN '{LEVELS[0]}' ELSE '{LEVELS[1]}' END"),
    ("phone_masked", "masked"), ("surname", "surname"), ("city", "COALESCE(city, '')"),
    ("orders", "buyer_orders"), ("orders_fitting", "orders_fitting"),
    ("members_sharing_key", "key_phones"), ("members_sharing_key_surname", "key_surname_phones"),
    ("members_fitting", "fitting_phones"), ("members_sharing_prefix", "prefix_phones"),
    ("surname_share", "CAST(surname_share AS DECIMAL(18, 6))"),
    ("city_share", "CAST(city_share AS DECIMAL(18, 6))"),
    ("expected_chance_fits", "CAST(chance AS DECIMAL(24, 12))"),
    ("true_fit_rate", "CAST(rate AS DECIMAL(18, 6))"),
    ("false_link_chance", "CAST(1 - probability AS DECIMAL(18, 6))"),
    ("conflict", "conflict"),
)


def evidence_sql() -> str:
    """`TO_JSON(STRUCT_PACK(...))` of the evidence fields (none NULL: Spark would drop it)."""
    return "TO_JSON(STRUCT_PACK(" + ", ".join(f"{name} := {value}" for name, value in EVIDENCE_FIELDS) + "))"


# Keep operators' decisions and the other matchers' rows; replace this matcher's.
WRITE_SQL = """
WITH kept AS (
  SELECT * FROM match_candidates
  WHERE status IN ('accepted', 'rejected') OR candidate_id NOT LIKE :own
)
SELECT candidate_id, left_type, left_value, right_type, right_value, match_probability,
  match_weight, status, evidence, model_version, created_at, reviewed_by, reviewed_at FROM kept
{fresh}
"""

BUYERS_SQL = """
SELECT p.buyer_type, p.buyer_id, p.surname || '**' AS name, CAST(NULL AS VARCHAR) AS birthday,
  CAST(NULL AS VARCHAR) AS gender, p.province, p.city, p.masked AS phone, CAST(t.orders AS BIGINT) AS orders
FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY buyer_type, buyer_id ORDER BY orders DESC, profile_id) AS n
      FROM {profiles}) AS p
JOIN (SELECT buyer_type, buyer_id, SUM(orders) AS orders FROM {profiles} GROUP BY buyer_type, buyer_id) AS t
  ON t.buyer_type = p.buyer_type AND t.buyer_id = p.buyer_id
JOIN (SELECT DISTINCT left_type, left_value FROM match_candidates WHERE candidate_id LIKE :own) AS c
  ON c.left_type = p.buyer_type AND c.left_value = p.buyer_id
WHERE p.n = 1
"""


def link_marketplace_buyers(workspace: Workspace | None, engine: Engine, records: str,
                            progress: Progress | None = None) -> MarketplaceResult:
    """Score marketplace receivers against the members in `records` (the matcher's member
    table: member_id, phone, name, city) and rewrite this matcher's match candidates.

    Returns:
        A `MarketplaceResult` with the rows written and the counts per status.
    """
    config = load_identity_config(workspace)
    settings, registry = config.marketplace, config.registry()
    report = progress or (lambda step, done, total: None)
    engine.create_table(MATCH_CANDIDATES.name, MATCH_CANDIDATES.columns)
    skipped = _skip_reason(engine, settings, records)
    if skipped:
        rows = write_marketplace_candidates(engine, None)
        return MarketplaceResult({MATCH_CANDIDATES.name: rows.num_rows}, [(skipped, {})])
    report("marketplace_receivers", 0, 3)
    _scratch(engine, MEMBERS, MEMBERS_SQL.format(masked=masked_phone_sql("phone"), surname=surname_sql("name"),
                                                 city=city_sql("city"), records=records,
                                                 mobile=lit(CN_MOBILE_E164)))
    _scratch(engine, PROFILES, profiles_sql(settings, registry))
    report("marketplace_pairs", 1, 3)
    _scratch(engine, PAIRS, bind(PAIRS_SQL.format(profiles=PROFILES, members=MEMBERS), member_type=MEMBER_TYPE))
    _scratch(engine, RATES, RATES_SQL.format(profiles=PROFILES, pairs=PAIRS, hidden=f"{HIDDEN}.0"))
    _scratch(engine, SCORED, SCORED_SQL.format(profiles=PROFILES, pairs=PAIRS, rates=RATES, hidden=f"{HIDDEN}.0"))
    report("marketplace_candidates", 2, 3)
    rows = write_marketplace_candidates(engine, candidates_sql(settings, registry), settings)
    engine.materialize(BUYERS, bind(BUYERS_SQL.format(profiles=PROFILES), own=PREFIX + "%"))
    rates = engine.query(f"SELECT * FROM {RATES}").to_pylist()[0]
    buyers = engine.query(f"SELECT COUNT(DISTINCT buyer_type || ':' || buyer_id) AS n FROM {PROFILES}")
    for name in (MEMBERS, PROFILES, PAIRS, RATES, SCORED):
        engine.drop_table(name)
    counts = status_counts(rows)
    note = {**counts, "buyers": buyers.column("n")[0].as_py(), "receivers": rates["receivers"],
            "rate_city": round(rates["rate_city"] or 0.0, 4)}
    return MarketplaceResult({MATCH_CANDIDATES.name: rows.num_rows, BUYERS: engine.row_count(BUYERS)},
                             [("note.marketplace_done", note)], counts["auto_merged"], counts["pending"])


def _skip_reason(engine: Engine, settings: MarketplaceSettings, records: str) -> str | None:
    """Why nothing can be compared (a note key), or None."""
    if not settings.enabled:
        return "note.marketplace_disabled"
    if not engine.table_exists(records) or not engine.table_exists("orders"):
        return "note.marketplace_no_data"
    if "receiver_name" not in engine.query("SELECT * FROM orders LIMIT 0").column_names:
        return "note.marketplace_no_data"
    plain = engine.query(bind(f"SELECT COUNT(*) AS n FROM {records} WHERE REGEXP_MATCHES(phone, :mobile)",
                              mobile=CN_MOBILE_E164))
    if not plain.column("n")[0].as_py():
        return "note.marketplace_no_phones"
    return None


def profiles_sql(settings: MarketplaceSettings, registry: Registry) -> str:
    """The distinct receivers of every buyer with the member counts they are judged by."""
    return PROFILES_SQL.format(
        orders=buyer_orders_sql(settings, registry), is_masked=is_masked_phone_sql("raw_phone"),
        masked=masked_phone_sql("raw_phone"), surname=surname_sql("receiver_name"),
        city=city_sql("ship_city"), members=MEMBERS)


def candidates_sql(settings: MarketplaceSettings, registry: Registry) -> str:
    """This run's candidate rows, placeholders unbound (needs the scratch tables)."""
    limited = [(kind, registry.get(kind)) for kind in settings.buyer_types]
    rows = [f"({lit(kind)}, {id_type.max_per_person})" for kind, id_type in limited
            if id_type is not None and id_type.max_per_person is not None]
    limits = (f"SELECT * FROM (VALUES {', '.join(rows)}) AS l(buyer_type, max_per_person)" if rows else
              "SELECT CAST(NULL AS VARCHAR) AS buyer_type, CAST(NULL AS BIGINT) AS max_per_person WHERE FALSE")
    return CANDIDATES_SQL.format(scored=SCORED, members=MEMBERS, profiles=PROFILES, limits=limits,
                                 evidence=evidence_sql(), prefix=lit(PREFIX))


def write_marketplace_candidates(engine: Engine, fresh: str | None,
                                 settings: MarketplaceSettings | None = None) -> pa.Table:
    """Rewrite `match_candidates`: decisions and other matchers' rows kept, this matcher's
    undecided rows replaced by the `fresh` query (removed when None); return the rows."""
    values: dict[str, object] = {"own": PREFIX + "%"}
    union = ""
    if fresh is not None and settings is not None:
        union = f"UNION ALL SELECT * FROM ({fresh}) AS fresh"
        values.update(review=settings.review_threshold, auto=settings.auto_link_threshold,
                      member_type=MEMBER_TYPE, version=MODEL_VERSION, now=_now())
    rows = engine.query(bind(WRITE_SQL.format(fresh=union), **values))
    with engine.transaction():
        engine.write_table(MATCH_CANDIDATES.name, rows, mode="replace")
    return rows


def status_counts(rows: pa.Table) -> dict[str, int]:
    """This matcher's undecided rows per status."""
    own = rows.filter(pc.starts_with(rows["candidate_id"], PREFIX))
    statuses = own["status"].to_pylist()
    return {status: statuses.count(status) for status in ("auto_merged", "pending")}


def _scratch(engine: Engine, name: str, sql: str | exp.Expression) -> None:
    engine.materialize(name, sql, MaterializeHints(scratch=True))


def bind(sql: str, **values: object) -> exp.Expression:
    """Parse DuckDB-dialect SQL and bind `:name` placeholders as literals (never as text)."""
    return exp.replace_placeholders(parse_sql(sql), **{k: exp.convert(v) for k, v in values.items()})


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)
