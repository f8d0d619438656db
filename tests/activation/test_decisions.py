"""The decision API on the 1,500-person demo: answers from memory equal the stored lists, consent,
caps, quiet hours, unknown visitors, snapshot swaps, coupons. Through a real server: tests/web/test_decide.py."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.compute as pc
import pytest

from jingzhun.activation import (
    Decider,
    DecisionError,
    DecisionSettings,
    append_decisions,
    build_snapshot,
    in_memory,
    issue_coupons,
    load_snapshot,
    refresh_snapshot,
)
from jingzhun.activation.decisions_ids import IdNormalizer
from jingzhun.activation.decisions_settings import DEFAULT_PLACEMENTS
from jingzhun.activation.decisions_snapshot import POPULAR_SQL, SnapshotMeta
from jingzhun.core import Workspace
from jingzhun.engine import Engine, open_engine
from jingzhun.identity import normalize_identifier
from jingzhun.identity.identifiers import NormalizeSettings
from jingzhun.schema import migrate
from tests.conftest import copy_workspace

KINDS = ("guess_you_like", "popular", "new_arrival")  # home_banner's lists, in order
NOON = datetime(2026, 11, 2, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai: outside quiet hours
COUPON_CAMPAIGN = "decision_test"
DECISIONS_YAML = f"""
placements:
  coupon_banner:
    kinds: [guess_you_like]
    offers: 1
    coupon_campaign: {COUPON_CAMPAIGN}
    copy:
      zh: {{title: "专属福利", body: "{{{{ coupon.name }}}}，券码 {{{{ coupon.code }}}}：{{{{ product.name }}}}"}}
      en: {{title: "Your perk", body: "{{{{ coupon.name }}}}, code {{{{ coupon.code }}}}: {{{{ product.name }}}}"}}
"""


class World:
    """A writable copy of the demo with consents, a suppression and coupons, and its first snapshot."""

    def __init__(self, workspace: Workspace, engine: Engine) -> None:
        self.workspace, self.engine = workspace, engine
        people = engine.query("""
            SELECT p.person_id, MIN(ph.id_value) AS phone, MIN(m.id_value) AS member_id, MIN(a.id_value) AS anon
            FROM persons AS p
            JOIN identities AS ph ON ph.person_id = p.person_id AND ph.id_type = 'phone'
            JOIN identities AS m ON m.person_id = p.person_id AND m.id_type = 'member_id'
            JOIN identities AS a ON a.person_id = p.person_id AND a.id_type = 'anonymous_id'
            JOIN identities AS d ON d.person_id = p.person_id AND d.id_type = 'device_id'
            WHERE p.status = 'active' AND p.person_id IN (SELECT person_id FROM recommendations)
            GROUP BY p.person_id ORDER BY p.person_id LIMIT 40""").to_pylist()
        assert len(people) >= 30, "the demo should have persons with a phone, a member id and a cookie"
        self.people = people
        self.consenting = [row["person_id"] for row in people[:10]]
        self.withdrawn = people[10]["person_id"]
        self.suppressed = people[11]
        self.coupon_holders = [row["person_id"] for row in people[12:16]]

    def expected(self, person_id: str) -> list[str]:
        return expected_offers(self.engine, person_id)


def expected_offers(engine: Engine, person_id: str, count: int = 3) -> list[str]:
    """home_banner's offers from the stored lists: kinds in order, ranks in order, each product once."""
    rows = engine.query(f"""
        SELECT product_id FROM recommendations WHERE person_id = '{person_id}' AND kind IN {KINDS}
        ORDER BY CASE kind WHEN 'guess_you_like' THEN 0 WHEN 'popular' THEN 1 ELSE 2 END, rank""")
    return list(dict.fromkeys(rows.column("product_id").to_pylist()))[:count]


