"""Lead distribution (线索分配): score sales leads, hand them to reps by quota and territory, learn from outcomes.

1. **Score** (`score_leads`): every lead imported as `source_records` of kind `lead`
   (`jingzhun import prospects FILE`) gets its features in one engine query
   (leads_sql.py): *freshness* — days since the lead's last activity, weighted 1 within
   `fresh_days` (3) and halving every `half_life_days` after; *intent* — pages viewed,
   price checks, a sample request, the lead's source, and for leads who are already
   customers their product views and livestream visits in the `intent_days` before;
   *fit* — an existing customer, a member, a company, a city with our store. A logistic
   regression fitted on past outcomes (leads_model.py) turns them into a calibrated
   chance to convert, tested on a time split against ranking by freshness alone; the
   scores are computed in SQL from the fitted coefficients and written to `leads`.
2. **Assign** (`assign_leads`): each active rep of `definitions/sales.yaml` gets up to
   their quota of open leads per day or week, best first, from their territories. The
   rounds run in one transaction behind a lock row, and the same transaction checks that
   no lead holds two open assignments and no rep is over quota before it commits, so
   two assigners at once never hand one lead to two reps.
3. **Outcomes** (`record_lead_outcome`): a rep's won / lost / no_answer closes the
   assignment; won and lost become labels of the next scoring (overriding the import),
   an unanswered lead returns to the pool after a cool-down with a lower priority.

Leads are served from the workspace's DuckDB, like campaigns: assigning needs transactions.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa
from sqlglot import exp

from jingzhun.activation.leads_model import (
    FEATURE_NAMES,
    FittedModel,
    ModelTest,
    fit,
    time_split_test,
)
from jingzhun.activation.leads_settings import SalesSettings, load_sales_settings, scoring_version
from jingzhun.activation.leads_sql import (
    DOUBLE_ASSIGNED_SQL,
    DUPLICATE_IDS_SQL,
    assign_round_sql,
    features_sql,
    matrix_sql,
    scored_sql,
)
from jingzhun.activation.policy import literal
from jingzhun.activation.sending import locked
from jingzhun.core.errors import JingzhunError
from jingzhun.core.workspace import Workspace
from jingzhun.engine import Engine, MaterializeHints
from jingzhun.profiles.tags import data_as_of
from jingzhun.schema.tables import LEAD_ASSIGNMENTS, LEAD_OUTCOMES, LEADS, MODEL_RUNS

MODEL = "lead_score"
FEATURES_TABLE = "leads_features"
LOCK_ID = "lead_assignment"
OUTCOMES = ("won", "lost", "no_answer")
STATUSES = ("open", "won", "lost")
Outcome = Literal["won", "lost", "no_answer"]


class LeadError(JingzhunError):
    """Leads cannot be scored, assigned or closed as asked."""


@dataclass(frozen=True)
class LeadScoring:
    """One scoring run: what it saw, the model and its test, and the SQL."""

    as_of: datetime
    model_version: str
    statuses: dict[str, int]
    test: ModelTest | None
    model: FittedModel | None
    sql: dict[str, str] = field(default_factory=dict)

    def coefficients(self) -> dict[str, float]:
        """Log-odds per standard deviation of each feature (0 for features left out)."""
        return {name: round(self.model.coefficients.get(name, 0.0), 4) if self.model else 0.0
                for name in FEATURE_NAMES}


@dataclass(frozen=True)
class LeadAssignment:
    """What one assigning run handed out, per rep, with the SQL of a round."""

    assigned_at: datetime
    assignments: pd.DataFrame
    per_rep: dict[str, int]
    rounds: int
    sql: str


# ---- scoring ------------------------------------------------------------------------------------


def score_leads(workspace: Workspace, engine: Engine, *, as_of: datetime | None = None,
                settings: SalesSettings | None = None) -> LeadScoring:
    """Score every lead as of `as_of` (default: the latest data) and rewrite `leads`.

    Args:
        as_of: the scoring instant; leads created later are left out, and outcomes are
            known only as of it (replaying a past day gives the leads that were open then).
        settings: the sales settings (default the workspace's definitions/sales.yaml).

    Returns:
        the statuses counted, the time-split test, the fitted model and the SQL.
    """
    chosen = settings or load_sales_settings(workspace)
    _require_leads(engine)
    moment = _utc(as_of) if as_of is not None else _latest(engine)
    scoring = chosen.scoring
    features = f"{FEATURES_TABLE}_{uuid.uuid4().hex[:12]}"  # two scorers at once keep their own
    sql = {FEATURES_TABLE: engine.materialize(features, features_sql(moment, scoring),
                                              MaterializeHints(scratch=True)).sql}
    try:
        matrix = engine.query(matrix_sql(features)).to_pandas()
        decided = matrix[matrix["status"].isin(["won", "lost"])].assign(won=lambda f: (f["status"] == "won") * 1)
        model, test = _model(decided, scoring.min_training_leads, scoring.test_share, scoring.regularization)
        version = scoring_version(scoring, {"as_of": moment.isoformat(), "decided": len(decided),
                                            "won": int(decided["won"].sum()), "model": model is not None})
        query = scored_sql(features, model.raw_coefficients() if model else None,
                           model.centers if model else {}, model.intercept if model else 0.0, version,
                           datetime.now(UTC).replace(microsecond=0), chosen.city_territories(), scoring.fresh_days)
        sql[LEADS.name] = engine.render(query)
        _locked(engine, lambda: engine.materialize(LEADS.name, query))
        if model is not None:
            _record_model(engine, version, moment, model, test, scoring.fingerprint())
    finally:
        engine.drop_table(features)
    statuses = {str(k): int(v) for k, v in matrix["status"].value_counts().sort_index().items()}
    return LeadScoring(moment, version, statuses, test, model, sql)


def _model(decided: pd.DataFrame, minimum: int, test_share: float,
           regularization: float) -> tuple[FittedModel | None, ModelTest | None]:
    """The time-split test and the model refitted on every decided lead (None when too few)."""
    if len(decided) < minimum or decided["won"].nunique() < 2:
        return None, None
    return fit(decided, regularization), time_split_test(decided, test_share, regularization)


def _require_leads(engine: Engine) -> None:
    if not engine.table_exists(LEADS.name):
        raise LeadError("the leads tables do not exist yet.", field="workspace", fix="run `jingzhun migrate`",
                        message_zh="线索表尚不存在。", fix_zh="请运行 `jingzhun migrate`")
    found = engine.query("SELECT COUNT(*) AS n FROM source_records WHERE kind = 'lead'").column("n")[0].as_py()
    if not found:
        raise LeadError("no leads have been imported.", field="source_records",
                        fix="import a lead export: `jingzhun import prospects FILE.csv` (see docs/leads.md)",
                        message_zh="尚未导入任何销售线索。",
                        fix_zh="请导入线索文件：`jingzhun import prospects 文件.csv`（见 docs/leads.md）")


def _latest(engine: Engine) -> datetime:
    """The latest event, order or lead: scoring a fixed data set gives the same scores."""
    newest = engine.query("SELECT MAX(occurred_at) AS t FROM source_records WHERE kind = 'lead'").column("t")[0]
    candidates = [data_as_of(engine)] + ([_utc(newest.as_py())] if newest.as_py() else [])
    return max(candidates)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _record_model(engine: Engine, version: str, as_of: datetime, model: FittedModel, test: ModelTest | None,
                  params: dict[str, object]) -> None:
    """The model and its test in `model_runs`, once per version."""
    seen = engine.query(exp.select(exp.func("COUNT", exp.Star()).as_("n")).from_(MODEL_RUNS.name).where(
        exp.and_(exp.column("model").eq(literal(MODEL)), exp.column("model_version").eq(literal(version)))))
    if seen.column("n")[0].as_py():
        return
    metrics = {"test": test.as_json() if test else None, "intercept": round(model.intercept, 4),
               "coefficients": {k: round(v, 4) for k, v in model.coefficients.items()},
               "positives": model.positives}
    row = {"model": MODEL, "model_version": version, "trained_at": datetime.now(UTC), "train_until": as_of,
           "metrics": json.dumps(metrics, sort_keys=True), "params": json.dumps(params, sort_keys=True),
           "features": json.dumps(list(FEATURE_NAMES)), "rows_trained": model.rows}
    engine.write_table(MODEL_RUNS.name, pa.Table.from_pylist([row]))


# ---- the lock ---------------------------------------------------------------------------------


def _locked(engine: Engine, work: Callable[[], object], wait: float = 30.0) -> object:
    """`work` in a transaction that first updates this module's row of `send_locks` (campaigns
    use another row, so sending and assigning never wait for each other).

    DuckDB refuses a second transaction's update of the same row ("Conflict on update"),
    so assigners, scorers and outcome writers take turns; the loser retries.
    """
    if not engine.SUPPORTS_TRANSACTIONS:
        raise LeadError(f"engine {engine.NAME!r} has no transactions; leads are assigned on the serving DuckDB.",
                        field="engine", fix="run lead commands on the DuckDB engine (the default)",
                        message_zh=f"引擎 {engine.NAME!r} 不支持事务；线索分配在服务端 DuckDB 上进行。",
                        fix_zh="请在 DuckDB 引擎（默认）上运行线索命令")
    return locked(engine, work, holder="leads", wait=wait, lock_id=LOCK_ID)


# ---- assignment -------------------------------------------------------------------------------


def period_start(period: str, day: date) -> date:
    """The first day of the quota period holding `day` (a week starts on Monday)."""
    return day if period == "day" else day - timedelta(days=day.weekday())


def assign_leads(workspace: Workspace, engine: Engine, *, now: datetime | None = None,
                 settings: SalesSettings | None = None, assigned_by: str = "cli") -> LeadAssignment:
    """Hand open leads to reps: best first, within quota and territory, never one lead to two reps.

    Args:
        now: the assignment instant (default now); its local day (or week) is the quota period.
        settings: the sales settings (default definitions/sales.yaml), whose reps must exist.
        assigned_by: who asked (a user, an API key, `cli`), kept on each assignment.
    """
    chosen = settings or load_sales_settings(workspace)
    reps = [rep for rep in chosen.reps if rep.active and rep.quota > 0]
    if not reps:
        raise LeadError("no sales rep with a quota is defined.", field="reps",
                        fix="list reps with territories and quota in definitions/sales.yaml (see docs/leads.md)",
                        message_zh="尚未定义有配额的销售代表。",
                        fix_zh="请在 definitions/sales.yaml 中列出销售代表及其区域和配额（见 docs/leads.md）")
    if not engine.table_exists(LEADS.name) or not engine.row_count(LEADS.name):
        raise LeadError("no leads have been scored yet.", field="leads", fix="run `jingzhun lead score` first",
                        message_zh="线索尚未评分。", fix_zh="请先运行 `jingzhun lead score`")
    moment = _utc(now) if now is not None else datetime.now(UTC)
    today = moment.astimezone(ZoneInfo(workspace.config.timezone)).date()
    quota = [(rep.id, rep.quota, period_start(rep.period, today), order) for order, rep in enumerate(reps)]
    cooled = moment - timedelta(hours=chosen.scoring.no_answer_cooldown_hours)
    round_sql = assign_round_sql(quota, chosen.rep_territories(), chosen.city_territories(), moment, cooled,
                                 chosen.scoring.no_answer_decay, assigned_by)
    rounds, ids = _locked(engine, lambda: _run_rounds(engine, round_sql, quota))  # type: ignore[misc]
    mine = exp.column("assignment_id", "a").isin(*map(literal, ids)) if ids else exp.false()
    made = engine.query(exp.select("a.*", "l.contact_name", "l.city", "l.intent_tags")
                        .from_(f"{LEAD_ASSIGNMENTS.name} AS a").join(f"{LEADS.name} AS l", on="l.lead_id = a.lead_id")
                        .where(mine)
                        .order_by("a.rep_id", exp.Ordered(this=exp.column("score", "a"), desc=True))).to_pandas()
    per_rep = {rep.id: int((made["rep_id"] == rep.id).sum()) for rep in reps}
    return LeadAssignment(moment, made, per_rep, rounds, engine.render(round_sql))


def _run_rounds(engine: Engine, round_sql: exp.Expression,
                quota: list[tuple[str, int, date, int]]) -> tuple[int, list[str]]:
    """Rounds until none assigns anything, then the checks; a failed check rolls it all back.
    Returns the rounds run and the ids of the assignments this run made."""
    rounds, limit, ids = 0, sum(q for _, q, _, _ in quota) + 1, []
    while rounds < limit:
        rounds += 1
        picked = engine.query(round_sql)
        if not picked.num_rows:
            break
        engine.write_table(LEAD_ASSIGNMENTS.name, picked)
        ids += picked.column("assignment_id").to_pylist()
    _check_assignments(engine, quota)
    return rounds, ids


def _check_assignments(engine: Engine, quota: list[tuple[str, int, date, int]]) -> None:
    doubled = engine.query(DOUBLE_ASSIGNED_SQL).to_pylist() + engine.query(DUPLICATE_IDS_SQL).to_pylist()
    if doubled:
        raise LeadError(f"assigning would give a lead to two reps ({doubled[0]}); nothing was assigned.",
                        field="lead_assignments", fix="report this as a bug; the assignment was rolled back",
                        message_zh=f"此次分配会让一条线索同时属于两位销售（{doubled[0]}），已全部撤销。",
                        fix_zh="请报告此问题；本次分配已回滚")
    for rep_id, limit, start, _ in quota:
        used = engine.query(exp.select(exp.func("COUNT", exp.Star()).as_("n")).from_(LEAD_ASSIGNMENTS.name).where(
            exp.and_(exp.column("rep_id").eq(literal(rep_id)), exp.column("period_start").eq(literal(start)))))
        if used.column("n")[0].as_py() > limit:
            raise LeadError(f"assigning would put rep {rep_id} over their quota of {limit}; nothing was assigned.",
                            field="quota", fix="report this as a bug; the assignment was rolled back",
                            message_zh=f"此次分配会使销售 {rep_id} 超出配额 {limit}，已全部撤销。",
                            fix_zh="请报告此问题；本次分配已回滚")


# ---- outcomes --------------------------------------------------------------------------------


def record_lead_outcome(engine: Engine, lead_id: str, outcome: str, *, rep_id: str | None = None,
                        note: str | None = None, recorded_by: str = "cli", now: datetime | None = None,
                        settings: SalesSettings | None = None) -> dict[str, object]:
    """Record what the rep holding `lead_id` got: won, lost or no_answer; closes the assignment.

    Won and lost are final (the lead leaves the pool and teaches the next scoring);
    no_answer returns the lead to the pool after the cool-down, with a lower priority.
    With `settings`, a `rep_id` that is not in sales.yaml is refused by name.
    """
    if settings is not None and rep_id is not None:
        require_rep(settings, rep_id)
    if outcome not in OUTCOMES:
        raise LeadError(f"unknown outcome {outcome!r}.", field="outcome", fix=f"use one of: {', '.join(OUTCOMES)}",
                        message_zh=f"未知的结果 {outcome!r}。", fix_zh="可选：won（成交）、lost（失败）、no_answer（未接通）")
    moment = _utc(now) if now is not None else datetime.now(UTC)
    return _locked(engine, lambda: _close(engine, lead_id, outcome, rep_id, note, recorded_by, moment))  # type: ignore[return-value]


def _close(engine: Engine, lead_id: str, outcome: str, rep_id: str | None, note: str | None, by: str,
           moment: datetime) -> dict[str, object]:
    held = engine.query(exp.select("assignment_id", "rep_id").from_(LEAD_ASSIGNMENTS.name).where(
        exp.and_(exp.column("lead_id").eq(literal(lead_id)), exp.column("closed_at").is_(exp.null())))).to_pylist()
    if not held:
        raise LeadError(f"lead {lead_id!r} is not assigned to anyone now.", field="lead",
                        fix="record outcomes of assigned leads (`jingzhun lead list --assigned`)",
                        message_zh=f"线索 {lead_id!r} 当前未分配给任何人。",
                        fix_zh="只能为已分配的线索记录结果（`jingzhun lead list --assigned`）")
    assignment = held[0]
    if rep_id is not None and rep_id != assignment["rep_id"]:
        raise LeadError(f"lead {lead_id!r} is assigned to {assignment['rep_id']}, not {rep_id}.", field="rep",
                        fix=f"record it as {assignment['rep_id']}, or leave --rep out",
                        message_zh=f"线索 {lead_id!r} 分配给了 {assignment['rep_id']}，而不是 {rep_id}。",
                        fix_zh=f"请以 {assignment['rep_id']} 的身份记录，或省略 --rep")
    row = {"lead_id": lead_id, "assignment_id": assignment["assignment_id"], "rep_id": assignment["rep_id"],
           "outcome": outcome, "note": note, "recorded_at": moment, "recorded_by": by}
    engine.write_table(LEAD_OUTCOMES.name, pa.Table.from_pylist([row]))
    engine.execute(exp.update(LEAD_ASSIGNMENTS.name, {"closed_at": literal(moment), "close_reason": literal(outcome)},
                              where=exp.column("assignment_id").eq(literal(assignment["assignment_id"]))))
    changes = ({"no_answers": exp.column("no_answers") + 1} if outcome == "no_answer"
               else {"status": literal(outcome), "status_source": literal("rep")})
    engine.execute(exp.update(LEADS.name, changes, where=exp.column("lead_id").eq(literal(lead_id))))
    return row


def require_rep(settings: SalesSettings, rep_id: str) -> None:
    """Refuse a rep id that sales.yaml does not list, naming the ones it does."""
    if settings.rep(rep_id) is None:
        known = ", ".join(rep.id for rep in settings.reps) or "none yet"
        raise LeadError(f"unknown sales rep {rep_id!r}.", field="rep",
                        fix=f"use a rep id from definitions/sales.yaml ({known})",
                        message_zh=f"未知的销售代表 {rep_id!r}。",
                        fix_zh=f"请使用 definitions/sales.yaml 中的销售 id（{known}）")


# ---- listing --------------------------------------------------------------------------------


def leads_sql(status: str | None = "open", rep_id: str | None = None, assigned: bool | None = None,
              limit: int = 50) -> exp.Select:
    """Leads best first, each with the rep holding it now (if any)."""
    holder = exp.select("lead_id", "rep_id", "assigned_at").from_(LEAD_ASSIGNMENTS.name).where("closed_at IS NULL")
    query = (exp.select("l.lead_id", "l.contact_name", "l.company", "l.city", "l.territory", "l.source",
                        "l.status", "l.score", "l.freshness", "l.days_since_activity", "l.intent_tags",
                        "l.freshness_part", "l.intent_part", "l.fit_part", "l.no_answers", "h.rep_id",
                        "h.assigned_at", "l.created_at", "l.model_version")
             .from_(f"{LEADS.name} AS l").join(holder.subquery("h"), on="h.lead_id = l.lead_id", join_type="left"))
    if status:
        query = query.where(exp.column("status", "l").eq(literal(status)))
    if rep_id:
        query = query.where(exp.column("rep_id", "h").eq(literal(rep_id)))
    if assigned is not None:
        query = query.where(exp.column("rep_id", "h").is_(exp.null()).not_() if assigned
                            else exp.column("rep_id", "h").is_(exp.null()))
    order = exp.Ordered(this=exp.func("COALESCE", exp.column("score", "l"), exp.column("freshness", "l")), desc=True)
    return query.order_by(order, "l.lead_id").limit(limit)


def list_leads(engine: Engine, *, status: str | None = "open", rep_id: str | None = None,
               assigned: bool | None = None, limit: int = 50,
               settings: SalesSettings | None = None) -> tuple[pd.DataFrame, str]:
    """The leads asked for, best first, and the SQL that listed them (with `settings`, an
    unknown `rep_id` is refused rather than listing nothing)."""
    if settings is not None and rep_id is not None:
        require_rep(settings, rep_id)
    if status is not None and status not in STATUSES:
        raise LeadError(f"unknown lead status {status!r}.", field="status", fix=f"use one of: {', '.join(STATUSES)}, all",
                        message_zh=f"未知的线索状态 {status!r}。", fix_zh="可选：open（进行中）、won（成交）、lost（失败）、all（全部）")
    if not engine.table_exists(LEADS.name):
        return pd.DataFrame(), ""
    query = leads_sql(status, rep_id, assigned, limit)
    return engine.query(query).to_pandas(), engine.render(query)
