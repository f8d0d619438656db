"""A batch of person ids as something SQL can join: inline VALUES, or a scratch table when large.

Content rendering and coupon issuing take a list of persons from their caller (an
audience, a campaign step). A few hundred ids are inlined as literals; more are written
once as a scratch table, so the query stays small and both engines join it like any table.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import pyarrow as pa
from sqlglot import exp

from jingzhun.engine import Engine

INLINE_LIMIT = 50


def lit(value: object) -> str:
    """A value as a SQL literal, quoted and escaped by sqlglot (never formatted by hand).

    Example:
        >>> lit("O'Brien")
        "'O''Brien'"
    """
    return exp.convert(value).sql("duckdb")


def distinct_ids(person_ids: Sequence[str]) -> list[str]:
    """The ids once each, in first-seen order, blanks dropped."""
    return list(dict.fromkeys(str(person) for person in person_ids if person))


@contextmanager
def person_batch(engine: Engine, person_ids: Sequence[str], prefix: str) -> Iterator[str]:
    """A parenthesised SELECT (or a scratch table name) with one `person_id` column."""
    ids = distinct_ids(person_ids)
    if not ids:
        yield "(SELECT CAST(NULL AS VARCHAR) AS person_id WHERE 1 = 0)"
        return
    if len(ids) <= INLINE_LIMIT:
        rows = ", ".join(f"({lit(person)})" for person in ids)
        yield f"(SELECT person_id FROM (VALUES {rows}) AS v(person_id))"
        return
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    engine.write_table(name, pa.table({"person_id": pa.array(ids, pa.string())}), mode="replace")
    try:
        yield name
    finally:
        engine.drop_table(name)
