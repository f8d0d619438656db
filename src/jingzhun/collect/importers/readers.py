"""Stream a source file as Arrow batches of text columns, with source line numbers.

Every reader yields the same thing — a table whose columns are the source's
columns as strings (empty cells as null), the 1-based line (or sheet row) each row
came from, and the rows that could not be read at all — so validation and loading
never care what the file was. Memory stays bounded by one batch: CSV is cut into
blocks of whole lines and parsed by pyarrow (GBK/GB18030 decoded per distinct value),
Excel rows come from calamine's row iterator, JSON lines are read a slice at a time.

Line numbers assume one record per line (no line breaks inside quoted CSV values),
which holds for every POS, CRM and platform export we know.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from jingzhun.collect.importers.encoding import codec_for

BLOCK_BYTES = 24 << 20  # ~120k POS lines: few commits, and with three batches in flight RSS stays < 1 GB
BATCH_ROWS = 50_000


@dataclass
class Batch:
    """Rows of one slice of the file, as text, and the lines that were unreadable."""

    table: pa.Table
    line_no: pa.Array
    bad_lines: list[tuple[int, str, str]] = field(default_factory=list)  # (line, raw text, problem)
    fraction_done: float = 0.0

    @property
    def rows_read(self) -> int:
        return self.table.num_rows + len(self.bad_lines)


def csv_header(path: Path, encoding: str) -> list[str]:
    """The column names on the first line (decoded with the file's codec)."""
    with open(path, "rb") as source:  # only the first line: a bad byte further on is a bad row, not a bad header
        return next(csv.reader([source.readline().decode(codec_for(encoding)).rstrip("\r\n")]), [])


def read_csv(path: Path, encoding: str, skip_rows: int = 0) -> Iterator[Batch]:
    """Stream a CSV in blocks of whole lines; rows with the wrong number of cells are reported, not lost.

    Blocks are cut at line ends by us, not by pyarrow's streaming reader, which
    reads the whole file ahead (RSS grows by the file's size). Each block is
    parsed as bytes on all cores: the CSV structure survives every encoding we
    take (each byte of a GBK/GB18030 character is >= 0x40, past `,`, `"` and line
    ends), and only columns holding non-ASCII text are then decoded, once per
    distinct value — a POS export repeats store, product and cashier names.
    """
    header = [name.lstrip("\ufeff") for name in csv_header(path, encoding)]
    codec = "utf-8" if codec_for(encoding) == "utf-8-sig" else codec_for(encoding)  # the BOM is on line 1
    size = max(path.stat().st_size, 1)
    with open(path, "rb") as source:
        source.readline()
        line = 2 + _skip_lines(source, skip_rows)
        carry = b""
        while block := source.read(BLOCK_BYTES):
            block, carry = _whole_lines(carry + block)
            if not block:
                continue
            batch = _parse_block(block, header, codec, line)
            line += batch.rows_read
            batch.fraction_done = (source.tell() - len(carry)) / size
            yield batch
        if carry.strip():
            batch = _parse_block(carry if carry.endswith(b"\n") else carry + b"\n", header, codec, line)
            batch.fraction_done = 1.0
            yield batch


def _skip_lines(source: io.BufferedReader, count: int) -> int:
    """Move past `count` lines (records already imported); returns `count`."""
    left = count
    while left:
        start = source.tell()
        block = source.read(BLOCK_BYTES)
        if not block:
            break
        found = block.count(b"\n")
        if found < left:
            left -= found
            continue
        cut = -1
        for _ in range(left):
            cut = block.index(b"\n", cut + 1)
        source.seek(start + cut + 1)
        left = 0
    return count


def _whole_lines(data: bytes) -> tuple[bytes, bytes]:
    """(the complete lines of `data`, the unfinished last line)."""
    cut = data.rfind(b"\n") + 1
    return data[:cut], data[cut:]


def _parse_block(block: bytes, header: list[str], codec: str, first_line: int) -> Batch:
    """Parse whole lines as bytes; if a line is malformed, again line by line
    (pyarrow numbers bad lines only when parsing serially, and shows them only as UTF-8,
    so the serial pass carries the bytes as Latin-1 text: one character per byte)."""
    try:  # one thread: the reader runs beside the checks and the writes, and pyarrow's
        # parallel parse costs a third more CPU for the same block
        table = _arrow_csv(block, header, pa.binary(), threads=False)
        bad: list[tuple[int, str, str]] = []
    except pa.ArrowInvalid as malformed:
        if "columns, got" not in str(malformed):
            raise
        table, bad = _parse_serially(block, header, codec)
    lines = _lines_skipping(first_line, table.num_rows, [first_line + number - 1 for number, _, _ in bad])
    bad = [(first_line + number - 1, text, problem) for number, text, problem in bad]
    table, lines, bad = _decode_columns(table, lines, bad, codec)
    return Batch(table, lines, bad)


def _arrow_csv(block: bytes, header: list[str], kind: pa.DataType, threads: bool,
               invalid: object = None) -> pa.Table:
    return pacsv.read_csv(
        pa.py_buffer(block),
        read_options=pacsv.ReadOptions(column_names=header, use_threads=threads, block_size=4 << 20),
        parse_options=pacsv.ParseOptions(invalid_row_handler=invalid),
        convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(header, kind), strings_can_be_null=True),
    )


