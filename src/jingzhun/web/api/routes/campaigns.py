"""Campaigns: definitions, running them as background jobs, pausing, results, copy previews."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from jingzhun.activation import (
    CampaignError,
    campaign_results,
    check_template,
    list_campaigns,
    load_campaign,
    parse_campaign,
    preview_message,
    run_campaign,
    save_campaign,
    set_campaign_status,
)
from jingzhun.web.api.deps import Database, Marketer, Page, PageParams, Viewer, records_own_audit
from jingzhun.web.api.results import table_page
from jingzhun.web.calls import AuditEntry, EngineContext
from jingzhun.web.errors import ResourceConflict, api_error, not_found

router = APIRouter(prefix="/campaigns", tags=["campaigns"])
ChannelName = Literal["sms", "wechat", "app_push", "email"]


def require_campaign(ctx: EngineContext, campaign_id: str) -> Any:
    try:
        return load_campaign(ctx.engine, campaign_id)
    except CampaignError as missing:
        if missing.field in (None, "campaign_id", "campaign"):
            raise not_found("campaign", campaign_id, "/api/v1/campaigns", "活动") from None
        raise


def campaign_list(ctx: EngineContext, page: PageParams) -> dict[str, Any]:
    return table_page(list_campaigns(ctx.engine), page)


def campaign_read(ctx: EngineContext, campaign_id: str) -> dict[str, Any]:
    stored = require_campaign(ctx, campaign_id)
    return {"campaign_id": campaign_id, "version": stored.version, "status": stored.status,
            "definition": stored.definition}


def campaign_save(ctx: EngineContext, definition: dict[str, Any], must_be_new: bool) -> dict[str, Any]:
    campaign = parse_campaign(definition, "request body")
    if must_be_new and campaign.campaign_id in set(list_campaigns(ctx.engine).get("campaign_id", [])):
        raise ResourceConflict(f"a campaign {campaign.campaign_id!r} exists.", field="campaign_id",
                               fix=f"change it with PUT /api/v1/campaigns/{campaign.campaign_id}",
                               message_zh=f"已存在活动 {campaign.campaign_id!r}。",
                               fix_zh=f"请用 PUT /api/v1/campaigns/{campaign.campaign_id} 修改")
    check_template(ctx.workspace, campaign)
    version = save_campaign(ctx.engine, campaign, ctx.actor)
    return {"campaign_id": campaign.campaign_id, "version": version}


def run_job(ctx: EngineContext, campaign_id: str) -> dict[str, Any]:
    """Plan the due run and send, in the background (safe to start again: nothing is sent twice)."""
    require_campaign(ctx, campaign_id)
    workspace, actor = ctx.workspace, ctx.actor

    def work(engine, progress):  # noqa: ANN001, ANN202 — a job: (engine, progress) → result
        progress(None, "planning and sending")
        return run_campaign(workspace, engine, campaign_id, actor=actor)

    return ctx.jobs.start("campaign_run", work, {"campaign_id": campaign_id}, ctx.actor,
                          lock=f"campaign:{campaign_id}").as_dict()


@records_own_audit
def campaign_pause(ctx: EngineContext, campaign_id: str) -> dict[str, Any]:
    require_campaign(ctx, campaign_id)
    set_campaign_status(ctx.engine, campaign_id, "paused", ctx.actor)
    return {"campaign_id": campaign_id, "status": "paused"}


@records_own_audit
def campaign_resume(ctx: EngineContext, campaign_id: str) -> dict[str, Any]:
    require_campaign(ctx, campaign_id)
    set_campaign_status(ctx.engine, campaign_id, "active", ctx.actor)
    return {"campaign_id": campaign_id, "status": "active"}


def campaign_outcome(ctx: EngineContext, campaign_id: str) -> dict[str, Any]:
    require_campaign(ctx, campaign_id)
    results = campaign_results(ctx.engine, campaign_id)
    return {"campaign_id": campaign_id, "version": results.version, "funnel": results.funnel,
            "reasons": results.reasons, "sql": results.sql}


def campaign_preview(ctx: EngineContext, campaign_id: str, person: str, channel: str | None,
                     language: str | None) -> dict[str, Any]:
    """One person's message as this campaign would send it, checked against the channel's rules."""
    definition = require_campaign(ctx, campaign_id).definition
    chosen = channel or next((c for c in definition.channels if c != "ads"), None)
    if chosen is None:
        raise api_error(400, "no_message_channel", "this campaign only sends to ad audiences: no copy to preview.",
                        "此活动只投放广告人群，没有可预览的文案。", field="channel")
    message = preview_message(ctx.engine, ctx.workspace, definition.template_id, person, channel=chosen,
                              language=language or definition.language, campaign_id=campaign_id)
    return {"template_id": definition.template_id, "message": message}


@router.get("")
async def list_all(principal: Viewer, db: Database, page: Page) -> Response:
    """Every campaign's latest version: name, purpose, schedule, audience, channels, status."""
    return await db.json(campaign_list, page=page)


