"""Junk values and links: from observations to the edges of the ID graph, in SQL.

Junk never links. A value is junk when it is a placeholder ('null', '-', 'test' …),
is on the blocklist (test numbers such as 13800138000, values listed in
definitions/identity.yaml), matches a blocklist pattern, or is *shared*: seen on
records with more distinct values of one limited id type (member ids, unionids,
platform user ids) than `shared_value_threshold` (strong values, default 3) or
`weak_shared_threshold` (cookies and devices, default 1) — a store's own phone typed
at the till for every member, a family tablet. Every junk value is listed with its
reason in `identity_junk`.

Links come from identifiers sharing a record (a star from the record's strongest
identifier), from ad-platform hashes that equal the hash of a known plain phone or
e-mail (`hash_match`), from the probabilistic matcher (`match_candidates` accepted or
auto-merged: `probabilistic`, dated when both identifiers had been seen, so a rebuild on either
engine writes the same row), from marketplace buyers matched to members (the same table,
candidates `mk-…`: `marketplace_match`) and from operators (`operator_bind`). Operator unbinds
and unmerges revoke links; every link is kept in `identity_links`, revoked ones with
`revoked_at` and the reason in `evidence`.
"""

from __future__ import annotations

from jingzhun.engine import Engine
from jingzhun.identity.components import CANNOT, DROPPED, EDGES, NODES, TYPES
from jingzhun.identity.config import IdentityConfig
from jingzhun.identity.identifiers import (
    NormalizeSettings,
    hash_forms_sql,
    in_list,
    lit,
    node_sql,
    plain_value_sql,
    stored_value_sql,
)
from jingzhun.identity.marketplace import PREFIX as MARKETPLACE_PREFIX
from jingzhun.identity.marketplace import RULE as MARKETPLACE_RULE
from jingzhun.identity.observations import OBSERVATIONS
from jingzhun.identity.registry import Registry
from jingzhun.identity.tables import count_rows, materialize

DECLARED_JUNK = "identity_work_declared_junk"
JUNK = "identity_junk"
SEEN = "identity_work_seen"            # node, first_seen, last_seen, source_id, id_type, id_value
CENTERS = "identity_work_centers"      # record_kind, record_id, center, center_priority, identifiers
LINKS = "identity_work_links"
OVERRIDES = "identity_work_overrides"
ERASED = "identity_work_erased_nodes"

BIND_PRIORITY = 1000
OTHER_RULES = ("probabilistic", "marketplace_match", "operator_bind", "hash_match")  # not a record's star
MATCHED_RULES = ("probabilistic", "marketplace_match")   # from match_candidates; probabilistic_priority
HASH_TYPES = ("phone_md5", "phone_sha256", "email_md5", "email_sha256")


def blocklist_sql(config: IdentityConfig, registry: Registry, settings: NormalizeSettings) -> str:
    """The typed blocklist, normalized (and salted) exactly like the data."""
    pairs = config.blocklist.typed_values()
    if not pairs:
        return "SELECT CAST(NULL AS VARCHAR) AS id_type, CAST(NULL AS VARCHAR) AS id_value WHERE FALSE"
    rows = ", ".join(f"({lit(kind)}, {lit(value)})" for kind, value in pairs)
    plain = plain_value_sql("id_type", "raw", registry, settings)
    stored = stored_value_sql("id_type", "plain", registry, settings)
    return (f"SELECT id_type, {stored} AS id_value FROM (SELECT id_type, {plain} AS plain FROM "
            f"(VALUES {rows}) AS b(id_type, raw)) AS n WHERE plain IS NOT NULL")


def declared_junk_sql(config: IdentityConfig, registry: Registry, settings: NormalizeSettings,
                      observations: str = OBSERVATIONS) -> str:
    """Placeholders, blocklisted values and pattern matches among the observations."""
    parts = [
        f"SELECT id_type, id_value, 'blocklist' AS reason FROM {observations} WHERE junk_token = 1",
        f"SELECT o.id_type, o.id_value, 'blocklist' FROM {observations} AS o "
        f"JOIN ({blocklist_sql(config, registry, settings)}) AS b ON b.id_type = o.id_type AND b.id_value = o.id_value",
    ]
    patterns = [(kind, pattern) for kind, items in sorted(config.blocklist.patterns.items()) for pattern in items]
    if patterns:
        tests = " OR ".join(f"(id_type = {lit(kind)} AND REGEXP_MATCHES(plain_value, {lit(pattern)}))"
                            for kind, pattern in patterns)
        parts.append(f"SELECT id_type, id_value, 'pattern' FROM {observations} WHERE {tests}")
    union = " UNION ".join(parts)
    return f"SELECT id_type, id_value, MIN(reason) AS reason FROM ({union}) AS j GROUP BY id_type, id_value"


