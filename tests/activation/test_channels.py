"""Channel rules as tables of cases: SMS length as Chinese carriers count it, WeChat field
types, push limits, e-mail parts. Pure functions: no engine, no workspace."""

from __future__ import annotations

import pytest

from jingzhun.activation.channels import (
    ChannelLimitError,
    Where,
    check_email,
    check_push,
    check_sms,
    check_wechat,
    compose_sms,
    count_sms,
    display_width,
    text_to_html,
    wechat_key_type,
)

WHERE = Where("t", "sms", "zh", "P1", "definitions/templates/t.yaml")


@pytest.mark.parametrize(("name", "text", "chars", "parts"), [
    ("signature and 66 Chinese characters: one message", "【精准】" + "好" * 66, 70, 1),
    ("one over 70: two parts of 67", "【精准】" + "好" * 67, 71, 2),
    ("two full parts", "【精准】" + "好" * 130, 134, 2),
    ("one over two parts", "【精准】" + "好" * 131, 135, 3),
    ("letters, digits, spaces and punctuation count 1 each", "【Jingzhun】" + "a1 ,.!" * 10, 70, 1),
    ("full-width punctuation counts 1", "【精准】" + "，。！" * 22, 70, 1),
    ("an emoji outside the BMP counts 2", "【精准】" + "好" * 64 + "😀", 70, 1),
    ("…and tips a message into two parts", "【精准】" + "好" * 65 + "😀", 71, 2),
    ("empty", "", 0, 1),
])
def test_sms_length_is_counted_as_carriers_count_it(name: str, text: str, chars: int, parts: int) -> None:
    counted = count_sms(text)
    assert (counted.chars, counted.parts) == (chars, parts), name


@pytest.mark.parametrize(("text", "marketing", "language", "expected"), [
    ("新品上市，点击查看", True, "zh", "【精准】新品上市，点击查看回T退订"),
    ("see https://x.cn/a", True, "zh", "【精准】see https://x.cn/a 回T退订"),
    ("New in: dresses", True, "en", "【精准】New in: dresses Reply T to opt out"),
    ("您的订单已发货", False, "zh", "【精准】您的订单已发货"),
    ("新品上市，拒收请回复R", True, "zh", "【精准】新品上市，拒收请回复R"),
    ("新品上市 回T退订", True, "zh", "【精准】新品上市 回T退订"),
    ("two\n  lines", False, "zh", "【精准】two lines"),
])
def test_sms_gets_its_signature_and_the_opt_out_once(text: str, marketing: bool, language: str, expected: str) -> None:
    assert compose_sms(text, signature="精准", marketing=marketing, language=language, where=WHERE) == expected


def test_sms_needs_a_signature_and_keeps_brackets_for_it() -> None:
    with pytest.raises(ChannelLimitError, match="sms_signature") as missing:
        compose_sms("hi", signature=None, marketing=True, language="zh", where=WHERE)
    assert "签名" in missing.value.describe("zh")
    with pytest.raises(ChannelLimitError, match="【】") as brackets:
        compose_sms("【个性推荐】hi", signature="精准", marketing=True, language="zh", where=WHERE)
    assert brackets.value.field == "body" and "「」" in brackets.value.fix


@pytest.mark.parametrize(("chars", "max_parts", "ok"), [
    (70, 1, True), (71, 1, False), (134, 2, True), (135, 2, False), (469, 7, True), (470, 7, False),
])
def test_sms_over_its_parts_is_refused_with_the_count(chars: int, max_parts: int, ok: bool) -> None:
    sms = "【精准】" + "好" * (chars - 4)
    if ok:
        assert check_sms(sms, max_parts=max_parts, where=WHERE).parts == count_sms(sms).parts
        return
    with pytest.raises(ChannelLimitError) as refused:
        check_sms(sms, max_parts=max_parts, where=WHERE)
    assert str(chars) in str(refused.value) and "template 't'" in str(refused.value)
    assert refused.value.location == "definitions/templates/t.yaml"


@pytest.mark.parametrize(("key", "kind"), [
    ("thing1", "thing"), ("character_string12", "character_string"), ("time3", "time"), ("amount4", "amount"),
    ("phrase2", "phrase"), ("keyword1", "classic"), ("first", "classic"), ("remark", "classic"),
    ("thing", None), ("foo1", None), ("keyword", None), ("Thing1", None),
])
def test_wechat_keys_declare_their_type(key: str, kind: str | None) -> None:
    assert wechat_key_type(key) == kind


