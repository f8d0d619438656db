"""End to end on a copy of the demo: send a campaign with a holdout through a real SMTP server and
a real webhook gateway, click its links and post orders back through a real collector, and read
the right CTR, CVR, lift (with its interval) and ROI — each expected number computed here, from
the raw rows, without the measure stage's code."""

from __future__ import annotations

import math
import re
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pandas as pd

from jingzhun.activation import parse_campaign, run_campaign, save_campaign
from jingzhun.collect.collector import add_source
from jingzhun.core import Workspace
from jingzhun.engine import open_engine
from jingzhun.engine.parity import compare_tables
from jingzhun.measure import measure_lift, read_kpis, rebuild_kpis
from jingzhun.segments import parse_audience, save_audience, snapshot_audiences
from tests.activation.campaign_fixtures import (
    Collector,
    SmtpSink,
    WebhookReceiver,
    campaign,
    free_port,
    seed_policy_rows,
    wait_for,
    write_definitions,
)
from tests.measure.conftest import HOOKS

TEN_AM = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
WINDOW = timedelta(days=7)  # the default conversion window, after a send and after a click
TOP_MEMBERS = {"segment_id": "top_members", "name_zh": "金卡与钻石会员", "name_en": "Gold and diamond members",
               "rule": {"trait": "member_level", "op": "in", "value": ["金卡", "钻石"]}}
KPI_HOOK = "jingzhun.measure.kpis:update_kpis"
LINK = re.compile(r"(http://127\.0\.0\.1:\d+/(?:t/c|s)/[A-Za-z0-9_-]+)")  # tracked, or an SMS short link


def _send_campaign(demo: Workspace, smtp: SmtpSink, gateway: WebhookReceiver, port: int) -> tuple[pd.DataFrame,
                                                                                                  dict, str]:
    """Run `vip_news` (e-mail, else SMS, 20% held out) at 10:00; the deliveries, member ids, a write key."""
    write_definitions(demo, smtp_port=smtp.port, webhook_url=gateway.url, tracking_url=f"http://127.0.0.1:{port}")
    with open_engine(demo) as engine:
        save_audience(demo, engine, parse_audience(TOP_MEMBERS))
        snapshot_audiences(demo, engine, ["top_members"])
        seed_policy_rows(engine, "top_members")
        save_campaign(engine, parse_campaign(campaign("vip_news", ["email", "sms"], holdout=0.2,
                                                      segment="top_members")))
        run_campaign(demo, engine, "vip_news", now=TEN_AM)
        _, write_key = add_source(engine, "shop-server", "server")
        deliveries = engine.query("SELECT * FROM deliveries WHERE campaign_id = 'vip_news'").to_pandas()
        members = dict(engine.query("SELECT person_id, MIN(id_value) AS member FROM identities "
                                    "WHERE id_type = 'member_id' GROUP BY person_id").to_pandas().values)
        later = engine.query("SELECT COUNT(*) AS n FROM orders WHERE placed_at >= TIMESTAMPTZ '2026-11-01 02:00:00+00'")
        assert later.column("n")[0].as_py() == 0  # the orders below are the only ones after the send
    return deliveries, members, write_key


def _orders(deliveries: pd.DataFrame, members: dict) -> list[dict]:
    """Orders to post: ten treated buyers inside the window, two after it, two held-out buyers inside."""
    sent = deliveries[(deliveries.status == "sent") & deliveries.person_id.isin(members)].sort_values("delivery_id")
    control = deliveries[(deliveries.status == "held_out") & deliveries.reason.isna()
                         & deliveries.person_id.isin(members)].sort_values("delivery_id")
    assert len(sent) >= 14 and len(control) >= 2
    plan = [(p, TEN_AM + timedelta(days=1, hours=i), 100.0 + 10 * i) for i, p in enumerate(sent.person_id[:10])]
    plan += [(p, TEN_AM + timedelta(days=10, hours=i), 500.0) for i, p in enumerate(sent.person_id[10:12])]
    plan += [(p, TEN_AM + timedelta(days=2, hours=i), 80.0) for i, p in enumerate(control.person_id[:2])]
    return [{"person_id": p, "member": members[p], "at": at, "amount": amount, "order_id": f"T{n:03d}"}
            for n, (p, at, amount) in enumerate(plan)]


