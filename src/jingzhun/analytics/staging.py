"""Queries built from parts, and run well on every engine.

The association rules are one query whose CTEs build on each other (baskets → frequent
items → pairs → triples → rules), each used several times. DuckDB computes a CTE used
more than once a single time. Spark inlines every reference instead: on the demo's
orders the rules query became a plan of 186 exchanges that took 82 s to optimize
before running for 36 s. So on such an engine the shared CTEs are materialized first, in
order, as scratch tables (Parquet on Spark, which also cuts the lineage) and the query
reads them; the tables are dropped afterwards. The SQL shown to the user stays the one
query, which means the same on both engines.

`inline` and `bind_in_place` build such queries: a part becomes a subquery under the
name the template reads it by, and placeholders become literals.
"""

from __future__ import annotations

import uuid
from collections import Counter

import pyarrow as pa
from sqlglot import exp

from jingzhun.engine import Engine, MaterializeHints
from jingzhun.profiles.rules_compiler import literal

# Engines that compute a CTE referenced more than once only once (by dialect).
MATERIALIZES_SHARED_CTES = {"duckdb": True}
WITH = "with_" if "with_" in exp.Select.arg_types else "with"  # sqlglot 30 renamed the arg


def shared_ctes(scope: exp.Expression) -> list[str]:
    """Names of the CTEs of `scope`'s own WITH referenced more than once, in definition order."""
    with_ = scope.args.get(WITH)
    if with_ is None:
        return []
    names = [cte.alias for cte in with_.expressions]
    uses = Counter(table.name for table in scope.find_all(exp.Table) if table.name in names)
    return [name for name in names if uses[name] > 1]


def _point_to(scope: exp.Expression, name: str, table_name: str) -> None:
    """Read `table_name` wherever `scope` reads the CTE `name` (keeping the alias it was read by)."""
    for table in list(scope.find_all(exp.Table)):
        if table.name == name and not table.db:
            table.replace(exp.to_table(table_name).as_(table.alias_or_name))


def _stage_scope(engine: Engine, scope: exp.Expression, prefix: str, made: list[str]) -> None:
    """Materialize the shared CTEs of one WITH, in order; each reads the ones before it."""
    for name in shared_ctes(scope):
        ctes = list(scope.args[WITH].expressions)
        position = next(i for i, c in enumerate(ctes) if c.alias == name)
        cte, body = ctes[position], ctes[position].this.copy()
        earlier = [c.copy() for c in ctes[:position]]  # what it may read (staged ones are tables now)
        if earlier:
            body.set(WITH, exp.With(expressions=earlier))
        table_name = f"{prefix}_{name}"
        engine.materialize(table_name, body, MaterializeHints(scratch=True))
        made.append(table_name)
        cte.pop()
        _point_to(scope, name, table_name)
    if scope.args.get(WITH) is not None and not scope.args[WITH].expressions:
        scope.set(WITH, None)


def query_staged(engine: Engine, query: exp.Expression, prefix: str = "analytics_stage") -> pa.Table:
    """`engine.query(query)`, with the shared CTEs of every WITH (innermost first)
    materialized where the engine would recompute them at every reference."""
    if MATERIALIZES_SHARED_CTES.get(engine.DIALECT, False):
        return engine.query(query)
    staged = query.copy()
    scopes = [node for node in staged.walk() if isinstance(node, exp.Query) and node.args.get(WITH)]
    run, made = f"{prefix}_{uuid.uuid4().hex[:8]}", []
    try:
        for depth, scope in enumerate(reversed(scopes)):  # a CTE's own WITH before the CTE
            _stage_scope(engine, scope, f"{run}_{depth}", made)
        return engine.query(staged)
    finally:
        for table_name in made:
            engine.drop_table(table_name)


# ---- building queries from parts -------------------------------------------------------------


def inline(query: exp.Expression, **parts: exp.Expression) -> exp.Expression:
    """`query` with each table named like a keyword replaced by that query (keeping its alias)."""
    for table in list(query.find_all(exp.Table)):
        if table.name in parts:
            table.replace(exp.Subquery(this=parts[table.name].copy(), alias=exp.TableAlias(
                this=exp.to_identifier(table.alias_or_name))))
    return query


def bind_in_place(query: exp.Expression, **values: object) -> exp.Expression:
    """`:name` placeholders replaced by literals, without copying the tree first (the
    template was copied already; sqlglot's replace_placeholders would copy it again)."""
    def replace(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Placeholder) and node.name in values:
            return literal(values[node.name])
        return node
    return query.transform(replace, copy=False)
