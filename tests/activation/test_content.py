"""Message templates on the demo workspace: every starter renders on every channel it
declares, in zh and en, within the channel's limits; errors name the template, the file
line and the variable; the sandbox holds; one engine query feeds a whole batch."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from jingzhun.activation import (
    ChannelLimitError,
    ContentError,
    count_sms,
    install_starter_templates,
    list_templates,
    load_template,
    parse_template,
    preview_message,
    render_messages,
)
from jingzhun.activation.channels import display_width, wechat_key_type
from jingzhun.activation.content import context_query
from jingzhun.activation.content_context import context_sql, person_fields, split_surname
from jingzhun.activation.person_batch import person_batch
from jingzhun.activation.short_links import short_code
from jingzhun.core import Workspace
from jingzhun.engine import Engine, open_engine, render
from jingzhun.engine.dialects import parse_sql
from jingzhun.engine.parity import compare_tables
from tests.conftest import copy_workspace

NOW = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)
STARTERS = ("personal_picks", "exclusive_benefit", "guess_you_like", "trending", "new_arrivals", "flash_sale",
            "exclusive_discount")
SAMPLE_SQL = """
SELECT person_id FROM (
  SELECT person_id, ROW_NUMBER() OVER (PARTITION BY name IS NULL, gender ORDER BY person_id) AS n
  FROM person_traits) AS s
WHERE n <= 3 ORDER BY person_id"""


@pytest.fixture(scope="module")
def demo(portrayed_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """A private copy of the portrayed demo with the starter templates and the demo brand."""
    workspace = copy_workspace(portrayed_demo, tmp_path_factory.mktemp("content") / "ws")
    install_starter_templates(workspace.root, brand_zh="精准", brand_en="Jingzhun",
                              site_url="https://www.jingzhun-demo.cn", overwrite=True)
    return workspace


@pytest.fixture(scope="module")
def engine(demo: Workspace) -> Engine:
    with open_engine(demo) as opened:
        yield opened


@pytest.fixture(scope="module")
def sample(engine: Engine) -> list[str]:
    """Three persons of each kind: named women and men, unnamed with and without a gender."""
    return [row["person_id"] for row in engine.query(SAMPLE_SQL).to_pylist()]


def tracker(person_id: str, url: str) -> str:
    """A tracked link as long as the campaign's tracker makes them (a signed token: ~115 characters)."""
    token = hashlib.sha512((person_id + url).encode()).hexdigest()[:84]
    return f"https://t.jingzhun-demo.cn/t/c/{token}"


def short_tracker(person_id: str, url: str) -> str:
    """A short link as the campaign's tracker makes them for SMS (activation/short_links.py)."""
    return f"https://t.jingzhun-demo.cn/s/{short_code(b'k' * 32, person_id, url)}"


def test_the_starter_library_has_the_seven_kinds_in_both_languages(demo: Workspace) -> None:
    templates = {template.id: template for template in list_templates(demo)}
    assert set(STARTERS) <= set(templates)
    assert {templates[t].kind for t in STARTERS} == {
        "personalized_recommendation", "exclusive_benefit", "guess_you_like", "trending", "new_arrival",
        "flash_sale", "exclusive_discount"}
    for template_id in STARTERS:
        for content in templates[template_id].channels.values():
            assert content.zh is not None and content.en is not None


@pytest.mark.parametrize("template_id", STARTERS)
def test_every_starter_renders_on_every_channel_within_limits(demo: Workspace, engine: Engine, sample: list[str],
                                                             template_id: str) -> None:
    template = load_template(demo, template_id)
    for channel in template.channels:
        for language in ("zh", "en"):
            links = short_tracker if channel == "sms" else tracker
            messages = render_messages(engine, demo, template, sample, channel=channel, language=language,
                                       campaign_id=f"test_{template_id}", links=links, now=NOW)
            assert [m.person_id for m in messages] == sorted(sample)
            for message in messages:
                _within_limits(template, message, channel, language)


