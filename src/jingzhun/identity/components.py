"""Connected components in SQL, and the limits that keep one person one person.

`connected_components` is iterative min-label propagation with pointer jumping: each
round a vertex takes the smallest label among itself and its neighbours, then the
label of that label (which halves the distance labels still have to travel). Every
round is materialized under one of two alternating names, so Spark reads Parquet
instead of an ever-growing plan; the loop stops when no label changed. The Python
loop is over rounds (a handful), never over identifiers.

The identifier graph runs on integer keys, not on the `type:value` strings: NODES
numbers the nodes in string order, so the smallest id of a component is its smallest
node and the labels come back unchanged, while every round joins and groups 8-byte
integers instead of 30-byte strings (about three times less work per round).

`resolve_limits` enforces the one-per-person limits and operator cannot-link pairs
(see docs/identity.md, "Limits"):

1. Components over all links are computed once. Almost all are valid — at most
   `max_per_person` distinct values of each limited id type, no cannot-link pair
   inside — and are final.
2. Only the invalid ones are rebuilt, tier by tier, strongest links first (a link's
   priority is that of its weaker identifier). Within a tier, a proposed merge that
   would break a limit keeps the persons it would have joined apart: links between two
   *anchored* persons (holding a limited identifier or a cannot-link endpoint) are
   dropped; an unanchored group of identifiers joins the one anchored person it
   touches, or, touching several, stays on its own and its links to them are dropped.
   So the weakest links that would cause a conflict are the ones dropped, and every
   dropped link is recorded with the reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from jingzhun.core.errors import EngineError
from jingzhun.engine import Engine
from jingzhun.identity.tables import materialize

log = logging.getLogger(__name__)

NODES = "identity_work_nodes"          # node, id_type, id_value, id (integer, in node order), anchor
EDGES = "identity_work_edges"          # a, b, priority (a < b, one row per pair)
CANNOT = "identity_work_cannot"        # x, y: operator pairs that must stay apart
TYPES = "identity_work_types"          # id_type, strength, priority, max_per_person
LABELS = "identity_work_labels"        # node, label: the final components
COMPONENTS = "identity_work_cc"        # node, label: components over all links, when some break a limit
DROPPED = "identity_work_dropped"      # a, b, reason: links dropped to keep the limits


def _count(engine: Engine, sql: str) -> int:
    return int(engine.query(f"SELECT COUNT(*) AS n FROM ({sql}) AS counted").column("n")[0].as_py())


@dataclass
class ComponentsResult:
    """How the components were found: rounds run and conflicts resolved."""

    rounds: int = 0
    invalid_components: int = 0
    tiers: list[int] = field(default_factory=list)
    dropped_links: int = 0


def connected_components(engine: Engine, edges_sql: str, name: str, max_rounds: int = 60) -> int:
    """Materialize `name(node, label)` for the graph of `edges_sql` (columns a, b).

    The label of every vertex is the smallest vertex of its component. Returns the
    number of propagation rounds run.

    Example (on any engine, over a table `e(a, b)`):
        connected_components(engine, "SELECT a, b FROM e", "e_components")
    """
    sym, cur, nxt = f"{name}_sym", f"{name}_r0", f"{name}_r1"
    # UNION ALL: a pair listed twice only repeats a neighbour, which MIN ignores.
    materialize(engine, sym, f"SELECT a AS src, b AS dst FROM ({edges_sql}) AS e WHERE a <> b "
                            f"UNION ALL SELECT b, a FROM ({edges_sql}) AS e WHERE a <> b")
    materialize(engine, cur, f"SELECT src AS node, LEAST(src, MIN(dst)) AS label FROM {sym} GROUP BY src")
    rounds = 0
    while True:
        rounds += 1
        materialize(engine, nxt, _round_sql(sym, cur))
        if _count(engine, f"SELECT node FROM {nxt} WHERE changed") == 0:
            break
        if rounds >= max_rounds:
            raise EngineError(
                f"connected components did not settle in {max_rounds} rounds.",
                fix="raise max_rounds in definitions/identity.yaml, or look for a very long chain of links",
                message_zh=f"连通分量在 {max_rounds} 轮内未收敛。",
                fix_zh="在 definitions/identity.yaml 中调大 max_rounds，或检查是否存在极长的关联链",
            )
        cur, nxt = nxt, cur
    materialize(engine, name, f"SELECT node, label FROM {nxt}")
    for table in (sym, cur, nxt):
        engine.drop_table(table)
    log.debug("components %s settled in %d rounds", name, rounds)
    return rounds


def _round_sql(sym: str, cur: str) -> str:
    """One round: smallest label among the neighbours, then the label's own label."""
    return f"""
WITH nbr AS (
  SELECT e.src AS node, MIN(l.label) AS label FROM {sym} AS e JOIN {cur} AS l ON l.node = e.dst
  GROUP BY e.src
), prop AS (
  SELECT c.node, LEAST(c.label, n.label) AS label, c.label AS old
  FROM {cur} AS c JOIN nbr AS n ON n.node = c.node
)
SELECT p.node, LEAST(p.label, q.label) AS label, LEAST(p.label, q.label) <> p.old AS changed
FROM prop AS p JOIN prop AS q ON q.node = p.label
"""


