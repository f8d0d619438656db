"""`jingzhun template …` and `jingzhun coupon …`: message templates, previews, personal coupons."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import pandas as pd
import pyarrow as pa
import typer
import yaml

from jingzhun.activation import (
    CHANNELS,
    CouponError,
    count_sms,
    issue_coupons,
    list_templates,
    load_template,
    match_redemptions,
    parse_coupon_definition,
    preview_message,
)
from jingzhun.activation import context_query as content_sql
from jingzhun.cli.common import (
    EngineOption,
    WorkspaceOption,
    app,
    console,
    language_of,
    print_result,
)
from jingzhun.cli.common import FormatOption as Format
from jingzhun.cli.common import ShowSqlOption as ShowSql
from jingzhun.cli.reports import instant
from jingzhun.core import open_workspace
from jingzhun.engine import open_engine
from jingzhun.segments import members_sql

template_app = typer.Typer(help="Message templates: list and preview. 消息模板。", no_args_is_help=True)
coupon_app = typer.Typer(help="Personal coupons: issue codes, match redemptions. 个人优惠券。", no_args_is_help=True)
app.add_typer(template_app, name="template")
app.add_typer(coupon_app, name="coupon")



def _zh(language: str) -> bool:
    return language == "zh"


@template_app.command("list")
def template_list(workspace: WorkspaceOption = None, output: Format = "table") -> None:
    """Every message template: kind, channels, languages, coupon. 列出消息模板。"""
    opened = open_workspace(workspace)
    rows = [{"id": t.id, "kind": t.kind, "name": t.name.zh if _zh(language_of(opened)) else t.name.en,
             "purpose": t.purpose, "channels": ", ".join(c for c in CHANNELS if c in t.channels),
             "languages": ", ".join(sorted({lang for c in t.channels.values() for lang in ("zh", "en")
                                            if c.variant(lang) is not None})),
             "products": f"{t.products.source} x{t.products.count}",
             "coupon": t.coupon.label(language_of(opened)) if t.coupon else "", "enabled": t.enabled}
            for t in list_templates(opened, include_disabled=True)]
    print_result(pa.Table.from_pylist(rows), output, 10_000, language_of(opened))


@template_app.command("preview")
def template_preview(
    template: Annotated[str, typer.Argument(help="Template id, e.g. personal_picks.")],
    person: Annotated[str, typer.Option("--person", "-p", help="Any identifier: person id, phone, member id, TYPE:VALUE.")],
    channel: Annotated[str, typer.Option("--channel", "-c", help="sms, wechat, app_push or email.")] = "sms",
    lang: Annotated[str | None, typer.Option("--lang", "-l", help="zh or en; default the workspace's.")] = None,
    campaign: Annotated[str | None, typer.Option(help="Show this campaign's issued coupon, if any.")] = None,
    workspace: WorkspaceOption = None,
    engine: EngineOption = None,
    show_sql: ShowSql = False,
) -> None:
    """One person's message as it would be sent, checked against the channel's rules. 预览消息。"""
    opened = open_workspace(workspace)
    language = language_of(opened)
    chosen = load_template(opened, template)
    with open_engine(opened, engine, read_only=True) as storage:
        message = preview_message(storage, opened, chosen, person, channel=channel, language=lang,
                                  campaign_id=campaign)
        sql = content_sql(storage, chosen, [message.person_id], campaign) if show_sql else ""
    labels = {"title": ("标题", "Title"), "body": ("正文", "Body"), "text": ("纯文本", "Text")}
    console.print(f"[bold]{chosen.id}[/] · {channel} · {message.language} · "
                  f"{'客户' if _zh(language) else 'person'} {message.person_id}")
    for part in ("title", "body", "text"):
        value = getattr(message, part)
        if value and not (part == "body" and channel == "wechat"):
            console.print(f"[bold]{labels[part][0 if _zh(language) else 1]}[/]", highlight=False)
            console.print(value, markup=False, highlight=False)
    for key, value in message.fields.items():
        console.print(f"[bold]{key}[/]: {value}", highlight=False)
    if channel == "sms":
        count = count_sms(message.body)
        console.print(f"{count.chars} 字，计费 {count.parts} 条" if _zh(language) else
                      f"{count.chars} characters, billed as {count.parts} part(s)")
    extras = [f"coupon {message.coupon_code}"] if message.coupon_code else []
    extras += [f"products {', '.join(message.product_ids)}"] if message.product_ids else []
    for line in extras + list(message.notes) + [f"sha256 {message.content_hash}"]:
        console.print(f"[dim]{line}[/]", highlight=False)
    if show_sql:
        console.print(sql, markup=False, highlight=False)


def _persons(engine, segment: str | None, person: list[str] | None, persons_file: Path | None) -> list[str]:
    """Who gets a code: an audience's latest snapshot, --person ids, or a file of ids."""
    chosen = [x for x in (segment, person, persons_file) if x]
    if len(chosen) != 1:
        raise CouponError("say who gets codes: --segment, --person (repeatable) or --persons FILE.", field="persons",
                          fix="e.g. --segment valuable_at_risk",
                          message_zh="请指定发券对象：--segment、--person（可重复）或 --persons 文件。",
                          fix_zh="例如 --segment valuable_at_risk")
    if segment:
        return [row["person_id"] for row in engine.query(members_sql(segment)).to_pylist()]
    if person:
        return list(person)
    return [line.strip() for line in Path(persons_file).read_text(encoding="utf-8").splitlines()  # type: ignore[arg-type]
            if line.strip() and not line.startswith("#")]


