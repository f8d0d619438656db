"""`jingzhun decide ID --placement P`: one decision of the decision API, from the command line.

It builds a fresh snapshot (the same queries the server runs), decides once and logs the
decision in `decisions`, so impression caps count it. For testing placements and copy;
a site or app asks the server (`POST /api/v1/decide`, docs/decisions.md).
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from jingzhun.activation import decide_once
from jingzhun.cli.common import EngineOption, WorkspaceOption, app, console, language_of
from jingzhun.core import open_workspace
from jingzhun.engine import open_engine


@app.command("decide")
def decide(
    identifier: Annotated[str | None, typer.Argument(
        metavar="ID", help="Any identifier: a person id, TYPE:VALUE (phone:138…, member_id:JZ…, anonymous_id:…) "
                           "or a bare value; leave out for an unknown visitor.")] = None,
    placement: Annotated[str, typer.Option("--placement", "-p", help="home_banner, product_page, cart, push …")]
    = "home_banner",
    product: Annotated[str | None, typer.Option("--product", help="product_page: the product shown.")] = None,
    cart: Annotated[list[str] | None, typer.Option("--cart", help="cart: a product in it (repeat).")] = None,
    workspace: WorkspaceOption = None,
    engine: EngineOption = None,
    output: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
) -> None:
    """The next best offers and copy for one person on a placement. 下一个最佳推荐（决策接口）。"""
    opened = open_workspace(workspace)
    language = language_of(opened)
    with open_engine(opened, engine) as storage:
        decision, meta = decide_once(storage, opened, placement, identifier, product_id=product,
                                     cart=tuple(cart or ()))
    answer = decision.as_json()
    if output == "json":
        sys.stdout.write(json.dumps(answer, ensure_ascii=False, default=str) + "\n")
        return
    zh = language == "zh"
    who = decision.person_id or ("未知访客" if zh else "unknown visitor")
    console.print(f"[bold]{placement}[/] · {who} · {decision.outcome} · "
                  f"{'今日展示' if zh else 'shown today'} {decision.impressions_today}/{decision.daily_cap or '∞'} · "
                  f"{decision.latency_us} µs · {'快照' if zh else 'snapshot'} {meta.version}", highlight=False)
    table = Table("#", "product_id", "name", "price", "kind", "reason")
    for offer in answer["offers"]:  # type: ignore[union-attr]
        table.add_row(str(offer["rank"]), offer["product_id"], offer["name"], offer["price_text"], offer["kind"],
                      offer["reason"][language])
    console.print(table)
    if decision.coupon:
        console.print(f"{'优惠券' if zh else 'coupon'}: {decision.coupon['code']} {decision.coupon['name'][language]}")
    for lang, parts in (decision.copy or {}).items():
        console.print(f"[bold]{lang}[/] " + escape(" | ".join(parts.values())), highlight=False)
