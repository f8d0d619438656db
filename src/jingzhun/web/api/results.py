"""How results leave the API: tables as rows with their columns, analyses with their SQL.

Every number the API returns comes with the SQL that produced it (`sql`, by name),
runnable as it stands with `jingzhun sql` on the same workspace; list answers carry
`total`, `limit` and `offset`.
"""

from __future__ import annotations

import dataclasses
import io
import threading
from typing import Any

import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, Field
from sqlglot import exp

from jingzhun.analytics import Analysis
from jingzhun.engine import Engine
from jingzhun.web.api.deps import PageParams
from jingzhun.web.masking import mask_frame_columns, mask_value
from jingzhun.web.serialize import FileResult, jsonable

# Reports that materialize work tables (the stock ledger, stock-out spells) take turns in the
# engine process: two at once would replace each other's tables.
MATERIALIZING = threading.Lock()


class TableOut(BaseModel):
    """Rows of a table, a page of them, with the SQL behind them."""

    columns: list[str]
    items: list[dict[str, Any]]
    total: int
    limit: int
    offset: int
    sql: dict[str, str] = Field(default_factory=dict)


class AnalysisOut(BaseModel):
    """One analysis: its rows (a page), the SQL that produced them, how to chart them, the readings."""

    name: str
    columns: list[str]
    items: list[dict[str, Any]]
    total: int
    limit: int
    offset: int
    sql: dict[str, str]
    chart: dict[str, Any] | None = None
    readings: list[dict[str, str]] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict)


def table_page(rows: pd.DataFrame | pa.Table, page: PageParams, sql: dict[str, str] | None = None) -> dict[str, Any]:
    """A page of `rows` with its columns, total and SQL."""
    frame = rows.to_pandas() if isinstance(rows, pa.Table) else rows
    shown = frame.iloc[page.offset: page.offset + page.limit]
    return {"columns": [str(c) for c in frame.columns], "items": jsonable(shown), "total": len(frame),
            "limit": page.limit, "offset": page.offset, "sql": sql or {}}


def rows_page(rows: pa.Table, total: int, page: PageParams, sql: dict[str, str]) -> dict[str, Any]:
    """A page the engine already cut (LIMIT/OFFSET), with the total it counted."""
    return {"columns": rows.column_names, "items": jsonable(rows), "total": total, "limit": page.limit,
            "offset": page.offset, "sql": sql}


def paged_query(engine: Engine, query: exp.Select, page: PageParams, name: str) -> dict[str, Any]:
    """Run `query` for one page (and its count): big lists are cut by the engine, not in Python."""
    total = engine.query(exp.select(exp.func("COUNT", exp.Star()).as_("n")).from_(query.subquery("counted")))
    rows = engine.query(query.limit(page.limit).offset(page.offset))
    return rows_page(rows, int(total.column("n")[0].as_py()), page, {name: engine.render(query)})


def analysis_page(analysis: Analysis, page: PageParams) -> dict[str, Any]:
    """An `Analysis` as the API answers it (a page of rows; the SQL and chart whole)."""
    return {**table_page(analysis.frame, page, analysis.sql), "name": analysis.name,
            "chart": jsonable(analysis.chart) if analysis.chart is not None else None,
            "readings": [{"zh": zh, "en": en} for zh, en in analysis.readings],
            "params": jsonable(analysis.params)}


def analyses_page(analyses: list[Analysis], page: PageParams) -> dict[str, Any]:
    """Several analyses (a report with parts): each as `analysis_page`, by name."""
    return {"parts": [analysis_page(analysis, page) for analysis in analyses]}


def narrowed(analysis: Analysis, frame: pd.DataFrame) -> Analysis:
    return dataclasses.replace(analysis, frame=frame)


def masked_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with its personal columns (name, phone, e-mail, birth date) masked."""
    copy = frame.copy()
    for column in mask_frame_columns([str(c) for c in copy.columns]):
        copy[column] = copy[column].map(lambda value: value if pd.isna(value) else mask_value(value))
    return copy


def frame_file(frame: pd.DataFrame, file_format: str, stem: str) -> FileResult:
    """`frame` as a CSV (UTF-8 with BOM, so Excel shows Chinese) or an Excel file."""
    if file_format == "xlsx":
        buffer = io.BytesIO()
        _naive_times(frame).to_excel(buffer, index=False, engine="xlsxwriter")
        return FileResult(buffer.getvalue(), "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                          f"{stem}.xlsx")
    return FileResult(frame.to_csv(index=False).encode("utf-8-sig"), "text/csv; charset=utf-8", f"{stem}.csv")


def _naive_times(frame: pd.DataFrame) -> pd.DataFrame:
    """Excel has no time zones: instants as naive UTC (the column keeps its meaning)."""
    copy = frame.copy()
    for column in copy.columns:
        if isinstance(copy[column].dtype, pd.DatetimeTZDtype):
            copy[column] = copy[column].dt.tz_convert("UTC").dt.tz_localize(None)
    return copy