def _within_limits(template, message, channel: str, language: str) -> None:
    assert message.template_id == template.id and message.language == language
    assert message.content_hash == hashlib.sha256(json.dumps(
        [channel, message.title, message.body, dict(sorted(message.fields.items())), message.text],
        ensure_ascii=False).encode()).hexdigest()
    assert ("{{" not in message.body) and ("{%" not in message.body)
    assert len(message.product_ids) == template.products.count
    assert (message.coupon_code is not None) == (template.coupon is not None)
    if channel == "sms":
        counted = count_sms(message.body)
        assert message.body.startswith("【精准】" if language == "zh" else "【Jingzhun】")
        assert "回T退订" in message.body or "Reply T to opt out" in message.body
        assert counted.parts == message.parts <= (template.channels["sms"].max_parts or 2)
        assert message.body.count("【") == 1
    elif channel == "app_push":
        assert display_width(message.title) <= 40 and display_width(message.body) <= 100
    elif channel == "email":
        assert message.title and len(message.title) <= 78 and message.text
        assert ("退订" in message.text) or ("unsubscribe" in message.text.lower())
    else:
        assert message.fields and all(wechat_key_type(key) for key in message.fields)
        assert message.coupon_code in message.fields.values()
    if message.link:
        assert message.link.startswith("https://t.jingzhun-demo.cn/s/" if channel == "sms"
                                       else "https://t.jingzhun-demo.cn/t/c/")


def test_greetings_use_surname_and_honorific(engine: Engine, demo: Workspace) -> None:
    assert person_fields({"person_id": "P", "name": "欧阳娜娜", "gender": "F"}, "zh")["greeting"] == "欧阳女士"
    assert person_fields({"person_id": "P", "name": "欧阳娜娜", "gender": "F"}, "en")["greeting"] == "Ms. Ouyang"
    assert person_fields({"person_id": "P", "name": "曾伟", "gender": "M"}, "en")["greeting"] == "Mr. Zeng"
    assert person_fields({"person_id": "P", "name": "林嘉", "gender": None}, "en")["greeting"] == "Lin Jia"
    assert person_fields({"person_id": "P", "name": None, "gender": "F", "member_level": "金卡"}, "zh")["greeting"] \
        == "亲爱的会员"
    assert person_fields({"person_id": "P", "city": "深圳市", "member_level": "金卡"}, "en")["city"] == "Shenzhen"
    assert split_surname("司马光") == "司马" and split_surname("王") == "王"
    named = engine.query("SELECT person_id, name FROM person_traits WHERE gender = 'F' AND name IS NOT NULL "
                         "ORDER BY person_id LIMIT 1").to_pylist()[0]
    [message] = render_messages(engine, demo, "trending", [named["person_id"]], channel="sms", language="zh", now=NOW)
    assert f"{split_surname(named['name'])}女士" in message.body


def test_a_preview_by_phone_is_the_message_the_campaign_sends(engine: Engine, demo: Workspace) -> None:
    phone = engine.query("SELECT i.id_value, i.person_id FROM identities AS i JOIN person_traits AS p "
                         "ON p.person_id = i.person_id WHERE i.id_type = 'phone' ORDER BY i.person_id LIMIT 1")
    value, person = phone.to_pylist()[0].values()
    preview = preview_message(engine, demo, "personal_picks", value, channel="sms", language="zh", now=NOW)
    [sent] = render_messages(engine, demo, "personal_picks", [person], channel="sms", language="zh", now=NOW)
    assert preview.person_id == person and preview.content_hash == sent.content_hash


