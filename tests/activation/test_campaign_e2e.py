"""End to end on a copy of the demo: build an audience, send a campaign with a holdout through
a real SMTP server and a real webhook gateway on 127.0.0.1, click and open through the
collector, and find every delivery, open and click recorded — with the send policy
re-checked from raw rows, also for two campaigns at once killed mid-send and resumed."""

from __future__ import annotations

import re
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
import yaml

from jingzhun.activation import (
    campaign_results,
    load_send_policy,
    parse_campaign,
    run_campaign,
    save_campaign,
)
from jingzhun.core import Workspace
from jingzhun.engine import open_engine
from jingzhun.schema import migrate
from jingzhun.segments import parse_audience, save_audience, snapshot_audiences
from tests.activation.campaign_fixtures import (
    Collector,
    SmtpSink,
    WebhookReceiver,
    assert_policy_respected,
    campaign,
    free_port,
    kill_when_held,
    seed_policy_rows,
    wait_for,
    write_definitions,
)
from tests.conftest import copy_workspace

JINGZHUN = str(Path(sys.executable).with_name("jingzhun"))
TEN_AM = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
HOOK = "jingzhun.activation.tracking:record_message_events"
TOP_MEMBERS = {"segment_id": "top_members", "name_zh": "金卡与钻石会员", "name_en": "Gold and diamond members",
               "rule": {"trait": "member_level", "op": "in", "value": ["金卡", "钻石"]}}


@pytest.fixture
def demo(portrayed_demo: Path, tmp_path: Path) -> Workspace:
    workspace = copy_workspace(portrayed_demo, tmp_path / "ws")
    with open_engine(workspace) as engine:
        migrate(engine)
    return workspace


