"""Personalized messages: a template, a batch of persons, a channel → one message each.

`render_messages` is what a campaign calls to send; `preview_message` shows any person's
message before it goes. Both follow the same steps:

1. the template's texts for the channel and language are compiled in Jinja2's sandbox and
   checked (syntax, variables, keys) before anyone is rendered (`content_jinja`);
2. a template with a coupon gets every person a personal code for the campaign, issued
   once (`coupons.issue_coupons`; a preview shows the code it would issue);
3. one engine query assembles everyone's context — name, level, city, store, coupon,
   recommended products with names and prices (`content_context`);
4. each person's texts are rendered and put through the channel's rules (`channels`):
   the SMS signature and opt-out and its length as carriers count it, WeChat field
   types, push title/body limits, the e-mail's text and HTML parts.

Each message carries `content_hash`, the SHA-256 of exactly what is sent, for
`deliveries.content_hash`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from jingzhun.activation.channels import (
    CHANNEL_NAMES,
    ChannelOutput,
    ContentError,
    Where,
    check_email,
    check_push,
    check_sms,
    check_wechat,
    compose_sms,
)
from jingzhun.activation.content_context import context_sql, person_contexts
from jingzhun.activation.content_jinja import CompiledText, compile_texts, render_text
from jingzhun.activation.content_templates import (
    ContentSettings,
    MessageTemplate,
    channels_of,
    list_templates,
    load_settings,
    load_template,
    parse_template,
    source_map,
)
from jingzhun.activation.coupons import coupon_code, coupon_key, issue_coupons
from jingzhun.activation.person_batch import distinct_ids, person_batch
from jingzhun.core.workspace import Workspace
from jingzhun.engine import Engine

PREVIEW_CAMPAIGN = "preview"
Links = Callable[[str, str], str]

__all__ = ["ContentError", "MessageTemplate", "RenderedMessage", "context_query", "list_templates",
           "load_template", "parse_template", "preview_message", "render_messages"]


@dataclass(frozen=True)
class RenderedMessage:
    """One person's message on one channel, exactly as it will be sent.

    `title` is the push title, the e-mail subject or the WeChat `first` field; `body` the
    SMS with its signature, the push body, the e-mail's HTML or the WeChat fields as
    lines; `fields` the WeChat template data; `text` the e-mail's plain-text part; `parts`
    the SMS parts carriers bill; `notes` what the channel rules changed or observed.
    """

    person_id: str
    channel: str
    language: str
    title: str | None
    body: str
    fields: dict[str, str]
    coupon_code: str | None
    product_ids: tuple[str, ...]
    content_hash: str
    template_id: str = ""
    text: str | None = None
    link: str | None = None
    parts: int = 1
    notes: tuple[str, ...] = ()


def content_hash(channel: str, title: str | None, body: str, fields: Mapping[str, str], text: str | None) -> str:
    """SHA-256 of what is sent (channel, title, body, fields, text) as canonical JSON."""
    sent = json.dumps([channel, title, body, dict(sorted(fields.items())), text], ensure_ascii=False)
    return hashlib.sha256(sent.encode("utf-8")).hexdigest()


def render_messages(engine: Engine, workspace: Workspace, template: MessageTemplate | str, person_ids: Sequence[str],
                    *, channel: str, language: str | None = None, campaign_id: str | None = None,
                    links: Links | None = None, now: datetime | None = None) -> list[RenderedMessage]:
    """Render `template` for every person on `channel`, one engine query for them all.

    Args:
        engine: the workspace's engine (writes `coupons` when the template carries one).
        workspace: supplies templates' settings, the time zone and the coupon key.
        template: a `MessageTemplate` or a template id.
        person_ids: who to render for (persons unknown to the portrait are an error).
        channel: sms | wechat | app_push | email — one the template declares.
        language: zh | en; default the workspace's language.
        campaign_id: the campaign, whose personal coupons the messages show (issued here
            when the template defines a coupon and someone has none yet).
        links: `links(person_id, url) -> tracked url`, the campaign's link tracker.
        now: the rendering instant (default now), for "today" and coupon windows.

    Returns:
        One `RenderedMessage` per distinct person, in person_id order.
    """
    template = _template(workspace, template)
    language = _language(template, channel, language or workspace.config.language)
    now = (now or datetime.now(UTC)).astimezone(UTC)
    texts = compile_texts(template, channel, language)
    ids = distinct_ids(person_ids)
    if template.coupon is not None:
        if not campaign_id:
            raise ContentError(
                f"template {template.id!r} carries a coupon, and a coupon belongs to a campaign.", field="campaign_id",
                fix="pass campaign_id (codes are issued per campaign), or use preview_message to see a preview code",
                message_zh=f"模板 {template.id!r} 带有优惠券，而优惠券属于某个活动。",
                fix_zh="传入 campaign_id（券码按活动发放），或用 preview_message 查看预览券码")
        issue_coupons(engine, campaign_id, ids, template.coupon, workspace=workspace, issued_at=now)
    rows = _context_rows(engine, template, ids, campaign_id)
    return _render_all(template, texts, rows, channel, language, workspace, links, now)


def preview_message(engine: Engine, workspace: Workspace, template: MessageTemplate | str,
                    person_or_identifier: str, *, channel: str, language: str | None = None,
                    campaign_id: str | None = None, links: Links | None = None,
                    now: datetime | None = None) -> RenderedMessage:
    """One person's message, found by any identifier (person id, phone, member id …).

    Nothing is written: a template's coupon shows the code the person would be issued
    (or holds already, for `campaign_id`), marked as a preview in the notes.
    """
    from jingzhun.profiles import find_person

    template = _template(workspace, template)
    language = _language(template, channel, language or workspace.config.language)
    now = (now or datetime.now(UTC)).astimezone(UTC)
    texts = compile_texts(template, channel, language)
    person_id = find_person(engine, person_or_identifier, workspace)
    rows = _context_rows(engine, template, [person_id], campaign_id)
    if template.coupon is not None and not rows[0]["coupon_code"]:
        rows = _with_preview_coupon(rows, template, workspace, campaign_id or PREVIEW_CAMPAIGN, now)
    return _render_all(template, texts, rows, channel, language, workspace, links, now)[0]


def context_query(engine: Engine, template: MessageTemplate, person_ids: Sequence[str],
                  campaign_id: str | None = None) -> str:
    """The SQL that assembles these persons' context, as the engine runs it (for `--sql`)."""
    with person_batch(engine, person_ids, "content_persons") as persons:
        return engine.render(context_sql(template, persons, campaign_id, engine.table_exists("recommendations")))