def _post_order(url: str, write_key: str, order: dict) -> None:
    message = {"type": "track", "event": "Order Completed", "userId": order["member"],
               "messageId": str(uuid.uuid4()), "timestamp": order["at"].isoformat(),
               "properties": {"order_id": order["order_id"], "revenue": order["amount"], "currency": "CNY"}}
    answer = httpx.post(f"{url}/v1/track", json=message, auth=(write_key, ""), timeout=10)
    assert answer.status_code == 200, answer.text


def _caught_up(health: dict, started: str | None) -> bool:
    """The live-KPI hook has moved past where it started and reached every other hook."""
    states = health["after_load"]
    mine = states[KPI_HOOK]["through"]
    return (not health["pending"] and mine is not None and mine != started
            and all(state["through"] == mine for state in states.values()))


def _expected(deliveries: pd.DataFrame, clicks: dict[str, datetime], orders: list[dict]) -> pd.DataFrame:
    """Per channel and arm, from the raw rows: the conversion rule applied by hand."""
    rows = []
    for (channel, arm), part in deliveries.groupby(["channel", "arm"]):
        delivered = part[part.status == "sent"] if arm == "treatment" else part
        converted, gmv = set(), {}
        for d in delivered.itertuples():
            anchor = d.sent_at if arm == "treatment" else d.scheduled_at
            for o in (o for o in orders if o["person_id"] == d.person_id):
                click = clicks.get(d.delivery_id)
                if anchor <= o["at"] < anchor + WINDOW or (click is not None and click <= o["at"] < click + WINDOW):
                    converted.add(d.delivery_id)
                    gmv[o["order_id"]] = o["amount"]
        sent = int((part.status == "sent").sum())
        cost = float(part[part.status == "sent"].cost.astype(float).sum())
        clicked = len(set(part.delivery_id) & set(clicks))
        rows.append({"channel": channel, "arm": arm, "audience": len(part), "sent": sent, "clicked": clicked,
                     "converted": len(converted), "gmv": sum(gmv.values()), "cost": cost,
                     "ctr": clicked / sent if sent else math.nan,
                     "cvr": len(converted) / (sent if arm == "treatment" else len(part)) if len(part) else math.nan,
                     "roi": sum(gmv.values()) / cost if cost else math.nan})
    return pd.DataFrame(rows).set_index(["channel", "arm"]).sort_index()


def _wilson(x: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    p = x / n
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def _newcombe(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float]:
    """Newcombe's hybrid score interval for p1 − p2 (1998, method 10), from Wilson intervals."""
    (l1, u1), (l2, u2) = _wilson(x1, n1), _wilson(x2, n2)
    p1, p2 = x1 / n1, x2 / n2
    return (p1 - p2 - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2),
            p1 - p2 + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2))