def test_a_preview_shows_the_code_a_campaign_would_issue(engine: Engine, demo: Workspace) -> None:
    person = engine.query("SELECT person_id FROM person_traits ORDER BY person_id LIMIT 1").to_pylist()[0]["person_id"]
    before = engine.row_count("coupons")
    preview = preview_message(engine, demo, "flash_sale", person, channel="wechat", language="zh",
                              campaign_id="flash_preview", now=NOW)
    assert engine.row_count("coupons") == before and "预览券码：尚未发放" in preview.notes
    assert preview.fields["time3"] == "2026-11-02 23:59"  # today only, in Shanghai
    [sent] = render_messages(engine, demo, "flash_sale", [person], channel="wechat", language="zh",
                             campaign_id="flash_preview", now=NOW)
    assert sent.coupon_code == preview.coupon_code and sent.content_hash == preview.content_hash
    assert engine.row_count("coupons") == before + 1


def test_own_recommendations_come_first_with_their_reason(engine: Engine, demo: Workspace) -> None:
    person, product = "P_recommended", engine.query(
        "SELECT MAX(product_id) AS p FROM products").to_pylist()[0]["p"]
    engine.execute("INSERT INTO person_traits (person_id, name, gender) VALUES ('P_recommended', '周芳', 'F')")
    rows = pa.Table.from_pylist([{"person_id": person, "rank": 1, "product_id": product, "score": 0.9,
                                  "kind": "guess_you_like", "reason_zh": "买过它的人也买了", "reason_en": "bought together",
                                  "model_version": "test", "computed_at": NOW}])
    engine.write_table("recommendations", rows)
    [message] = render_messages(engine, demo, "guess_you_like", [person], channel="email", language="zh", now=NOW)
    assert message.product_ids[0] == product and "买过它的人也买了" in (message.text or "")
    assert len(set(message.product_ids)) == 3  # topped up with popular products, no repeats


def test_the_context_is_one_query_that_renders_for_spark(engine: Engine, demo: Workspace, sample: list[str]) -> None:
    for template_id in STARTERS:
        sql = context_query(engine, load_template(demo, template_id), sample, "c")
        assert render(parse_sql(sql), "spark").startswith("WITH wanted AS")


def _template(**channels) -> dict:
    return {"id": "broken", "name": {"zh": "坏", "en": "Broken"}, "products": {"source": "popular", "count": 1},
            "channels": channels}


def _write(demo: Workspace, text: str) -> None:
    folder = demo.definitions_dir / "templates"
    (folder / "broken.yaml").write_text(text, encoding="utf-8")


BROKEN = """id: broken
name: {zh: 坏模板, en: Broken}
channels:
  sms:
    zh:
      body: |
        第一行
        {{ %s }}
"""


@pytest.mark.parametrize(("expression", "variable", "message"), [
    ("person.nmae", "person.nmae", "unknown variable"),
    ("custmer", "custmer", "unknown variable"),
    ("product.prise", "product.prise", "unknown variable"),
    ("''.__class__.__mro__", "__class__", "sandbox"),
    ("person.name | attr('__class__')", "__class__", "sandbox"),
    ("product.name + ", None, "syntax error"),
])
def test_template_errors_name_the_template_line_and_variable(engine: Engine, demo: Workspace, sample: list[str],
                                                             expression: str, variable: str | None,
                                                             message: str) -> None:
    _write(demo, BROKEN % expression)
    try:
        with pytest.raises(ContentError) as failed:
            render_messages(engine, demo, "broken", sample[:2], channel="sms", language="zh", now=NOW)
    finally:
        (demo.definitions_dir / "templates" / "broken.yaml").unlink()
    error = failed.value
    assert message in str(error) and "template 'broken'" in str(error) and "line 8" in str(error)
    assert error.location and error.location.endswith("broken.yaml")
    assert "第 8 行" in error.describe("zh")
    if variable:
        assert error.field == variable


def test_a_value_missing_for_one_person_names_the_person(engine: Engine, demo: Workspace, sample: list[str]) -> None:
    template = parse_template(_template(sms={"zh": {"body": "{{ person.greeting }}，欢迎光临{{ store.name }}"}}))
    with pytest.raises(ContentError, match="person P") as failed:
        render_messages(engine, demo, template, sample, channel="sms", language="zh", now=NOW)
    assert "fields.body" not in str(failed.value) and "channels.sms.zh.body" in str(failed.value)