def _parse_serially(block: bytes, header: list[str], codec: str) -> tuple[pa.Table, list[tuple[int, str, str]]]:
    bad: list[tuple[int, str, str]] = []

    def invalid(row: pacsv.InvalidRow) -> str:
        text = row.text.encode("latin-1").decode(codec, "replace")
        bad.append((row.number or 0, text, f"{row.actual_columns} cells, expected {row.expected_columns}"))
        return "skip"

    carried = block.decode("latin-1").encode("utf-8")
    table = _arrow_csv(carried, header, pa.string(), threads=False, invalid=invalid)
    return table, bad


def _decode_distinct(values: list[bytes], codec: str) -> list[str]:
    """Decode values, in one call when all are valid. Bytes the codec does not know become
    U+FFFD, which the checks refuse (`bad_encoding`): the row waits in quarantine, named."""
    try:
        decoded = b"\x00".join(values).decode(codec).split("\x00")
        if len(decoded) == len(values):
            return decoded
    except UnicodeDecodeError:
        pass
    return [value.decode(codec, "replace") for value in values]


def _decode_columns(table: pa.Table, lines: pa.Array, bad: list[tuple[int, str, str]],
                    codec: str) -> tuple[pa.Table, pa.Array, list[tuple[int, str, str]]]:
    """Decode the non-ASCII columns of a batch read as bytes (or carried as Latin-1 text)."""
    columns = {}
    for name in table.column_names:
        column = table.column(name).combine_chunks()
        carried = not pa.types.is_binary(column.type)
        if pc.all(pc.string_is_ascii(column if carried else column.view(pa.string()))).as_py() is not False:
            columns[name] = column if carried else column.view(pa.string())
            continue
        encoded = pc.dictionary_encode(column)
        distinct = encoded.dictionary.to_pylist()
        if carried:
            distinct = [value.encode("latin-1") for value in distinct]
        columns[name] = pc.take(pa.array(_decode_distinct(distinct, codec), pa.string()), encoded.indices)
    return (pa.table(columns) if columns else table), lines, bad


def _lines_skipping(first: int, count: int, skipped: list[int]) -> pa.Array:
    """Line numbers of `count` good rows starting at `first`, around the bad lines."""
    lines: list[int] = []
    taken = set(skipped)
    line = first
    if not taken:
        return pa.array(np.arange(first, first + count, dtype=np.int64))
    while len(lines) < count:
        if line not in taken:
            lines.append(line)
        line += 1
    return pa.array(lines, pa.int64())


