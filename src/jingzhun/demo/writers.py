"""File writers shared by the source families, and the catalogue/store exports.

JSON lines are rendered by DuckDB (`json_object`) from Arrow tables and written
straight from the Arrow string buffers; CSVs go through `pyarrow.csv`; the POS
export is written as UTF-8 in memory and transcoded to GBK in one block per
file, as a POS system running on a Chinese-locale Windows box would produce.
"""

from __future__ import annotations

import io
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from jingzhun.demo.catalog import catalog_table
from jingzhun.demo.context import DemoContext, DemoFile


def duck() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB for rendering; insertion order kept so output is reproducible."""
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = true")
    return con


def write_lines(path: Path, lines: pa.ChunkedArray | pa.Array) -> int:
    """Write a string column whose values already end in "\\n", buffer by buffer."""
    path.parent.mkdir(parents=True, exist_ok=True)
    chunks = lines.chunks if isinstance(lines, pa.ChunkedArray) else [lines]
    with path.open("wb") as f:
        for chunk in chunks:
            if len(chunk) == 0:
                continue
            width = np.int64 if pa.types.is_large_string(chunk.type) else np.int32
            offsets = np.frombuffer(chunk.buffers()[1], dtype=width)
            lo, hi = offsets[chunk.offset], offsets[chunk.offset + len(chunk)]
            f.write(memoryview(chunk.buffers()[2])[lo:hi])
    return len(lines)


def csv_bytes(table: pa.Table) -> bytes:
    """UTF-8 CSV with a header, quoting only where needed (as spreadsheet tools do)."""
    sink = io.BytesIO()
    pacsv.write_csv(table, sink, pacsv.WriteOptions(quoting_style="needed"))
    return sink.getvalue()


def write_csv(path: Path, table: pa.Table, encoding: str = "utf-8") -> None:
    """Write a CSV in the given encoding (strict: a character GBK lacks is a bug here)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = csv_bytes(table)
    if encoding.lower() not in ("utf-8", "utf8"):
        data = data.decode("utf-8").encode(encoding)
    path.write_bytes(data.replace(b"\n", b"\r\n") if encoding == "gbk" else data)


def write_catalog_sources(ctx: DemoContext) -> list[DemoFile]:
    """catalog/products.csv and catalog/stores.csv (UTF-8, as a PIM/ERP export)."""
    products = catalog_table(ctx.catalog)
    products_path = ctx.data_dir / "catalog" / "products.csv"
    write_csv(products_path, products)
    stores_path = ctx.data_dir / "catalog" / "stores.csv"
    write_csv(stores_path, ctx.stores)
    return [
        DemoFile("products", products_path, products.num_rows,
                 description="Product master: one row per SKU, EAN-13 barcodes"),
        DemoFile("stores", stores_path, ctx.stores.num_rows,
                 description="Store master: store_id, name, province, city, opened_on"),
    ]