@coupon_app.command("issue")
def coupon_issue(
    campaign: Annotated[str, typer.Argument(help="The campaign the codes belong to.")],
    segment: Annotated[str | None, typer.Option(help="Give codes to this audience's latest members.")] = None,
    person: Annotated[list[str] | None, typer.Option(help="A person id (repeatable).")] = None,
    persons_file: Annotated[Path | None, typer.Option("--persons", help="A file of person ids, one a line.")] = None,
    template: Annotated[str | None, typer.Option(help="Use this template's coupon definition.")] = None,
    definition: Annotated[Path | None, typer.Option("--file", help="A YAML coupon definition.")] = None,
    discount: Annotated[str, typer.Option(help="amount (CNY off) or percent (percent off).")] = "amount",
    value: Annotated[float | None, typer.Option(help="CNY off, or percent off (15 = 8.5折).")] = None,
    min_spend: Annotated[float, typer.Option(help="Order value the coupon needs.")] = 0.0,
    days: Annotated[int, typer.Option(help="Calendar days valid, the first being the start day.")] = 7,
    valid_from: Annotated[str | None, typer.Option(help="First valid day, YYYY-MM-DD (default today).")] = None,
    valid_to: Annotated[str | None, typer.Option(help="Last valid day, YYYY-MM-DD (default from --days).")] = None,
    as_of: Annotated[str | None, typer.Option(help="Issue instant, ISO 8601 (default now).")] = None,
    workspace: WorkspaceOption = None,
    engine: EngineOption = None,
    output: Format = "table",
) -> None:
    """Issue personal codes for a campaign (once per person; again adds only new persons). 发放个人券码。"""
    opened = open_workspace(workspace)
    if template:
        coupon = load_template(opened, template).coupon
        if coupon is None:
            raise CouponError(f"template {template!r} defines no coupon.", field="template",
                              fix="give the coupon with --value (and --min-spend, --days) or --file",
                              message_zh=f"模板 {template!r} 没有定义优惠券。", fix_zh="用 --value（及 --min-spend、--days）或 --file 指定")
    elif definition:
        coupon = parse_coupon_definition(yaml.safe_load(definition.read_text(encoding="utf-8")), str(definition))
    else:
        coupon = parse_coupon_definition({"discount": discount, "value": value, "min_spend": min_spend, "valid_days": days,
                                          "valid_from": _day(valid_from), "valid_to": _day(valid_to)}, "command line")
    with open_engine(opened, engine) as storage:
        ids = _persons(storage, segment, person, persons_file)
        codes = issue_coupons(storage, campaign, ids, coupon, workspace=opened, issued_at=instant(as_of))
    shown = codes.select(["person_id", "code", "name_zh" if _zh(language_of(opened)) else "name_en",
                          "valid_from", "valid_to"])
    print_result(shown, output, 50, language_of(opened))


def _day(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter("use YYYY-MM-DD / 请使用 YYYY-MM-DD 格式") from None


@coupon_app.command("redemptions")
def coupon_redemptions(
    campaign: Annotated[str | None, typer.Option(help="Only this campaign.")] = None,
    orders: Annotated[bool, typer.Option(help="List each matched order, not only the summary.")] = False,
    workspace: WorkspaceOption = None,
    engine: EngineOption = None,
    output: Format = "table",
    show_sql: ShowSql = False,
) -> None:
    """Redemptions matched from orders: issued, redeemed, rate, outside window, used by others. 核销报告。"""
    opened = open_workspace(workspace)
    language = language_of(opened)
    with open_engine(opened, engine, read_only=True) as storage:
        result = match_redemptions(storage, campaign_id=campaign)
    frame: pd.DataFrame = result.matches if orders else result.summary
    print_result(pa.Table.from_pandas(frame, preserve_index=False), output, 10_000, language)
    if show_sql:
        console.print(result.sql["matches" if orders else "summary"], markup=False, highlight=False)
