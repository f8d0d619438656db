"""Audiences (人群): definitions, size while editing, members, exports, changes, overlap,
real-time members, sub-groups and look-alikes."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field, model_validator
from sqlglot import exp

from jingzhun.segments import (
    audience_changes,
    audience_overlap,
    cluster_audience,
    export_audience,
    find_lookalikes,
    list_audiences,
    live_changes,
    live_members,
    load_audiences,
    members_sql,
    parse_audience,
    preview_audience,
    save_audience,
    snapshot_audiences,
)
from jingzhun.web.api.deps import COMPUTES, Analyst, Database, Marketer, Page, PageParams, Viewer
from jingzhun.web.api.results import frame_file, masked_frame, paged_query, table_page
from jingzhun.web.calls import AuditEntry, EngineContext
from jingzhun.web.errors import ResourceConflict, api_error, not_found
from jingzhun.web.serialize import FileResult

router = APIRouter(prefix="/audiences", tags=["audiences"])
SegmentIds = Annotated[list[str], Query(min_length=2, max_length=20, description="two or more audiences")]


class PreviewIn(BaseModel):
    """What to size: a rule being edited, a whole definition, or a saved audience."""

    rule: dict[str, Any] | None = Field(None, description="a rule of the tag rule language (docs/segments.md)")
    definition: dict[str, Any] | None = Field(None, description="a whole audience definition")
    segment_id: str | None = Field(None, max_length=64, description="a saved audience")
    sample: int = Field(10, ge=0, le=100)

    @model_validator(mode="after")
    def _one(self) -> PreviewIn:
        if sum(part is not None for part in (self.rule, self.definition, self.segment_id)) != 1:
            raise ValueError("give exactly one of rule, definition, segment_id")
        return self


class ClusterIn(BaseModel):
    segment_id: str | None = Field(None, max_length=64, description="the audience to split; all persons if absent")
    k: int | None = Field(None, ge=2, le=20, description="sub-groups; chosen by silhouette if absent")
    traits: list[str] | None = Field(None, max_length=50, description="e.g. age, gender, aov, tag:<id>")
    assignments: int = Field(100, ge=0, le=10_000, description="person → cluster rows to return")


class LookalikeIn(BaseModel):
    top_n: int | None = Field(None, ge=1, le=1_000_000)
    threshold: float | None = Field(None, ge=0.0, le=1.0)
    exclude: list[str] = Field(default_factory=list, max_length=50)
    rows: int = Field(100, ge=0, le=10_000, description="ranked persons to return")


def require_audience(ctx: EngineContext, segment_id: str) -> Any:
    found = load_audiences(ctx.workspace, ctx.engine).get(segment_id)
    if found is None:
        raise not_found("audience", segment_id, "/api/v1/audiences", "人群")
    return found


def audience_list(ctx: EngineContext, page: PageParams) -> dict[str, Any]:
    return table_page(list_audiences(ctx.workspace, ctx.engine), page)


def audience_read(ctx: EngineContext, segment_id: str) -> dict[str, Any]:
    definition = require_audience(ctx, segment_id)
    listed = list_audiences(ctx.workspace, ctx.engine)
    summary = listed[listed["segment_id"] == segment_id].to_dict(orient="records")
    return {"definition": definition, "summary": summary[0] if summary else None}


def audience_save(ctx: EngineContext, definition: dict[str, Any], must_be_new: bool) -> dict[str, Any]:
    audience = parse_audience(definition, "request body")
    if must_be_new and audience.segment_id in load_audiences(ctx.workspace, ctx.engine):
        raise ResourceConflict(f"an audience {audience.segment_id!r} exists.", field="segment_id",
                               fix=f"change it with PUT /api/v1/audiences/{audience.segment_id}",
                               message_zh=f"已存在人群 {audience.segment_id!r}。",
                               fix_zh=f"请用 PUT /api/v1/audiences/{audience.segment_id} 修改")
    version = save_audience(ctx.workspace, ctx.engine, audience, ctx.actor)
    return {"segment_id": audience.segment_id, "version": version}


def audience_preview(ctx: EngineContext, rule: dict | None, definition: dict | None, segment_id: str | None,
                     sample: int) -> dict[str, Any]:
    data: Any = rule
    if definition is not None:
        data = parse_audience(definition, "definition")
    elif segment_id is not None:
        data = require_audience(ctx, segment_id)
    preview = preview_audience(ctx.workspace, ctx.engine, data, sample=sample)
    return {"size": preview.size, "population": preview.population, "share": preview.share,
            "live_members": preview.live_members, "as_of": preview.as_of, "seconds": preview.seconds,
            "sample": preview.sample, "sql": {"members": preview.sql}}


def audience_members(ctx: EngineContext, segment_id: str, page: PageParams) -> dict[str, Any]:
    """The latest snapshot's members with a few portrait columns, cut by the engine."""
    require_audience(ctx, segment_id)
    query = (exp.select("m.person_id", "pt.name", "pt.gender", "pt.age_band", "pt.city", "pt.member_level",
                        "pt.rfm_class").from_(members_sql(segment_id).subquery("m"))
             .join("person_traits AS pt", on="pt.person_id = m.person_id", join_type="left").order_by("m.person_id"))
    return paged_query(ctx.engine, query, page, "members")