def test_campaign_results_live_through_the_collector(demo: Workspace) -> None:
    smtp, gateway, port = SmtpSink(), WebhookReceiver(), free_port()
    try:
        deliveries, members, write_key = _send_campaign(demo, smtp, gateway, port)
    finally:
        smtp.close()
        gateway.close()
    deliveries["arm"] = deliveries.status.map(lambda s: "control" if s == "held_out" else "treatment")
    orders = _orders(deliveries, members)
    mails = {mail["X-Jingzhun-Delivery"]: mail for _, mail in smtp.messages}
    links = [LINK.search(mail.get_body(("html",)).get_content()).group(1) for mail in list(mails.values())[:4]]
    links += [LINK.search(m["body"]).group(1) for m in list(gateway.delivered.values())[:3]]
    clicked_person = deliveries.set_index("delivery_id").person_id[list(gateway.delivered)[0]]
    with Collector(demo, port, HOOKS) as collector:
        wait_for(lambda: KPI_HOOK in collector.health()["after_load"], timeout=120)  # the loader has started
        started = collector.health()["after_load"][KPI_HOOK]["through"]
        for link in links:
            assert httpx.get(link, follow_redirects=False, timeout=10).status_code == 302
        wait_for(lambda: collector.health()["loaded_events"] >= len(links), timeout=120)
        # one more order: from a person whose SMS was clicked a month after the send, an hour after the click
        orders.append({"person_id": clicked_person, "member": members.get(clicked_person), "amount": 66.0,
                       "at": datetime.now(UTC) + timedelta(hours=1), "order_id": "T999"})
        for order in orders:
            if order["member"]:
                _post_order(collector.url, write_key, order)
        wait_for(lambda: collector.health()["loaded_events"] >= len(links) + len(orders), timeout=120)
        # the hooks import beside the loading: wait until ours has handled every batch loaded
        wait_for(lambda: _caught_up(collector.health(), started), timeout=240, step=0.5)
        state = collector.health()["after_load"][KPI_HOOK]
    assert state["failures"] == 0
    orders = [o for o in orders if o["member"]]

    with open_engine(demo) as engine:
        clicks = dict(engine.query("SELECT properties->>'$.delivery_id' AS d, MIN(timestamp) AS at FROM events "
                                   "WHERE event = 'Link Clicked' GROUP BY 1").to_pandas().values)
        live = read_kpis(engine, by=("channel", "arm"), campaign_id="vip_news").frame.set_index(["channel", "arm"])
        lift = measure_lift(demo, engine, ["vip_news"]).frame.iloc[0]
        incremental = engine.read_table("campaign_kpis").drop_columns(["computed_at"])
        rebuild_kpis(demo, engine)
        rebuilt = engine.read_table("campaign_kpis").drop_columns(["computed_at"])
    assert len(clicks) == len(links)
    expected = _expected(deliveries, clicks, orders)
    live = live.sort_index()
    for column in ("audience", "sent", "clicked", "converted"):
        assert live[column].astype(int).tolist() == expected[column].tolist(), column
    for column in ("gmv", "cost", "ctr", "cvr", "roi"):
        assert (live[column].astype(float).fillna(-1) - expected[column].fillna(-1)).abs().max() < 1e-9, column
    assert expected.loc[("sms", "treatment"), "roi"] > 0 and expected["converted"].sum() >= 11

    # Lift (eligible: treated persons the policy let through against held-out persons it would have sent to).
    treated = deliveries[(deliveries.arm == "treatment") & (deliveries.status != "suppressed")]
    held = deliveries[(deliveries.arm == "control") & deliveries.reason.isna()]
    person_of = deliveries.set_index("delivery_id").person_id
    starts = {**dict(zip(deliveries.person_id, deliveries.sent_at.fillna(deliveries.scheduled_at), strict=True))}
    clicked_at = {person_of[d]: at for d, at in clicks.items()}
    buyers = {o["person_id"] for o in orders if starts[o["person_id"]] <= o["at"] < starts[o["person_id"]] + WINDOW
              or (o["person_id"] in clicked_at and clicked_at[o["person_id"]] <= o["at"] < clicked_at[o["person_id"]]
                  + WINDOW)}
    x_t, n_t = len(set(treated.person_id) & buyers), treated.person_id.nunique()
    x_c, n_c = len(set(held.person_id) & buyers), held.person_id.nunique()
    assert (lift.units_treatment, lift.converted_treatment, lift.units_control, lift.converted_control) == (
        n_t, x_t, n_c, x_c)
    low, high = _newcombe(x_t, n_t, x_c, n_c)
    assert abs(lift["diff"] - (x_t / n_t - x_c / n_c)) < 1e-12
    assert abs(lift.diff_low - low) < 1e-9 and abs(lift.diff_high - high) < 1e-9
    pooled = (x_t + x_c) / (n_t + n_c)
    z = (x_t / n_t - x_c / n_c) / math.sqrt(pooled * (1 - pooled) * (1 / n_t + 1 / n_c))
    assert abs(lift.p_value - math.erfc(abs(z) / math.sqrt(2))) < 1e-9
    assert lift.verdict in ("lift", "no_effect", "too_early") and lift.verdict_en and lift.verdict_zh

    # What the hook kept up to date equals a rebuild from the log, row for row.
    report = compare_tables("campaign_kpis", incremental, rebuilt)
    assert report.equal, report.differences
