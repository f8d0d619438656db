"""The parity harness: do DuckDB and Spark produce the same rows?

Comparing rendered SQL is not enough (transpiling can change meaning), so results
are compared as data: both tables are normalized (timestamps to naive UTC,
decimals and floats to rounded doubles, integers widened), sorted by every
column, and compared row for row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

DECIMALS = 6


@dataclass
class ParityReport:
    """Where two results differ (empty `differences` means they match)."""

    name: str
    left_rows: int
    right_rows: int
    differences: list[str] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return not self.differences


def _normalize_column(column: pa.ChunkedArray) -> pa.ChunkedArray:
    kind = column.type
    if pa.types.is_timestamp(kind):
        return column.cast(pa.timestamp("us", tz="UTC")).cast(pa.timestamp("us")) if kind.tz else column.cast(pa.timestamp("us"))
    if pa.types.is_decimal(kind) or pa.types.is_floating(kind):
        return pc.round(column.cast(pa.float64()), DECIMALS)
    if pa.types.is_integer(kind):
        return column.cast(pa.int64())
    if pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        return column.cast(pa.string())
    return column


def normalize(table: pa.Table) -> pa.Table:
    """Engine-neutral types, rows sorted by every column (NULLs last)."""
    columns = [_normalize_column(table.column(i)) for i in range(table.num_columns)]
    normalized = pa.Table.from_arrays(columns, names=[name.lower() for name in table.column_names])
    if normalized.num_rows == 0 or normalized.num_columns == 0:
        return normalized
    keys = [(name, "ascending", "at_end") for name in normalized.column_names]
    order = pc.sort_indices(normalized, sort_keys=keys)
    return normalized.take(order)


def _same(left: object, right: object) -> bool:
    if isinstance(left, float) and isinstance(right, float):
        return math.isclose(left, right, rel_tol=1e-9, abs_tol=10 ** -DECIMALS) or (
            math.isnan(left) and math.isnan(right)
        )
    return left == right


def compare_tables(name: str, left: pa.Table, right: pa.Table, max_reported: int = 5) -> ParityReport:
    """Compare two results after normalization; report the first differences."""
    a, b = normalize(left), normalize(right)
    report = ParityReport(name, a.num_rows, b.num_rows)
    if a.column_names != b.column_names:
        report.differences.append(f"columns differ: {a.column_names} vs {b.column_names}")
        return report
    if a.num_rows != b.num_rows:
        report.differences.append(f"row counts differ: {a.num_rows} vs {b.num_rows}")
        return report
    for index, (row_a, row_b) in enumerate(zip(a.to_pylist(), b.to_pylist(), strict=True)):
        diverging = [k for k in row_a if not _same(row_a[k], row_b[k])]
        if diverging:
            report.differences.append(
                f"row {index}: " + ", ".join(f"{k}={row_a[k]!r} vs {row_b[k]!r}" for k in diverging)
            )
            if len(report.differences) >= max_reported:
                break
    return report
