"""Benchmark: importing a 1M-row GBK POS export with full validation, against plain reads.

The claim measured (issue 3): `jingzhun import pos_sales` streams a GBK file through
decoding, mapping, validation (phones to E.164, EAN-13 check digits, non-negative
quantities, strict local times to UTC, known stores and products, mojibake in
names), receipt grouping, de-duplication, the product lookup and the DuckDB write
at >= 200k rows/s with peak RSS under 1 GB. The workspace is created, migrated and
given its stores and products (760 SKUs) before the clock starts, as a user's
workspace is; the timed part is opening the engine, `import_file` (file hashing
included) and closing the engine (DuckDB's last checkpoint).

Ceilings in the same run, each reading the same file with no validation:
- `duckdb_read_csv_store`: DuckDB's parallel CSV reader into a table of a fresh
  database file. DuckDB has no GBK codec without downloading its `encodings`
  extension, so the bytes are read as Latin-1 (same parsing work, text not decoded).
- `pandas_read_csv_gbk`: `pandas.read_csv(encoding="gbk", dtype=str)`, in memory.
Each side runs in its own process so peak RSS is its own.

Usage:
    python benchmarks/import.py [--rows 1000000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rates(rows: int, seconds: float) -> dict[str, object]:
    return {"rows": rows, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds),
            "peak_rss_mb": round(peak_rss_mb())}


def run_import(path: Path, folder: Path) -> dict[str, object]:
    from jingzhun.collect.importers import import_file
    from jingzhun.collect.importers.synthetic import write_catalog
    from jingzhun.core import WorkspaceConfig, init_workspace
    from jingzhun.engine import open_engine
    from jingzhun.schema import migrate

    shutil.rmtree(folder / "ws", ignore_errors=True)
    workspace = init_workspace(folder / "ws", WorkspaceConfig(name="bench"))
    stores, products = write_catalog(folder)
    with open_engine(workspace) as engine:
        migrate(engine)
        import_file(workspace, engine, "stores", stores)
        import_file(workspace, engine, "products", products)
    began, cpu = time.perf_counter(), time.process_time()
    with open_engine(workspace) as engine:  # closing is timed too: DuckDB checkpoints what is left
        result = import_file(workspace, engine, "pos_sales", path)
    seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    with open_engine(workspace) as engine:
        matched = engine.query("SELECT count(*) AS n FROM order_items WHERE product_id IS NOT NULL").column(0)[0]
    return {**_rates(result.rows_read, seconds), "cpu_seconds": round(cpu, 2), "loaded": result.rows_loaded,
            "quarantined": result.rows_quarantined, "duplicates": result.rows_duplicate,
            "balanced": result.balanced, "items_with_product_id": matched.as_py()}


def run_duckdb(path: Path, folder: Path) -> dict[str, object]:
    import duckdb

    target = folder / "ceiling.duckdb"
    target.unlink(missing_ok=True)
    began = time.perf_counter()
    with duckdb.connect(str(target)) as connection:
        connection.execute("CREATE TABLE pos AS SELECT * FROM read_csv(?, encoding = 'latin-1', all_varchar = true)",
                           [str(path)])
        rows = connection.execute("SELECT count(*) FROM pos").fetchall()[0][0]
    return _rates(rows, time.perf_counter() - began)


def run_pandas(path: Path) -> dict[str, object]:
    import pandas as pd

    began = time.perf_counter()
    frame = pd.read_csv(path, encoding="gbk", dtype=str)
    return _rates(len(frame), time.perf_counter() - began)


def run_generate(path: Path, rows: int) -> dict[str, object]:
    from jingzhun.collect.importers.synthetic import write_pos_file

    began = time.perf_counter()
    write_pos_file(path, rows)
    return {"rows": rows, "mb": round(path.stat().st_size / 1e6, 1), "encoding": "gbk",
            "generate_seconds": round(time.perf_counter() - began, 1)}


def child(side: str, path: Path, folder: Path, rows: int = 0) -> dict[str, object]:
    """Run one side in a fresh process (so ru_maxrss is its own) and return its JSON line.

    Linux keeps a process's peak RSS across fork and exec, so the parent stays
    small: even the file is generated in a child.
    """
    out = subprocess.run([sys.executable, __file__, "--child", side, "--file", str(path), "--keep", str(folder),
                          "--rows", str(rows)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, default=None)
    parser.add_argument("--child", choices=["generate", "import", "duckdb", "pandas"], default=None)
    parser.add_argument("--file", type=Path, default=None)
    args = parser.parse_args()
    if args.child:
        sides = {"generate": lambda: run_generate(args.file, args.rows),
                 "import": lambda: run_import(args.file, args.keep),
                 "duckdb": lambda: run_duckdb(args.file, args.keep), "pandas": lambda: run_pandas(args.file)}
        print(json.dumps(sides[args.child]()))
        return
    folder = args.keep or Path(tempfile.mkdtemp(prefix="jingzhun-import-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"store_sales-{args.rows}.csv"
    report = {"file": child("generate", path, folder, args.rows) if not path.exists() else
              {"rows": args.rows, "mb": round(path.stat().st_size / 1e6, 1), "encoding": "gbk", "reused": True},
              "jingzhun_import": child("import", path, folder),
              "ceiling_duckdb_read_csv_store": child("duckdb", path, folder),
              "baseline_pandas_read_csv_gbk": child("pandas", path, folder),
              "target": {"rows_per_s": 200_000, "peak_rss_mb": 1024}}
    ours = report["jingzhun_import"]
    report["import_vs_duckdb_ceiling"] = round(ours["rows_per_s"] / report["ceiling_duckdb_read_csv_store"]["rows_per_s"], 2)
    report["import_vs_pandas_read"] = round(ours["rows_per_s"] / report["baseline_pandas_read_csv_gbk"]["rows_per_s"], 2)
    report["target_met"] = ours["rows_per_s"] >= 200_000 and ours["peak_rss_mb"] < 1024
    print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
