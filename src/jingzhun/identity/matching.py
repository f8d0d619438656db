"""Probabilistic matching: CRM members who registered twice and share no identifier.

The deterministic ID graph joins records that share a phone, a member id or a
WeChat id. Some people registered a second time with a new phone and a mistyped
name (王静怡 → 王静一); nothing links those. `match_records` compares members by
name (exact, same pinyin, swapped characters, one character off), birthday, region,
gender and phone with a Splink model trained without labels, and writes the pairs
that share no identifier to `match_candidates`:

* probability ≥ `auto_merge_threshold` → `auto_merged` (the graph links them with
  rule `probabilistic`);
* ≥ `review_threshold` → `pending`, for an operator (`review_queue`,
  `decide_match`); decisions (`accepted` / `rejected`) survive every re-run.

The same stage then links marketplace buyer ids to members by masked phone, surname
and city (`jingzhun.identity.marketplace`), into the same table and review queue.

Thresholds live in `definitions/identity.yaml` (whose other keys, such as the junk
blocklist, the matcher honours too)::

    matching:
      auto_merge_threshold: 0.99
      review_threshold: 0.8
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlglot import exp

from jingzhun.core.errors import ConfigError
from jingzhun.core.workspace import Workspace
from jingzhun.engine import Engine, parse_sql
from jingzhun.identity.config import CONFIG_FILE, load_identity_config
from jingzhun.identity.marketplace import (
    BUYER_COLUMNS,
    BUYER_FIELDS,
    BUYERS,
    MarketplaceResult,
    link_marketplace_buyers,
)
from jingzhun.identity.matching_backends import open_splink_run
from jingzhun.identity.matching_model import (
    COMPARISONS,
    MatchingError,
    evidence_sql,
    model_version,
    predict,
    train_model,
)
from jingzhun.identity.matching_records import ID_TYPE, RECORD_COLUMNS, RECORDS, build_match_records
from jingzhun.schema.tables import MATCH_CANDIDATES, MODEL_RUNS

MODEL_NAME = "identity_match"
MIN_RECORDS = 50  # fewer members than this cannot train a model worth trusting
DECIDED = ("accepted", "rejected")
Progress = Callable[[str, int, int], None]


class MatchingSettings(BaseModel):
    """The `matching:` section of `definitions/identity.yaml`."""

    model_config = ConfigDict(extra="forbid")

    auto_merge_threshold: float = Field(0.99, gt=0, le=1)
    review_threshold: float = Field(0.8, gt=0, le=1)

    @model_validator(mode="after")
    def _review_below_auto(self) -> MatchingSettings:
        if self.review_threshold > self.auto_merge_threshold:
            raise ValueError("review_threshold must not exceed auto_merge_threshold")
        return self


@dataclass(frozen=True)
class MatchingResult:
    """What one matching run did (the pipeline adapts it to its StageResult)."""

    tables: dict[str, int] = field(default_factory=dict)
    notes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    model_version: str | None = None
    auto_merged: int = 0
    pending: int = 0
    marketplace: MarketplaceResult | None = None  # the buyer-to-member links of the same stage


def load_matching_settings(workspace: Workspace) -> MatchingSettings:
    """The workspace's matching thresholds (defaults when the file or key is absent).

    The file is read by the ID graph's loader (one set of errors for the whole file);
    the `matching:` section it leaves as data is validated here.
    """
    section = load_identity_config(workspace).matching
    try:
        return MatchingSettings.model_validate(section or {})
    except ValidationError as invalid:
        raise _settings_error(invalid.errors()[0], workspace.definitions_dir / CONFIG_FILE) from None


def _settings_error(error: dict[str, Any], path: Path) -> ConfigError:
    key = ".".join(["matching", *(str(part) for part in error["loc"])])
    reason = str(error["msg"]).removeprefix("Value error, ")
    return ConfigError(
        f"invalid value for `{key}`: {reason}", field=key, location=path,
        fix="use probabilities between 0 and 1 with review_threshold ≤ auto_merge_threshold "
            "(e.g. 0.8 and 0.99)",
        message_zh=f"`{key}` 的值无效：{reason}",
        fix_zh="阈值须为 0 到 1 之间的概率，且 review_threshold ≤ auto_merge_threshold"
               "（例如 0.8 和 0.99）",
    )


def match_records(workspace: Workspace, engine: Engine, progress: Progress | None = None) -> MatchingResult:
    """Match members with Splink, then marketplace buyers with members (both write
    `match_candidates`); `auto_merged` and `pending` count the members' pairs.
    """
    members = _match_members(workspace, engine, progress)
    market = link_marketplace_buyers(workspace, engine, RECORDS, progress)
    return MatchingResult({**members.tables, **market.tables}, members.notes + market.notes,
                          members.model_version, members.auto_merged, members.pending, market)


def _match_members(workspace: Workspace, engine: Engine, progress: Progress | None = None) -> MatchingResult:
    """Train the matcher on the CRM members and rewrite the undecided match candidates.

    Args:
        progress: called as `progress(step, done, total)` before each step.

    Returns:
        A `MatchingResult` with rows written and the counts per status.
    """
    started = time.perf_counter()
    settings = load_matching_settings(workspace)
    report = progress or (lambda step, done, total: None)
    engine.create_table(MATCH_CANDIDATES.name, MATCH_CANDIDATES.columns)
    report(RECORDS, 0, 4)
    members = build_match_records(engine, workspace) if engine.table_exists("source_records") else 0
    if members < MIN_RECORDS:
        return MatchingResult({RECORDS: members}, [("note.matching_too_few", {"members": members,
                                                                            "needed": MIN_RECORDS})])
    splink_run = open_splink_run(engine)
    try:
        source = splink_run.source(RECORDS)
        report("train", 1, 4)
        model = train_model(splink_run.db_api, source, members)
        version = model_version(model)
        report("predict", 2, 4)
        scored = predict(splink_run.db_api, source, model, settings.review_threshold)
        report(MATCH_CANDIDATES.name, 3, 4)
        rows = write_candidates(engine, splink_run.scored_table(scored), settings, version)
    finally:
        splink_run.close()
    counts = _status_counts(rows.filter(pc.starts_with(rows["candidate_id"], "mc-")))
    record_model_run(engine, model, version, members, counts)
    notes = [("note.matching_done", {**counts, "members": members, "model_version": version,
                                     "seconds": round(time.perf_counter() - started, 2)})]
    return MatchingResult({RECORDS: members, MATCH_CANDIDATES.name: rows.num_rows}, notes, version,
                          counts.get("auto_merged", 0), counts.get("pending", 0))


# Keep operators' decisions and other matchers' rows (marketplace: mk-); replace this
# matcher's (mc-). A pair that shares a phone or an e-mail is the deterministic graph's
# to link, so it is never a candidate.
CANDIDATES_SQL = """
WITH fresh AS (
  SELECT LEAST(member_id_l, member_id_r) AS left_value,
    GREATEST(member_id_l, member_id_r) AS right_value,
    match_probability, match_weight, {evidence} AS evidence
  FROM {scored}
  WHERE NOT COALESCE(phone_l = phone_r, FALSE) AND NOT COALESCE(email_l = email_r, FALSE)
),
kept AS (SELECT * FROM match_candidates
         WHERE status IN ('accepted', 'rejected') OR candidate_id NOT LIKE 'mc-%')