def junk_sql(config: IdentityConfig) -> str:
    """Declared junk plus shared values, with how many records carry each."""
    return f"""
WITH clean AS (
  SELECT o.record_kind, o.record_id, o.id_type, o.id_value FROM {OBSERVATIONS} AS o
  JOIN {TYPES} AS t ON t.id_type = o.id_type AND t.links
  LEFT JOIN {DECLARED_JUNK} AS d ON d.id_type = o.id_type AND d.id_value = o.id_value
  WHERE d.id_type IS NULL
), pairs AS (
  SELECT DISTINCT a.id_type, a.id_value, b.id_type AS anchor_type, b.id_value AS anchor_value
  FROM clean AS a JOIN clean AS b ON a.record_kind = b.record_kind AND a.record_id = b.record_id
  JOIN {TYPES} AS t ON t.id_type = b.id_type
  WHERE t.max_per_person IS NOT NULL AND NOT (a.id_type = b.id_type AND a.id_value = b.id_value)
), shared AS (
  SELECT c.id_type, c.id_value, 'shared' AS reason, MAX(c.n) AS anchors FROM (
    SELECT id_type, id_value, anchor_type, COUNT(*) AS n FROM pairs GROUP BY id_type, id_value, anchor_type
  ) AS c JOIN {TYPES} AS t ON t.id_type = c.id_type
  GROUP BY c.id_type, c.id_value, t.strength
  HAVING MAX(c.n) > CASE WHEN t.strength = 'weak' THEN {config.weak_shared_threshold}
                         ELSE {config.shared_value_threshold} END
), junk AS (
  SELECT id_type, id_value, reason, CAST(NULL AS BIGINT) AS anchors FROM {DECLARED_JUNK}
  UNION ALL SELECT id_type, id_value, reason, anchors FROM shared
)
SELECT j.id_type, j.id_value, j.reason, j.anchors, COUNT(*) AS records, SUM(o.records) AS events
FROM junk AS j JOIN {OBSERVATIONS} AS o ON o.id_type = j.id_type AND o.id_value = j.id_value
GROUP BY j.id_type, j.id_value, j.reason, j.anchors
"""


def usable(alias: str = "u") -> str:
    """The usable observations as a derived table, for a FROM clause.

    Read in place by each of the few queries that need them rather than materialized:
    the join that makes them is cheap next to writing 14 columns per observation.
    """
    return f"({usable_sql()}) AS {alias}"


def usable_sql() -> str:
    """Observations that may link: linkable types, not junk, not erased."""
    node = node_sql("o.id_type", "o.id_value")
    return f"""
SELECT o.record_kind, o.record_id, o.id_type, o.id_value, o.plain_value, o.first_at, o.last_at,
  o.records, o.source_id, o.rule, o.example_id, t.priority, {node} AS node
FROM {OBSERVATIONS} AS o JOIN {TYPES} AS t ON t.id_type = o.id_type AND t.links
LEFT JOIN {JUNK} AS j ON j.id_type = o.id_type AND j.id_value = o.id_value
WHERE j.id_type IS NULL
"""


def centers_sql() -> str:
    """Each record's strongest identifier (highest priority, then smallest node): the
    centre of its star of links and the identifier that names its person.

    Found with one GROUP BY over a sortable key (priority, then node) rather than
    window functions, which sort every record's rows.
    """
    ckey = "MIN(LPAD(CAST(1000 - priority AS VARCHAR), 4, '0') || node)"
    return f"""
SELECT record_kind, record_id, SUBSTRING({ckey}, 5) AS center,
  1000 - CAST(SUBSTRING({ckey}, 1, 4) AS INTEGER) AS center_priority, COUNT(*) AS identifiers
FROM {usable()} GROUP BY record_kind, record_id
"""


