"""Short tracked links: codes unique, stable and unguessable; SMS get them (every channel
with `short_links: all`); on a copy of the demo a campaign killed mid-send leaves every
link it sent resolvable, and a click through a real collector on 127.0.0.1 is recorded in
`message_events` and redirected, while an unknown code gets a 404 page."""

from __future__ import annotations

import hashlib
import re
import sys
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
import yaml
from scipy.stats import chisquare

from jingzhun.activation import campaign_results, parse_campaign, run_campaign, save_campaign
from jingzhun.activation.delivery import DeliveryConfig, load_delivery_config
from jingzhun.activation.short_links import ShortLinks, short_code, short_link_key
from jingzhun.activation.tracking import link_tracker, rebuild_message_events
from jingzhun.collect.collector.link_map import (
    ALPHABET,
    CODE_LENGTH,
    LinkMap,
    ShortLink,
    map_folder,
)
from jingzhun.collect.collector.tracking import tracking_secret
from jingzhun.core import Workspace
from jingzhun.core.errors import ConfigError
from jingzhun.engine import open_engine
from jingzhun.schema import migrate
from tests.activation.campaign_fixtures import (
    WebhookReceiver,
    campaign,
    kill_when_held,
    seed_policy_rows,
    wait_for,
    write_definitions,
)
from tests.collect.collector.conftest import free_port, serving
from tests.conftest import copy_workspace

JINGZHUN = str(Path(sys.executable).with_name("jingzhun"))
TARGET = "https://shop.example.com/welcome-back?c=1"  # the test template's link (campaign_fixtures)
SHORT = re.compile(r"(http://127\.0\.0\.1:\d+/s/([0-9A-Za-z]+))")