@router.post("", status_code=201)
async def create(definition: dict[str, Any], principal: Marketer, db: Database) -> Response:
    """Create a campaign: audience × template × channels × schedule, with holdout and budget."""
    return await db.change(campaign_save, AuditEntry("campaign.create", "campaign",
                                                     str(definition.get("campaign_id"))),
                           status_code=201, definition=definition, must_be_new=True)


@router.get("/{campaign_id}")
async def read(campaign_id: str, principal: Viewer, db: Database) -> Response:
    """A campaign's definition, version and status."""
    return await db.json(campaign_read, campaign_id=campaign_id)


@router.put("/{campaign_id}")
async def update(campaign_id: str, definition: dict[str, Any], principal: Marketer, db: Database) -> Response:
    """Change a campaign (a changed definition becomes a new version)."""
    body = {**definition, "campaign_id": definition.get("campaign_id", campaign_id)}
    if body["campaign_id"] != campaign_id:
        raise api_error(400, "id_mismatch", "campaign_id in the body differs from the address.",
                        "请求体中的 campaign_id 与地址不一致。", field="campaign_id")
    return await db.change(campaign_save, AuditEntry("campaign.update", "campaign", campaign_id),
                           definition=body, must_be_new=False)


@router.post("/{campaign_id}/run", status_code=202)
async def run(campaign_id: str, principal: Marketer, db: Database) -> Response:
    """Run the campaign's due send as a background job (GET /api/v1/jobs/{job_id} for progress)."""
    return await db.change(run_job, AuditEntry("campaign.run", "campaign", campaign_id), status_code=202,
                           campaign_id=campaign_id)


@router.post("/{campaign_id}/pause")
async def pause(campaign_id: str, principal: Marketer, db: Database) -> Response:
    """Pause: nothing new is planned and a running send stops between batches."""
    return await db.json(campaign_pause, campaign_id=campaign_id)


@router.post("/{campaign_id}/resume")
async def resume(campaign_id: str, principal: Marketer, db: Database) -> Response:
    """Resume a paused campaign (run it again to send what is queued)."""
    return await db.json(campaign_resume, campaign_id=campaign_id)


@router.get("/{campaign_id}/results")
async def results(campaign_id: str, principal: Viewer, db: Database) -> Response:
    """Per run, channel and arm: audience, held out, left out (and why), sent, opened, clicked, cost."""
    return await db.json(campaign_outcome, campaign_id=campaign_id)


@router.get("/{campaign_id}/preview")
async def preview(campaign_id: str, principal: Marketer, db: Database,
                  person: Annotated[str, Query(min_length=1, max_length=300, description="any identifier")],
                  channel: ChannelName | None = None, lang: Literal["zh", "en"] | None = None) -> Response:
    """The copy one person would get from this campaign on a channel (default: its first)."""
    return await db.json(campaign_preview, campaign_id=campaign_id, person=person, channel=channel, language=lang)