def record_links_sql() -> str:
    """A star per record (from CENTERS): its strongest identifier linked to each of the others.

    Rows come out ordered (left node < right node) with their priority: the weaker end's.
    Grouped by the node keys alone; types and values are cut from the keys afterwards
    (types never hold ':'), so the GROUP BY hashes three strings rather than seven.
    """
    swap = "c.center < u.node"
    return f"""
WITH star AS (
  SELECT CASE WHEN {swap} THEN c.center ELSE u.node END AS left_node,
    CASE WHEN {swap} THEN u.node ELSE c.center END AS right_node, u.rule,
    MIN(u.source_id) AS source_id, MIN(u.first_at) AS observed_at, SUM(u.records) AS records,
    MIN(u.record_kind || ':' || u.example_id) AS example, MIN(LEAST(u.priority, c.center_priority)) AS priority
  FROM {usable()} JOIN {CENTERS} AS c ON c.record_kind = u.record_kind AND c.record_id = u.record_id
  WHERE c.identifiers > 1 AND u.node <> c.center
  GROUP BY 1, 2, 3
)
SELECT {_node_type('left_node')} AS left_type, {_node_value('left_node')} AS left_value,
  {_node_type('right_node')} AS right_type, {_node_value('right_node')} AS right_value,
  rule, source_id, observed_at, TO_JSON(STRUCT_PACK(records := records, example := example)) AS evidence,
  left_node, right_node, priority
FROM star
"""


def _node_type(node: str) -> str:
    return f"SUBSTRING({node}, 1, STRPOS({node}, ':') - 1)"


def _node_value(node: str) -> str:
    return f"SUBSTRING({node}, STRPOS({node}, ':') + 1)"


def seen_sql() -> str:
    """When and where each usable identifier was first (and last) seen.

    The first source is taken from MIN(time | source) rather than MIN_BY, so a tie on
    time gives the same source on every engine.
    """
    first = "MIN(CAST(first_at AS VARCHAR) || '|' || source_id)"
    return f"""
SELECT node, MIN(first_at) AS first_seen, MAX(last_at) AS last_seen,
  SUBSTRING({first}, STRPOS({first}, '|') + 1) AS source_id, MIN(id_type) AS id_type, MIN(id_value) AS id_value
FROM {usable()} GROUP BY node
"""


def hash_links_sql() -> str:
    """Observed ad-platform hashes linked to the plain phone or e-mail they hash."""
    plain = f"SELECT DISTINCT id_type, id_value, plain_value FROM {usable()} WHERE id_type IN ('phone', 'email')"
    return f"""
SELECT h.id_type AS left_type, h.id_value AS left_value, f.id_type AS right_type, f.id_value AS right_value,
  'hash_match' AS rule, MIN(h.source_id) AS source_id, MIN(h.first_at) AS observed_at,
  TO_JSON(STRUCT_PACK(records := COUNT(*), example := MIN(h.record_kind || ':' || h.example_id))) AS evidence
FROM {usable("h")} JOIN ({hash_forms_sql(f"({plain})")}) AS f
  ON f.hash_type = h.id_type AND f.hash_value = h.id_value
GROUP BY h.id_type, h.id_value, f.id_type, f.id_value
"""


def _normalized_pair(prefix: str, registry: Registry, settings: NormalizeSettings) -> tuple[str, str]:
    plain = plain_value_sql(f"{prefix}_type", f"{prefix}_value", registry, settings)
    return f"{prefix}_type", stored_value_sql(f"{prefix}_type", plain, registry, settings)


def matched_links_sql(config: IdentityConfig, registry: Registry, settings: NormalizeSettings) -> str:
    """Accepted or auto-merged probabilistic matches, and operator binds, as links."""
    lt, lv = _normalized_pair("left", registry, settings)
    rt, rv = _normalized_pair("right", registry, settings)
    ot, ov = _normalized_pair("other", registry, settings)
    it, iv = _normalized_pair("id", registry, settings)
    return f"""
SELECT {lt} AS left_type, {lv} AS left_value, {rt} AS right_type, {rv} AS right_value,
  CASE WHEN candidate_id LIKE {lit(MARKETPLACE_PREFIX + '%')} THEN {lit(MARKETPLACE_RULE)} ELSE 'probabilistic' END
    AS rule, CAST(NULL AS VARCHAR) AS source_id, CAST(NULL AS TIMESTAMPTZ) AS observed_at,
  TO_JSON(STRUCT_PACK(candidate_id := candidate_id, status := status)) AS evidence
FROM match_candidates WHERE status IN ('auto_merged', 'accepted')
UNION ALL
SELECT {it}, {iv}, {ot}, {ov}, 'operator_bind', CAST(NULL AS VARCHAR), created_at,
  TO_JSON(STRUCT_PACK(override_id := override_id, actor := COALESCE(created_by, ''),
    reason := COALESCE(reason, '')))
FROM identity_overrides WHERE kind = 'bind' AND revoked_at IS NULL AND other_type IS NOT NULL
"""