@pytest.fixture(scope="module")
def world(portrayed_demo: Path, tmp_path_factory: pytest.TempPathFactory):
    workspace = copy_workspace(portrayed_demo, tmp_path_factory.mktemp("decisions") / "ws")
    (workspace.definitions_dir / "decisions.yaml").write_text(DECISIONS_YAML, encoding="utf-8")
    engine = open_engine(workspace)
    migrate(engine)
    found = World(workspace, engine)
    granted = ", ".join(f"('{p}', 'marketing', 'app_push', 'granted', TIMESTAMPTZ '2026-01-01 00:00:00+00')"
                        for p in [*found.consenting, found.withdrawn, found.suppressed["person_id"]])
    engine.execute(f"INSERT INTO consents (person_id, purpose, channel, status, recorded_at) VALUES {granted}, "
                   f"('{found.withdrawn}', 'marketing', NULL, 'withdrawn', TIMESTAMPTZ '2026-06-01 00:00:00+00')")
    engine.execute("INSERT INTO suppressions (id_type, id_value, channel, reason, created_at) VALUES "
                   f"('phone', '{found.suppressed['phone']}', NULL, 'complaint', TIMESTAMPTZ '2026-01-01 00:00:00+00')")
    issue_coupons(engine, COUPON_CAMPAIGN, found.coupon_holders, {"discount": "amount", "value": 30, "min_spend": 199},
                  workspace=workspace, issued_at=NOON - timedelta(hours=1))
    yield found
    engine.close()


@pytest.fixture(scope="module")
def decider(world: World) -> Decider:
    tables, meta = build_snapshot(world.engine, world.workspace, now=NOON)
    chosen = Decider(world.workspace, clock=lambda: NOON)
    chosen.install(in_memory(world.workspace, tables, meta))
    return chosen


def national(phone: str) -> str:
    """+8613812345678 as a person types it: 138 1234 5678."""
    digits = phone.removeprefix("+86")
    return f"{digits[:3]} {digits[3:7]} {digits[7:]}"


def test_decisions_equal_the_precomputed_recommendations(world: World, decider: Decider) -> None:
    for row in world.people[16:40]:
        expected = world.expected(row["person_id"])
        for value, kind in ((national(row["phone"]), "phone"), (row["member_id"], "member_id"),
                            (row["anon"], "anonymous_id"), (row["member_id"], "user_id"), (row["person_id"], None),
                            (f"phone:{row['phone']}", None)):
            decision = decider.decide("home_banner", value, kind)
            assert decision.person_id == row["person_id"], (kind, value)
            assert [offer["product_id"] for offer in decision.offers] == expected, (kind, value)
            assert decision.outcome == "personal"
            assert decision.copy["zh"]["title"] == "猜你喜欢" and decision.offers[0]["name"] in decision.copy["zh"]["body"]
            assert decision.copy["en"]["title"] == "Picked for you"


def test_python_normalization_matches_the_identity_stage(world: World) -> None:
    normalizer = IdNormalizer.for_workspace(world.workspace)
    cases = [("phone", raw) for raw in (
        "13812345678", "+86 138-1234-5678", "008613812345678", "8613812345678", " 138 1234 5678 ", "(010) 8888 6666",
        "010-88886666", "+86 10 8888 6666", "0755-2345678", "+1 415 555 0100", "0044 20 7946 0958", "12345",
        "1381234567", "abc", "+8613812345678", "138（1234）5678")]
    cases += [("email", raw) for raw in (" Foo.Bar@Example.COM ", "bad@", "a@b.c", "x y@z.cn")]
    cases += [("member_id", " JZ00123 "), ("member_id", "   "), ("anonymous_id", "anon-1"),
              ("phone_md5", "0123456789ABCDEF0123456789abcdef"), ("phone_md5", "xyz"), ("mobile", "13912345678")]
    for kind, raw in cases:
        sql = normalize_identifier(world.engine, kind, raw, world.workspace)
        mine = normalizer.stored(normalizer.id_type(kind) or kind, raw)
        assert mine == ((sql.id_type, sql.id_value) if sql else None), (kind, raw)
    masked = normalize_identifier(world.engine, "phone", "187****8991", world.workspace)
    assert masked.id_type == "phone_masked" and normalizer.stored("phone", "187****8991") is None