def test_over_limit_content_fails_at_preview_with_the_count(engine: Engine, demo: Workspace, sample: list[str]) -> None:
    long = parse_template(_template(sms={"max_parts": 1, "zh": {"body": "好" * 70}}))
    with pytest.raises(ChannelLimitError, match="78 characters"):
        preview_message(engine, demo, long, sample[0], channel="sms", language="zh", now=NOW)
    brackets = parse_template(_template(sms={"zh": {"body": "【个性推荐】{{ product.name }}"}}))
    with pytest.raises(ChannelLimitError, match="【】"):
        preview_message(engine, demo, brackets, sample[0], channel="sms", language="zh", now=NOW)


@pytest.mark.parametrize(("data", "field"), [
    (_template(sms={"zh": {"title": "x", "body": "y"}}), "channels"),
    (_template(app_push={"zh": {"body": "y"}}), "channels"),
    (_template(wechat={"zh": {"fields": {"colour": "x"}}}), "channels"),
    (_template(fax={"zh": {"body": "y"}}), "channels.fax"),
    ({**_template(sms={"zh": {"body": "y"}}), "id": "Bad Id"}, "id"),
    ({**_template(sms={"zh": {"body": "y"}}), "coupon": {"value": 200, "discount": "percent"}}, "coupon"),
])
def test_definition_errors_name_the_key(data: dict, field: str) -> None:
    with pytest.raises(ContentError) as refused:
        parse_template(data)
    assert refused.value.field.startswith(field)


def test_channels_and_languages_a_template_lacks_are_refused(engine: Engine, demo: Workspace, sample) -> None:
    only_zh = parse_template(_template(sms={"zh": {"body": "{{ product.name }}"}}))
    with pytest.raises(ContentError, match="no 'en' text"):
        render_messages(engine, demo, only_zh, sample[:1], channel="sms", language="en")
    with pytest.raises(ContentError, match="no 'email' channel"):
        render_messages(engine, demo, only_zh, sample[:1], channel="email", language="zh")
    with pytest.raises(ContentError, match="campaign"):
        render_messages(engine, demo, "flash_sale", sample[:1], channel="sms", language="zh")
    with pytest.raises(ContentError, match="not in the portrait"):
        render_messages(engine, demo, only_zh, ["P_nobody"], channel="sms", language="zh")
    with pytest.raises(ContentError, match="no message template 'nope'"):
        load_template(demo, "nope")


@pytest.mark.spark
def test_the_context_query_means_the_same_on_spark(pipelines_on_both, demo_workspace: Workspace) -> None:
    """Names without the size, popularity windows, recommendations topped up: equal row for row."""
    (duck, spark), _ = pipelines_on_both
    spark.refresh()
    persons = [row["person_id"] for row in duck.query(SAMPLE_SQL).to_pylist()]
    for template_id in ("personal_picks", "new_arrivals"):
        template = load_template(demo_workspace, template_id)
        with person_batch(duck, persons, "content_parity") as batch:
            sql = context_sql(template, batch, None, duck.table_exists("recommendations"))
            left, right = duck.query(sql), spark.query(sql)
        assert left.num_rows == len(persons) * template.products.count
        report = compare_tables(template_id, left, right)
        assert report.equal, report.differences


def test_a_file_that_is_not_yaml_names_the_line(demo: Workspace) -> None:
    _write(demo, "id: broken\nname: {zh: 坏, en: [\n")
    try:
        with pytest.raises(ContentError, match="line 3") as failed:
            list_templates(demo)
    finally:
        (demo.definitions_dir / "templates" / "broken.yaml").unlink()
    assert failed.value.location.endswith("broken.yaml")