def test_campaign_with_holdout_tracked_back_through_the_collector(demo: Workspace, tmp_path: Path) -> None:
    smtp, gateway, port = SmtpSink(), WebhookReceiver(), free_port()
    write_definitions(demo, smtp_port=smtp.port, webhook_url=gateway.url, tracking_url=f"http://127.0.0.1:{port}")
    try:
        with open_engine(demo) as engine:
            save_audience(demo, engine, parse_audience(TOP_MEMBERS))
            snapshot_audiences(demo, engine, ["top_members"])
            seeded = seed_policy_rows(engine, "top_members")
            save_campaign(engine, parse_campaign(campaign("vip_news", ["email", "sms"], holdout=0.2,
                                                          segment="top_members")))
            report = run_campaign(demo, engine, "vip_news", now=TEN_AM)
            deliveries = engine.query("SELECT * FROM deliveries WHERE campaign_id = 'vip_news'").to_pandas()
            members = set(engine.query("SELECT person_id FROM segment_members WHERE segment_id = 'top_members'")
                          .column(0).to_pylist())
            arms = engine.query("SELECT person_id, arm FROM experiments WHERE campaign_id = 'vip_news'").to_pandas()
            checked = assert_policy_respected(engine, demo, load_send_policy(demo))
    finally:
        smtp.close()
        gateway.close()

    # Every member has exactly one delivery row; the holdout is about a fifth and got nothing.
    assert set(deliveries.person_id) == members and deliveries.delivery_id.is_unique
    held = deliveries[deliveries.status == "held_out"]
    assert 0.12 < len(held) / len(members) < 0.28
    assert set(held.person_id) == set(arms[arms.arm == "control"].person_id)
    assert len(arms) == len(members)
    sent = deliveries[deliveries.status == "sent"]
    assert report.sent == len(sent) > 20 and report.failed == 0 and checked == len(sent)
    assert set(sent.person_id).isdisjoint(held.person_id)
    assert set(deliveries[deliveries.reason == "no_consent"].person_id) >= (members - seeded.granted) - set(held.person_id)
    # What the servers received is exactly what `deliveries` says was sent.
    mails = {mail["X-Jingzhun-Delivery"]: mail for _, mail in smtp.messages}
    assert set(mails) == set(sent[sent.channel == "email"].delivery_id)
    assert set(gateway.delivered) == set(sent[sent.channel == "sms"].delivery_id)
    assert len(gateway.posts) == len(gateway.delivered) and gateway.bad_signatures == 0

    # Clicks and opens come back through the collector into events and message_events.
    html = [mail.get_body(("html",)).get_content() for mail in mails.values()]
    links = [re.search(r"(http://127\.0\.0\.1:\d+/t/c/[A-Za-z0-9_-]+)", page).group(1) for page in html[:4]]
    pixels = [re.search(r'src="(http://127\.0\.0\.1:\d+/t/o/[^"]+)"', page).group(1) for page in html[:6]]
    sms_links = [re.search(r"(http://127\.0\.0\.1:\d+/s/[0-9A-Za-z]{10})", m["body"]).group(1)  # short links
                 for m in list(gateway.delivered.values())[:3]]
    with Collector(demo, port, (HOOK,)) as collector:
        clicked_at = datetime.now(UTC)
        for link in links + sms_links:
            answer = httpx.get(link, follow_redirects=False, timeout=10)
            assert answer.status_code == 302
            assert answer.headers["location"] == "https://shop.example.com/welcome-back?c=1"
        for pixel in pixels:
            answer = httpx.get(pixel, timeout=10)
            assert answer.status_code == 200 and answer.headers["content-type"] == "image/gif"
        forged = links[0][:-6] + ("AAAAAA" if not links[0].endswith("AAAAAA") else "BBBBBB")
        assert httpx.get(forged, follow_redirects=False, timeout=10).status_code == 404
        leaving = next(iter(mails.values()))  # the inbox's one-click unsubscribe (RFC 8058)
        unsubscribe = leaving["List-Unsubscribe"].strip("<>")
        assert "<form method=\"post\">" in httpx.get(unsubscribe, timeout=10).text  # a GET only asks
        assert httpx.post(unsubscribe, content=b"List-Unsubscribe=One-Click", timeout=10).status_code == 200
        expected = len(links) + len(sms_links) + len(pixels) + 1
        wait_for(lambda: collector.health()["loaded_events"] >= expected, timeout=120)
        # and through the after-load hook, whose import in the loader can take seconds on a busy machine
        wait_for(lambda: (collector.health()["after_load"].get(HOOK, {}).get("through") or "") > clicked_at.isoformat(),
                 timeout=120)
    with open_engine(demo) as engine:
        events = engine.query("SELECT event, properties->>'$.delivery_id' AS delivery_id FROM events "
                              "WHERE source_id = 'jingzhun-tracking'").to_pandas()
        recorded = engine.query("SELECT delivery_id, event_type FROM message_events "
                                "WHERE event_type IN ('opened', 'clicked')").to_pandas()
        results = campaign_results(engine, "vip_news")
        withdrawn = engine.query("SELECT person_id, channel FROM consents WHERE status = 'withdrawn' "
                                 "AND source_id = 'jingzhun-tracking'").to_pylist()
    clicked = set(links + sms_links)
    assert Counter(events.event) == {"Link Clicked": len(clicked), "Email Opened": len(pixels), "Unsubscribed": 1}
    person = sent[sent.delivery_id == leaving["X-Jingzhun-Delivery"]].person_id.item()
    assert withdrawn == [{"person_id": person, "channel": "email"}]  # the next campaign leaves them out
    assert set(recorded[recorded.event_type == "clicked"].delivery_id) == set(events[events.event == "Link Clicked"].delivery_id)
    assert len(recorded[recorded.event_type == "opened"]) == len(pixels)
    totals = results.funnel.groupby("channel")[["sent", "opened", "clicked"]].sum()
    assert totals.loc["email", "opened"] == len(pixels) and totals.loc["email", "clicked"] == len(links)
    assert totals.loc["sms", "clicked"] == len(sms_links)
    assert totals["sent"].sum() == len(sent)


def test_quiet_hours_defer_to_the_morning(demo: Workspace) -> None:
    gateway = WebhookReceiver()
    write_definitions(demo, smtp_port=None, webhook_url=gateway.url)
    night = datetime(2026, 11, 1, 14, 0, tzinfo=UTC)  # 22:00 in Shanghai
    try:
        with open_engine(demo) as engine:
            seed_policy_rows(engine)
            save_campaign(engine, parse_campaign(campaign("night_owl", ["sms"], holdout=0.0)))
            evening = run_campaign(demo, engine, "night_owl", now=night)
            assert evening.sent == 0 and not gateway.posts
            deferred = evening.planned["deferred"]
            early = run_campaign(demo, engine, "night_owl", now=night + timedelta(hours=10))  # 08:00
            assert early.sent == 0 and not gateway.posts
            morning = run_campaign(demo, engine, "night_owl", now=night + timedelta(hours=11, minutes=5))
            rows = engine.query("SELECT status, sent_at FROM deliveries WHERE campaign_id = 'night_owl'").to_pandas()
            assert_policy_respected(engine, demo, load_send_policy(demo))
    finally:
        gateway.close()
    assert deferred > 10 and morning.sent == deferred == len(gateway.delivered)
    local = rows[rows.status == "sent"].sent_at.dt.tz_convert(ZoneInfo("Asia/Shanghai"))
    assert (local.dt.hour == 9).all()