# ---- steps ------------------------------------------------------------------------------------------


def _template(workspace: Workspace, template: MessageTemplate | str) -> MessageTemplate:
    return load_template(workspace, template) if isinstance(template, str) else template


def _language(template: MessageTemplate, channel: str, language: str) -> str:
    """The language to render in, refusing a channel or language the template lacks."""
    content = template.channels.get(channel)  # type: ignore[call-overload]
    if content is None:
        names = ", ".join(channels_of(template))
        raise ContentError(f"template {template.id!r} has no {channel!r} channel.", field="channel",
                           fix=f"use one of: {names}, or add channels.{channel} to the template",
                           message_zh=f"模板 {template.id!r} 没有 {CHANNEL_NAMES.get(channel, (channel,))[0]} 渠道。",
                           fix_zh=f"可用渠道：{names}；或在模板中加入 channels.{channel}")
    if language not in ("zh", "en") or content.variant(language) is None:
        raise ContentError(f"template {template.id!r} has no {language!r} text for {channel}.", field="language",
                           fix=f"write channels.{channel}.{language}, or choose another language",
                           message_zh=f"模板 {template.id!r} 的 {channel} 渠道没有 {language!r} 文案。",
                           fix_zh=f"补写 channels.{channel}.{language}，或换一种语言")
    return language


def _context_rows(engine: Engine, template: MessageTemplate, person_ids: Sequence[str],
                  campaign_id: str | None) -> list[dict]:
    """Everyone's context rows from one query; unknown persons are an error."""
    with person_batch(engine, person_ids, "content_persons") as persons:
        sql = context_sql(template, persons, campaign_id, engine.table_exists("recommendations"))
        rows = engine.query(sql).to_pylist()
    unknown = sorted({row["person_id"] for row in rows if not row["known"]})
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" … ({len(unknown)})" if len(unknown) > 5 else "")
        raise ContentError(f"{len(unknown)} person(s) are not in the portrait: {shown}.", field="person_ids",
                           fix="use active person ids (merged ones live on in the person they merged into); "
                               "run `jingzhun pipeline` after new data",
                           message_zh=f"{len(unknown)} 位客户不在画像中：{shown}。",
                           fix_zh="请使用有效的客户 ID（已合并的客户并入了另一位）；新数据到达后运行 `jingzhun pipeline`")
    return rows