def audience_export(ctx: EngineContext, segment_id: str, file_format: str) -> FileResult:
    """The latest snapshot as CSV or Excel; names and phones masked for roles that may not see them."""
    require_audience(ctx, segment_id)
    with tempfile.TemporaryDirectory(prefix="jingzhun-export-") as folder:
        path = Path(folder) / f"{segment_id}.{file_format}"
        export_audience(ctx.engine, segment_id, path, mask=ctx.mask_pii)
        if not ctx.mask_pii:
            return _file(path, file_format, segment_id)
        frame = pd.read_csv(path, dtype=str, encoding="utf-8-sig") if file_format == "csv" \
            else pd.read_excel(path, dtype=str)
    return frame_file(masked_frame(frame), file_format, segment_id)


def _file(path: Path, file_format: str, stem: str) -> FileResult:
    media = "text/csv; charset=utf-8" if file_format == "csv" else \
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    return FileResult(path.read_bytes(), media, f"{stem}.{file_format}")


def audience_change_list(ctx: EngineContext, segment_id: str, page: PageParams) -> dict[str, Any]:
    require_audience(ctx, segment_id)
    changes = audience_changes(ctx.engine, segment_id)
    entered = int((changes.changes["change"] == "entered").sum()) if len(changes.changes) else 0
    return {**table_page(changes.changes, page, {"changes": changes.sql}), "since": changes.since,
            "until": changes.until, "entered": entered, "exited": len(changes.changes) - entered}


def audience_live(ctx: EngineContext, segment_id: str, history: bool, page: PageParams) -> dict[str, Any]:
    require_audience(ctx, segment_id)
    found = live_changes(ctx.engine, segment_id) if history else live_members(ctx.engine, segment_id)
    frame = found.changes if history else found.members
    return table_page(frame, page, {"live": found.sql})


def audience_overlaps(ctx: EngineContext, segment_ids: list[str]) -> dict[str, Any]:
    for segment_id in segment_ids:
        require_audience(ctx, segment_id)
    overlap = audience_overlap(ctx.engine, segment_ids)
    return {"segment_ids": segment_ids, "counts": _matrix(overlap.counts),
            "share_of_row": _matrix(overlap.share_of_row), "jaccard": _matrix(overlap.jaccard),
            "sql": {"overlap": overlap.sql}}


