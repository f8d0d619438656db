"""Attribution: the five rules against credit worked out by hand on small constructed paths, the
engine's Markov transition counts against hand counts, and the removal effects against a textbook
example and against a brute-force simulation of the same chain."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from jingzhun.engine import DuckDBEngine, Engine
from jingzhun.measure import (
    compute_attribution,
    conversion_probability,
    removal_effects,
    transition_matrix,
)
from jingzhun.measure.attribution import CONVERSION, NULL, START
from jingzhun.measure.settings import AttributionSettings
from jingzhun.schema import migrate

DAY0 = datetime(2026, 5, 20, 12, tzinfo=UTC)
XHS = {"source": "xiaohongshu", "medium": "social", "name": "seeding"}
BAIDU = {"source": "baidu", "medium": "cpc", "name": "brand"}
# person: [(days before DAY0, touch)], orders: [(days before DAY0, order id, amount)]
# touch = ("message", channel, campaign) | ("ad", utm campaign) | ("organic", event channel)
WORLD = {
    "A": ([(5, ("message", "sms", "c1")), (3, ("ad", XHS)), (1, ("organic", "app"))], [(0, "oA", 100.0)]),
    "B": ([(2, ("message", "email", "c2"))], [(0, "oB", 50.0)]),
    "C": ([(40, ("message", "sms", "c1")), (10, ("ad", BAIDU))], [(0, "oC", 30.0)]),  # sms before the lookback
    "D": ([(2, ("organic", "web")), (1, ("message", "sms", "c3"))], [(0, "oD", 20.0)]),
    "E": ([], [(0, "oE", 10.0)]),  # no touch: (direct)
    "F": ([(3, ("message", "sms", "c1"))], []),  # no order: a non-converting path
    "G": ([(10, ("message", "sms", "c1")), (3, ("message", "email", "c2"))], [(5, "oG1", 40.0), (0, "oG2", 60.0)]),
}
# The credit each order's path gives its touches, by rule, worked out by hand (half-life 7 days).
DECAY_A = np.array([2 ** (-5 / 7), 2 ** (-3 / 7), 2 ** (-1 / 7)])
DECAY_A = DECAY_A / DECAY_A.sum()
DECAY_D = np.array([2 ** (-2 / 7), 2 ** (-1 / 7)])
DECAY_D = DECAY_D / DECAY_D.sum()
PATHS = {  # order: ([touch channels in order], amount, {rule: weights})
    "oA": (["message:sms", "ad:xiaohongshu", "organic:app"], 100.0,
           {"first": [1, 0, 0], "last": [0, 0, 1], "linear": [1 / 3] * 3, "position": [0.4, 0.2, 0.4],
            "time_decay": list(DECAY_A)}),
    "oB": (["message:email"], 50.0, {rule: [1.0] for rule in ("first", "last", "linear", "position", "time_decay")}),
    "oC": (["ad:baidu_sem"], 30.0, {rule: [1.0] for rule in ("first", "last", "linear", "position", "time_decay")}),
    "oD": (["organic:web", "message:sms"], 20.0,
           {"first": [1, 0], "last": [0, 1], "linear": [0.5, 0.5], "position": [0.5, 0.5],
            "time_decay": list(DECAY_D)}),
    "oG1": (["message:sms"], 40.0, {rule: [1.0] for rule in ("first", "last", "linear", "position", "time_decay")}),
    "oG2": (["message:email"], 60.0, {rule: [1.0] for rule in ("first", "last", "linear", "position", "time_decay")}),
}
HAND_TRANSITIONS = {
    (START, "message:sms"): 4, (START, "message:email"): 2, (START, "ad:baidu_sem"): 1, (START, "organic:web"): 1,
    ("message:sms", "ad:xiaohongshu"): 1, ("ad:xiaohongshu", "organic:app"): 1, ("organic:app", CONVERSION): 1,
    ("message:email", CONVERSION): 2, ("ad:baidu_sem", CONVERSION): 1, ("message:sms", NULL): 2,
    ("organic:web", "message:sms"): 1, ("message:sms", CONVERSION): 2,
}


def _world(engine: Engine) -> None:
    """The persons above as rows of the real tables: deliveries, events, orders, record_persons."""
    migrate(engine)
    deliveries, events, orders, owners = [], [], [], []
    for person, (touches, bought) in WORLD.items():
        for n, (days, touch) in enumerate(touches):
            at = DAY0 - timedelta(days=days)
            if touch[0] == "message":
                deliveries.append({"delivery_id": f"d{person}{n}", "campaign_id": touch[2], "person_id": person,
                                   "channel": touch[1], "status": "sent", "sent_at": at, "variant": "treatment"})
                continue
            context = {"campaign": touch[1]} if touch[0] == "ad" else {}
            channel = touch[1] if touch[0] == "organic" else "web"
            events.append({"message_id": f"e{person}{n}", "type": "page", "timestamp": at, "received_at": at,
                           "channel": channel, "context": json.dumps(context), "source_id": "web-shop"})
            owners.append({"record_kind": "event", "record_id": f"e{person}{n}", "person_id": person})
        for days, order_id, amount in bought:
            orders.append({"order_id": order_id, "placed_at": DAY0 - timedelta(days=days), "currency": "CNY",
                           "net_amount": amount, "status": "completed"})
            owners.append({"record_kind": "order", "record_id": order_id, "person_id": person})
    for name, rows in (("deliveries", deliveries), ("events", events), ("orders", orders), ("record_persons", owners)):
        engine.write_table(name, pa.Table.from_pylist(rows), mode="append")


@pytest.fixture(scope="module")
def attributed(tmp_path_factory: pytest.TempPathFactory):
    with DuckDBEngine(Path(tmp_path_factory.mktemp("attribution")) / "warehouse.duckdb") as engine:
        _world(engine)
        yield compute_attribution(None, engine, AttributionSettings())


@pytest.mark.parametrize("rule", ["first", "last", "linear", "time_decay", "position"])
def test_rules_match_hand_credit(attributed, rule: str) -> None:
    expected: dict[str, list[float]] = {}
    for channels, amount, weights in PATHS.values():
        for channel, weight in zip(channels, weights[rule], strict=True):
            totals = expected.setdefault(channel, [0.0, 0.0])
            totals[0] += weight
            totals[1] += weight * amount
    expected["(direct)"] = [1.0, 10.0]  # order oE had no touch
    got = attributed.credits[attributed.credits.model == rule].groupby("touch_channel")[["conversions", "value"]].sum()
    got = got[got.conversions.abs() > 1e-12]
    assert sorted(got.index) == sorted(channel for channel, (n, _) in expected.items() if n > 1e-12)
    for channel, (conversions, value) in expected.items():
        if conversions > 1e-12:
            assert got.loc[channel, "conversions"] == pytest.approx(conversions, abs=1e-9), (rule, channel)
            assert got.loc[channel, "value"] == pytest.approx(value, abs=1e-9), (rule, channel)


def test_credit_per_campaign_and_conservation(attributed) -> None:
    linear = attributed.credits[attributed.credits.model == "linear"].set_index(["touch_channel", "campaign_id"])
    # sms credit splits by campaign: c1 from oA (1/3) and oG1 (1); c3 from oD (1/2)
    assert linear.loc[("message:sms", "c1"), "conversions"] == pytest.approx(4 / 3)
    assert linear.loc[("message:sms", "c3"), "conversions"] == pytest.approx(0.5)
    for model, part in attributed.credits.groupby("model"):  # every model shares out exactly the orders
        touched = part[part.touch_channel != "(direct)"]
        assert touched.conversions.sum() == pytest.approx(6.0), model
        assert touched.value.sum() == pytest.approx(300.0), model


def test_markov_transitions_are_counted_by_the_engine(attributed) -> None:
    counted = {(r.from_state, r.to_state): int(r.transitions) for r in attributed.transitions.itertuples()}
    assert counted == HAND_TRANSITIONS


def test_removal_effects_of_the_textbook_example() -> None:
    """C1→C2→C3→conversion, C1→null, C2→C3→null: P(conversion) = 1/3; removing C1 halves it,
    removing C2 or C3 makes it 0 — effects 0.5, 1, 1 and shares 0.2, 0.4, 0.4."""
    counts = pd.DataFrame([
        (START, "C1", 2), (START, "C2", 1), ("C1", "C2", 1), ("C1", NULL, 1), ("C2", "C3", 2),
        ("C3", CONVERSION, 1), ("C3", NULL, 1)], columns=["from_state", "to_state", "transitions"])
    matrix, states = transition_matrix(counts)
    assert conversion_probability(matrix, states) == pytest.approx(1 / 3)
    effects = removal_effects(counts).set_index("touch_channel")
    assert effects.removal_effect.to_dict() == pytest.approx({"C1": 0.5, "C2": 1.0, "C3": 1.0})
    assert effects.share.to_dict() == pytest.approx({"C1": 0.2, "C2": 0.4, "C3": 0.4})


def _simulate(matrix: np.ndarray, states: list[str], removed: str | None, walks: int, rng) -> float:
    """The share of random walks from (start) that reach (conversion): the chain run, not solved."""
    cumulative = matrix.cumsum(axis=1)
    start, conversion, null = states.index(START), states.index(CONVERSION), states.index(NULL)
    at = np.full(walks, start)
    for _ in range(200):  # steps; walks stop at an absorbing state
        moving = (at != conversion) & (at != null)
        if not moving.any():
            break
        draws = rng.random(moving.sum())
        at[moving] = (cumulative[at[moving]] < draws[:, None]).sum(axis=1)
        if removed is not None:
            at[at == states.index(removed)] = null
    return float((at == conversion).mean())


def test_removal_effects_match_a_simulation_of_the_chain(attributed) -> None:
    """The engine's transitions of the constructed world, plus loops: the absorbing-chain solution
    against 200,000 simulated walks per removal (3 standard errors)."""
    counts = pd.concat([attributed.transitions, pd.DataFrame(
        [("message:sms", "message:sms", 1), ("organic:app", "message:email", 2), ("message:email", "organic:web", 1)],
        columns=["from_state", "to_state", "transitions"])])
    matrix, states = transition_matrix(counts.groupby(["from_state", "to_state"], as_index=False).sum())
    rng = np.random.default_rng(3)
    walks = 200_000
    base = _simulate(matrix, states, None, walks, rng)
    assert conversion_probability(matrix, states) == pytest.approx(base, abs=3 * np.sqrt(base * (1 - base) / walks))
    for channel in ("message:sms", "message:email", "organic:web"):
        simulated = _simulate(matrix, states, channel, walks, rng)
        solved = conversion_probability(matrix, states, channel)
        assert solved == pytest.approx(simulated, abs=3 * np.sqrt(simulated * (1 - simulated) / walks) + 1e-4)


def test_markov_shares_out_the_touched_orders(attributed) -> None:
    markov = attributed.credits[attributed.credits.model == "markov"]
    assert markov.conversions.sum() == pytest.approx(6.0) and markov.value.sum() == pytest.approx(300.0)
    assert set(markov.touch_channel) == {"message:sms", "message:email", "ad:xiaohongshu", "ad:baidu_sem",
                                         "organic:app", "organic:web"}
