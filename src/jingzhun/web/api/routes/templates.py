"""Message templates: the library, one template, one person's rendered copy."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from jingzhun.activation import CHANNELS, count_sms, list_templates, load_template, preview_message
from jingzhun.web.api.deps import Database, Marketer, Viewer
from jingzhun.web.calls import EngineContext

router = APIRouter(prefix="/templates", tags=["templates"])


def template_list(ctx: EngineContext) -> list[dict[str, Any]]:
    return [{"id": t.id, "kind": t.kind, "name_zh": t.name.zh, "name_en": t.name.en, "purpose": t.purpose,
             "channels": [c for c in CHANNELS if c in t.channels], "products": f"{t.products.source} x{t.products.count}",
             "coupon_zh": t.coupon.label("zh") if t.coupon else None,
             "coupon_en": t.coupon.label("en") if t.coupon else None, "enabled": t.enabled}
            for t in list_templates(ctx.workspace, include_disabled=True)]


def template_read(ctx: EngineContext, template_id: str) -> Any:
    return load_template(ctx.workspace, template_id)


def template_preview(ctx: EngineContext, template_id: str, person: str, channel: str, language: str | None,
                     campaign: str | None) -> dict[str, Any]:
    template = load_template(ctx.workspace, template_id)
    message = preview_message(ctx.engine, ctx.workspace, template, person, channel=channel, language=language,
                              campaign_id=campaign)
    billed = count_sms(message.body) if channel == "sms" else None
    return {"message": message, "sms": {"chars": billed.chars, "parts": billed.parts} if billed else None}


@router.get("")
async def list_all(principal: Viewer, db: Database) -> Response:
    """Every template: kind, names, purpose, channels, product source, coupon, enabled."""
    return await db.json(template_list)


@router.get("/{template_id}")
async def read(template_id: str, principal: Viewer, db: Database) -> Response:
    """One template as defined (channels, languages, parts)."""
    return await db.json(template_read, template_id=template_id)


@router.get("/{template_id}/preview")
async def preview(template_id: str, principal: Marketer, db: Database,
                  person: Annotated[str, Query(min_length=1, max_length=300, description="any identifier")],
                  channel: Literal["sms", "wechat", "app_push", "email"] = "sms",
                  lang: Literal["zh", "en"] | None = None,
                  campaign: Annotated[str | None, Query(max_length=64)] = None) -> Response:
    """One person's message as it would be sent, checked against the channel's rules."""
    return await db.json(template_preview, template_id=template_id, person=person, channel=channel, language=lang,
                         campaign=campaign)
