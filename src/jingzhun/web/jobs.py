"""Background jobs in the engine process: the pipeline, campaign runs, imports, snapshots.

A job runs in its own thread on its own connection, beside the loader and the API's
calls, reporting progress (`fraction`, `step`) that `/api/v1/jobs/{id}` reads live. Its
row in `jobs` is written when it starts and when it ends (with the result or the
error), so finished jobs outlive the server; a job that was running when the server
stopped is marked `interrupted` at the next start (a campaign run resumes safely when
started again; an import resumes from its last committed batch).

The pipeline rebuilds what the collector's after-load hooks maintain (record owners,
live audiences), so while it runs the hooks pause (`HooksGate`) and loading goes on;
after it, the next batch hands the hooks everything loaded meanwhile, read back from
`events` (collect/collector/hooks.py).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa
from sqlglot import exp

from jingzhun.core.errors import JingzhunError
from jingzhun.engine import Engine
from jingzhun.schema.tables import JOBS
from jingzhun.web.calls import Engines
from jingzhun.web.serialize import error_info, jsonable

log = logging.getLogger(__name__)
Progress = Callable[[float | None, str], None]  # (fraction done or None, what it is doing)
Work = Callable[[Engine, Progress], Any]
KEPT_IN_MEMORY = 200
_TS = pa.timestamp("us", tz="UTC")


class JobError(JingzhunError):
    """A job cannot start or does not exist."""


class JobNotFound(JobError):
    """No job with that id."""


class JobConflict(JobError):
    """A job of the same kind is running and two must not overlap."""


@dataclass
class Job:
    """One background job and where it is."""

    job_id: str
    kind: str
    params: dict[str, Any]
    created_by: str
    created_at: datetime
    status: str = "running"
    progress: float | None = 0.0
    step: str = ""
    result: Any = None
    error: dict[str, Any] | None = None
    finished_at: datetime | None = None
    lock: str | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "kind": self.kind, "status": self.status, "params": self.params,
                "progress": self.progress, "step": self.step, "result": self.result, "error": self.error,
                "created_by": self.created_by, "created_at": self.created_at, "finished_at": self.finished_at}


class HooksGate:
    """Lets a job pause the collector's after-load hooks (loading goes on)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # held while hooks run: pausing waits for a batch in flight
        self.pausers = 0

    @contextmanager
    def paused(self) -> Iterator[None]:
        with self.lock:
            self.pausers += 1
        try:
            yield
        finally:
            with self.lock:
                self.pausers -= 1


class GatedHooks:
    """The loader's hook runner behind a `HooksGate` (duck-types `HookRunner` for the loader).

    While paused, batches only note their `loaded_at`; the first chance after (a batch, or
    the loader's idle catch-up) hands the hooks everything since, read back from `events`.
    """

    def __init__(self, runner: Any, gate: HooksGate) -> None:
        self.runner, self.gate = runner, gate
        self.missed: datetime | None = None  # loaded_at of the newest batch the hooks skipped

    def start(self) -> None:
        with self.gate.lock:
            self.runner.start()

    def after_batch(self, loaded_at: datetime, fresh: pa.Table | None) -> None:
        with self.gate.lock:
            if self.gate.pausers:
                self.missed = loaded_at  # the hooks' progress stays put; they catch up from `events`
                return
            self.runner.after_batch(loaded_at, None if self.missed is not None else fresh)
            self.missed = None

    def catch_up(self) -> None:
        with self.gate.lock:
            if self.gate.pausers:
                return
            if self.missed is not None:
                missed, self.missed = self.missed, None
                self.runner.after_batch(missed, None)
            else:
                self.runner.catch_up()


