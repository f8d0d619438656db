"""File imports (upload → a background job with progress) and the quarantine (admin only)."""

from __future__ import annotations

import contextlib
import re
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlglot import exp

from jingzhun.collect.importers import builtin_kinds, import_file, retry_quarantine
from jingzhun.web.api.deps import Admin, Database, Page, PageParams
from jingzhun.web.api.results import paged_query
from jingzhun.web.calls import AuditEntry, EngineContext
from jingzhun.web.errors import api_error, not_found

router = APIRouter(tags=["imports"])
UPLOADS = "uploads"  # the workspace folder uploaded files are kept in (an import resumes from them)
CHUNK = 1024 * 1024


class RetryIn(BaseModel):
    import_id: str | None = Field(None, max_length=100)
    kind: str | None = Field(None, max_length=100)


def import_list(ctx: EngineContext, page: PageParams, kind: str | None) -> dict[str, Any]:
    query = exp.select("*").from_("imports").order_by(exp.column("started_at").desc(), "import_id")
    if kind is not None:
        query = query.where(exp.column("kind").eq(exp.convert(kind)))
    return paged_query(ctx.engine, query, page, "imports")


def import_kinds(ctx: EngineContext) -> list[str]:
    return sorted(builtin_kinds())


def import_job(ctx: EngineContext, kind: str, path: str, encoding: str | None) -> dict[str, Any]:
    """Import an uploaded file in the background; progress is the share of the file stored."""
    workspace, name = ctx.workspace, Path(path).name

    def work(engine, progress):  # noqa: ANN001, ANN202 — a job: (engine, progress) → result
        return import_file(workspace, engine, kind, path, encoding=encoding,
                           progress=lambda fraction, rows: progress(fraction, f"{name}: {rows:,} rows"))

    return ctx.jobs.start("import", work, {"kind": kind, "file": name}, ctx.actor, lock=f"import:{path}").as_dict()


def quarantine_page(ctx: EngineContext, page: PageParams, status: str, kind: str | None,
                    import_id: str | None) -> dict[str, Any]:
    query = exp.select("*").from_("quarantine").order_by(exp.column("received_at").desc(), "quarantine_id")
    for column, value in (("status", None if status == "all" else status), ("kind", kind), ("import_id", import_id)):
        if value is not None:
            query = query.where(exp.column(column).eq(exp.convert(value)))
    return paged_query(ctx.engine, query, page, "quarantine")


def quarantine_row(ctx: EngineContext, quarantine_id: str) -> dict[str, Any]:
    query = exp.select("*").from_("quarantine").where(exp.column("quarantine_id").eq(exp.convert(quarantine_id)))
    rows = ctx.engine.query(query).to_pylist()
    if not rows:
        raise not_found("quarantined record", quarantine_id, "/api/v1/quarantine", "隔离记录")
    row = rows[0]
    with contextlib.suppress(orjson.JSONDecodeError):  # a line that was not JSON stays the text it was
        row["payload"] = orjson.loads(row["payload"]) if row.get("payload") else None
    return {**row, "sql": {"record": ctx.engine.render(query)}}


def retry_job(ctx: EngineContext, import_id: str | None, kind: str | None) -> dict[str, Any]:
    workspace = ctx.workspace

    def work(engine, progress):  # noqa: ANN001, ANN202 — a job: (engine, progress) → result
        progress(None, "re-checking open rows")
        return retry_quarantine(workspace, engine, import_id=import_id, kind=kind)

    return ctx.jobs.start("quarantine_retry", work, {"import_id": import_id, "kind": kind}, ctx.actor,
                          lock="quarantine_retry").as_dict()


def safe_name(filename: str | None) -> str:
    """The upload's own name, reduced to letters, digits, CJK, '.', '-' and '_' (never a path)."""
    base = Path(filename or "upload").name
    cleaned = re.sub(r"[^\w.\-]+", "_", base, flags=re.UNICODE).strip("._") or "upload"
    return cleaned[:120]


async def store_upload(request: Request, upload: UploadFile) -> Path:
    """Write the upload under the workspace's uploads/ folder, refusing what is over the size limit."""
    limit = request.app.state.settings.max_upload_mb * 1024 * 1024
    folder = request.app.state.workspace.root / UPLOADS / uuid.uuid4().hex[:12]
    folder.mkdir(parents=True, exist_ok=True)
    target, written = folder / safe_name(upload.filename), 0
    with target.open("wb") as sink:
        while chunk := await upload.read(CHUNK):
            written += len(chunk)
            if written > limit:
                sink.close()
                target.unlink(missing_ok=True)
                raise api_error(413, "file_too_large", f"the file is over {limit // 2**20} MB.",
                                f"文件超过 {limit // 2**20} MB。", field="file",
                                fix_en="split it, or raise JINGZHUN_WEB_MAX_UPLOAD_MB",
                                fix_zh="请拆分文件，或调大 JINGZHUN_WEB_MAX_UPLOAD_MB")
            sink.write(chunk)
    return target


@router.get("/imports")
async def list_imports(principal: Admin, db: Database, page: Page,
                       kind: Annotated[str | None, Query(max_length=100)] = None) -> Response:
    """Import runs, newest first: what was read, loaded, set aside, duplicate."""
    return await db.json(import_list, page=page, kind=kind)


@router.get("/imports/kinds")
async def list_kinds(principal: Admin, db: Database) -> Response:
    """The kinds of file jingzhun can import with a built-in mapping."""
    return await db.json(import_kinds)


@router.post("/imports", status_code=202)
async def upload(request: Request, principal: Admin, db: Database,
                 kind: Annotated[str, Form(min_length=1, max_length=100)], file: Annotated[UploadFile, File()],
                 encoding: Annotated[str | None, Form(max_length=30)] = None) -> Response:
    """Upload a file (CSV, Excel, JSON lines, Parquet) and import it as a background job."""
    stored = await store_upload(request, file)
    return await db.change(import_job, AuditEntry("import.start", "import", stored.name, {"kind": kind}),
                           status_code=202, kind=kind, path=str(stored), encoding=encoding)


@router.get("/quarantine")
async def list_quarantine(principal: Admin, db: Database, page: Page,
                          status: Literal["open", "retried", "all"] = "open",
                          kind: Annotated[str | None, Query(max_length=100)] = None,
                          import_id: Annotated[str | None, Query(max_length=100)] = None) -> Response:
    """Rejected rows and messages with their reasons, newest first."""
    return await db.json(quarantine_page, page=page, status=status, kind=kind, import_id=import_id)


@router.get("/quarantine/{quarantine_id}")
async def read_quarantined(quarantine_id: str, principal: Admin, db: Database) -> Response:
    """One quarantined record: where it came from, why, and the raw record."""
    return await db.json(quarantine_row, quarantine_id=quarantine_id)


@router.post("/quarantine/retry", status_code=202)
async def retry(body: RetryIn, principal: Admin, db: Database) -> Response:
    """Re-check open rows (optionally of one import or kind) and load those that now pass, as a job."""
    return await db.change(retry_job, AuditEntry("quarantine.retry", "import", body.import_id, {"kind": body.kind}),
                           status_code=202, import_id=body.import_id, kind=body.kind)
