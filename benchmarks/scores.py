"""Benchmark: the scores stage on the 20,000-person demo, against its SQL in plain DuckDB.

The claim measured (issue 4, item 6): `score_persons` — features by SQL at every
snapshot, two boosted-tree classifiers evaluated out of time and refit, BG/NBD +
Gamma-Gamma with a holdout check, scores and model runs written — runs in a time
dominated by model fitting, and the engine adds little to its SQL. The stage computes
the features of all its snapshots (eight cut-offs) in one query, materialized once and
read back per snapshot; that query, rendered once and run on a plain DuckDB connection
(fetching Arrow), is the baseline, beside the same query through the engine. Each side
runs in its own process on its own copy of the workspace, so peak RSS is its own, and
CPU seconds are reported beside wall time because the machine may be shared.

OneID comes from `jingzhun.identity.build_identity` on the copy, as in the pipeline.

Usage:
    python benchmarks/scores.py [--demo /tmp/demo20k] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """User and system time of this process (all its threads) so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def copy_demo(demo: Path, target: Path) -> Path:
    """A private copy of the demo workspace without its source files."""
    shutil.copytree(demo, target, ignore=shutil.ignore_patterns("data", "log", "demo-truth"))
    (target / "demo-truth").symlink_to(demo / "demo-truth")
    (target / "log").mkdir(exist_ok=True)
    return target


def prepare(folder: Path) -> dict[str, object]:
    """Migrate and build the identity tables the scores read."""
    from jingzhun.core import open_workspace
    from jingzhun.engine import open_engine
    from jingzhun.identity import build_identity
    from jingzhun.schema import migrate

    workspace = open_workspace(folder)
    with open_engine(workspace) as engine:
        migrate(engine)
        began = time.perf_counter()
        build_identity(workspace, engine)
        persons = engine.query("SELECT COUNT(*) AS n FROM persons WHERE status = 'active'").column("n")[0].as_py()
    return {"identity_seconds": round(time.perf_counter() - began, 2), "active_persons": persons}


def feature_statements(folder: Path) -> list[str]:
    """The stage's feature query (every snapshot at once), rendered for DuckDB."""
    from jingzhun.core import open_workspace
    from jingzhun.engine import open_engine
    from jingzhun.profiles.scores import snapshot_cutoffs
    from jingzhun.profiles.scores_features import (
        latest_record_sql,
        product_categories,
        snapshot_features_sql,
    )

    with open_engine(open_workspace(folder), read_only=True) as engine:
        as_of = engine.query(latest_record_sql()).column("latest")[0].as_py()
        categories = product_categories(engine)
        return [engine.render(snapshot_features_sql(snapshot_cutoffs(as_of), categories))]


def run_jingzhun(folder: Path) -> dict[str, object]:
    from jingzhun.core import open_workspace
    from jingzhun.engine import open_engine
    from jingzhun.profiles.scores import score_persons

    steps: dict[str, float] = {}
    began, cpu_began = time.perf_counter(), cpu_seconds()

    def progress(step: str, done: int, total: int) -> None:
        steps[step] = time.perf_counter()

    workspace = open_workspace(folder)
    with open_engine(workspace) as engine:
        result = score_persons(workspace, engine, progress=progress)
        seconds, cpu = time.perf_counter() - began, cpu_seconds() - cpu_began
    marks = sorted(steps.items(), key=lambda item: item[1]) + [("end", began + seconds)]
    step_seconds = {name: round(marks[i + 1][1] - at, 2) for i, (name, at) in enumerate(marks[:-1])}
    metrics = {model: {k: v for k, v in values.items() if k in ("auc", "brier", "brier_base_rate",
                                                                "top_decile_lift", "rows", "base_rate")}
               for model, values in result.metrics.items() if "auc" in values}
    holdout = result.metrics.get("clv_365d", {}).get("holdout", {})
    return {"seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2), "step_seconds": step_seconds,
            "rows": result.tables,
            "metrics": metrics, "clv_holdout": {k: holdout.get(k) for k in
                                                ("days", "actual_total", "predicted_total", "mae", "correlation",
                                                 "naive")},
            "peak_rss_mb": round(peak_rss_mb())}