def _with_preview_coupon(rows: list[dict], template: MessageTemplate, workspace: Workspace, campaign: str,
                         now: datetime) -> list[dict]:
    """The rows with the coupon the person would be issued (computed, not stored)."""
    coupon = template.coupon
    assert coupon is not None
    currency = workspace.config.currency
    valid_from, valid_to = coupon.window(now, workspace.config.timezone)
    code = coupon_code(coupon_key(workspace), campaign, rows[0]["person_id"])
    preview = {"coupon_code": code, "coupon_name_zh": coupon.label("zh", currency),
               "coupon_name_en": coupon.label("en", currency), "discount_type": coupon.discount,
               "discount_value": coupon.value, "min_spend": coupon.min_spend, "coupon_currency": currency,
               "valid_from": valid_from, "valid_to": valid_to, "coupon_preview": True}
    return [{**row, **preview} for row in rows]


def _render_all(template: MessageTemplate, texts: dict[str, CompiledText], rows: list[dict], channel: str,
                language: str, workspace: Workspace, links: Links | None, now: datetime) -> list[RenderedMessage]:
    settings = load_settings(workspace)
    messages = []
    for context, product_ids in person_contexts(rows, language, channel, settings, workspace.config.timezone, now):
        messages.append(_render_one(template, texts, context, tuple(product_ids), settings, links))
    return messages


def _render_one(template: MessageTemplate, texts: dict[str, CompiledText], context: dict,
                product_ids: tuple[str, ...], settings: ContentSettings, links: Links | None) -> RenderedMessage:
    person_id = context["person"]["id"]
    context["link"] = (lambda url: links(person_id, str(url))) if links else (lambda url: str(url))
    # The landing page (tracked): `url` in the texts, and the tap target of a push or WeChat message.
    target = render_text(template, texts["link"], context, person_id) if "link" in texts else settings.site_url
    landing = context["link"](target) if target else None
    context["url"] = landing or ""
    parts = {part: render_text(template, text, context, person_id) for part, text in texts.items() if part != "link"}
    where = Where(template.id, context["channel"], context["language"], person_id, source_map(template).path)
    output = apply_channel(template, parts, context, settings, where)
    coupon = context["coupon"]
    preview = where.say("预览券码：尚未发放", "preview coupon code: not issued")
    notes = output.notes + ((preview,) if coupon and coupon["preview"] else ())
    return RenderedMessage(
        person_id=person_id, channel=where.channel, language=where.language, title=output.title, body=output.body,
        fields=output.fields, coupon_code=coupon["code"] if coupon else None, product_ids=product_ids,
        content_hash=content_hash(where.channel, output.title, output.body, output.fields, output.text),
        template_id=template.id, text=output.text, link=landing or None, parts=output.parts, notes=notes)


def apply_channel(template: MessageTemplate, parts: dict[str, str], context: dict, settings: ContentSettings,
                  where: Where) -> ChannelOutput:
    """The rendered parts put through the channel's rules."""
    content = template.channels[where.channel]  # type: ignore[index]
    marketing = template.purpose == "marketing"
    if where.channel == "sms":
        signature = settings.sms_signature
        name = (signature.zh if where.language == "zh" else signature.en) if signature else None
        sms = compose_sms(parts["body"], signature=name, marketing=marketing, language=where.language, where=where)
        return check_sms(sms, max_parts=content.max_parts or settings.sms_max_parts, where=where)
    if where.channel == "app_push":
        return check_push(parts["title"], parts["body"], truncate=content.truncate, where=where)
    if where.channel == "email":
        return check_email(parts["title"], parts["body"], parts.get("html"), marketing=marketing,
                           unsubscribe=context["unsubscribe"], where=where)
    fields = {part.removeprefix("fields."): value for part, value in parts.items() if part.startswith("fields.")}
    if "remark" in parts:
        fields["remark"] = parts["remark"]
    return check_wechat(parts.get("title"), fields, truncate=content.truncate, where=where)