def invalid_groups_sql(assignment: str, group: str) -> str:
    """Groups of `assignment(node, <group>)` that break a limit or hold a cannot-link pair."""
    return f"""
SELECT {group} AS grp, MIN(reason) AS reason FROM (
  SELECT a.{group}, 'limit:' || n.id_type AS reason
  FROM {assignment} AS a JOIN {NODES} AS n ON n.node = a.node JOIN {TYPES} AS t ON t.id_type = n.id_type
  WHERE t.max_per_person IS NOT NULL
  GROUP BY a.{group}, n.id_type, t.max_per_person
  HAVING COUNT(DISTINCT n.id_value) > MIN(t.max_per_person)
  UNION ALL
  SELECT ax.{group}, 'cannot_link' FROM {CANNOT} AS p
  JOIN {assignment} AS ax ON ax.node = p.x JOIN {assignment} AS ay ON ay.node = p.y
  WHERE ax.{group} = ay.{group}
) AS broken GROUP BY {group}
"""


def resolve_limits(engine: Engine, max_rounds: int = 60) -> ComponentsResult:
    """Materialize LABELS(node, label) over NODES/EDGES, honouring limits and CANNOT pairs.

    Also materializes DROPPED(a, b, reason): the links left out to keep a limit. The
    components over all links are written as LABELS directly: almost always they are
    valid and final, and only a conflict pays for a copy.
    """
    result = ComponentsResult()
    result.rounds = _components_by_id(engine, LABELS, max_rounds)
    materialize(engine, "identity_work_bad", invalid_groups_sql(LABELS, "label"))
    result.invalid_components = engine.row_count("identity_work_bad")
    if not result.invalid_components:
        return result
    materialize(engine, COMPONENTS, f"SELECT node, label FROM {LABELS}")
    materialize(engine, DROPPED, "SELECT CAST(NULL AS VARCHAR) AS a, CAST(NULL AS VARCHAR) AS b, "
                                "CAST(NULL AS VARCHAR) AS reason WHERE FALSE")
    _rebuild_conflicts(engine, COMPONENTS, result, max_rounds)
    materialize(engine, LABELS, f"""
SELECT c.node, COALESCE(r.comp, c.label) AS label FROM {COMPONENTS} AS c
LEFT JOIN identity_work_comp AS r ON r.node = c.node
""")
    result.dropped_links = engine.row_count(DROPPED)
    return result


def _components_by_id(engine: Engine, name: str, max_rounds: int) -> int:
    """`name`(node, label) for every node, computed over NODES' integer ids; returns rounds.

    Ids follow the string order of nodes, so a component's smallest id is its smallest
    node and the label is the same as over strings; a node without links is its own label.
    """
    materialize(engine, "identity_work_edge_ids", f"""
SELECT na.id AS a, nb.id AS b FROM {EDGES} AS e
JOIN {NODES} AS na ON na.node = e.a JOIN {NODES} AS nb ON nb.node = e.b
""")
    by_id = "identity_work_cc_ids"
    rounds = connected_components(engine, "SELECT a, b FROM identity_work_edge_ids", by_id, max_rounds)
    materialize(engine, name, f"""
SELECT n.node, COALESCE(l.node, n.node) AS label FROM {NODES} AS n
LEFT JOIN {by_id} AS c ON c.node = n.id LEFT JOIN {NODES} AS l ON l.id = c.label
""")
    return rounds


def _rebuild_conflicts(engine: Engine, fast: str, result: ComponentsResult, max_rounds: int) -> None:
    """Rebuild the invalid components tier by tier into identity_work_comp(node, comp)."""
    materialize(engine, "identity_work_conflict_edges", f"""
SELECT e.a, e.b, e.priority FROM {EDGES} AS e
JOIN {fast} AS c ON c.node = e.a JOIN identity_work_bad AS b ON b.grp = c.label
""")
    materialize(engine, "identity_work_comp", f"""
SELECT c.node, c.node AS comp FROM {fast} AS c JOIN identity_work_bad AS b ON b.grp = c.label
""")
    tiers = engine.query("SELECT DISTINCT priority FROM identity_work_conflict_edges ORDER BY priority DESC")
    for priority in tiers.column("priority").to_pylist():
        if _merge_tier(engine, int(priority), max_rounds):
            result.tiers.append(int(priority))