def other_links_sql(with_hashes: bool, config: IdentityConfig, registry: Registry,
                    settings: NormalizeSettings) -> str:
    """Probabilistic, operator and hash links: ordered, keyed, prioritized, and kept
    only when neither end is junk or erased (record links are clean already)."""
    parts = [matched_links_sql(config, registry, settings)] + ([hash_links_sql()] if with_hashes else [])
    union = "\nUNION ALL\n".join(f"SELECT * FROM ({part}) AS p" for part in parts)
    ln, rn = node_sql("left_type", "left_value"), node_sql("right_type", "right_value")
    return f"""
WITH raw AS ({union}),
ordered AS (
  SELECT CASE WHEN {ln} < {rn} THEN left_type ELSE right_type END AS left_type,
    CASE WHEN {ln} < {rn} THEN left_value ELSE right_value END AS left_value,
    CASE WHEN {ln} < {rn} THEN right_type ELSE left_type END AS right_type,
    CASE WHEN {ln} < {rn} THEN right_value ELSE left_value END AS right_value,
    rule, source_id, observed_at, evidence
  FROM raw WHERE left_value IS NOT NULL AND right_value IS NOT NULL AND {ln} <> {rn}
), keyed AS (
  SELECT o.left_type, o.left_value, o.right_type, o.right_value, o.rule, o.source_id,
    COALESCE(o.observed_at, GREATEST(sl.first_seen, sr.first_seen)) AS observed_at, o.evidence,
    {ln} AS left_node, {rn} AS right_node
  FROM ordered AS o LEFT JOIN {SEEN} AS sl ON sl.node = {ln} LEFT JOIN {SEEN} AS sr ON sr.node = {rn}
)
SELECT k.*, CASE WHEN k.rule = 'operator_bind' THEN {BIND_PRIORITY}
       ELSE LEAST(tl.priority, tr.priority,
                  CASE WHEN k.rule IN {in_list(MATCHED_RULES)} THEN {config.probabilistic_priority} ELSE 1000 END)
  END AS priority
FROM keyed AS k
JOIN {TYPES} AS tl ON tl.id_type = k.left_type AND tl.links
JOIN {TYPES} AS tr ON tr.id_type = k.right_type AND tr.links
LEFT JOIN {JUNK} AS jl ON jl.id_type = k.left_type AND jl.id_value = k.left_value
LEFT JOIN {JUNK} AS jr ON jr.id_type = k.right_type AND jr.id_value = k.right_value
LEFT JOIN {ERASED} AS el ON el.node = k.left_node
LEFT JOIN {ERASED} AS er ON er.node = k.right_node
WHERE jl.id_type IS NULL AND jr.id_type IS NULL AND el.node IS NULL AND er.node IS NULL
"""


def all_links_sql(with_hashes: bool, with_overrides: bool, config: IdentityConfig, registry: Registry,
                  settings: NormalizeSettings) -> str:
    """Every link, ordered left < right, with node keys, priority and operator revocations."""
    union = (f"SELECT * FROM ({record_links_sql()}) AS r UNION ALL "
             f"SELECT * FROM ({other_links_sql(with_hashes, config, registry, settings)}) AS o")
    if not with_overrides:
        return (f"SELECT k.*, MD5(TO_JSON([k.left_node, k.right_node, k.rule])) AS link_id, "
                f"CAST(NULL AS VARCHAR) AS revoked_reason, CAST(NULL AS TIMESTAMPTZ) AS revoked_at "
                f"FROM ({union}) AS k")
    unbind = (f"(SELECT node, MIN(created_at) AS created_at FROM {OVERRIDES} "
              f"WHERE kind = 'unbind' AND other_node IS NULL GROUP BY node)")
    return f"""
SELECT k.*, MD5(TO_JSON([k.left_node, k.right_node, k.rule])) AS link_id,
  CASE WHEN ul.node IS NOT NULL OR ur.node IS NOT NULL THEN 'operator_unbind'
       WHEN pr.kind IS NOT NULL THEN 'operator_' || pr.kind END AS revoked_reason,
  LEAST(ul.created_at, ur.created_at, pr.created_at) AS revoked_at
FROM ({union}) AS k
LEFT JOIN {unbind} AS ul ON ul.node = k.left_node
LEFT JOIN {unbind} AS ur ON ur.node = k.right_node
LEFT JOIN (SELECT LEAST(node, other_node) AS p1, GREATEST(node, other_node) AS p2, MIN(kind) AS kind,
             MIN(created_at) AS created_at
           FROM {OVERRIDES} WHERE kind IN ('unbind', 'unmerge') AND other_node IS NOT NULL
           GROUP BY LEAST(node, other_node), GREATEST(node, other_node)) AS pr
  ON pr.p1 = k.left_node AND pr.p2 = k.right_node
"""