SELECT candidate_id, left_type, left_value, right_type, right_value, match_probability,
  match_weight, status, evidence, model_version, created_at, reviewed_by, reviewed_at
FROM kept
UNION ALL
SELECT 'mc-' || SUBSTRING(MD5(f.left_value || '|' || f.right_value), 1, 16) AS candidate_id,
  :id_type AS left_type, f.left_value, :id_type AS right_type, f.right_value,
  f.match_probability, f.match_weight,
  CASE WHEN f.match_probability >= :auto THEN 'auto_merged' ELSE 'pending' END AS status,
  f.evidence, :version AS model_version, :now AS created_at,
  CAST(NULL AS VARCHAR) AS reviewed_by, CAST(NULL AS TIMESTAMPTZ) AS reviewed_at
FROM fresh AS f
LEFT JOIN kept AS k ON k.left_type = :id_type AND k.right_type = :id_type
  AND k.left_value = f.left_value AND k.right_value = f.right_value
WHERE k.candidate_id IS NULL
"""


def candidates_sql(scored: str, settings: MatchingSettings, version: str, now: dt.datetime) -> exp.Expression:
    """The whole next `match_candidates`: kept decisions plus this run's pairs."""
    sql = CANDIDATES_SQL.format(evidence=evidence_sql(), scored=scored)
    return _bind(sql, id_type=ID_TYPE, auto=settings.auto_merge_threshold, version=version, now=now)


def write_candidates(engine: Engine, scored: str, settings: MatchingSettings, version: str) -> pa.Table:
    """Rewrite `match_candidates` from Splink's scored pairs; return the rows written."""
    rows = engine.query(candidates_sql(scored, settings, version, _now()))
    with engine.transaction():
        engine.write_table(MATCH_CANDIDATES.name, rows, mode="replace")
    return rows


REVIEW_FIELDS = BUYER_FIELDS  # name, birthday, gender, province, city, phone
# A marketplace buyer's side is its receiver: 王**, the masked phone, the city.
REVIEW_SQL = """
SELECT c.candidate_id, c.match_probability, c.match_weight, c.left_type, c.left_value,
  c.right_type, c.right_value, c.evidence, c.model_version, c.created_at, {sides}
FROM match_candidates AS c
LEFT JOIN {records} AS l ON c.left_type = :id_type AND l.member_id = c.left_value
LEFT JOIN {records} AS r ON c.right_type = :id_type AND r.member_id = c.right_value
LEFT JOIN {buyers} AS b ON b.buyer_type = c.left_type AND b.buyer_id = c.left_value
LEFT JOIN {buyers} AS rb ON rb.buyer_type = c.right_type AND rb.buyer_id = c.right_value
WHERE c.status = 'pending'
ORDER BY c.match_probability DESC, c.candidate_id
"""