def _cell_text(value: object) -> str | None:
    """One spreadsheet or JSON value as the text a person would see in the cell."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _rows_to_table(header: list[str], rows: list[list[object]]) -> pa.Table:
    columns = {name: pa.array([_cell_text(row[i]) if i < len(row) else None for row in rows], pa.string())
               for i, name in enumerate(header)}
    return pa.table(columns)


def read_excel(path: Path, sheet: str | int | None = None, skip_rows: int = 0) -> Iterator[Batch]:
    """Stream the rows of one sheet, or of every sheet with the first sheet's header."""
    from python_calamine import CalamineWorkbook

    workbook = CalamineWorkbook.from_path(str(path))
    names = workbook.sheet_names if sheet is None else [sheet if isinstance(sheet, str) else workbook.sheet_names[sheet]]
    total = sum(workbook.get_sheet_by_name(name).total_height for name in names) or 1
    header: list[str] | None = None
    seen = 0
    for name in names:
        rows = workbook.get_sheet_by_name(name).iter_rows()
        first = next(rows, None)
        header = header or [str(cell) for cell in (first or [])]
        pending: list[list[object]] = []
        pending_lines: list[int] = []
        for sheet_row, row in enumerate(rows, start=2):
            seen += 1
            if seen <= skip_rows:
                continue
            pending.append(row)
            pending_lines.append(sheet_row)
            if len(pending) >= BATCH_ROWS:
                yield Batch(_rows_to_table(header, pending), pa.array(pending_lines, pa.int64()), [], seen / total)
                pending, pending_lines = [], []
        if pending:
            yield Batch(_rows_to_table(header, pending), pa.array(pending_lines, pa.int64()), [], seen / total)


def _json_batch(lines: list[tuple[int, bytes]]) -> Batch:
    """Parse JSON lines; a line that is not a JSON object is reported with its text."""
    good: list[dict] = []
    numbers: list[int] = []
    bad: list[tuple[int, str, str]] = []
    for number, raw in lines:
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError as broken:
            bad.append((number, raw.decode("utf-8", "replace"), f"not JSON: {broken}"))
            continue
        if not isinstance(parsed, dict):
            bad.append((number, raw.decode("utf-8", "replace"), "not a JSON object"))
            continue
        good.append(parsed)
        numbers.append(number)
    keys = list(dict.fromkeys(key for row in good for key in row))
    table = pa.table({key: pa.array([_cell_text(row.get(key)) for row in good], pa.string()) for key in keys})
    return Batch(table if keys else pa.table({}), pa.array(numbers, pa.int64()), bad)


def read_jsonl(path: Path, skip_rows: int = 0) -> Iterator[Batch]:
    """Stream JSON lines, one object per line; blank lines are not records (nor counted)."""
    size = max(path.stat().st_size, 1)
    pending: list[tuple[int, bytes]] = []
    done = records = 0
    with open(path, "rb") as source:
        for number, raw in enumerate(source, start=1):
            done += len(raw)
            if not raw.strip():
                continue
            records += 1
            if records <= skip_rows:
                continue
            pending.append((number, raw))
            if len(pending) >= BATCH_ROWS:
                batch, pending = _json_batch(pending), []
                batch.fraction_done = done / size
                yield batch
    if pending:
        batch = _json_batch(pending)
        batch.fraction_done = 1.0
        yield batch


def _as_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A typed Parquet column as text the mapping's converters understand."""
    kind = column.type
    if pa.types.is_timestamp(kind):
        fmt = "%Y-%m-%dT%H:%M:%S%z" if kind.tz else "%Y-%m-%d %H:%M:%S"
        return pc.strftime(column, format=fmt)
    if pa.types.is_nested(kind):
        return pa.chunked_array([pa.array([_cell_text(v) for v in column.to_pylist()], pa.string())])
    return pc.cast(column, pa.string())


def read_parquet(path: Path, skip_rows: int = 0) -> Iterator[Batch]:
    """Stream row groups of a Parquet file as text columns."""
    source = pq.ParquetFile(path)
    total = max(source.metadata.num_rows, 1)
    first = 0
    for record_batch in source.iter_batches(batch_size=BATCH_ROWS):
        table = pa.Table.from_batches([record_batch])
        start, first = first, first + table.num_rows
        if first <= skip_rows:
            continue
        table = table.slice(max(skip_rows - start, 0))
        lines = pa.array(range(first - table.num_rows + 1, first + 1), pa.int64())
        text = pa.table({name: _as_text(table.column(name)) for name in table.column_names})
        yield Batch(text, lines, [], first / total)


def sniff_format(path: Path, fallback: str | None = None) -> str:
    """csv, excel, jsonl or parquet: from the extension, else the mapping's `format`, else csv.

    The file in hand wins over the mapping, so one mapping serves a CSV export and
    the same data saved as Excel or Parquet.
    """
    known = {".csv": "csv", ".tsv": "csv", ".xlsx": "excel", ".xlsm": "excel", ".xls": "excel",
             ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
    return known.get(path.suffix.lower()) or fallback or "csv"