def test_two_campaigns_at_once_killed_mid_send_and_resumed(demo: Workspace, tmp_path: Path) -> None:
    """`jingzhun campaign run` sends an SMS and an e-mail campaign at once to the same people
    under a cap of one marketing SMS a week; SIGKILL while both are sending; run again."""
    gateway = WebhookReceiver(delay=0.05, hold_at=8)  # the eighth SMS is in flight when the kill comes
    smtp = SmtpSink()
    smtp.handler.delay, smtp.handler.hold_at = 0.05, 3  # the third e-mail is in flight when the kill comes
    zone = ZoneInfo("Asia/Shanghai")
    later = datetime.now(zone) + timedelta(hours=3)  # quiet hours well away from now
    policy = {"frequency_caps": [{"channel": "sms", "max_messages": 1, "days": 7}],
              "quiet_hours": {"start": later.strftime("%H:00"), "end": (later + timedelta(hours=1)).strftime("%H:00")}}
    write_definitions(demo, smtp_port=smtp.port, webhook_url=gateway.url, policy=yaml.safe_dump(policy))
    try:
        with open_engine(demo) as engine:
            seed_policy_rows(engine)
            for name, channels in (("flash_sms", ["sms"]), ("news_mail", ["email", "sms"])):
                save_campaign(engine, parse_campaign(campaign(name, channels, holdout=0.1)))
        # each receiver then finishes the message whose sender died: was it sent?
        kill_when_held([JINGZHUN, "campaign", "run", "flash_sms", "news_mail", "--workspace", str(demo.root)],
                       gateway, smtp.handler)
        with open_engine(demo) as engine:
            interrupted = engine.query("SELECT campaign_id, channel, status, COUNT(*) AS n FROM deliveries "
                                       "WHERE status IN ('queued', 'sending') GROUP BY ALL").to_pylist()
            resumed = [run_campaign(demo, engine, name) for name in ("flash_sms", "news_mail")]
            final = engine.query("SELECT delivery_id, campaign_id, person_id, channel, status FROM deliveries "
                                 "WHERE campaign_id IN ('flash_sms', 'news_mail')").to_pandas()
            checked = assert_policy_respected(engine, demo, load_send_policy(demo))
    finally:
        gateway.close()
        smtp.close()
    sending = {(row["campaign_id"], row["channel"]) for row in interrupted if row["status"] == "sending"}
    assert sending == {("flash_sms", "sms"), ("news_mail", "email")}, interrupted  # both were mid-send
    assert sum(report.sent for report in resumed) > 0
    assert not set(final.status) & {"queued", "sending", "deferred"}
    # SMS: at least once on the wire, exactly once at the gateway (it dedups on the delivery id).
    sms = final[(final.channel == "sms") & (final.status == "sent")]
    assert set(gateway.delivered) == set(sms.delivery_id) and len(gateway.posts) > len(gateway.delivered)
    per_person = Counter(message["person_id"] for message in gateway.delivered.values())
    assert max(per_person.values()) == 1  # the cap of one SMS a week held across the two campaigns
    # E-mail: at most once; the message in flight at the kill is `unknown`, never sent again.
    mails = Counter(mail["X-Jingzhun-Delivery"] for _, mail in smtp.messages)
    assert max(mails.values()) == 1
    emailed = final[final.channel == "email"]
    assert set(emailed[emailed.status == "sent"].delivery_id) <= set(mails)
    assert len(emailed[emailed.status == "unknown"]) == 1  # the one in flight: never retried
    assert set(mails) <= set(emailed[emailed.status.isin(["sent", "unknown"])].delivery_id)
    assert checked == len(final[final.status.isin(["sent", "unknown"])])