def review_queue(engine: Engine) -> pa.Table:
    """Pending candidates, most probable first, with both members' compared fields
    side by side (`l_name`, `r_name`, …) so a reviewer can judge at a glance."""
    engine.create_table(RECORDS, RECORD_COLUMNS)  # empty until the first run
    engine.create_table(BUYERS, BUYER_COLUMNS)
    sides = ", ".join([f"COALESCE(l.{name}, b.{name}) AS l_{name}" for name in REVIEW_FIELDS]
                      + [f"COALESCE(r.{name}, rb.{name}) AS r_{name}" for name in REVIEW_FIELDS])
    sql = REVIEW_SQL.format(sides=sides, records=RECORDS, buyers=BUYERS)
    return engine.query(_bind(sql, id_type=ID_TYPE))


def decide_match(engine: Engine, candidate_id: str, accept: bool, reviewer: str) -> str:
    """Record an operator's decision on one candidate; return its new status.

    An accepted pair is linked by the graph like an auto-merged one; a rejected pair
    is never linked, however high a later model scores it.
    """
    if not reviewer or not reviewer.strip():
        raise MatchingError(
            "a review decision needs the reviewer's name.", field="reviewer",
            fix="pass reviewer='<your user name>'",
            message_zh="审核决定需要填写审核人。", fix_zh="传入 reviewer='<你的用户名>'",
        )
    status = "accepted" if accept else "rejected"
    known = engine.query(_bind("SELECT COUNT(*) AS n FROM match_candidates WHERE candidate_id = :id",
                               id=candidate_id))
    if not known.column("n")[0].as_py():
        raise MatchingError(
            f"no match candidate {candidate_id!r}.", field="candidate_id",
            fix="pick a candidate_id from review_queue()",
            message_zh=f"没有编号为 {candidate_id!r} 的匹配候选。", fix_zh="请从 review_queue() 中选择 candidate_id",
        )
    rows = engine.query(_bind(DECIDE_SQL, id=candidate_id, status=status, reviewer=reviewer.strip(),
                              now=_now()))
    with engine.transaction():
        engine.write_table(MATCH_CANDIDATES.name, rows, mode="replace")
    return status


# Spark tables have no UPDATE: the (small) table is rewritten with the one row changed.
DECIDE_SQL = """
SELECT candidate_id, left_type, left_value, right_type, right_value, match_probability,
  match_weight,
  CASE WHEN candidate_id = :id THEN :status ELSE status END AS status,
  evidence, model_version, created_at,
  CASE WHEN candidate_id = :id THEN :reviewer ELSE reviewed_by END AS reviewed_by,
  CASE WHEN candidate_id = :id THEN :now ELSE reviewed_at END AS reviewed_at
FROM match_candidates
"""


def record_model_run(engine: Engine, model: dict[str, Any], version: str, members: int,
                     counts: dict[str, int]) -> None:
    """Add the trained model to `model_runs` once per version, with its parameters."""
    engine.create_table(MODEL_RUNS.name, MODEL_RUNS.columns)
    seen = _bind("SELECT COUNT(*) AS n FROM model_runs WHERE model = :model AND model_version = :version",
                 model=MODEL_NAME, version=version)
    if engine.query(seen).column("n")[0].as_py():
        return
    metrics = {"probability_two_random_records_match": model.get("probability_two_random_records_match"),
               **counts}
    row = pa.table({
        "model": [MODEL_NAME], "model_version": [version], "trained_at": [_now()],
        "train_until": pa.array([None], pa.timestamp("us", tz="UTC")),
        "metrics": [json.dumps(metrics)], "params": [json.dumps(model, ensure_ascii=False)],
        "features": [json.dumps([comparison.name for comparison in COMPARISONS])],
        "rows_trained": pa.array([members], pa.int64()),
    })
    engine.write_table(MODEL_RUNS.name, row, mode="append")


def _bind(sql: str, **values: object) -> exp.Expression:
    """Parse DuckDB-dialect SQL and bind `:name` placeholders as literals (never as text)."""
    return exp.replace_placeholders(parse_sql(sql), **{k: exp.convert(v) for k, v in values.items()})


def _status_counts(rows: pa.Table) -> dict[str, int]:
    """Rows per status, every status present (the run's note names each one)."""
    counts = rows.group_by("status").aggregate([("status", "count")]).to_pylist()
    return {"auto_merged": 0, "pending": 0, **{row["status"]: row["status_count"] for row in counts}}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)
