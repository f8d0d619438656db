"""The loop back: per-person best send hours recomputed independently from the imported history
(and the channels' planted best hours found), channel responses against a pandas count, and the
next run's tags reading them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from jingzhun.core import Workspace
from jingzhun.engine import open_engine
from jingzhun.measure import load_measure_settings
from jingzhun.profiles.tags import apply_tags

CHANNELS = {"sms": "sms", "wechat_template": "wechat", "app_push": "app_push", "email": "email"}


def _sends(engine) -> pd.DataFrame:
    frame = engine.query("SELECT person_id, channel, arm, anchor_at, delivered, opened_at, clicked_at, unsubscribed, "
                         "converted_order_id FROM history_deliveries").to_pandas()
    frame["hour"] = frame.anchor_at.dt.tz_convert("Asia/Shanghai").dt.hour
    return frame[(frame.arm == "treatment") & frame.delivered.eq(True) & frame.person_id.notna()]


def test_best_send_hours(portrayed: Workspace, truth: dict) -> None:
    alpha = load_measure_settings(portrayed).responses.smoothing
    with open_engine(portrayed, read_only=True) as engine:
        sends = _sends(engine)
        stored = engine.read_table("send_time_preferences").to_pandas()
    sends["click"] = sends.clicked_at.notna().astype(float)
    channel_rate = sends.groupby(["channel", "hour"]).click.mean()
    channel_best = {c: int(channel_rate[c].idxmax()) for c in channel_rate.index.get_level_values(0).unique()}
    for name, params in truth["campaigns"]["channels"].items():  # the planted best hours
        assert channel_best[CHANNELS[name]] == params["best_hour"], name
    cells = sends.groupby(["person_id", "channel", "hour"]).click.agg(["size", "sum"])
    expected = {}
    for (person, channel), part in cells.groupby(level=[0, 1]):  # every person-channel, independently
        own = part.droplevel([0, 1])
        if own["sum"].sum() == 0:
            expected[(person, channel)] = channel_best[channel]
            continue
        prior = channel_rate[channel]
        smoothed = (own["sum"].reindex(prior.index, fill_value=0) + alpha * prior) / (
            own["size"].reindex(prior.index, fill_value=0) + alpha)
        best = smoothed.max()
        expected[(person, channel)] = int(min(h for h, v in smoothed.items() if np.isclose(v, best, rtol=1e-12)))
    got = {(r.person_id, r.channel): r.best_hour_local for r in stored.itertuples()}
    assert got == expected
    evidence = [json.loads(text) for text in stored.evidence]
    assert {e["source"] for e in evidence} == {"person", "channel"}
    assert all(e["channel_best_hour"] == channel_best[c] for e, c in zip(evidence, stored.channel, strict=True))


def test_channel_responses_and_the_tags_they_feed(demo: Workspace) -> None:
    with open_engine(demo) as engine:
        sends = _sends(engine)
        as_of = engine.query("SELECT MAX(as_of) AS a FROM channel_responses").column("a")[0].as_py()
        stored = engine.read_table("channel_responses").to_pandas().set_index(["person_id", "channel"]).sort_index()
        apply_tags(demo, engine, tag_ids=["sms_unresponsive", "message_responder", "email_unresponsive"])
        holders = engine.query("SELECT tag_id, person_id, value FROM tags WHERE valid_to IS NULL AND tag_id IN "
                               "('sms_unresponsive', 'message_responder', 'email_unresponsive')").to_pandas()
        people = set(engine.query("SELECT person_id FROM person_traits").column(0).to_pylist())
    recent = sends[(sends.anchor_at > pd.Timestamp(as_of) - pd.Timedelta(days=180))
                   & (sends.anchor_at <= pd.Timestamp(as_of))]
    counted = recent.groupby(["person_id", "channel"]).agg(
        delivered=("hour", "size"), opened=("opened_at", "count"), clicked=("clicked_at", "count"),
        converted=("converted_order_id", "count"), unsubscribed=("unsubscribed", "sum")).sort_index()
    assert (stored[counted.columns].astype(int) == counted.astype(int)).all().all()
    assert list(stored.index) == list(counted.index)
    sms = counted.xs("sms", level="channel")
    unresponsive = set(sms[(sms.delivered >= 5) & (sms.clicked == 0) & (sms.converted == 0)].index) & people
    assert unresponsive and set(holders[holders.tag_id == "sms_unresponsive"].person_id) == unresponsive
    total = counted.groupby(level=0)[["clicked", "converted"]].sum()
    responders = set(total[(total.clicked >= 2) | (total.converted >= 1)].index) & people
    assert set(holders[holders.tag_id == "message_responder"].person_id) == responders