def _matrix(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    return {str(row): {str(column): frame.loc[row, column] for column in frame.columns} for row in frame.index}


def snapshot_job(ctx: EngineContext, segment_id: str) -> dict[str, Any]:
    require_audience(ctx, segment_id)
    workspace, actor = ctx.workspace, ctx.actor

    def work(engine, progress):  # noqa: ANN001, ANN202 — a job: (engine, progress) → result
        return snapshot_audiences(workspace, engine, [segment_id], actor=actor,
                                  progress=lambda step, done, total: progress(done / total if total else None, step))

    return ctx.jobs.start("snapshot", work, {"segment_id": segment_id}, ctx.actor, lock=f"snapshot:{segment_id}").as_dict()


def audience_clusters(ctx: EngineContext, segment_id: str | None, k: int | None, traits: list[str] | None,
                      assignments: int) -> dict[str, Any]:
    if segment_id is not None:
        require_audience(ctx, segment_id)
    found = cluster_audience(ctx.engine, traits or None, k, members_sql(segment_id) if segment_id else None)
    return {"k": found.k, "silhouette": found.silhouette, "features": found.features, "clusters": found.clusters,
            "distinguishing": found.distinguishing, "silhouettes": found.silhouettes,
            "assignments": found.assignments.head(assignments), "assigned": len(found.assignments), "sql": found.sql}


def audience_lookalikes(ctx: EngineContext, segment_id: str, top_n: int | None, threshold: float | None,
                        exclude: list[str], rows: int) -> dict[str, Any]:
    require_audience(ctx, segment_id)
    found = find_lookalikes(ctx.engine, members_sql(segment_id), top_n=top_n, threshold=threshold, exclude=exclude)
    return {"metrics": found.metrics, "drivers": found.drivers, "ranked": found.ranked.head(rows),
            "found": len(found.ranked), "notes": [{"zh": zh, "en": en} for zh, en in found.notes], "sql": found.sql}


@router.get("")
async def list_all(principal: Viewer, db: Database, page: Page) -> Response:
    """Every audience: names, version, latest snapshot date and size, real-time members."""
    return await db.json(audience_list, page=page)


@router.post("", status_code=201)
async def create(definition: dict[str, Any], principal: Marketer, db: Database) -> Response:
    """Create an audience from a definition (segment_id, name_zh, name_en, rule, realtime)."""
    return await db.change(audience_save, AuditEntry("audience.create", "audience", str(definition.get("segment_id"))),
                           status_code=201, definition=definition, must_be_new=True)


@router.post("/preview", openapi_extra=COMPUTES)
async def preview(body: PreviewIn, principal: Analyst, db: Database) -> Response:
    """How many persons a rule selects now, without saving it (the size shown while editing)."""
    return await db.json(audience_preview, **body.model_dump())


@router.get("/overlap")
async def overlap(segment_ids: SegmentIds, principal: Viewer, db: Database) -> Response:
    """Common members of two or more audiences: counts, shares of the row audience, Jaccard."""
    return await db.json(audience_overlaps, segment_ids=segment_ids)


@router.post("/cluster", openapi_extra=COMPUTES)
async def cluster(body: ClusterIn, principal: Analyst, db: Database) -> Response:
    """Split an audience (or everyone) into sub-groups, each described in zh and en."""
    return await db.json(audience_clusters, **body.model_dump())


@router.get("/{segment_id}")
async def read(segment_id: str, principal: Viewer, db: Database) -> Response:
    """An audience's definition and its latest snapshot."""
    return await db.json(audience_read, segment_id=segment_id)


@router.put("/{segment_id}")
async def update(segment_id: str, definition: dict[str, Any], principal: Marketer, db: Database) -> Response:
    """Create or change an audience; a changed definition becomes a new version."""
    body = {**definition, "segment_id": definition.get("segment_id", segment_id)}
    if body["segment_id"] != segment_id:
        raise api_error(400, "id_mismatch", "segment_id in the body differs from the address.",
                        "请求体中的 segment_id 与地址不一致。", field="segment_id")
    return await db.change(audience_save, AuditEntry("audience.update", "audience", segment_id),
                           definition=body, must_be_new=False)


@router.get("/{segment_id}/members")
async def members(segment_id: str, principal: Viewer, db: Database, page: Page) -> Response:
    """A page of the latest snapshot's members (names and phones masked for viewer and analyst)."""
    return await db.json(audience_members, segment_id=segment_id, page=page)


@router.get("/{segment_id}/export", response_class=Response,
            responses={200: {"content": {"text/csv": {}, "application/vnd.openxmlformats-officedocument"
                                                                ".spreadsheetml.sheet": {}}}})
async def export(segment_id: str, principal: Analyst, db: Database,
                 file_format: Annotated[Literal["csv", "xlsx"], Query(alias="format")] = "csv") -> Response:
    """The latest snapshot's members as CSV or Excel (masked for analysts)."""
    return await db.file(audience_export, segment_id=segment_id, file_format=file_format)


@router.get("/{segment_id}/changes")
async def changes(segment_id: str, principal: Viewer, db: Database, page: Page) -> Response:
    """Who entered and who left between the last two snapshots."""
    return await db.json(audience_change_list, segment_id=segment_id, page=page)


@router.get("/{segment_id}/live")
async def live(segment_id: str, principal: Viewer, db: Database, page: Page, history: bool = False) -> Response:
    """A real-time audience's members now, or (history=true) every entry and exit."""
    return await db.json(audience_live, segment_id=segment_id, history=history, page=page)


@router.post("/{segment_id}/snapshot", status_code=202)
async def snapshot(segment_id: str, principal: Marketer, db: Database) -> Response:
    """Store today's members (and who entered and left) as a background job."""
    return await db.change(snapshot_job, AuditEntry("audience.snapshot", "audience", segment_id),
                           status_code=202, segment_id=segment_id)


@router.post("/{segment_id}/lookalike", openapi_extra=COMPUTES)
async def lookalike(segment_id: str, body: LookalikeIn, principal: Analyst, db: Database) -> Response:
    """Persons who look like the audience, ranked, and the features that drove it."""
    return await db.json(audience_lookalikes, segment_id=segment_id, **body.model_dump())

