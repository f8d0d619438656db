"""Benchmark: probabilistic matching through jingzhun against Splink alone.

The claim measured (issue 4, "Done when"): identity's probabilistic step costs at
most 1.2× what Splink alone takes on the same prepared table. Both sides train the
same model (prior from deterministic rules, u by seeded random sampling, m by EM
on three blockings) and score the same blocked pairs:

* **jingzhun** — `match_records(workspace, engine)` on a private copy of the demo:
  the member table built in SQL from `source_records` (pinyin per character) in the
  workspace's DuckDB file, Splink on it, candidates written with decisions kept,
  the model recorded in `model_runs`;
* **splink alone** — the baseline a data scientist would write: the prepared member
  table (taken once from jingzhun, so both compare the same rows) registered as
  Arrow in an in-memory DuckDB, the same Splink calls, `predict()`; nothing written.

Each side runs `--repeat` times, alternating. On a shared machine other work only
ever adds time, so the claim is judged on the fastest run of each side (as `timeit`
does); the medians are printed beside it. Precision and recall against the demo's
truth are reported for the jingzhun run.

Usage:
    python benchmarks/matching.py [--demo /tmp/demo20k] [--repeat 3]
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def copy_demo(source: Path, target: Path):
    from tests.conftest import copy_workspace

    shutil.rmtree(target, ignore_errors=True)
    return copy_workspace(source, target)


def run_jingzhun(source: Path, scratch: Path) -> tuple[float, dict]:
    """Wall time of `match_records` on a fresh copy, and the quality it reached."""
    from tests.identity.test_matching import member_truth

    from jingzhun.engine import open_engine
    from jingzhun.identity.matching import match_records
    from jingzhun.identity.matching_quality import match_quality

    workspace = copy_demo(source, scratch / "jingzhun")
    # The claim is about the member matcher (Splink); the same stage's marketplace buyer
    # links (identity/marketplace.py, about 2.5 s on the 20,000 demo) are timed apart.
    (workspace.definitions_dir / "identity.yaml").write_text("marketplace: {enabled: false}\n", encoding="utf-8")
    with open_engine(workspace) as engine:
        started = time.perf_counter()
        result = match_records(workspace, engine)
        seconds = time.perf_counter() - started
        quality = match_quality(engine, member_truth(source)).as_dict()
    return seconds, {"quality": quality, "auto_merged": result.auto_merged, "pending": result.pending,
                     "model_version": result.model_version}


def prepared_members(source: Path, scratch: Path) -> pa.Table:
    """The member table exactly as jingzhun prepares it (the input both sides share)."""
    from jingzhun.engine import open_engine
    from jingzhun.identity.matching_records import RECORDS, build_match_records

    workspace = copy_demo(source, scratch / "prepared")
    with open_engine(workspace) as engine:
        build_match_records(engine, workspace)
        return engine.read_table(RECORDS)


def run_splink_alone(members: pa.Table, review_threshold: float) -> tuple[float, int]:
    """Wall time of plain Splink on an in-memory DuckDB: train, then predict."""
    from splink import DuckDBAPI, Linker

    from jingzhun.identity import matching_model as model

    connection = duckdb.connect()
    started = time.perf_counter()
    db_api = DuckDBAPI(connection)
    linker = Linker(db_api.register(members), model.splink_settings(), log_level=None)
    training = linker.training
    training.estimate_probability_two_random_records_match(list(model.prior_rules()), recall=model.PRIOR_RECALL)
    pairs = min(model.U_MAX_PAIRS, members.num_rows * (members.num_rows - 1) / 2)
    training.estimate_u_using_random_sampling(max_pairs=pairs, seed=model.SEED, num_chunks=1)
    for rule in model.training_blocking():
        training.estimate_parameters_using_expectation_maximisation(rule)
    scored = linker.inference.predict(threshold_match_probability=review_threshold, warning_mode="never")
    rows = scored.as_pyarrow_table().num_rows
    seconds = time.perf_counter() - started
    connection.close()
    return seconds, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, default=Path("/tmp/demo20k"))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from jingzhun.identity.matching import load_matching_settings
    from jingzhun.identity.matching_model import quiet_splink

    with tempfile.TemporaryDirectory(prefix="bench-matching-") as scratch_dir, quiet_splink():
        scratch = Path(scratch_dir)
        members = prepared_members(args.demo, scratch)
        threshold = load_matching_settings(copy_demo(args.demo, scratch / "settings")).review_threshold
        ours, alone, details, scored = [], [], {}, 0
        for _ in range(args.repeat):
            seconds, scored = run_splink_alone(members, threshold)
            alone.append(seconds)
            seconds, details = run_jingzhun(args.demo, scratch)
            ours.append(seconds)
    ratio = min(ours) / min(alone)
    print(json.dumps({
        "benchmark": "matching", "demo": str(args.demo), "members": members.num_rows,
        "repeat": args.repeat, "pairs_scored_above_review_threshold": scored,
        "jingzhun_seconds": [round(s, 2) for s in ours], "splink_alone_seconds": [round(s, 2) for s in alone],
        "jingzhun_best": round(min(ours), 2), "splink_alone_best": round(min(alone), 2),
        "jingzhun_median": round(statistics.median(ours), 2),
        "splink_alone_median": round(statistics.median(alone), 2),
        "ratio_best": round(ratio, 3),
        "ratio_median": round(statistics.median(ours) / statistics.median(alone), 3),
        "claim": "jingzhun <= 1.2 x splink alone (fastest runs)", "claim_met": ratio <= 1.2,
        **details,
    }, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