def test_codes_are_unique_stable_and_unguessable() -> None:
    key, other = short_link_key(b"s" * 32), short_link_key(b"t" * 32)
    deliveries = [hashlib.md5(str(i).encode()).hexdigest() for i in range(20000)]
    urls = ("https://shop.example.com/p/1", "https://shop.example.com/p/2")
    codes = [short_code(key, d, u) for d in deliveries for u in urls]
    assert all(len(c) == CODE_LENGTH and set(c) <= set(ALPHABET) for c in codes)
    assert len(set(codes)) == len(codes)  # one per (delivery, link)
    assert short_code(key, deliveries[0], urls[0]) == codes[0]  # the same link again: the same code
    assert not set(codes[:2000]) & {short_code(other, d, u) for d in deliveries[:1000] for u in urls}
    # Knowing one's own code says nothing about the next delivery's: neighbours share a
    # symbol in place as often as random strings do (1 in 62), each position is uniform.
    same = sum(a == b for x, y in zip(codes[::2], codes[2::2], strict=False) for a, b in zip(x, y, strict=True))
    assert abs(same / ((len(codes) // 2 - 1) * CODE_LENGTH) - 1 / 62) < 0.0015
    for position in range(CODE_LENGTH):
        counts = [0] * len(ALPHABET)
        for code in codes:
            counts[ALPHABET.index(code[position])] += 1
        assert chisquare(counts).pvalue > 1e-4, position


def test_a_clash_takes_the_next_code_and_a_rerender_writes_nothing(workspace: Workspace) -> None:
    secret = tracking_secret(workspace)
    delivery, url = "a" * 32, "https://shop.example.com/p/9"
    first = short_code(short_link_key(secret), delivery, url)
    LinkMap(map_folder(workspace)).append("other", [ShortLink(first, "b" * 32, "other", "https://x.example.com/")])
    links = ShortLinks(workspace, "https://s.brand.cn/", "spring", secret)
    made = links.link(delivery, url)
    assert made == f"https://s.brand.cn/s/{short_code(short_link_key(secret), delivery, url, 1)}"
    assert links.link(delivery, url) == made and links.commit() == 1
    again = ShortLinks(workspace, "https://s.brand.cn", "spring", secret)  # rendered again after a crash
    assert again.link(delivery, url) == made and again.commit() == 0
    index = LinkMap(map_folder(workspace))
    index.refresh()
    assert index.find(made.rsplit("/", 1)[1]) == ShortLink(made.rsplit("/", 1)[1], delivery, "spring", url)
    assert index.find(first).url == "https://x.example.com/"


def test_sms_get_short_links_and_every_channel_can(workspace: Workspace) -> None:
    delivery, url = "c" * 32, "https://shop.example.com/p/3"
    tracker = link_tracker(workspace, DeliveryConfig.model_validate({"tracking": {"base_url": "https://t.brand.cn"}}),
                           "spring")
    assert re.fullmatch(r"https://t\.brand\.cn/s/[0-9A-Za-z]{10}", tracker.link(delivery, url, "sms"))
    assert tracker.link(delivery, url, "email").startswith("https://t.brand.cn/t/c/")
    assert tracker.link(delivery, "tel:10086", "sms") == "tel:10086"
    everywhere = link_tracker(workspace, DeliveryConfig.model_validate({"tracking": {
        "base_url": "https://t.brand.cn", "short_url": "https://s.brand.cn", "short_links": "all"}}), "spring")
    assert everywhere.link(delivery, url, "email") == everywhere.link(delivery, url, "sms")
    assert everywhere.link(delivery, url, "app_push").startswith("https://s.brand.cn/s/")
    (workspace.definitions_dir / "delivery.yaml").write_text(
        "tracking: {base_url: 'https://t.brand.cn', short_links: email}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_delivery_config(workspace)
    assert raised.value.field == "tracking.short_links" and "'sms' or 'all'" in raised.value.message


def test_a_campaign_killed_mid_send_leaves_every_sent_link_clickable(portrayed_demo: Path, tmp_path: Path) -> None:
    """`jingzhun campaign run` is killed while the eighth SMS is at the gateway; every link
    the gateway got resolves, the resumed run sends the same links again, and clicks
    through the collector become `clicked` message events."""
    demo = copy_workspace(portrayed_demo, tmp_path / "ws")
    gateway, port = WebhookReceiver(delay=0.02, hold_at=8), free_port()
    later = datetime.now(ZoneInfo("Asia/Shanghai")) + timedelta(hours=3)  # quiet hours well away from now
    policy = {"quiet_hours": {"start": later.strftime("%H:00"), "end": (later + timedelta(hours=1)).strftime("%H:00")}}
    write_definitions(demo, smtp_port=None, webhook_url=gateway.url, tracking_url=f"http://127.0.0.1:{port}",
                      policy=yaml.safe_dump(policy))
    try:
        with open_engine(demo) as engine:
            migrate(engine)
            seed_policy_rows(engine)
            save_campaign(engine, parse_campaign(campaign("flash_sms", ["sms"], holdout=0.1)))
        kill_when_held([JINGZHUN, "campaign", "run", "flash_sms", "--workspace", str(demo.root)], gateway)
        wait_for(lambda: len(gateway.posts) == 8, timeout=30)
        before_resume = {post["key"]: post["body"] for post in gateway.posts}
        index = LinkMap(map_folder(demo))  # a fresh reader, as a restarted collector would be
        index.refresh()
        for body in before_resume.values():
            link, code = SHORT.search(body).groups()
            assert len(link) == len(f"http://127.0.0.1:{port}/s/") + 10
            assert index.find(code).url == TARGET
        with open_engine(demo) as engine:
            resumed = run_campaign(demo, engine, "flash_sms")
    finally:
        gateway.close()
    assert resumed.sent > 0 and len(gateway.delivered) > 8
    for post in gateway.posts:  # the resent message links where the first copy did
        assert post["body"] == before_resume.get(post["key"], post["body"])
    clicked = {key: SHORT.search(message["body"]).group(1) for key, message in list(gateway.delivered.items())[:10]}
    _click_through_the_collector(demo, clicked)


def _click_through_the_collector(demo: Workspace, clicked: dict[str, str]) -> None:
    """Click through a real collector; then record the clicks as `jingzhun serve`'s after-load
    hook does (the same query, `rebuild_message_events`, without waiting for the hook's import)."""
    with serving(demo) as url:
        for link in clicked.values():
            answer = httpx.get(url + link[link.index("/s/"):], follow_redirects=False, timeout=10)
            assert answer.status_code == 302 and answer.headers["location"] == TARGET
        code = next(iter(clicked.values()))[-10:]
        forged = f"{url}/s/{code[:-1]}{'A' if code[-1] != 'A' else 'B'}"
        refused = httpx.get(forged, follow_redirects=False, timeout=10)
        assert refused.status_code == 404 and "链接无效" in refused.text
    with open_engine(demo) as engine:  # leaving `serving` drained the log into `events`
        assert rebuild_message_events(engine) == len(clicked)
        recorded = engine.query("SELECT delivery_id FROM message_events WHERE event_type = 'clicked'").to_pylist()
        funnel = campaign_results(engine, "flash_sms").funnel
    assert sorted(row["delivery_id"] for row in recorded) == sorted(clicked)
    assert funnel["clicked"].sum() == len(clicked)