def test_salted_identifiers_hash_like_the_importers(world: World) -> None:
    salt = "00112233445566778899aabbccddeeff"
    normalizer = IdNormalizer(IdNormalizer.for_workspace(world.workspace).registry, NormalizeSettings("86", salt))
    expected = world.engine.query(f"SELECT SHA256(UNHEX('{salt}') || ENCODE('+8613812345678')) AS h").column(0)[0]
    assert normalizer.stored("phone", "138-1234-5678") == ("phone", expected.as_py())
    assert normalizer.stored("phone", expected.as_py().upper()) == ("phone", expected.as_py())  # already salted


def test_no_marketing_message_without_consent(world: World, decider: Decider) -> None:
    allowed = decider.decide("push", world.consenting[0], "person_id")
    assert allowed.outcome == "personal" and allowed.offers and allowed.copy["zh"]["title"] == "猜你喜欢"
    for person, reason in ((world.people[20]["person_id"], "no_consent"), (world.withdrawn, "no_consent"),
                           (world.suppressed["person_id"], "suppressed")):
        refused = decider.decide("push", person, "person_id")
        assert (refused.outcome, refused.offers, refused.copy) == (reason, [], None), person
    assert decider.decide("push", "a-cookie-nobody-has").outcome == "no_consent"
    # the home banner is not a message: the same person without consent sees offers there
    assert decider.decide("home_banner", world.people[20]["person_id"], "person_id").offers


def test_quiet_hours_hold_marketing_messages(world: World, decider: Decider) -> None:
    night = Decider(world.workspace, clock=lambda: datetime(2026, 11, 2, 15, 30, tzinfo=UTC))  # 23:30 local
    night.install(decider.snapshot)
    held = night.decide("push", world.consenting[1], "person_id")
    assert held.outcome == "quiet_hours" and not held.offers
    assert held.retry_after == "2026-11-03T01:00:00+00:00"  # 09:00 in Shanghai


def test_impression_cap_counts_in_memory_and_survives_a_restart(world: World, decider: Decider) -> None:
    person = world.consenting[2]
    clock = {"now": NOON}
    capped = Decider(world.workspace, clock=lambda: clock["now"])
    capped.install(decider.snapshot)
    first = capped.decide("push", person, "person_id")
    second = capped.decide("push", person, "person_id")
    assert (first.outcome, first.impressions_today) == ("personal", 1)
    assert (second.outcome, second.offers) == ("impression_cap", [])
    append_decisions(world.engine, capped.log.drain())
    tables, meta = build_snapshot(world.engine, world.workspace, now=NOON)  # a restart: counts come from the log
    restarted = Decider(world.workspace, clock=lambda: clock["now"])
    restarted.install(in_memory(world.workspace, tables, meta))
    assert restarted.decide("push", person, "person_id").outcome == "impression_cap"
    clock["now"] = NOON + timedelta(days=1)  # a new local day
    assert restarted.decide("push", person, "person_id").outcome == "personal"
    logged = world.engine.query(f"SELECT outcome FROM decisions WHERE person_id = '{person}' AND placement = 'push' "
                                "ORDER BY decided_at, outcome").column("outcome").to_pylist()
    assert logged == ["impression_cap", "personal"]


def test_unknown_visitors_get_popular_products(world: World, decider: Decider) -> None:
    popular = world.engine.query(POPULAR_SQL.replace(":n", "3")).column("product_id").to_pylist()
    for value, kind in (("00000000-unknown-cookie", "anonymous_id"), ("13900000000", "phone"), (None, None)):
        decision = decider.decide("home_banner", value, kind)
        assert decision.person_id is None and decision.outcome == "fallback"
        assert [offer["product_id"] for offer in decision.offers] == popular
        assert {offer["kind"] for offer in decision.offers} == {"popular"}
        assert decision.copy["zh"]["body"].startswith("亲爱的顾客")
        assert decision.impressions_today == 0