REPEATS = 3  # the feature-SQL sides are short: best of three, since the machine may be shared


def run_engine_features(folder: Path) -> dict[str, object]:
    """The feature queries alone through the engine (parse, render, run, Arrow)."""
    from jingzhun.core import open_workspace
    from jingzhun.engine import open_engine
    from jingzhun.profiles import scores_features as features
    from jingzhun.profiles.scores import snapshot_cutoffs

    runs, cpu = [], []
    with open_engine(open_workspace(folder)) as engine:
        for _ in range(REPEATS):
            features._features_template.cache_clear()  # parse again each repeat, as each run does
            began, cpu_began = time.perf_counter(), cpu_seconds()
            as_of = engine.query(features.latest_record_sql()).column("latest")[0].as_py()
            categories = features.product_categories(engine)
            rows = engine.query(features.snapshot_features_sql(snapshot_cutoffs(as_of), categories)).num_rows
            runs.append(round(time.perf_counter() - began, 2))
            cpu.append(round(cpu_seconds() - cpu_began, 2))
    return {"seconds": min(runs), "runs": runs, "cpu_seconds": min(cpu), "snapshot_rows": rows,
            "peak_rss_mb": round(peak_rss_mb())}


def run_plain(folder: Path) -> dict[str, object]:
    """The same feature SQL, pre-rendered, on a plain DuckDB connection fetching Arrow."""
    import duckdb

    statements = json.loads((folder / "statements.json").read_text())
    runs, cpu = [], []
    with duckdb.connect(str(folder / "warehouse.duckdb")) as con:
        con.execute("SET TimeZone = 'UTC'")
        for _ in range(REPEATS):
            began, cpu_began = time.perf_counter(), cpu_seconds()
            rows = sum(con.sql(sql).to_arrow_table().num_rows for sql in statements)
            runs.append(round(time.perf_counter() - began, 2))
            cpu.append(round(cpu_seconds() - cpu_began, 2))
    return {"seconds": min(runs), "runs": runs, "cpu_seconds": min(cpu), "snapshot_rows": rows,
            "peak_rss_mb": round(peak_rss_mb())}


SIDES = {"jingzhun": run_jingzhun, "engine_features": run_engine_features, "plain": run_plain}


def child(side: str, folder: Path) -> dict[str, object]:
    """Run one side in a fresh process (so ru_maxrss is its own); return its JSON line."""
    out = subprocess.run([sys.executable, __file__, "--child", side, "--keep", str(folder)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--demo", type=Path, default=Path("/tmp/demo20k"))
    parser.add_argument("--keep", type=Path, default=None)
    parser.add_argument("--child", choices=["prepare", *SIDES], default=None)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(prepare(args.keep) if args.child == "prepare" else SIDES[args.child](args.keep)))
        return
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-scores-"))
    base = copy_demo(args.demo, root / "base")
    prepared = child("prepare", base)
    (base / "statements.json").write_text(json.dumps(feature_statements(base)))
    sides = {}
    for side in SIDES:
        folder = root / side
        shutil.copytree(base, folder, symlinks=True)
        sides[side] = child(side, folder)
    print(json.dumps({
        "benchmark": "scores", "demo": str(args.demo), "record_persons_from": "build_identity", **prepared,
        "jingzhun_score_persons": sides["jingzhun"], "jingzhun_feature_sql": sides["engine_features"],
        "plain_duckdb_feature_sql": sides["plain"],
        "feature_sql_ratio": round(sides["engine_features"]["seconds"] / max(sides["plain"]["seconds"], 1e-9), 2),
        "feature_sql_share_of_stage": round(sides["plain"]["seconds"] / max(sides["jingzhun"]["seconds"], 1e-9), 2),
        "load_average_after": [round(x, 1) for x in os.getloadavg()],  # the machine may be shared
    }, ensure_ascii=False, indent=2))
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