def _merge_tier(engine: Engine, priority: int, max_rounds: int) -> bool:
    """Apply one tier of links to identity_work_comp; return whether it had any."""
    materialize(engine, "identity_work_tier", f"""
SELECT DISTINCT ca.comp AS a, cb.comp AS b FROM identity_work_conflict_edges AS e
JOIN identity_work_comp AS ca ON ca.node = e.a JOIN identity_work_comp AS cb ON cb.node = e.b
WHERE e.priority = {priority} AND ca.comp <> cb.comp
""")
    if engine.row_count("identity_work_tier") == 0:
        return False
    connected_components(engine, "SELECT a, b FROM identity_work_tier", "identity_work_super", max_rounds)
    materialize(engine, "identity_work_proposed", """
SELECT c.node, c.comp, COALESCE(s.label, c.comp) AS super FROM identity_work_comp AS c
LEFT JOIN identity_work_super AS s ON s.node = c.comp
""")
    materialize(engine, "identity_work_tier_bad", invalid_groups_sql("identity_work_proposed", "super"))
    if engine.row_count("identity_work_tier_bad") == 0:
        materialize(engine, "identity_work_comp", "SELECT node, super AS comp FROM identity_work_proposed")
        return True
    _split_tier(engine, priority, max_rounds)
    return True


def _split_tier(engine: Engine, priority: int, max_rounds: int) -> None:
    """Inside each proposed merge that breaks a limit: anchored persons stay apart;
    unanchored groups join their single anchored neighbour or stay on their own."""
    materialize(engine, "identity_work_comp_info", f"""
SELECT p.comp, MIN(p.super) AS super, MAX(CASE WHEN n.anchor THEN 1 ELSE 0 END) = 1 AS anchored,
  MAX(CASE WHEN b.grp IS NOT NULL THEN 1 ELSE 0 END) = 1 AS in_bad, MIN(b.reason) AS reason
FROM identity_work_proposed AS p JOIN {NODES} AS n ON n.node = p.node
LEFT JOIN identity_work_tier_bad AS b ON b.grp = p.super
GROUP BY p.comp
""")
    materialize(engine, "identity_work_tier_sides", """
SELECT t.a, t.b, ia.anchored AS a_anchored, ib.anchored AS b_anchored, ia.reason
FROM identity_work_tier AS t
JOIN identity_work_comp_info AS ia ON ia.comp = t.a JOIN identity_work_comp_info AS ib ON ib.comp = t.b
WHERE ia.in_bad
""")
    connected_components(engine, "SELECT a, b FROM identity_work_tier_sides WHERE NOT a_anchored AND NOT b_anchored",
                         "identity_work_groups", max_rounds)
    materialize(engine, "identity_work_group_targets", """
WITH touch AS (
  SELECT COALESCE(g.label, s.free) AS grp, s.anchor_comp FROM (
    SELECT a AS free, b AS anchor_comp FROM identity_work_tier_sides WHERE NOT a_anchored AND b_anchored
    UNION SELECT b, a FROM identity_work_tier_sides WHERE a_anchored AND NOT b_anchored
  ) AS s LEFT JOIN identity_work_groups AS g ON g.node = s.free
)
SELECT grp, CASE WHEN COUNT(DISTINCT anchor_comp) = 1 THEN MIN(anchor_comp) ELSE grp END AS target,
  COUNT(DISTINCT anchor_comp) AS anchors
FROM touch GROUP BY grp
""")
    _record_dropped(engine, priority)
    materialize(engine, "identity_work_comp", """
SELECT p.node, CASE
    WHEN NOT i.in_bad THEN p.super
    WHEN i.anchored THEN p.comp
    ELSE COALESCE(t.target, g.label, p.comp) END AS comp
FROM identity_work_proposed AS p JOIN identity_work_comp_info AS i ON i.comp = p.comp
LEFT JOIN identity_work_groups AS g ON g.node = p.comp
LEFT JOIN identity_work_group_targets AS t ON t.grp = COALESCE(g.label, p.comp)
""")


def _record_dropped(engine: Engine, priority: int) -> None:
    """Append this tier's dropped links (between anchored persons, or from a group
    that touches several) to DROPPED, as the original identifier pairs."""
    materialize(engine, "identity_work_dropped_tier", f"""
WITH cut AS (
  SELECT s.a, s.b, s.reason FROM identity_work_tier_sides AS s
  LEFT JOIN identity_work_groups AS ga ON ga.node = s.a LEFT JOIN identity_work_groups AS gb ON gb.node = s.b
  LEFT JOIN identity_work_group_targets AS ta ON ta.grp = COALESCE(ga.label, s.a)
  LEFT JOIN identity_work_group_targets AS tb ON tb.grp = COALESCE(gb.label, s.b)
  WHERE (s.a_anchored AND s.b_anchored)
     OR (NOT s.a_anchored AND s.b_anchored AND ta.anchors > 1)
     OR (s.a_anchored AND NOT s.b_anchored AND tb.anchors > 1)
)
SELECT e.a, e.b, cut.reason FROM identity_work_conflict_edges AS e
JOIN identity_work_comp AS ca ON ca.node = e.a JOIN identity_work_comp AS cb ON cb.node = e.b
JOIN cut ON (cut.a = ca.comp AND cut.b = cb.comp) OR (cut.a = cb.comp AND cut.b = ca.comp)
WHERE e.priority = {priority}
UNION ALL SELECT a, b, reason FROM {DROPPED}
""")
    materialize(engine, DROPPED, "SELECT a, b, reason FROM identity_work_dropped_tier")