def test_product_page_and_cart_offer_related_products(world: World, decider: Decider) -> None:
    related = world.engine.query("SELECT product_id, related_product_id FROM related_products WHERE rank <= 4 "
                                 "ORDER BY product_id, rank").to_pandas()
    product = related["product_id"].iloc[0]
    page = decider.decide("product_page", None, product_id=product)
    assert [o["product_id"] for o in page.offers] == related[related.product_id == product].related_product_id.tolist()
    cart = decider.decide("cart", world.people[25]["person_id"], "person_id", cart=[product])
    assert product not in [o["product_id"] for o in cart.offers] and len(cart.offers) == 3
    with pytest.raises(DecisionError, match="unknown product"):
        decider.decide("product_page", None, product_id="NO-SUCH-PRODUCT")
    with pytest.raises(DecisionError) as missing:
        decider.decide("product_page", None)
    assert missing.value.field == "product_id"


def test_coupon_placement_hands_out_the_persons_code(world: World, decider: Decider) -> None:
    codes = dict(world.engine.query(f"SELECT person_id, code FROM coupons WHERE campaign_id = '{COUPON_CAMPAIGN}'")
                 .to_pandas().itertuples(index=False, name=None))
    holder = decider.decide("coupon_banner", world.coupon_holders[0], "person_id")
    assert holder.coupon["code"] == codes[world.coupon_holders[0]]
    assert codes[world.coupon_holders[0]] in holder.copy["zh"]["body"] and "满199减30" in holder.copy["zh"]["body"]
    without = decider.decide("coupon_banner", world.people[30]["person_id"], "person_id")
    assert (without.outcome, without.offers, without.coupon) == ("no_coupon", [], None)


def test_bad_requests_name_the_field(decider: Decider) -> None:
    with pytest.raises(DecisionError) as unknown:
        decider.decide("front_page", "x")
    assert unknown.value.field == "placement" and "home_banner" in unknown.value.fix
    with pytest.raises(DecisionError) as kind:
        decider.decide("home_banner", "x", "passport")
    assert kind.value.field == "identifier.type"
    with pytest.raises(DecisionError) as value:
        decider.decide("home_banner", "12", "phone")
    assert value.value.field == "identifier.value" and "手机号" in value.value.message_zh + value.value.fix_zh


def test_snapshots_swap_whole_while_decisions_run(world: World, decider: Decider) -> None:
    person = world.people[18]["person_id"]
    first = decider.snapshot
    tables, _ = build_snapshot(world.engine, world.workspace, now=NOON)
    tables["offers"] = tables["offers"].filter(pc.not_equal(tables["offers"]["person_id"], person))  # drop one person
    second = in_memory(world.workspace, tables, SnapshotMeta("second", NOON.isoformat(), "2026-11-02", None, {}))
    expected = {first.meta.version: world.expected(person), "second": [
        row[0] for row in first.popular[:3]]}
    uncapped = {"home_banner": DEFAULT_PLACEMENTS["home_banner"].model_copy(update={"daily_cap": None})}
    swapping = Decider(world.workspace, DecisionSettings(placements=uncapped), clock=lambda: NOON)
    swapping.install(first)
    seen: list[tuple[str, list[str]]] = []
    stop = threading.Event()

    def ask() -> None:
        while not stop.is_set():
            answer = swapping.decide("home_banner", person, "person_id")
            seen.append((answer.snapshot_version, [o["product_id"] for o in answer.offers]))

    asker = threading.Thread(target=ask)
    asker.start()
    for index in range(200):
        swapping.install(second if index % 2 == 0 else first)
        time.sleep(0.001)
    stop.set()
    asker.join()
    assert {version for version, _ in seen} == {first.meta.version, "second"}
    wrong = [(v, o) for v, o in seen if o != expected[v]]
    assert not wrong, (wrong[:3], expected)


def test_refresh_writes_the_current_snapshot_on_disk(world: World) -> None:
    meta = refresh_snapshot(world.engine, world.workspace, now=NOON)
    loaded = load_snapshot(world.workspace)
    assert loaded is not None and loaded.meta.version == meta.version and loaded.meta.rows == meta.rows
    person = world.people[19]["person_id"]
    fresh = Decider(world.workspace, clock=lambda: NOON)
    fresh.install(loaded)
    assert [o["product_id"] for o in fresh.decide("home_banner", person, "person_id").offers] == world.expected(person)
    assert meta.sql["offers"].startswith("SELECT") and meta.rows["blocked_app_push"] >= 1