@pytest.mark.parametrize(("key", "value", "ok"), [
    ("thing1", "满199减30专属券", True), ("thing1", "好" * 20, True), ("thing1", "好" * 21, False),
    ("character_string2", "N89E3FXB6W", True), ("character_string2", "券码N89E", False),
    ("time3", "2026-10-31 23:59", True), ("time3", "2026年10月31日 23:59", True), ("time3", "Oct 31", False),
    ("amount4", "¥30.00", True), ("amount4", "30元", True), ("amount4", "thirty", False),
    ("phrase5", "配送中", True), ("phrase5", "配送中ok", False), ("phrase5", "一二三四五六", False),
    ("number6", "12.5", True), ("number6", "12a", False), ("keyword1", "好" * 21, False),
    ("remark", "好" * 100, True),
])
def test_wechat_values_follow_their_type(key: str, value: str, ok: bool) -> None:
    fields = {"keyword9": "x", key: value}
    if ok:
        assert check_wechat(None, fields, truncate=False, where=WHERE).fields[key] == value
    else:
        with pytest.raises(ChannelLimitError) as refused:
            check_wechat(None, fields, truncate=False, where=WHERE)
        assert refused.value.field == f"fields.{key}"


def test_wechat_thing_is_shortened_only_when_allowed_and_says_so() -> None:
    english = Where("t", "wechat", "en")
    out = check_wechat("您好", {"thing1": "好" * 25, "time2": "2026-10-31"}, truncate=True, where=english)
    assert out.fields["thing1"] == "好" * 19 + "…" and out.title == "您好"
    assert any("thing1 shortened" in note for note in out.notes)
    assert any("first/remark" in note for note in out.notes)
    chinese = check_wechat(None, {"thing1": "好" * 25}, truncate=True, where=WHERE)
    assert chinese.notes == ("thing1 已截短为 20 字",)
    with pytest.raises(ChannelLimitError, match="keyword"):
        check_wechat("only a title", {"remark": "x"}, truncate=False, where=WHERE)
    with pytest.raises(ChannelLimitError, match="empty"):
        check_wechat(None, {"thing1": "  "}, truncate=False, where=WHERE)


@pytest.mark.parametrize(("title", "body", "truncate", "result"), [
    ("好" * 20, "好" * 50, False, "ok"),
    ("好" * 21, "x", False, "title"),
    ("a" * 40, "a" * 100, False, "ok"),
    ("新品", "好" * 51, False, "body"),
    ("新品", "好" * 51, True, "cut"),
])
def test_push_title_and_body_limits(title: str, body: str, truncate: bool, result: str) -> None:
    where = Where("t", "app_push", "zh")
    if result in ("title", "body"):
        with pytest.raises(ChannelLimitError) as refused:
            check_push(title, body, truncate=truncate, where=where)
        assert refused.value.field == result
        return
    out = check_push(title, body, truncate=truncate, where=where)
    assert display_width(out.body) <= 100 and display_width(out.title or "") <= 40
    assert (out.body.endswith("…") and out.notes) if result == "cut" else (out.body == body and not out.notes)


def test_email_has_a_text_part_an_unsubscribe_line_and_escaped_html() -> None:
    where = Where("t", "email", "zh")
    out = check_email("新品上市", "您好 <b>\n\n第二段", None, marketing=True, unsubscribe="回复“退订”即可退订", where=where)
    assert out.text is not None and out.text.endswith("回复“退订”即可退订")
    assert "&lt;b&gt;" in out.body and "<p>第二段" in out.body and "退订" in out.body
    plain = check_email("订单", "已发货", "<html><body>已发货</body></html>", marketing=False, unsubscribe="x", where=where)
    assert plain.body == "<html><body>已发货</body></html>" and plain.text == "已发货"
    with pytest.raises(ChannelLimitError, match="78"):
        check_email("好" * 79, "x", None, marketing=False, unsubscribe="", where=where)
    with pytest.raises(ChannelLimitError, match="102 KB"):
        check_email("s", "x", "<p>" + "好" * 40_000 + "</p>", marketing=False, unsubscribe="", where=where)
    assert text_to_html("a\nb").count("<br>") == 1