class JobRunner:
    """Starts jobs in threads, tracks them in memory and in `jobs`."""

    def __init__(self, engines: Engines, gate: HooksGate) -> None:
        self.engines, self.gate = engines, gate
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._locks: dict[str, str] = {}  # lock name → running job id
        self._mutex = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self, kind: str, work: Work, params: dict[str, Any], actor: str, *, lock: str | None = None,
              pause_hooks: bool = False) -> Job:
        """Run `work(engine, progress)` in the background; `lock` keeps two such jobs apart."""
        job = Job(f"j_{uuid.uuid4().hex[:16]}", kind, jsonable(params), actor, datetime.now(UTC), lock=lock)
        with self._mutex:
            if lock is not None and lock in self._locks:
                raise _conflict(kind, self._locks[lock])
            if lock is not None:
                self._locks[lock] = job.job_id
            self._remember(job)
        engine = self.engines.open()
        try:
            self._write(engine, job)
        except BaseException:
            self._release(job)
            self.engines.close(engine)
            raise
        thread = threading.Thread(target=self._run, args=(job, work, engine, pause_hooks), daemon=True,
                                  name=f"jingzhun-job-{job.job_id}")
        self._threads.append(thread)
        thread.start()
        return job

    def _remember(self, job: Job) -> None:
        self._jobs[job.job_id] = job
        while len(self._jobs) > KEPT_IN_MEMORY:
            oldest = next(iter(self._jobs))
            if self._jobs[oldest].status == "running":
                break
            self._jobs.pop(oldest)

    def _run(self, job: Job, work: Work, engine: Engine, pause_hooks: bool) -> None:
        def progress(fraction: float | None, step: str) -> None:
            job.progress = None if fraction is None else max(0.0, min(1.0, float(fraction)))
            job.step = step

        try:
            with self.gate.paused() if pause_hooks else _nothing():
                result = work(engine, progress)
            job.result, job.status, job.progress = jsonable(result), "succeeded", 1.0
        except BaseException as failure:  # noqa: BLE001 — a job's failure is its outcome, reported
            if not isinstance(failure, JingzhunError):
                log.exception("job %s (%s) failed", job.job_id, job.kind)
            info = error_info(failure)
            job.error = {"code": info.code, "field": info.field, "message_en": info.message_en,
                         "message_zh": info.message_zh, "fix_en": info.fix_en, "fix_zh": info.fix_zh}
            job.status = "failed"
        finally:
            job.finished_at = datetime.now(UTC)
            try:
                self._write(engine, job)
            except Exception:  # noqa: BLE001 — the in-memory state still answers
                log.exception("job %s: could not record its end", job.job_id)
            self._release(job)
            self.engines.close(engine)

    def _release(self, job: Job) -> None:
        with self._mutex:
            if job.lock is not None and self._locks.get(job.lock) == job.job_id:
                del self._locks[job.lock]

    def _write(self, engine: Engine, job: Job) -> None:
        """Insert the job's row, or replace it with its current state."""
        row = {"job_id": job.job_id, "kind": job.kind, "status": job.status,
               "params": orjson.dumps(job.params).decode(), "progress": job.progress, "step": job.step,
               "result": orjson.dumps(job.result).decode() if job.result is not None else None,
               "error": orjson.dumps(job.error).decode() if job.error is not None else None,
               "created_by": job.created_by, "created_at": job.created_at, "finished_at": job.finished_at}
        schema = pa.schema([(name, _TS if name.endswith("_at") else pa.float64() if name == "progress"
                             else pa.string()) for name in row])
        with engine.transaction():
            engine.execute(exp.delete(JOBS.name, where=exp.column("job_id").eq(exp.convert(job.job_id))))
            engine.write_table(JOBS.name, pa.Table.from_pylist([row], schema=schema))

    def get(self, engine: Engine, job_id: str) -> dict[str, Any]:
        """The job's state: live if it runs here, else as recorded."""
        job = self._jobs.get(job_id)
        if job is not None:
            return job.as_dict()
        rows = engine.query(exp.select("*").from_(JOBS.name).where(exp.column("job_id").eq(exp.convert(job_id))))
        if not rows.num_rows:
            raise JobNotFound(f"no job {job_id!r}.", field="job_id", fix="list jobs with GET /api/v1/jobs",
                              message_zh=f"没有任务 {job_id!r}。", fix_zh="用 GET /api/v1/jobs 查看任务")
        return _decoded(rows.to_pylist()[0])

    def list(self, engine: Engine, limit: int, offset: int, kind: str | None = None) -> tuple[list[dict], int]:
        """Jobs, newest first (running ones with their live progress), and how many there are."""
        query = exp.select("*").from_(JOBS.name)
        if kind is not None:
            query = query.where(exp.column("kind").eq(exp.convert(kind)))
        total = engine.query(exp.select(exp.func("COUNT", exp.Star()).as_("n")).from_(query.subquery("j")))
        rows = engine.query(query.order_by(exp.column("created_at").desc(), "job_id").limit(limit).offset(offset))
        found = [self._jobs[row["job_id"]].as_dict() if row["job_id"] in self._jobs else _decoded(row)
                 for row in rows.to_pylist()]
        return found, int(total.column("n")[0].as_py())

    def interrupt_leftovers(self, engine: Engine) -> int:
        """Mark jobs a stopped server left `running` as `interrupted`; returns how many."""
        running = exp.column("status").eq(exp.convert("running"))
        left = engine.query(exp.select(exp.func("COUNT", exp.Star()).as_("n")).from_(JOBS.name).where(running))
        count = int(left.column("n")[0].as_py())
        if count:
            engine.execute(exp.update(JOBS.name, {"status": exp.convert("interrupted"),
                                                  "finished_at": exp.convert(datetime.now(UTC))}, where=running))
        return count

    def wait(self, seconds: float) -> None:
        """Give running jobs up to `seconds` to end (at shutdown)."""
        for thread in list(self._threads):
            thread.join(max(seconds, 0.0))


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    for column in ("params", "result", "error"):
        if row.get(column) is not None:
            row[column] = orjson.loads(row[column])
    return row


def _conflict(kind: str, running: str) -> JobConflict:
    return JobConflict(f"a {kind} job is already running ({running}).", field="job",
                       fix=f"wait for it to finish (GET /api/v1/jobs/{running}), then start again",
                       message_zh=f"已有一个 {kind} 任务在运行（{running}）。",
                       fix_zh=f"请等它结束（GET /api/v1/jobs/{running}）后再启动")