def overrides_sql() -> str:
    """Operator overrides in force, with node keys."""
    return f"""
SELECT override_id, kind, id_type, id_value, {node_sql('id_type', 'id_value')} AS node,
  other_type, other_value,
  CASE WHEN other_type IS NOT NULL THEN {node_sql('other_type', 'other_value')} END AS other_node,
  created_by, created_at
FROM identity_overrides WHERE revoked_at IS NULL
"""


def graph_inputs(engine: Engine) -> None:
    """Materialize NODES, EDGES and CANNOT for `resolve_limits` from LINKS and SEEN."""
    materialize(engine, EDGES, f"""
SELECT left_node AS a, right_node AS b, MAX(priority) AS priority FROM {LINKS}
WHERE revoked_reason IS NULL GROUP BY left_node, right_node
""")
    materialize(engine, CANNOT, f"""
SELECT DISTINCT node AS x, other_node AS y FROM {OVERRIDES}
WHERE kind IN ('unbind', 'unmerge') AND other_node IS NOT NULL
""")
    # Record links join identifiers of one record, all in SEEN already; only the other
    # rules can bring an identifier no usable observation carries.
    others = f"revoked_reason IS NULL AND rule IN {in_list(OTHER_RULES)}"
    materialize(engine, NODES, f"""
SELECT n.node, n.id_type, n.id_value, ROW_NUMBER() OVER (ORDER BY n.node) AS id,
  (t.max_per_person IS NOT NULL OR c.node IS NOT NULL) AS anchor
FROM (
  SELECT node, id_type, id_value FROM {SEEN}
  UNION SELECT left_node, left_type, left_value FROM {LINKS} WHERE {others}
  UNION SELECT right_node, right_type, right_value FROM {LINKS} WHERE {others}
) AS n JOIN {TYPES} AS t ON t.id_type = n.id_type
LEFT JOIN (SELECT x AS node FROM {CANNOT} UNION SELECT y FROM {CANNOT}) AS c ON c.node = n.node
""")


def has_hashed_observations(engine: Engine) -> bool:
    """Whether any ad-platform hash was observed (the hash join is skipped otherwise)."""
    types = ", ".join(lit(kind) for kind in HASH_TYPES)
    return count_rows(engine, f"SELECT 1 FROM {usable()} WHERE id_type IN ({types})") > 0


LINK_COLUMNS = ("left_type", "left_value", "right_type", "right_value", "rule", "source_id", "observed_at",
                "evidence", "left_node", "right_node", "link_id", "priority")


def mark_dropped_sql() -> str:
    """LINKS with the links `resolve_limits` left out marked revoked, with the limit."""
    columns = ", ".join(f"k.{name}" for name in LINK_COLUMNS)
    # A link dropped by a limit was never in force: revoked from when it was first seen.
    return f"""
SELECT {columns}, COALESCE(k.revoked_reason, d.reason) AS revoked_reason,
  CASE WHEN k.revoked_reason IS NOT NULL THEN k.revoked_at WHEN d.reason IS NOT NULL THEN k.observed_at END AS revoked_at
FROM {LINKS} AS k
LEFT JOIN (SELECT a, b, MIN(reason) AS reason FROM {DROPPED} GROUP BY a, b) AS d
  ON d.a = k.left_node AND d.b = k.right_node
"""
